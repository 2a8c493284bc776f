"""Batching images of different sizes."""
import pytest
import torch

from maskrcnn_benchmark.structures.image_list import ImageList, to_image_list


def test_pads_to_size_divisible_with_zeros_and_keeps_sizes():
    a = torch.ones(3, 10, 17)
    b = torch.full((3, 33, 5), 2.0)
    batch = to_image_list([a, b], size_divisible=32)
    assert batch.tensors.shape == (2, 3, 64, 32)
    assert batch.image_sizes == [(10, 17), (33, 5)]
    assert torch.equal(batch.tensors[0, :, :10, :17], a)
    assert batch.tensors[0, :, 10:].abs().sum() == 0 and batch.tensors[0, :, :, 17:].abs().sum() == 0
    assert torch.equal(batch.tensors[1, :, :33, :5], b)
    assert batch.tensors[1].sum() == b.sum()


def test_without_divisibility_pads_to_largest():
    batch = to_image_list([torch.ones(3, 10, 17), torch.ones(3, 12, 5)])
    assert batch.tensors.shape == (2, 3, 12, 17)


def test_tensor_and_imagelist_inputs():
    t = torch.rand(2, 3, 7, 9)
    batch = to_image_list(t)
    assert batch.tensors is t and batch.image_sizes == [(7, 9), (7, 9)]
    assert to_image_list(batch) is batch
    padded = to_image_list(t, size_divisible=4)
    assert padded.tensors.shape == (2, 3, 8, 12) and padded.image_sizes == [(7, 9), (7, 9)]
    single = to_image_list(torch.rand(3, 5, 6))
    assert single.tensors.shape == (1, 3, 5, 6)
    assert isinstance(batch.to("cpu"), ImageList)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="image 1"):
        to_image_list([torch.ones(3, 4, 4), torch.ones(4, 4)])
