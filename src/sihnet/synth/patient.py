"""Synthetic patients: SIH signs, normal anatomy and acquisition, and how they are drawn.

Every sign has a *latent severity* 0..1, visible to a reader at ``VISIBLE_SEVERITY`` or above.
:data:`SIGN_MODELS` is the one table of how signs are drawn; the sampler and the ideal reader of
:mod:`sihnet.synth.ceiling` both derive from it.

* **No label below the visible threshold.** An absent sign's severity is drawn from one
  distribution whatever the label, and about one in five fistula patients (Kranz et al., AJNR
  2016; 19% in the paper's reference 7) looks normal: drawn exactly as a control is. What the
  image carries beyond the Bern thresholds is the severity of signs that are present (stronger in
  fistula patients) and signs outside the score (pituitary engorgement, brain sag).
* Sign frequencies in fistula patients with visible signs follow D'Antona et al. (JAMA Neurol
  2021;78:329; pachymeningeal ~73%, venous distension ~75%, sag ~61%, pituitary ~50%, subdural
  ~30% in SIH; CSF-venous fistulas somewhat less than leaks). Controls show a sign now and then
  (post-puncture changes, other causes of dural enhancement, a constitutionally low brainstem).
* Normal anatomy varies (:class:`Baseline`): head size and shape, the brainstem's height in the
  skull, the cisterns, the pituitary, and a smooth deformation of several mm.
* Calibration and sources: ``docs/synthetic.md`` (the default cohort's ground-truth Bern AUROC
  ~0.80 as the paper's readers, the ideal reader's ~0.88 as the paper's network).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sihnet.bern import MAMILLOPONTINE, PREPONTINE, SUPRASELLAR

VISIBLE_SEVERITY = 0.3
NORMAL_APPEARING = 0.2  # share of fistula patients drawn as controls
# Brain sag: the diencephalon descends this much more than the pons per mm of sag (midbrain
# compression), times a class-independent factor drawn from COMPRESSION_FACTOR.
COMPRESSION_PER_SAG = 4.5 / 3.5
COMPRESSION_FACTOR = (0.7, 1.2)
STORAGE_ORIENTATIONS = ("RAS", "LPS", "PIR", "LAS", "PSR", "ASL", "LIP", "RPI")


@dataclasses.dataclass(frozen=True)
class SignModel:
    """How one sign is drawn.

    Attributes:
        field: the :class:`Signs` attribute it sets.
        full_scale: the attribute's value at severity 1 (mm, or 1 for an enhancement).
        frequency: probability the sign is present (severity >= ``VISIBLE_SEVERITY``):
            (controls, fistula patients who do not look normal).
        present: Beta(a, b) of a present sign's severity over [VISIBLE_SEVERITY, 1]:
            (controls, fistula patients).
        absent_high: an absent sign's severity is Uniform(0, absent_high), for every patient.
    """

    field: str
    full_scale: float
    frequency: tuple[float, float]
    present: tuple[tuple[float, float], tuple[float, float]]
    absent_high: float


# Present severities: mild in controls (Beta(1, 6): mostly just above the threshold), strong in
# fistula patients (Beta(3, 1.2)). Calibrated by ``sihnet.synth.ceiling`` (docs/synthetic.md).
MILD, STRONG = (1.0, 6.0), (3.0, 1.2)
SIGN_MODELS: tuple[SignModel, ...] = (
    SignModel("dural_enhancement", 1.0, (0.30, 0.72), (MILD, STRONG), 0.2),
    SignModel("venous_engorgement", 1.0, (0.30, 0.68), (MILD, STRONG), 0.2),
    SignModel("sag_mm", 3.5, (0.15, 0.58), (MILD, STRONG), 0.1),
    SignModel("pituitary_mm", 4.0, (0.15, 0.50), (MILD, STRONG), 0.1),
    SignModel("subdural_mm", 7.0, (0.03, 0.25), ((1.5, 1.5), (1.5, 1.5)), 0.0),
)


@dataclasses.dataclass(frozen=True)
class Signs:
    """SIH signs, each switchable (0 = absent) and continuous.

    Attributes:
        dural_enhancement: 0..1 (pachymeningeal enhancement); dura 0.8 -> 3.5 mm thick, faint -> bright enhancement.
        venous_engorgement: 0..1; transverse/superior sagittal sinus larger, concave -> convex margins.
        sag_mm: downward displacement of the pons (and everything below), mm.
        midbrain_compression_mm: extra descent of the diencephalon relative to the pons, mm; shortens
            the mamillopontine distance by exactly this amount.
        pituitary_mm: increase of pituitary height (its upper margin rises), mm.
        subdural_mm: maximal thickness of bilateral convexity subdural collections, mm.
    """

    dural_enhancement: float = 0.0
    venous_engorgement: float = 0.0
    sag_mm: float = 0.0
    midbrain_compression_mm: float = 0.0
    pituitary_mm: float = 0.0
    subdural_mm: float = 0.0

    def severities(self) -> np.ndarray:
        """(len(SIGN_MODELS),) latent severities, in the table's order."""
        return np.array([getattr(self, m.field) / m.full_scale for m in SIGN_MODELS])


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A patient's normal anatomy before SIH signs.

    Attributes:
        suprasellar_cistern_mm, prepontine_cistern_mm, mamillopontine_distance_mm: the three
            Bern distances (named as their items) the anatomy has without SIH signs, head-frame
            mm before head size.
        pituitary_height_mm: height of the gland without engorgement.
        brainstem_offset_mm: constitutional descent of the brainstem and skull base against the
            vault (negative: higher), mm.
        head_scale: size of the head along left-right, posterior-anterior, inferior-superior.
        deformation_mm: average standard deviation of the smooth deformation, per axis, mm.
        deformation_seed: seed of the deformation.
    """

    suprasellar_cistern_mm: float = 6.0
    prepontine_cistern_mm: float = 6.5
    mamillopontine_distance_mm: float = 8.5
    pituitary_height_mm: float = 6.0
    brainstem_offset_mm: float = 0.0
    head_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    deformation_mm: float = 0.0
    deformation_seed: int = 0


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """Head pose, scanner intensity, sampling and storage.

    Attributes:
        rotation_deg: rotations about x (pitch), y (roll), z (yaw), degrees.
        translation_mm: head position in the scanner, mm.
        intensity_scale: stored value of white matter.
        gamma: contrast exponent applied to the rendered intensities.
        bias_sd: standard deviation of the log bias field.
        noise_sd: Rician noise sigma relative to white matter.
        two_d: 2D sagittal acquisition with thick slices (else 3D isotropic).
        slice_thickness_mm: slice thickness of a 2D acquisition.
        orientation: axis codes the file is stored in (nibabel convention).
        oblique_deg: rotation of the acquisition grid about the x axis, degrees.
        seed: seed of the bias field and noise.
    """

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
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


def draw_severities(rng: np.random.Generator, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latent severities of B patients (:data:`SIGN_MODELS`).

    Args:
        labels: (B,) 0/1.

    Returns:
        ``(severities (B, S), normal_appearing (B,) bool)``.
    """
    labels = np.asarray(labels, dtype=int)
    normal = (labels == 1) & (rng.random(labels.shape) < NORMAL_APPEARING)
    profile = np.where(normal, 0, labels)  # a normal-appearing patient is drawn as a control
    columns = []
    for model in SIGN_MODELS:
        present = rng.random(labels.shape) < np.array(model.frequency)[profile]
        a, b = np.array(model.present)[profile].T
        visible = VISIBLE_SEVERITY + (1 - VISIBLE_SEVERITY) * rng.beta(a, b)
        absent = rng.uniform(0.0, model.absent_high, labels.shape)
        columns.append(np.where(present, visible, absent))
    return np.stack(columns, axis=-1), normal


