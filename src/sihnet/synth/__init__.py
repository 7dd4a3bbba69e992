"""Synthetic SIH cohort: CE-T1 phantoms from the MNI152 template with graded SIH signs."""
