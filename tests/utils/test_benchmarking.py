"""utils/benchmarking.py, shared by the benchmark scripts: the synthetic batch and the GPU synchronisation."""
import torch

from maskrcnn_benchmark.utils.benchmarking import HEIGHT, INSTANCES, WIDTH, make_inputs, synchronizer


def test_synchronizer_waits_for_the_gpu_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    synchronizer("cpu")()
    assert calls == []
    synchronizer("cuda:1")()
    assert calls == [torch.device("cuda:1")]


def test_the_synthetic_batch_is_seeded_and_its_boxes_hold_their_masks_to_a_pixel():
    images, boxes, labels, masks = make_inputs(seed=0)
    again = make_inputs(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(images + boxes + masks, again[0] + again[1] + again[3]))
    assert [tuple(image.shape) for image in images] == [(3, HEIGHT, WIDTH)] * 2
    for image_boxes, image_masks in zip(boxes, masks):
        assert image_boxes.shape == (INSTANCES, 4) and image_masks.shape == (INSTANCES, HEIGHT, WIDTH)
        for (x0, y0, x1, y1), mask in zip(image_boxes.long().tolist(), image_masks):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            # the ellipse of a w x h box reaches one pixel past its inclusive corner x0 + w - 1
            assert x0 <= int(xs.min()) and int(xs.max()) <= x1 + 1 and y0 <= int(ys.min()) and int(ys.max()) <= y1 + 1
