"""Person keypoints: flip with left/right swap, resize, and heat-map targets."""
import torch

from maskrcnn_benchmark.structures.bounding_box import FLIP_LEFT_RIGHT, BoxList
from maskrcnn_benchmark.structures.keypoint import PersonKeypoints, keypoints_to_heat_map


def test_flip_swaps_left_and_right_and_mirrors_x():
    kps = torch.zeros(1, 17, 3)
    kps[0, 1] = torch.tensor([3.0, 4.0, 2.0])  # left_eye
    kps[0, 0] = torch.tensor([5.0, 1.0, 1.0])  # nose
    flipped = PersonKeypoints(kps, (10, 10)).transpose(FLIP_LEFT_RIGHT).keypoints
    right_eye = PersonKeypoints.NAMES.index("right_eye")
    assert flipped[0, right_eye].tolist() == [6.0, 4.0, 2.0]
    assert flipped[0, 0].tolist() == [4.0, 1.0, 1.0]
    # invisible keypoints stay all-zero instead of moving to x = w - 1
    assert flipped[0, 1].tolist() == [0.0, 0.0, 0.0]


def test_keypoints_field_resized_with_boxlist():
    boxes = BoxList(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), (10, 10))
    kps = torch.zeros(1, 17, 3)
    kps[0, 0] = torch.tensor([2.0, 3.0, 2.0])
    boxes.add_field("keypoints", PersonKeypoints(kps, (10, 10)))
    resized = boxes.resize((20, 30)).get_field("keypoints").keypoints
    assert resized[0, 0].tolist() == [4.0, 9.0, 2.0]


def test_heat_map_cells_and_validity():
    rois = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    kps = torch.zeros(1, 17, 3)
    kps[0, 0] = torch.tensor([3.0, 5.0, 2.0])  # cell (x=1, y=2) at 4 cells per side
    kps[0, 1] = torch.tensor([8.0, 8.0, 2.0])  # on the far edge: last cell
    kps[0, 2] = torch.tensor([9.0, 1.0, 2.0])  # outside the roi
    kps[0, 3] = torch.tensor([1.0, 1.0, 0.0])  # not visible
    heatmaps, valid = keypoints_to_heat_map(kps, rois, 4)
    assert heatmaps[0, :4].tolist() == [2 * 4 + 1, 15, 0, 0]
    assert valid[0, :4].tolist() == [1, 1, 0, 0]
