"""The one image reader: every path that feeds a model (training, evaluation, ``COCODemo``, ``tools/demo.py``,
the export example) reads files through :func:`read_image`, so the same file gives the same pixels everywhere.

What :func:`read_image` returns depends only on the file's bit depth:

* 8 bits per channel (JPEG, 8-bit PNG/TIFF/BMP..., any Pillow mode: RGB, L, P, RGBA, LA, CMYK, 1): a PIL RGB
  image, exactly what ``Image.open(path).convert("RGB")`` gave before, after the EXIF orientation. The transforms
  treat it as they always did (PIL resize on uint8, ``to_tensor`` divides by 255), so 8-bit inputs are unchanged
  bit for bit.
* More than 8 bits (16-bit PNG, 16-bit TIFF, Pillow's "I;16"/"I"/"F" modes): a float32 ``Tensor[3, H, W]`` RGB in
  the units ``to_tensor`` uses, i.e. each value divided by the container's maximum (65535 for 16 bits). Nothing is
  rounded to 8 bits and nothing is clipped; the transforms resize, flip, jitter and normalise this float image, so
  the model receives the file's full precision. ``INPUT.HIGH_BIT_DEPTH`` then decides the intensity mapping (see
  :func:`map_high_bit_depth`): "full_range" keeps value / 65535 (a 12-bit image stored in 16 bits uses 1/16 of
  the model's 0-255 range), "percentiles" stretches each image so that its INPUT.HIGH_BIT_DEPTH_PERCENTILES
  (low, high) percentiles become 0 and 255 (values beyond them fall outside 0-255; they are not clipped).

Common to both: grey images are repeated into three channels; alpha (RGBA, LA) is dropped, not blended; the EXIF
orientation (JPEG, PNG eXIf, TIFF Orientation tag) is applied, as detectron2 does, so the model sees the image
upright as photo viewers and annotation tools show it; a file that cannot be decoded raises an error naming it.
Why several decoders: Pillow truncates 16-bit colour PNGs and TIFFs to 8 bits, so 16-bit PNGs are decoded by
OpenCV (``IMREAD_UNCHANGED``) and TIFFs of more than 8 bits by tifffile; everything else by Pillow.
"""
import os

import numpy as np
import torch
from PIL import Image, ImageOps

HIGH_BIT_DEPTH_RULES = ("full_range", "percentiles")
# EXIF/TIFF tag 274: how the stored pixels must be turned to show the image upright (1 = as stored).
_ORIENTATION_TAG = 0x0112
# Pillow modes of single-channel images with more than 8 bits.
_HIGH_BIT_PIL_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_UINT16_MAX = 65535.0


class ImageFileError(ValueError):
    """An image file whose content the reader cannot turn into model input (named in the message)."""


# ----------------------------------------------------------------------------------------------------- reading
def read_image(path):
    """Read an image file for the model.

    Args:
        path (str): image file (JPEG, PNG, TIFF, BMP, WebP, ... anything Pillow opens; 16-bit PNG and TIFF too).
    Returns:
        PIL.Image.Image of mode "RGB" for an 8-bit file, or float32 Tensor[3, H, W] (RGB, value / 65535, not
        clipped) for a file with more than 8 bits per channel; EXIF orientation applied, alpha dropped.
        :func:`image_size` gives (width, height) of either.
    Raises:
        FileNotFoundError: no such file. OSError: the file cannot be decoded. ImageFileError (a ValueError): the
        content cannot be an input (e.g. a multi-page TIFF stack, float values outside [0, 1]). All name the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError("Image file not found: '{}'".format(path))
    try:
        header = _read_header(path)
        if header.startswith(_TIFF_SIGNATURES):
            image = _read_tiff(path)
            if image is not None:
                return image
        elif header.startswith(_PNG_SIGNATURE) and len(header) > 24 and header[24] == 16:  # IHDR bit depth
            return _read_png16(path)
        with Image.open(path) as opened:
            return from_pil_image(opened, name=path)
    except ImageFileError:
        raise
    except Exception as e:  # each decoder raises its own types for broken or unknown files
        raise OSError("Cannot read image file '{}': {}".format(path, e)) from e


def read_image_size(path):
    """(width, height) of the image :func:`read_image` would return, from the file's header where possible
    (EXIF orientations 5-8 swap the stored sizes)."""
    if not os.path.isfile(path):
        raise FileNotFoundError("Image file not found: '{}'".format(path))
    try:
        if _read_header(path).startswith(_TIFF_SIGNATURES):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                if page.bitspersample > 8:
                    _, height, width = _tiff_channels_first(tif, path).shape
                    return _oriented_size(width, height, _tiff_orientation(page))
        with Image.open(path) as opened:
            width, height = opened.size
            return _oriented_size(width, height, opened.getexif().get(_ORIENTATION_TAG, 1))
    except ImageFileError:
        raise
    except Exception as e:
        raise OSError("Cannot read image file '{}': {}".format(path, e)) from e


def from_pil_image(image, name="<PIL image>"):
    """A PIL image (any mode) as :func:`read_image` returns it: 8-bit modes -> PIL RGB, "I;16"/"I"/"F" ->
    float32 Tensor[3, H, W]; EXIF orientation applied. ``name`` is used in error messages."""
    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    if image.mode in _HIGH_BIT_PIL_MODES:
        return _high_bit_tensor(_apply_orientation(np.asarray(image), orientation), name)
    # The PIL path of the old reader (convert("RGB")), after the rotation: rotating never changes a value.
    if orientation in (None, 1):
        return image.convert("RGB")  # no transposed copy to pay for
    return ImageOps.exif_transpose(image).convert("RGB")


def image_size(image):
    """(width, height) of a :func:`read_image` result (PIL image or Tensor[3, H, W])."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-1]), int(image.shape[-2])
    return image.size


