"""What the commands print: results turned into short lines of text (no I/O here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sihnet.paths import OcclusionPaths, RunPaths

if TYPE_CHECKING:  # results types only; the commands import the stages lazily
    from sihnet.evaluation.run_metrics import RunMetrics
    from sihnet.ingest.convert import ConvertSummary
    from sihnet.interpret.patient_map import OcclusionRecord
    from sihnet.schemas import CeilingFile


def ceiling_lines(ceiling: CeilingFile) -> list[str]:
    """The best any reader could do on a synthetic cohort, beside its ground-truth Bern score."""
    generator, cohort = ceiling.generator, ceiling.cohort
    return [
        f"ceiling of the generator ({2 * generator.draws_per_class:,} drawn patients): ideal reader "
        f"AUROC {generator.ideal_reader_auroc:.3f}, ground-truth Bern score {generator.bern_truth_auroc:.3f}",
        f"this cohort's {cohort.n_patients} patients: ideal reader {cohort.ideal_reader_auroc:.3f}, "
        f"ground-truth Bern score {cohort.bern_truth_auroc:.3f}",
    ]


def metrics_lines(metrics: RunMetrics, paths: RunPaths) -> list[str]:
    """A run's cross-validated AUROC, its comparison with the Bern score, and the files written."""
    low, high = metrics.auroc_pooled_ci95
    if low is not None and low == low:
        head = (
            f"folds {metrics.folds_evaluated}: AUROC mean {metrics.auroc_mean:.4f} ± {metrics.auroc_std:.4f} "
            f"(selection '{metrics.selection}'); pooled OOF {metrics.auroc_pooled:.4f} "
            f"[95% CI {low:.3f}–{high:.3f}]"
        )
    else:
        head = f"folds {metrics.folds_evaluated}: pooled OOF AUROC {metrics.auroc_pooled:.4f}"
    lines = [head]
    if metrics.folds_missing:
        lines.append(f"folds {metrics.folds_missing} are not finished and were left out")
    bern = metrics.bern
    if bern is not None and bern.compared:
        assert bern.auroc_bern_ci95 is not None
        lines.append(
            f"vs Bern score on {bern.n_patients} patients: model {bern.auroc_model:.4f}, "
            f"Bern {bern.auroc_bern:.4f} [{bern.auroc_bern_ci95[0]:.3f}–{bern.auroc_bern_ci95[1]:.3f}], "
            f"difference {bern.auroc_difference:+.4f}, DeLong p = {bern.delong_p:.3g}"
        )
    if metrics.ceiling is not None:
        lines.append(
            f"ceiling of these {metrics.ceiling['n_patients']} synthetic patients: ideal reader "
            f"{metrics.ceiling['ideal_reader_auroc']:.4f}, ground-truth Bern score "
            f"{metrics.ceiling['bern_truth_auroc']:.4f}"
        )
    lines += [f"metrics: {paths.metrics}", f"roc:     {paths.roc_plot}"]
    if bern is not None and bern.compared:
        lines.append(f"vs Bern: {paths.roc_vs_bern_plot}")
    return lines


def external_lines(metrics: dict[str, Any], paths: RunPaths) -> list[str]:
    """An external cohort's AUROC and the development operating point on it."""
    low, high = metrics["auroc_ci95"]
    lines = [
        f"external cohort {metrics['cohort']}: {metrics['n_patients']} patients, AUROC "
        f"{metrics['auroc']:.4f} [95% CI {low:.3f}–{high:.3f}] (fold ensemble)"
    ]
    point = metrics.get("operating_point")
    if point:
        lines.append(
            f"at the development Youden threshold: sensitivity {point['sensitivity']:.3f}, "
            f"specificity {point['specificity']:.3f}"
        )
    lines.append(f"metrics: {paths.external(metrics['cohort']).metrics}")
    return lines


