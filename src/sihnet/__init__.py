"""sihnet: predict a spinal CSF-venous fistula from one brain contrast-enhanced T1 MRI."""

__version__ = "0.1.0"
