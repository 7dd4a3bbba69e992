"""``sihnet bern``: the Bern score of every patient of a manifest, and its AUROC against the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sihnet.bern import BernScore, score_fields
from sihnet.data.manifest import read_manifest
from sihnet.errors import SihnetError
from sihnet.evaluation.statistics import auroc_ci, bootstrap_auroc_ci
from sihnet.outputs import check_output_file, starts_with
from sihnet.tables import write_table

TABLE_COLUMNS = (
    "patient_id",
    "bern_score",
    "bern_category",
    "bern_complete",
    "bern_score_min",
    "bern_score_max",
)


def patient_scores(manifest: Path) -> tuple[dict[str, BernScore], dict[str, int | None]]:
    """Bern score and label of every patient in ``manifest`` (labels may be absent)."""
    cohort = read_manifest(manifest, require_labels=False)
    fields = cohort.bern_fields()
    scores = {p: score_fields(fields.get(p, {})) for p in cohort.patient_ids}
    return scores, cohort.patient_labels()


def run_bern(manifest: Path, out: Path | None = None) -> list[str]:
    """Score every patient; write ``out`` when given.

    Returns:
        Printable lines: one per patient, then the AUROC of the complete, labelled scores with a
        DeLong and a stratified bootstrap 95% CI.
    """
    if out is not None:
        check_output_file(out, "bern", earlier=starts_with("patient_id,bern_score,"))
    scores, labels = patient_scores(manifest)
    if all(not s.complete and s.score_max == 9 and s.score_min == 0 for s in scores.values()):
        raise SihnetError(f"manifest {Path(manifest).name} has no Bern columns")
    lines = [f"{'patient_id':<16} {'score':>5}  {'category':<18} complete  label"]
    rows = []
    for patient, score in scores.items():
        shown = str(score.score) if score.complete else f"{score.score_min}-{score.score_max}"
        label = labels.get(patient)
        lines.append(
            f"{patient:<16} {shown:>5}  {score.category:<18} {'yes' if score.complete else 'no':<8}  {'' if label is None else label}"
        )
        rows.append(
            {
                "patient_id": patient,
                "bern_score": "" if score.score is None else score.score,
                "bern_category": score.category,
                "bern_complete": int(score.complete),
                "bern_score_min": score.score_min,
                "bern_score_max": score.score_max,
            }
        )
    usable = [p for p, s in scores.items() if s.complete and labels.get(p) is not None]
    y = np.array([labels[p] for p in usable])
    x = np.array([scores[p].score_min for p in usable], dtype=float)
    if len(usable) and min(int(y.sum()), int((1 - y).sum())) >= 2:
        estimate = auroc_ci(y, x)
        low, high = bootstrap_auroc_ci(y, x)
        lines.append(
            f"Bern AUROC {estimate.auroc:.4f} (DeLong 95% CI {estimate.ci_low:.3f}–{estimate.ci_high:.3f}; "
            f"bootstrap {low:.3f}–{high:.3f}) on {len(usable)} patients with a complete score and a label"
        )
    else:
        lines.append(
            "Bern AUROC not computed: needs at least two labelled patients of each class with a complete score"
        )
    incomplete = sum(not s.complete for s in scores.values())
    if incomplete:
        lines.append(
            f"{incomplete} patient(s) have a partial score (a field is missing); shown as a range"
        )
    if out is not None:
        write_table(Path(out), TABLE_COLUMNS, rows)
        lines.append(f"table: {out}")
    return lines
