"""The reporting-guideline topics a run's report fills, and those its authors must still fill.

Topics of TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) and CLAIM 2024 (Tejani et al.,
Radiology: Artificial Intelligence 2024), named by their subject (the guidelines' own wording and
numbering are in the papers). ``section`` is the report section that fills a topic; ``None``: the
authors must fill it. Some topics are filled only when the run has the data (``needs``).
"""

from __future__ import annotations

from typing import Any

# (guideline, topic, report section id or None, data the section needs or None)
TOPICS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("TRIPOD+AI", "Title, abstract, background and objectives", None, None),
    ("TRIPOD+AI", "Data sources, setting, dates of recruitment", None, None),
    ("TRIPOD+AI", "Participants: eligibility and flow, numbers with the outcome", "cohort", None),
    ("TRIPOD+AI", "Outcome and how it was assessed (myelography)", None, None),
    ("TRIPOD+AI", "Predictors and data preparation", "recipe", None),
    ("TRIPOD+AI", "Missing data (partial Bern scores as ranges)", "bern", "bern"),
    ("TRIPOD+AI", "Analytical methods, model type and hyperparameters", "recipe", None),
    ("TRIPOD+AI", "Internal validation: patient-level cross-validation", "discrimination", None),
    ("TRIPOD+AI", "Class imbalance (weighted cross-entropy)", "recipe", None),
    ("TRIPOD+AI", "Fairness: performance in subgroups", "cohort", "subgroups"),
    (
        "TRIPOD+AI",
        "Model performance: discrimination with confidence intervals",
        "discrimination",
        None,
    ),
    ("TRIPOD+AI", "Model performance: calibration", "calibration", None),
    ("TRIPOD+AI", "Clinical utility: decision curve", "bern", None),
    (
        "TRIPOD+AI",
        "Comparison with the existing score (Bern) and incremental value",
        "bern",
        "bern",
    ),
    (
        "TRIPOD+AI",
        "Model specification and access (weights' hashes, code version)",
        "reproducibility",
        None,
    ),
    (
        "TRIPOD+AI",
        "Ethics approval, funding, conflicts of interest, registration, protocol",
        None,
        None,
    ),
    ("TRIPOD+AI", "Patient and public involvement", None, None),
    ("TRIPOD+AI", "Interpretation, limitations and usability in context", None, None),
    ("CLAIM 2024", "Study design and data sources", None, None),
    ("CLAIM 2024", "Image acquisition protocol (scanners, sequences, contrast timing)", None, None),
    ("CLAIM 2024", "De-identification (pseudonymous IDs only in this page)", "errors", None),
    ("CLAIM 2024", "Data preprocessing and intensity normalisation", "recipe", None),
    ("CLAIM 2024", "Reference standard definition and rationale; who read it", None, None),
    ("CLAIM 2024", "Data partitions at the patient level, sizes per fold", "cohort", None),
    ("CLAIM 2024", "Model architecture, software and versions, initialisation", "recipe", None),
    (
        "CLAIM 2024",
        "Training details: augmentation, schedule, stopping, model selection",
        "training",
        None,
    ),
    ("CLAIM 2024", "Ensembling of the fold models", "recipe", None),
    (
        "CLAIM 2024",
        "Performance metrics with confidence intervals and statistical tests",
        "bern",
        None,
    ),
    ("CLAIM 2024", "Failure analysis: the most confidently wrong cases", "errors", None),
    ("CLAIM 2024", "Explainability: occlusion maps", "occlusion", "occlusion"),
    ("CLAIM 2024", "External validation", "external", "external"),
    (
        "CLAIM 2024",
        "Demographic and clinical characteristics of the cohort",
        "cohort",
        "demographics",
    ),
    ("CLAIM 2024", "Limitations, implications, access to code and data", None, None),
)


def checklist(available: set[str]) -> list[dict[str, Any]]:
    """One row per topic: its guideline, the section that fills it (or None: the authors must)."""
    rows = []
    for guideline, topic, section, needs in TOPICS:
        filled = section if needs is None or needs in available else None
        rows.append({"guideline": guideline, "topic": topic, "section": filled})
    return rows
