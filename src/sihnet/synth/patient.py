"""Synthetic patients: SIH signs, normal anatomical variation and acquisition, and how they are drawn.

Calibration of :func:`sample_patient` (default cohort: 129 patients, 66 with fistula, as the paper):

* Sign frequencies in SIH follow the meta-analysis of D'Antona et al. (JAMA Neurol 2021;78:329):
  pachymeningeal enhancement ~73%, venous distension ~75%, brain sag ~61%, pituitary engorgement
  ~50%, subdural collections ~30%; CSF-venous fistulas show them somewhat less often than SLEC
  leaks, so fistula patients here carry them at 0.80/0.75/0.60/0.50/0.25 when "abnormal".
* About one in five patients with SIH has a normal-appearing brain MRI (Kranz et al., AJNR 2016;
  19% in the paper's reference 7): 20% of fistula patients are drawn with every sign below the
  visible threshold. Their signs are not zero: dura slightly thicker, sinuses slightly fuller,
  brain slightly lower than in controls - the image carries more than the Bern thresholds keep.
* Patients without a fistula still show a sign now and then (post-puncture changes, other causes
  of dural enhancement, a constitutionally low brainstem or narrow cisterns); the normal ranges of
  the three Bern distances (Dobrocky et al., JAMA Neurol 2019) overlap the thresholds.
* With these settings the Bern score of the ground truth separates the default cohort with an
  AUROC of ~0.80 (the paper's radiologists: 0.80); ``tests/synth`` checks 0.80 +/- 0.05.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Visible-sign thresholds of the severities (0..1): at or above, a reader calls the sign present.
VISIBLE_SEVERITY = 0.3
VISIBLE_SUBDURAL_MM = 1.5
STORAGE_ORIENTATIONS = ("RAS", "LPS", "PIR", "LAS", "PSR", "ASL", "LIP", "RPI")


@dataclasses.dataclass(frozen=True)
class Signs:
    """SIH signs, each switchable (0 = absent) and continuous.

    Attributes:
        pachymeningeal_enhancement: 0..1; dura 0.8 -> 3.2 mm thick, faint -> bright enhancement.
        venous_engorgement: 0..1; transverse/superior sagittal sinus larger, concave -> convex margins.
        sag_mm: downward displacement of the pons (and everything below), mm.
        midbrain_compression_mm: extra descent of the diencephalon relative to the pons, mm; shortens
            the mamillopontine distance by exactly this amount.
        pituitary_mm: increase of pituitary height (its upper margin rises), mm.
        subdural_mm: maximal thickness of bilateral convexity subdural collections, mm.
    """

    pachymeningeal_enhancement: float = 0.0
    venous_engorgement: float = 0.0
    sag_mm: float = 0.0
    midbrain_compression_mm: float = 0.0
    pituitary_mm: float = 0.0
    subdural_mm: float = 0.0


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A patient's normal anatomy before SIH signs (head-frame mm, before head-size scaling)."""

    suprasellar_mm: float = 6.0
    prepontine_mm: float = 6.5
    mamillopontine_mm: float = 8.5


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """Head pose, size and deformation; scanner intensity; sampling; storage.

    Attributes:
        head_scale: isotropic head size factor.
        rotation_deg: rotations about x (pitch), y (roll), z (yaw), degrees.
        translation_mm: head position in the scanner, mm.
        deformation_mm: standard deviation of the smooth random deformation, mm.
        intensity_scale: stored value of white matter.
        gamma: contrast exponent applied to the rendered intensities.
        bias_sd: standard deviation of the log bias field.
        noise_sd: Rician noise sigma relative to white matter.
        two_d: 2D sagittal acquisition with thick slices (else 3D isotropic).
        slice_thickness_mm: slice thickness of a 2D acquisition.
        orientation: axis codes the file is stored in (nibabel convention).
        oblique_deg: rotation of the acquisition grid about the x axis, degrees.
        seed: seed of the deformation, bias field and noise.
    """

    head_scale: float = 1.0
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    deformation_mm: float = 0.0
    intensity_scale: float = 1000.0
    gamma: float = 1.0
    bias_sd: float = 0.0
    noise_sd: float = 0.0
    two_d: bool = False
    slice_thickness_mm: float = 4.0
    orientation: str = "RAS"
    oblique_deg: float = 0.0
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Patient:
    """Everything that determines one synthetic study."""

    label: int
    signs: Signs = Signs()
    baseline: Baseline = Baseline()
    acquisition: Acquisition = Acquisition()
    normal_appearing: bool = False