# --------------------------------------------------------------------------------------------- the mapping
def check_high_bit_depth(rule, percentiles):
    """Refuse an INPUT.HIGH_BIT_DEPTH / INPUT.HIGH_BIT_DEPTH_PERCENTILES pair that cannot be honoured."""
    if rule not in HIGH_BIT_DEPTH_RULES:
        raise ValueError("INPUT.HIGH_BIT_DEPTH = '{}' is unknown; use one of {}".format(
            rule, ", ".join(HIGH_BIT_DEPTH_RULES)))
    values = tuple(percentiles)
    if len(values) != 2 or not 0.0 <= values[0] < values[1] <= 100.0:
        raise ValueError("INPUT.HIGH_BIT_DEPTH_PERCENTILES = {} must be (low, high) with 0 <= low < high <= 100"
                         .format(list(values)))
    if rule != "percentiles" and values != (0.0, 100.0):
        raise ValueError("INPUT.HIGH_BIT_DEPTH_PERCENTILES = {} is only used with INPUT.HIGH_BIT_DEPTH "
                         "'percentiles' (it is '{}'); set both or neither".format(list(values), rule))


def map_high_bit_depth(image, rule="full_range", percentiles=(0.0, 100.0)):
    """Apply INPUT.HIGH_BIT_DEPTH to a :func:`read_image` result; 8-bit (PIL) images are returned unchanged.

    Rules (for float Tensor[3, H, W] images, whose values are fractions of the container's range):
        "full_range": unchanged, i.e. the model sees value / 65535 * 255. The same stored value gives the same
            input in every image; data using fewer bits than its container (12 bits in 16) look dark.
        "percentiles": x -> (x - p_low) / (p_high - p_low), p_low and p_high the image's ``percentiles`` (over all
            its pixels and channels, numpy's linear interpolation), so they become 0 and 255 at the model. With
            (0, 100) this is the image's min-max range; with e.g. (1, 99.8) the darkest and brightest pixels land
            outside 0-255 (never clipped; colour jitter, when on, clamps as torchvision does). A flat image gives 0.
    Returns:
        the image in the reader's types (PIL image, or float32 Tensor[3, H, W]).
    """
    check_high_bit_depth(rule, percentiles)
    if not isinstance(image, torch.Tensor) or rule == "full_range":
        return image
    low, high = np.percentile(image.numpy(), [float(percentiles[0]), float(percentiles[1])])
    scale = 1.0 / (high - low) if high > low else 0.0
    return ((image.double() - low) * scale).float()