def signs_of(severities: np.ndarray, compression_factor: float) -> Signs:
    """A patient's :class:`Signs` from its (S,) severities and midbrain compression factor."""
    values = {
        m.field: float(s) * m.full_scale for m, s in zip(SIGN_MODELS, severities, strict=True)
    }
    compression = COMPRESSION_PER_SAG * values["sag_mm"] * compression_factor
    return Signs(**values, midbrain_compression_mm=compression)


def draw_baseline_columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Normal anatomy of ``n`` patients as columns named after :class:`Baseline`'s fields
    (``head_scale`` (n, 3)); ``deformation_seed`` excluded. Calibration: ``docs/synthetic.md``."""
    size = rng.uniform(0.92, 1.08, n)
    return {
        SUPRASELLAR.name: np.clip(rng.normal(6.0, 1.8, n), 2.0, 11.0),
        PREPONTINE.name: np.clip(rng.normal(5.8, 1.4, n), 2.5, 10.0),
        MAMILLOPONTINE.name: np.clip(rng.normal(7.6, 1.6, n), 3.5, 12.0),
        "pituitary_height_mm": np.clip(rng.normal(6.0, 1.0, n), 3.5, 9.0),
        "brainstem_offset_mm": np.clip(rng.normal(0.0, 1.5, n), -4.0, 4.0),
        "head_scale": size[:, None] * np.exp(rng.normal(0.0, 0.04, (n, 3))),
        "deformation_mm": rng.uniform(1.5, 3.5, n),
    }


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Scanner, head pose and storage: 70% 3D isotropic, 30% 2D sagittal with thick slices."""
    return Acquisition(
        rotation_deg=(
            float(rng.uniform(-10, 10)),
            float(rng.uniform(-5, 5)),
            float(rng.uniform(-5, 5)),
        ),
        translation_mm=tuple(float(v) for v in rng.uniform(-6, 6, 3)),  # type: ignore[arg-type]
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
    severities, normal = draw_severities(rng, np.array([label]))
    signs = signs_of(severities[0], float(rng.uniform(*COMPRESSION_FACTOR)))
    columns = draw_baseline_columns(rng, 1)
    x, y, z = (float(v) for v in columns.pop("head_scale")[0])
    baseline = Baseline(
        **{k: float(v[0]) for k, v in columns.items()},
        head_scale=(x, y, z),
        deformation_seed=int(rng.integers(2**31)),
    )
    return Patient(label, signs, baseline, sample_acquisition(rng), bool(normal[0]))
