"""Keypoint R-CNN head (feature extractor, predictor, heat-map loss, Keypointer post-processing)."""
