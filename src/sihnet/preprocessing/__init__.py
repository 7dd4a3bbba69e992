"""NIfTI -> model-input canvas (reorient, resample, normalise, pad) and its on-disk cache."""
