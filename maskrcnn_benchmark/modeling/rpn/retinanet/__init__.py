"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection"): head, losses and post-processing."""
