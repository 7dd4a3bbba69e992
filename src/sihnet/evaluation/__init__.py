"""Metrics of a run: per-fold and pooled AUROC with confidence intervals, ROC plots."""
