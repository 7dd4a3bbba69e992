"""Cross-validated training: augmentation, the per-fold loop, checkpoint selection."""