def convert_lines(summary: ConvertSummary, out: Path) -> list[str]:
    """Counts of a ``sihnet convert``."""
    return [
        f"{summary.converted} of {summary.studies} studies converted; {summary.failed} not converted, "
        f"{summary.uncertain} with an uncertain pick, {summary.quarantined} files quarantined",
        f"manifest: {out / 'manifest.csv'}",
    ]


def prediction_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per image: the ensemble probability and its spread, the class at each operating point and
    any warning — or why it was not scored."""
    lines = []
    for record in records:
        if "error" in record:
            lines.append(f"{record['image']}: not scored: {record['error']}")
            continue
        lines.append(
            f"{record['image']}: P(fistula) = {record['probability']:.3f} "
            f"(SD over {len(record['fold_probabilities'])} fold models {record['probability_sd']:.3f})"
        )
        if "probability_network" in record:
            lines.append(
                f"  network {record['probability_network']:.3f}, measured items "
                f"{record['probability_measured']:.3f} (fused: the mean of their logits)"
            )
        for name, point in record.get("operating_points", {}).items():
            verdict = "fistula" if point["fistula"] else "no fistula"
            lines.append(f"  {name} (threshold {point['threshold']:.3f}): {verdict}")
        lines += measured_lines(record.get("measured"))
        lines += bern_lines(record.get("bern"))
        lines += [f"  warning: {text}" for text in record.get("warnings", [])]
    model = next((r["model_sha256"] for r in records if "model_sha256" in r), None)
    if model:
        lines.append(f"model SHA-256 {model[:16]}…")
    return [*lines, "research use only; not a medical device; not for clinical decisions"]


def measured_lines(measured: dict[str, Any] | None) -> list[str]:
    """The automatic Bern reader's items of one image against their thresholds."""
    from sihnet.bern import ITEMS

    if not measured or not measured.get("items"):
        return []
    parts = []
    for item in ITEMS:
        value = measured["items"].get(item.name)
        label = item.description
        if value is None:
            why = measured.get("not_measured", {}).get(item.name, "")
            parts.append(f"{label}: not measured" + (f" ({why})" if why else ""))
        elif item.kind == "sign":
            parts.append(f"{label}: {'yes' if value >= 0.5 else 'no'}")
        else:
            mark = "meets" if item.meets(value) else "above"
            parts.append(f"{label} {value:.1f} mm ({mark} ≤ {item.threshold_mm:g})")
    low, high = measured.get("bern_score_min"), measured.get("bern_score_max")
    score = f"{low}" if low == high else f"{low}–{high}"
    return [f"  measured Bern score {score}: " + "; ".join(parts)]


def bern_lines(bern: dict[str, Any] | None) -> list[str]:
    """The Bern heads' reading of one image (models trained with them), else nothing."""
    if bern is None:
        return []
    parts = [
        f"{name.replace('_', ' ')} {value:.1f}"
        if name.endswith("_mm")
        else f"{name.replace('_', ' ')} p={value:.2f}"
        for name, value in bern["components"].items()
    ]
    return [
        f"  automatic Bern score {bern['auto_bern_score']} (expected {bern['expected_bern_score']:.1f}): "
        + ", ".join(parts)
    ]


def occlusion_lines(record: OcclusionRecord, out: Path) -> list[str]:
    """Forwards and time of an occlusion map, its three strongest regions, the figure."""
    lines = [
        f"occlusion map: {record.forwards} forwards over {len(record.folds)} fold(s), "
        f"{record.seconds:.1f} s ({record.precision}); patch {record.patch_voxels} voxels of {record.grid['spacing_mm']} mm"
    ]
    for row in record.regions[:3]:
        lines.append(
            f"  #{row['rank']} {row['sign']}: peak {row['peak']:+.4g} at "
            f"({row['x_mm']}, {row['y_mm']}, {row['z_mm']}) mm, {row['location']}"
        )
    return [*lines, f"figure: {OcclusionPaths(out).figure}"]
