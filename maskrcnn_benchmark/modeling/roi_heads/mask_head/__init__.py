"""Mask R-CNN mask head (feature extractors, predictors, loss, post-processing and Masker)."""
