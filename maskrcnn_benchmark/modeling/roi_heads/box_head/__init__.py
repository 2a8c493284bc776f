"""Fast R-CNN box head (feature extractors, predictors, loss, post-processing)."""
