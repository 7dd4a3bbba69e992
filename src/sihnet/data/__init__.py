"""Cohort manifests, patient-level splits and datasets of cached volumes."""
