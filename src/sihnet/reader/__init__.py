"""The automatic Bern reader: the six Bern items measured on one scan, without training."""
