"""RoI heads of Mask R-CNN: box, mask and keypoint heads (one folder each) and their combination."""
