"""data/image_io.py: every format and mode the reader promises, EXIF orientation, 8-bit pixels unchanged, and a
12-bit image in a 16-bit file reaching the model in proportion to its 8-bit twin (training, evaluation, predictor)."""
import json
import os
import random

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.data.datasets.coco import COCODataset
from maskrcnn_benchmark.data.image_io import (
    ImageFileError,
    from_bgr_array,
    image_size,
    map_high_bit_depth,
    read_image,
    read_image_size,
    to_display_bgr,
)
from maskrcnn_benchmark.data.transforms import build_transforms

ORIENTATION = 0x0112


def _rgb8(height=30, width=40, seed=0):
    """A smooth colour image with one pixel at 0 and one at 255 (so its min-max range is the full 8 bits)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 5 + 1, width // 5 + 1, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR).round().astype(np.uint8)
    image[0, 0] = 0
    image[-1, -1] = 255
    return image


def _as_array(image):
    return np.asarray(image) if isinstance(image, Image.Image) else image.permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------- 8-bit unchanged
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_8bit_rgb_is_bitwise_the_old_pil_path(tmp_path, ext):
    path = str(tmp_path / ("image" + ext))
    Image.fromarray(_rgb8()).save(path)
    image = read_image(path)
    with Image.open(path) as opened:
        old = opened.convert("RGB")
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(old))
    for is_train in (True, False):
        transforms = build_transforms(default_cfg, is_train)
        torch.manual_seed(0)
        random.seed(0)
        new_tensor = transforms(image)[0]
        torch.manual_seed(0)
        random.seed(0)
        assert torch.equal(new_tensor, transforms(old)[0])


# ------------------------------------------------------------------------------------------- every mode
def _expected_8bit(pil_image):
    return np.asarray(pil_image.convert("RGB"))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "1", "CMYK"])
def test_8bit_modes_read_as_rgb(tmp_path, mode):
    rgb = Image.fromarray(_rgb8())
    source = rgb.convert(mode) if mode != "P" else rgb.quantize(16)
    if mode in ("RGBA", "LA"):
        alpha = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1)))  # alpha 0 at the left
        source.putalpha(alpha)
    ext = ".jpg" if mode == "CMYK" else (".tif" if mode == "1" else ".png")
    path = str(tmp_path / ("image" + ext))
    source.save(path)
    image = read_image(path)
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (40, 30)
    with Image.open(path) as opened:
        assert np.array_equal(np.asarray(image), _expected_8bit(opened))
    if mode == "RGBA":  # alpha dropped, not blended: transparent pixels keep their colour
        assert np.array_equal(np.asarray(image), _rgb8())


def test_8bit_tiff_palette_and_rgb(tmp_path):
    rgb = Image.fromarray(_rgb8())
    for name, source in (("rgb.tif", rgb), ("palette.tif", rgb.quantize(8))):
        path = str(tmp_path / name)
        source.save(path)
        assert np.array_equal(np.asarray(read_image(path)), np.asarray(source.convert("RGB")))


def _rgb16():
    rng = np.random.default_rng(1)
    return rng.integers(0, 65536, (30, 40, 3)).astype(np.uint16)


def _check_16bit(image, expected_rgb):
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32 and image.shape == (3, 30, 40)
    expected = torch.from_numpy(expected_rgb.astype(np.float32)) / 65535
    expected = expected[None].expand(3, -1, -1) if expected.ndim == 2 else expected.permute(2, 0, 1)
    assert torch.equal(image, expected)  # every 16-bit value kept, nothing rounded to 8 bits or clipped


def test_16bit_png_grey_rgb_rgba(tmp_path):
    rgb = _rgb16()
    grey = rgb[:, :, 0]
    Image.fromarray(grey).save(str(tmp_path / "grey.png"))  # Pillow writes I;16 PNGs
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    alpha = np.zeros_like(grey)
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[:, :, ::-1], alpha]))
    _check_16bit(read_image(str(tmp_path / "grey.png")), grey)
    _check_16bit(read_image(str(tmp_path / "rgb.png")), rgb)
    _check_16bit(read_image(str(tmp_path / "rgba.png")), rgb)  # alpha 0 everywhere, colours kept


def test_16bit_tiff_grey_rgb_planar_and_alpha(tmp_path):
    rgb = _rgb16()
    tifffile.imwrite(str(tmp_path / "grey.tif"), rgb[:, :, 0])
    tifffile.imwrite(str(tmp_path / "rgb.tif"), rgb, photometric="rgb")
    tifffile.imwrite(str(tmp_path / "planar.tif"), np.moveaxis(rgb, 2, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(str(tmp_path / "rgba.tif"), np.dstack([rgb, rgb[:, :, :1] * 0]), photometric="rgb",
                     extrasamples=["unassalpha"])
    _check_16bit(read_image(str(tmp_path / "grey.tif")), rgb[:, :, 0])
    for name in ("rgb.tif", "planar.tif", "rgba.tif"):
        _check_16bit(read_image(str(tmp_path / name)), rgb)
        assert read_image_size(str(tmp_path / name)) == (40, 30)


def test_stack_float_and_undecodable_files_are_refused_by_name(tmp_path):
    stack = str(tmp_path / "stack.tif")
    tifffile.imwrite(stack, np.zeros((5, 30, 40), np.uint16))
    with pytest.raises(ImageFileError, match="stack.tif.*one 2-D"):
        read_image(stack)
    floats = str(tmp_path / "float.tif")
    tifffile.imwrite(floats, np.full((30, 40), 7.5, np.float32))
    with pytest.raises(ImageFileError, match=r"float.tif.*\[7.5, 7.5\]"):
        read_image(floats)
    tifffile.imwrite(str(tmp_path / "unit.tif"), np.full((30, 40), 0.25, np.float32))
    assert torch.equal(read_image(str(tmp_path / "unit.tif")), torch.full((3, 30, 40), 0.25))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(OSError, match="broken.png"):
        read_image(str(broken))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"))


# ------------------------------------------------------------------------------------------- EXIF orientation
def _exif(orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif


def test_exif_rotated_jpeg_reaches_the_model_upright(tmp_path):
    upright = np.zeros((30, 40, 3), np.uint8)
    upright[:10, :20] = (255, 0, 0)  # red block top-left of the upright picture
    # Orientation 6: the camera stored the picture turned 90 degrees counter-clockwise; viewers turn it back.
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    path = str(tmp_path / "phone.jpg")
    Image.fromarray(stored).save(path, exif=_exif(6), quality=100, subsampling=0)
    image = read_image(path)
    assert image.size == (40, 30) and read_image_size(path) == (40, 30)
    assert np.abs(np.asarray(image).astype(int) - upright).max() < 40  # JPEG noise only
    assert np.asarray(image)[:10, :20, 0].min() > 200 and np.asarray(image)[10:, :, 0].max() < 60
    tensor = build_transforms(default_cfg, is_train=False)(image)[0]
    assert tensor.shape[-1] > tensor.shape[-2]  # landscape, as the user saw it


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    grey = (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)
    path = str(tmp_path / "grey16.png")
    Image.fromarray(grey).save(path, exif=_exif(orientation))
    eight_bit = Image.fromarray((grey >> 8).astype(np.uint8))
    eight_bit.getexif()[ORIENTATION] = orientation
    expected = np.asarray(ImageOps.exif_transpose(eight_bit))
    image = read_image(path)
    assert image.shape[1:] == expected.shape
    assert np.array_equal((image[0].numpy() * 65535).round().astype(np.uint16) >> 8, expected)
    assert read_image_size(path) == image_size(image)


def test_16bit_tiff_orientation_tag(tmp_path):
    grey = (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)
    path = str(tmp_path / "rot.tif")
    tifffile.imwrite(path, grey, extratags=[(274, "H", 1, 8, True)])  # 8: turn 90 degrees counter-clockwise
    image = read_image(path)
    assert image.shape == (3, 40, 30) and read_image_size(path) == (30, 40)
    assert np.array_equal((image[0].numpy() * 65535).round().astype(np.uint16), np.rot90(grey, 1))


# ------------------------------------------------------------------------------------------- the mapping rule
def test_rule_keys_are_checked_by_name():
    with pytest.raises(ValueError, match="INPUT.HIGH_BIT_DEPTH = 'clip'"):
        map_high_bit_depth(torch.zeros(3, 2, 2), "clip")
    with pytest.raises(ValueError, match="HIGH_BIT_DEPTH_PERCENTILES.*only used with"):
        map_high_bit_depth(torch.zeros(3, 2, 2), "full_range", (1.0, 99.0))
    with pytest.raises(ValueError, match="0 <= low < high <= 100"):
        map_high_bit_depth(torch.zeros(3, 2, 2), "percentiles", (50.0, 10.0))
    cfg = default_cfg.clone()
    cfg.merge_from_list(["INPUT.HIGH_BIT_DEPTH", "maximum"])
    with pytest.raises(ValueError, match="INPUT.HIGH_BIT_DEPTH = 'maximum'"):
        build_transforms(cfg, is_train=False)


def test_percentiles_stretch_without_clipping_and_leave_8bit_alone():
    image = torch.linspace(0, 0.1, 101).repeat(3, 1, 1)  # values 0 .. 0.1 (a dark high-bit image)
    full = map_high_bit_depth(image, "percentiles", (0.0, 100.0))
    assert torch.allclose(full, image * 10, atol=1e-6)
    tails = map_high_bit_depth(image, "percentiles", (10.0, 90.0))
    assert tails.min() < -0.1 and tails.max() > 1.1  # beyond the percentiles: outside [0, 1], not clipped
    pil = Image.fromarray(_rgb8())
    assert map_high_bit_depth(pil, "percentiles", (1.0, 99.0)) is pil


def test_display_picture():
    pil = Image.fromarray(_rgb8())
    assert np.array_equal(to_display_bgr(pil), _rgb8()[:, :, ::-1])
    assert np.array_equal(to_display_bgr(from_bgr_array(_rgb8()[:, :, ::-1])), _rgb8()[:, :, ::-1])
    high = from_bgr_array((_rgb8()[:, :, ::-1].astype(np.uint16) * 257))  # 8 bits scaled to 16: same picture
    assert np.array_equal(to_display_bgr(high), _rgb8()[:, :, ::-1])


# ------------------------------------------------------------------------------------------- proportional inputs
TWELVE_BIT = 16  # a 12-bit value v12 = v8 * 16 stored in a 16-bit container


@pytest.fixture
def twin_images(tmp_path):
    """The same picture as an 8-bit PNG and as 12-bit data in a 16-bit PNG, each with its COCO JSON."""
    rgb8 = _rgb8(60, 80)
    rgb12 = rgb8.astype(np.uint16) * TWELVE_BIT
    paths = {}
    for name, array in (("eight", rgb8), ("twelve", rgb12)):
        folder = tmp_path / name
        folder.mkdir()
        cv2.imwrite(str(folder / "img.png"), array[:, :, ::-1])
        ann = {"images": [{"id": 1, "file_name": "img.png", "width": 80, "height": 60}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                                "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]}],
               "categories": [{"id": 1, "name": "cell"}]}
        (folder / "ann.json").write_text(json.dumps(ann))
        paths[name] = str(folder)
    return paths


def _cfg(rule, percentiles=(0.0, 100.0)):
    cfg = default_cfg.clone()
    cfg.merge_from_list(["INPUT.PIXEL_MEAN", [0.0, 0.0, 0.0], "INPUT.MIN_SIZE_TRAIN", (45,), "INPUT.MAX_SIZE_TRAIN",
                         1000, "INPUT.MIN_SIZE_TEST", 45, "INPUT.MAX_SIZE_TEST", 1000, "INPUT.HIGH_BIT_DEPTH", rule,
                         "INPUT.HIGH_BIT_DEPTH_PERCENTILES", percentiles, "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", 0.0])
    return cfg


# full_range: the 12-bit input is 16 * 255 / 65535 of the 8-bit one; percentiles (0, 100): the same, as the
# 8-bit picture spans 0..255 and the 12-bit one 0..4080.
RULES = [("full_range", (0.0, 100.0), TWELVE_BIT * 255.0 / 65535.0), ("percentiles", (0.0, 100.0), 1.0)]


def _assert_proportional(eight, twelve, factor):
    assert eight.shape == twelve.shape
    # The 8-bit image is resized by Pillow in uint8 (two passes, each rounded), the 12-bit one in float by the same
    # filter (torchvision's antialiased bilinear matches Pillow's float resize to 1e-3): they differ by that rounding.
    difference = (twelve / factor - eight).abs()
    assert difference.max() <= 1.0 + 1e-3 and difference.mean() < 0.4, (difference.max(), difference.mean())


@pytest.mark.parametrize("rule,percentiles,factor", RULES)
@pytest.mark.parametrize("is_train", [True, False])
def test_12bit_and_8bit_give_proportional_dataset_inputs(twin_images, rule, percentiles, factor, is_train):
    transforms = build_transforms(_cfg(rule, percentiles), is_train)
    inputs = {}
    for name, folder in twin_images.items():
        dataset = COCODataset(os.path.join(folder, "ann.json"), folder, is_train, transforms)
        inputs[name], target, _ = dataset[0]
        assert target.size == (inputs[name].shape[-1], inputs[name].shape[-2])
    assert isinstance(read_image(os.path.join(twin_images["twelve"], "img.png")), torch.Tensor)
    assert inputs["eight"].shape == (3, 45, 60)
    _assert_proportional(inputs["eight"], inputs["twelve"], factor)
    assert inputs["eight"].max() > 200  # BGR 0-255, not 0-1


@pytest.mark.parametrize("rule,percentiles,factor", RULES)
def test_12bit_and_8bit_give_proportional_predictor_inputs(twin_images, rule, percentiles, factor, tiny_cfg):
    from maskrcnn_benchmark.engine.predictor import COCODemo
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    cfg = tiny_cfg.clone()
    cfg.merge_from_list(["INPUT.PIXEL_MEAN", [0.0, 0.0, 0.0], "INPUT.HIGH_BIT_DEPTH", rule,
                         "INPUT.HIGH_BIT_DEPTH_PERCENTILES", percentiles, "INPUT.MAX_SIZE_TEST", 1000])
    demo = COCODemo(cfg, confidence_threshold=0.0, min_image_size=45)
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, images):
            seen.append(images.tensors[0, :, :images.image_sizes[0][0], :images.image_sizes[0][1]].clone())
            boxes = BoxList(torch.zeros(0, 4), images.image_sizes[0][::-1])
            boxes.add_field("scores", torch.zeros(0))
            boxes.add_field("labels", torch.zeros(0, dtype=torch.int64))
            return [boxes]

    demo.model = Recorder()
    overlays = {}
    for name in ("eight", "twelve"):
        path = os.path.join(twin_images[name], "img.png")
        overlays[name] = demo.run_on_file(path)
        demo.compute_prediction(demo.read(path))
        assert torch.equal(seen[-1], seen[-2])  # run_on_file and compute_prediction(read(path)) agree
    _assert_proportional(seen[0], seen[2], factor)
    # The 8-bit file through the reader is the BGR array cv2.imread gives: the old API sees the same input.
    demo.compute_prediction(cv2.imread(os.path.join(twin_images["eight"], "img.png")))
    assert torch.equal(seen[-1], seen[0])
    assert overlays["eight"].shape == overlays["twelve"].shape == (60, 80, 3)
    twelve_bgr = cv2.imread(os.path.join(twin_images["twelve"], "img.png"), cv2.IMREAD_UNCHANGED)
    with pytest.raises(ValueError, match="16-bit images: use run_on_file"):
        demo.compute_prediction(twelve_bgr)
    demo.compute_prediction(from_bgr_array(twelve_bgr))
    assert torch.equal(seen[-1], seen[2])


def test_size_differing_from_the_json_is_refused_naming_file_and_sizes(tmp_path):
    upright = np.zeros((30, 40, 3), np.uint8)
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(str(tmp_path / "phone.jpg"), exif=_exif(6))
    # The JSON of a tool that ignored the EXIF orientation: the stored 30 x 40 (w x h).
    ann = {"images": [{"id": 1, "file_name": "phone.jpg", "width": 30, "height": 40}], "annotations": [],
           "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    dataset = COCODataset(str(tmp_path / "ann.json"), str(tmp_path), False)
    with pytest.raises(ValueError, match=r"phone.jpg' is 40x30 \(after its EXIF orientation\).*says 30x40"):
        dataset[0]


def test_list_dataset_reads_through_the_reader(tmp_path):
    from maskrcnn_benchmark.data.datasets import ListDataset

    grey = (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)
    path = str(tmp_path / "grey16.png")
    Image.fromarray(grey).save(path, exif=_exif(6))
    dataset = ListDataset([path, Image.fromarray(_rgb8())])
    image, target, _ = dataset[0]
    assert torch.equal(image, read_image(path)) and target.size == (30, 40)
    assert dataset.get_img_info(0) == {"height": 40, "width": 30}
    assert np.array_equal(np.asarray(dataset[1][0]), _rgb8()) and dataset.get_img_info(1) == {"height": 30,
                                                                                               "width": 40}


def test_flips_and_colour_jitter_treat_12bit_as_its_8bit_twin(twin_images):
    cfg = _cfg("percentiles")
    cfg.merge_from_list(["INPUT.HORIZONTAL_FLIP_PROB_TRAIN", 1.0, "INPUT.VERTICAL_FLIP_PROB_TRAIN", 1.0,
                         "INPUT.BRIGHTNESS", 0.3, "INPUT.CONTRAST", 0.3, "INPUT.SATURATION", 0.3])
    transforms = build_transforms(cfg, is_train=True)
    inputs, boxes = {}, {}
    for name, folder in twin_images.items():
        dataset = COCODataset(os.path.join(folder, "ann.json"), folder, True, transforms)
        torch.manual_seed(3)
        random.seed(3)
        inputs[name], target, _ = dataset[0]
        boxes[name] = target.bbox
    assert torch.equal(boxes["eight"], boxes["twelve"])
    # Pillow's enhancers round to uint8 at each step (and contrast uses the rounded mean); the float path does not.
    difference = (inputs["twelve"] - inputs["eight"]).abs()
    assert difference.max() <= 3.0 and difference.mean() < 1.5, (difference.max(), difference.mean())
    unflipped = build_transforms(_cfg("percentiles"), is_train=False)(read_image(
        os.path.join(twin_images["twelve"], "img.png")))[0]
    assert (inputs["twelve"] - unflipped.flip(-1).flip(-2)).abs().mean() > 5 * difference.mean()