def _severity(rng: np.random.Generator, present: bool, subtle: tuple[float, float]) -> float:
    return float(rng.uniform(VISIBLE_SEVERITY, 1.0) if present else rng.uniform(*subtle))


def sample_signs(rng: np.random.Generator, label: int) -> tuple[Signs, bool]:
    """Draw the signs of one patient (see the module docstring for the calibration).

    Returns:
        ``(signs, normal_appearing)``.
    """
    normal_appearing = bool(label == 1 and rng.random() < 0.2)
    # Below-threshold ("subtle") severities: fistula patients 0.08-0.28, controls 0-0.05.
    if label == 1 and not normal_appearing:
        frequencies, subtle = (0.80, 0.75, 0.60, 0.50, 0.25), (0.08, 0.28)
    elif label == 1:
        frequencies, subtle = (0.0, 0.0, 0.0, 0.0, 0.0), (0.08, 0.28)
    else:
        frequencies, subtle = (0.12, 0.15, 0.14, 0.10, 0.05), (0.0, 0.05)
    present = rng.random(5) < np.array(frequencies)
    # Sub-millimetre sag and pituitary changes are invisible at any resolution the model sees;
    # they would only move the Bern measurements, so they stay at the controls' level.
    quiet = (0.0, 0.05)
    sag = _severity(rng, bool(present[2]), quiet)
    return (
        Signs(
            pachymeningeal_enhancement=_severity(rng, bool(present[0]), subtle),
            venous_engorgement=_severity(rng, bool(present[1]), subtle),
            sag_mm=3.5 * sag,
            midbrain_compression_mm=4.5 * sag * float(rng.uniform(0.7, 1.2)),
            pituitary_mm=4.0 * _severity(rng, bool(present[3]), quiet),
            subdural_mm=float(rng.uniform(2.0, 7.0)) if present[4] else 0.0,
        ),
        normal_appearing,
    )


def sample_baseline(rng: np.random.Generator) -> Baseline:
    """Normal anatomical variation of the three Bern distances (mm)."""
    return Baseline(
        suprasellar_mm=float(np.clip(rng.normal(5.6, 1.2), 3.0, 9.0)),
        prepontine_mm=float(np.clip(rng.normal(6.6, 0.9), 4.2, 9.0)),
        mamillopontine_mm=float(np.clip(rng.normal(8.0, 1.4), 4.5, 12.0)),
    )


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Scanner, head pose and storage: 70% 3D isotropic, 30% 2D sagittal with thick slices."""
    return Acquisition(
        head_scale=float(rng.uniform(0.92, 1.08)),
        rotation_deg=(
            float(rng.uniform(-10, 10)),
            float(rng.uniform(-5, 5)),
            float(rng.uniform(-5, 5)),
        ),
        translation_mm=tuple(float(v) for v in rng.uniform(-6, 6, 3)),  # type: ignore[arg-type]
        deformation_mm=float(rng.uniform(0.5, 2.0)),
        intensity_scale=float(rng.uniform(400, 2500)),
        gamma=float(rng.uniform(0.8, 1.25)),
        bias_sd=float(rng.uniform(0.03, 0.15)),
        noise_sd=float(rng.uniform(0.015, 0.04)),
        two_d=bool(rng.random() < 0.3),
        slice_thickness_mm=float(rng.choice([3.0, 4.0, 5.0])),
        orientation=str(rng.choice(STORAGE_ORIENTATIONS)),
        oblique_deg=float(rng.uniform(-8, 8)) if rng.random() < 0.3 else 0.0,
        seed=int(rng.integers(2**31)),
    )


def sample_patient(rng: np.random.Generator, label: int) -> Patient:
    """Draw one synthetic patient with the given label."""
    signs, normal_appearing = sample_signs(rng, label)
    return Patient(
        label=label,
        signs=signs,
        baseline=sample_baseline(rng),
        acquisition=sample_acquisition(rng),
        normal_appearing=normal_appearing,
    )
