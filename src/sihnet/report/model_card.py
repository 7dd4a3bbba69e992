"""``MODEL_CARD.md`` of an exported model: the sections of Mitchell et al. (FAT* 2019), filled
with the run's own numbers (rendered with jinja2 from ``templates/MODEL_CARD.md.j2``)."""

from __future__ import annotations

import re
from collections import defaultdict
from importlib.metadata import version
from typing import Any

import numpy as np

from sihnet.config import ExperimentConfig
from sihnet.evaluation.statistics import auroc_ci
from sihnet.schemas import PredictionTable


def template_environment() -> Any:
    """jinja2 templates shipped as package data (``sihnet/report/templates``)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("sihnet.report", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = number_text
    environment.filters["md"] = markdown_text
    return environment


def number_text(value: Any, form: str = "%.3f") -> str:
    """``form % value``, or ``n/a`` for a missing or non-finite number (a partial run's SD)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
        return "n/a"
    return form % value


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def markdown_text(value: Any) -> str:
    """Text from a manifest (a site, a sex) as inert Markdown: HTML escaped (Markdown viewers render
    raw HTML), Markdown's punctuation backslash-escaped (a ``|`` would break a table)."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def subgroup_aurocs(oof: PredictionTable, cohort: dict[str, Any]) -> list[dict[str, Any]]:
    """Pooled out-of-fold AUROC per ``sex`` and per ``site`` value (DeLong 95% CI), where the
    manifest had the column and the subgroup has at least two patients of each class."""
    demographics = cohort.get("demographics", {})
    rows = []
    for column in ("sex", "site"):
        groups: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, patient in enumerate(oof.patient_ids):
            value = demographics.get(patient, {}).get(column)
            if value:
                groups[value].append((int(oof.labels[i]), float(oof.probability[i])))
        for value, pairs in sorted(groups.items()):
            labels = np.array([label for label, _ in pairs])
            entry: dict[str, Any] = {
                "column": column,
                "value": value,
                "n": len(pairs),
                "n_positive": int(labels.sum()),
            }
            if min(int(labels.sum()), int((1 - labels).sum())) >= 2:
                estimate = auroc_ci(labels, np.array([p for _, p in pairs]))
                entry.update(auroc=estimate.auroc, ci95=[estimate.ci_low, estimate.ci_high])
            rows.append(entry)
    return rows


def model_card_text(
    config: ExperimentConfig,
    metrics: dict[str, Any],
    cohort: dict[str, Any],
    subgroups: list[dict[str, Any]],
    model_sha256: str,
    onnx: bool = False,
) -> str:
    """The Markdown model card (``onnx``: the folder holds ONNX graphs, say how to run them)."""
    import monai

    sites = {d.get("site", "") for d in cohort.get("demographics", {}).values()}
    template = template_environment().get_template("MODEL_CARD.md.j2")
    return str(
        template.render(
            version=version("sihnet"),
            config=config,
            metrics=metrics,
            cohort=cohort,
            subgroups=subgroups,
            model_sha256=model_sha256,
            synthetic=sites == {"synthetic"},
            n_patients=len(cohort.get("labels", {})),
            onnx=onnx,
            bern=config.bern_heads.enabled,
            monai_version=monai.__version__,
        )
    )
