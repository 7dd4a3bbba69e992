"""The best any reader of a synthetic cohort could do, by Monte Carlo over the generator itself.

Patients are drawn from :mod:`sihnet.synth.patient` without rendering; their ground-truth Bern
fields are measured on the same geometry as rendered studies (:func:`measure.bern_distances`,
the smooth deformation drawn only around the midline landmarks, which is the same distribution).

* **Ideal reader**: the likelihood ratio of the latent signs under the generator's own densities
  (the Neyman-Pearson optimum, so no reader of the image can have a higher AUROC). Because an
  absent sign is drawn alike in both classes and a normal-appearing fistula patient is drawn as a
  control, ``LR = p + (1 - p) * prod_i r_i`` with ``p`` the normal-appearing share and ``r_i`` the
  ratio of sign i's densities (present: frequency x Beta density; absent: the frequencies' ratio).
* **Ground-truth Bern score**: the six items as an error-free reader counts them.
* **Each sign** alone (its latent severity) and each Bern item alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from sihnet.bern import (
    DISTANCE_FIELDS,
    ITEMS,
    MAMILLOPONTINE,
    PREPONTINE,
    SUPRASELLAR,
    bern_scores,
)
from sihnet.schemas import CohortReaders, DistanceSpread, GeneratorCeiling, Readers
from sihnet.synth.field import SplineField
from sihnet.synth.geometry import DEFORMATION_KNOTS_MM, SagMap, SkullBase
from sihnet.synth.measure import BRAIN_LANDMARKS, bern_distances, visible_signs
from sihnet.synth.patient import (
    COMPRESSION_FACTOR,
    COMPRESSION_PER_SAG,
    NORMAL_APPEARING,
    SIGN_MODELS,
    VISIBLE_SEVERITY,
    Patient,
    draw_baseline_columns,
    draw_severities,
)

DRAWS_PER_CLASS = 50_000  # 100,000 patients
MONTE_CARLO_SEED = 20261205  # one population per generator: every cohort shares its ceiling
BATCH = 20_000
# The deformation is drawn over the midline landmarks' box plus room for brain position and warp.
LANDMARK_MARGIN_MM = 30.0


@dataclasses.dataclass(frozen=True)
class Population:
    """Drawn patients as columns.

    Attributes:
        labels: (B,) 0/1.
        severities: (B, S) latent severities (:data:`SIGN_MODELS` order).
        fields: Bern item name -> (B,) ground-truth value (0/1 or mm).
    """

    labels: np.ndarray
    severities: np.ndarray
    fields: dict[str, np.ndarray]


def draw_population(rng: np.random.Generator, labels: np.ndarray) -> Population:
    """Draw B patients with the given (B,) labels and measure their Bern fields."""
    severities, _ = draw_severities(rng, labels)
    n = len(labels)
    factor = rng.uniform(*COMPRESSION_FACTOR, n)
    columns = draw_baseline_columns(rng, n)
    sag_index = [m.field for m in SIGN_MODELS].index("sag_mm")
    pituitary_index = [m.field for m in SIGN_MODELS].index("pituitary_mm")
    sag_mm = severities[:, sag_index] * SIGN_MODELS[sag_index].full_scale
    pituitary_mm = severities[:, pituitary_index] * SIGN_MODELS[pituitary_index].full_scale
    sag = SagMap.of(
        sag_mm[:, None],
        (COMPRESSION_PER_SAG * sag_mm * factor)[:, None],
        columns[MAMILLOPONTINE.name][:, None],
        columns["brainstem_offset_mm"][:, None],
    )
    normal = SagMap.of(
        0.0,
        0.0,
        columns[MAMILLOPONTINE.name][:, None],
        columns["brainstem_offset_mm"][:, None],
    )
    skull = SkullBase.of(
        normal,
        columns[SUPRASELLAR.name][:, None],
        columns[PREPONTINE.name][:, None],
        columns["pituitary_height_mm"][:, None],
        pituitary_mm[:, None],
    )
    deformation = SplineField.draw(
        rng,
        np.repeat(columns["deformation_mm"][:, None], 3, axis=1),
        DEFORMATION_KNOTS_MM,
        low=BRAIN_LANDMARKS.min(0) - LANDMARK_MARGIN_MM,
        high=BRAIN_LANDMARKS.max(0) + LANDMARK_MARGIN_MM,
    )
    fields: dict[str, np.ndarray] = dict(visible_signs(severities))
    fields.update(bern_distances(sag, skull, deformation, columns["head_scale"]))
    return Population(np.asarray(labels), severities, fields)


def ideal_log_likelihood_ratio(severities: np.ndarray) -> np.ndarray:
    """log P(signs | fistula) / P(signs | control) of (B, S) latent severities: (B,)."""
    log_ratio = np.zeros(severities.shape[0])
    for column, model in zip(severities.T, SIGN_MODELS, strict=True):
        (f_control, f_fistula), (beta_control, beta_fistula) = model.frequency, model.present
        unit = np.clip((column - VISIBLE_SEVERITY) / (1 - VISIBLE_SEVERITY), 1e-9, 1 - 1e-9)
        present = np.log(f_fistula / f_control) + (
            stats.beta.logpdf(unit, *beta_fistula) - stats.beta.logpdf(unit, *beta_control)
        )
        absent = np.log((1 - f_fistula) / (1 - f_control))
        log_ratio += np.where(column >= VISIBLE_SEVERITY, present, absent)
    return np.log(NORMAL_APPEARING + (1 - NORMAL_APPEARING) * np.exp(log_ratio))


def readers_of(population: Population) -> Readers:
    """AUROC of the ideal reader, the ground-truth Bern score, each sign and each Bern item."""
    labels = population.labels

    def auroc(score: np.ndarray) -> float:
        return round(float(roc_auc_score(labels, score)), 4)

    return Readers(
        ideal_reader_auroc=auroc(ideal_log_likelihood_ratio(population.severities)),
        bern_truth_auroc=auroc(bern_scores(population.fields)),
        sign_auroc={
            model.field: auroc(population.severities[:, i]) for i, model in enumerate(SIGN_MODELS)
        },
        bern_item_auroc={
            item.name: auroc(
                -population.fields[item.name]
                if item.name in DISTANCE_FIELDS
                else population.fields[item.name]
            )
            for item in ITEMS
        },
    )


def generator_ceiling(draws_per_class: int = DRAWS_PER_CLASS) -> GeneratorCeiling:
    """The generator's readers over ``draws_per_class`` fistula and control patients, and the
    spread of the controls' ground-truth distances."""
    rng = np.random.default_rng(MONTE_CARLO_SEED)
    parts = []
    for start in range(0, 2 * draws_per_class, BATCH):
        count = min(BATCH, 2 * draws_per_class - start)
        labels = (np.arange(start, start + count) % 2).astype(int)
        parts.append(draw_population(rng, labels))
    population = Population(
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.severities for p in parts]),
        {name: np.concatenate([p.fields[name] for p in parts]) for name in parts[0].fields},
    )
    controls = population.labels == 0
    spread = {}
    for item in ITEMS:
        if item.name in DISTANCE_FIELDS:
            values = population.fields[item.name][controls]
            spread[item.name] = DistanceSpread(
                mean=round(float(values.mean()), 2),
                sd=round(float(values.std()), 2),
                share_at_or_below_threshold=round(float(item.met_by(values).mean()), 3),
            )
    return GeneratorCeiling(
        draws_per_class=draws_per_class,
        **readers_of(population).model_dump(),
        control_distances_mm=spread,
    )


def cohort_readers(patients: list[Patient], fields: list[dict[str, float | int]]) -> CohortReaders:
    """The same readers on a drawn cohort's own patients (their ground-truth fields)."""
    population = Population(
        np.array([p.label for p in patients]),
        np.stack([p.signs.severities() for p in patients]),
        {item.name: np.array([float(f[item.name]) for f in fields]) for item in ITEMS},
    )
    return CohortReaders(n_patients=len(patients), **readers_of(population).model_dump())
