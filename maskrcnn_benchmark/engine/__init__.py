"""Training loop and inference/evaluation driver."""