def to_display_bgr(image, rule="full_range", percentiles=(0.0, 100.0)):
    """The picture a :func:`read_image` result shows to a person: BGR uint8 [H, W, 3] for OpenCV drawing.

    8-bit images give exactly their pixels (as cv2.imread would for the same decoded values). Images with more
    bits are mapped by ``rule`` first (so the picture is what the model sees), then scaled to 0-255, rounded and,
    for display only, clipped.
    """
    if not isinstance(image, torch.Tensor):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    mapped = map_high_bit_depth(image, rule, percentiles)
    rgb = (mapped.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(rgb[:, :, ::-1])


def from_bgr_array(array):
    """An OpenCV image (BGR or grey, uint8 or uint16, [H, W] or [H, W, 3]) as :func:`read_image` would return
    the file it came from (uint8 -> PIL RGB, uint16 -> float32 Tensor[3, H, W]); no EXIF is known here."""
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError("expected an OpenCV image array [H, W] or [H, W, 3] (BGR), got {}".format(
            getattr(array, "shape", type(array).__name__)))
    rgb = array if array.ndim == 2 else array[:, :, ::-1]
    if array.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    return _high_bit_tensor(rgb, "<array>")


# ---------------------------------------------------------------------------------------------- decoders
def _read_header(path, size=32):
    with open(path, "rb") as f:
        return f.read(size)


def _read_png16(path):
    """A 16-bit PNG (grey, grey+alpha, RGB, RGBA) through OpenCV, which keeps the 16 bits."""
    import cv2

    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise OSError("OpenCV could not decode this 16-bit PNG")
    if array.ndim == 3:
        channels = array.shape[2]
        array = array[:, :, 0] if channels <= 2 else array[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    return _high_bit_tensor(_apply_orientation(array, _png_orientation(path)), path)


def _png_orientation(path):
    """The EXIF orientation of a PNG's eXIf chunk (1 without one). Walks the chunk headers: Pillow's getexif
    decodes the whole image to find an eXIf chunk after the pixel data, which would double the cost of a read."""
    import struct

    with open(path, "rb") as f:
        f.seek(len(_PNG_SIGNATURE))
        while True:
            header = f.read(8)
            if len(header) < 8:
                return 1
            length, kind = struct.unpack(">I4s", header)
            if kind == b"eXIf":
                exif = Image.Exif()
                exif.load(f.read(length))
                return exif.get(_ORIENTATION_TAG, 1)
            if kind == b"IEND":
                return 1
            f.seek(length + 4, os.SEEK_CUR)  # chunk data and its CRC


def _read_tiff(path):
    """A TIFF with more than 8 bits per sample through tifffile; None for 8-bit TIFFs (Pillow reads those,
    palettes and CMYK included)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if page.bitspersample <= 8:
            return None
        photometric = int(page.photometric)
        if photometric not in (int(tifffile.PHOTOMETRIC.MINISBLACK), int(tifffile.PHOTOMETRIC.RGB)):
            raise ImageFileError(
                "Image file '{}' is a {}-bit TIFF with photometric {}: only grey (MINISBLACK) and RGB TIFFs of more "
                "than 8 bits are read; save it as grey or RGB".format(path, page.bitspersample, page.photometric))
        array = _tiff_channels_first(tif, path)
        orientation = _tiff_orientation(page)
    channels = array.shape[0]
    array = array[0] if channels <= 2 else np.moveaxis(array[:3], 0, -1)  # grey(+alpha) or RGB(+alpha)
    return _high_bit_tensor(_apply_orientation(array, orientation), path)


def _tiff_channels_first(tif, path):
    """The first series of a TIFF as [C, H, W]; a stack (z, time, several pages) is refused."""
    series = tif.series[0]
    axes = "".join(a for a, n in zip(series.axes, series.shape) if n > 1)
    array = series.asarray().reshape([n for n in series.shape if n > 1])
    if axes == "YX":
        return array[None]
    if axes == "YXS":
        return np.moveaxis(array, -1, 0)
    if axes in ("SYX", "CYX") and array.shape[0] <= 4:
        return array
    raise ImageFileError("Image file '{}' is a TIFF with axes '{}' and shape {}: one 2-D grey or colour image per "
                         "file is expected (split stacks into one file per image)".format(path, axes,
                                                                                         list(array.shape)))


def _tiff_orientation(page):
    tag = page.tags.get("Orientation")
    return int(tag.value) if tag is not None else 1


def _high_bit_tensor(array, name):
    """[H, W] or [H, W, 3] integer/float array -> float32 Tensor[3, H, W] of value / container maximum."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        if not (np.isfinite(array).all() and 0.0 <= low and high <= 1.0):
            raise ImageFileError("Image file '{}' holds floating-point values in [{}, {}]: float images must lie in "
                                 "[0, 1]; store integer data as 16-bit integers instead".format(name, low, high))
        scaled = array.astype(np.float32)
    elif array.dtype.kind in "ui":
        if array.dtype != np.uint16 and array.size and (array.min() < 0 or array.max() > _UINT16_MAX):
            raise ImageFileError("Image file '{}' holds {} values in [{}, {}], which do not fit 16 bits; store it "
                                 "as 8- or 16-bit unsigned integers".format(name, array.dtype, array.min(),
                                                                             array.max()))
        scaled = array.astype(np.float32) / np.float32(_UINT16_MAX)  # exact: 16-bit integers fit float32
    else:
        raise ImageFileError("Image file '{}' has pixels of type {}, which the reader does not map".format(
            name, array.dtype))
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def _apply_orientation(array, orientation):
    """Turn an [H, W(, C)] array stored with EXIF ``orientation`` upright, as ImageOps.exif_transpose does."""
    orientation = int(orientation or 1)
    if orientation in (2, 4):
        return np.flip(array, axis=1 if orientation == 2 else 0)
    if orientation == 3:
        return np.rot90(array, 2)
    if orientation == 5:
        return np.swapaxes(array, 0, 1)  # transpose
    if orientation == 6:
        return np.rot90(array, -1)  # 90 degrees clockwise
    if orientation == 7:
        return np.rot90(np.swapaxes(array, 0, 1), 2)  # transverse
    if orientation == 8:
        return np.rot90(array, 1)  # 90 degrees counter-clockwise
    return array


def _oriented_size(width, height, orientation):
    return (height, width) if int(orientation or 1) in (5, 6, 7, 8) else (width, height)
