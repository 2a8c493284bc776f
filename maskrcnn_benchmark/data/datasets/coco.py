"""COCO-format instance segmentation dataset: images + BoxList targets with labels, masks and keypoints."""
import collections
import contextlib
import io
import json
import logging
import math
import os

import numpy as np
import torch

from maskrcnn_benchmark.data.image_io import ImageFileError, image_size, read_image

_REQUIRED_TOP_KEYS = ("images", "annotations", "categories")
# The fields COCO requires of each entry of a section.
_REQUIRED_FIELDS = {"images": ("id", "file_name"), "annotations": ("id", "image_id", "category_id", "bbox"),
                    "categories": ("id",)}
_MIN_KEYPOINTS_PER_IMAGE = 10  # maskrcnn-benchmark's rule for keeping a keypoint training image


def _load_coco_json(ann_file):
    """Read and check a COCO instances JSON; return a pycocotools COCO object built from it."""
    return _coco_from_dict(read_coco_json(ann_file))


def read_coco_json(ann_file, sections=_REQUIRED_TOP_KEYS):
    """The dict of a COCO instances JSON, checked: the file exists, is JSON, has "images", "annotations" and
    "categories" whose entries have the fields COCO requires; errors name the file and what is wrong.

    The one reader of COCO annotation files (datasets, converters, the demo's category names).

    Args:
        sections (sequence[str]): the top-level lists the caller needs, checked as above; a reader of the
            category names alone asks for ("categories",).
    """
    if not os.path.isfile(ann_file):
        raise FileNotFoundError("COCO annotation file not found: '{}'".format(ann_file))
    try:
        with open(ann_file, "r") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError("Annotation file '{}' is not valid JSON: {}".format(ann_file, e)) from e
    if not isinstance(data, dict):
        raise ValueError(
            "Annotation file '{}' is not COCO format: expected a JSON object with keys {}, got a {}".format(
                ann_file, list(_REQUIRED_TOP_KEYS), type(data).__name__
            )
        )
    missing = [k for k in sections if k not in data]
    if missing:
        raise ValueError(
            "Annotation file '{}' is not COCO format: missing top-level key(s) {} (a COCO instances file has "
            "'images', 'annotations' and 'categories')".format(ann_file, missing)
        )
    for section in sections:
        fields = _REQUIRED_FIELDS[section]
        for position, entry in enumerate(data[section]):
            lacking = [k for k in fields if not isinstance(entry, dict) or k not in entry]
            if lacking:
                raise ValueError(
                    "Annotation file '{}' is not COCO format: {}[{}] lacks the field(s) {}".format(
                        ann_file, section, position, lacking
                    )
                )
    return data


def _coco_from_dict(data):
    """A pycocotools COCO object indexing ``data`` (a dict like ``read_coco_json`` returns), built silently."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress we do not want in logs
        coco.createIndex()
    return coco


def _is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unusable_annotation_reason(ann, image_info, category_ids, has_masks):
    """Why a COCO annotation cannot be used as ground truth, or None when it can.

    The one validation of ground truth: COCODataset applies it when it is built, so training targets and the
    ground truth the evaluators score against (``dataset.coco``) hold the same annotations.

    Args:
        ann (dict): one entry of the file's "annotations".
        image_info (dict): its image's entry ("width", "height" when known).
        category_ids (collection): the category ids of the file's "categories".
        has_masks (bool): the file has segmentations, so every non-crowd annotation needs one.
    Returns:
        str naming the problem (used as the key of the skipped-annotation counts), or None.
    """
    if ann["category_id"] not in category_ids:
        return "category id not in the file's categories"
    bbox = ann["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return "bbox is not [x, y, w, h]"
    if not all(_is_finite_number(v) for v in bbox):
        return "bbox with a non-finite or non-numeric value"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return "zero-area box"
    width, height = image_info.get("width"), image_info.get("height")
    if width is not None and height is not None and (
            bbox[0] >= width or bbox[1] >= height or bbox[0] + bbox[2] <= 0 or bbox[1] + bbox[3] <= 0):
        return "box outside the image"
    if "keypoints" in ann and not (isinstance(ann["keypoints"], list)
                                   and all(_is_finite_number(v) for v in ann["keypoints"])):
        return "keypoints with a non-finite or non-numeric value"
    if "area" in ann and not _is_finite_number(ann["area"]):
        return "area with a non-finite or non-numeric value"
    seg = ann.get("segmentation")
    if not has_masks or (ann.get("iscrowd", 0) and seg is None):
        return None
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return "missing segmentation"
    if isinstance(seg, list):
        parts = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if not parts:
            return "polygon with < 3 points"
        if not all(_is_finite_number(v) for p in parts for v in p):
            return "polygon with a non-finite or non-numeric coordinate"
    elif isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            return "RLE without 'counts'/'size'"
        if list(seg["size"]) != [image_info.get("height"), image_info.get("width")]:
            return "RLE size differs from the image size"
    else:
        return "segmentation is neither polygons nor RLE"
    return None


def cleaned_annotation(ann, image_info):
    """A usable annotation as training and evaluation read it: degenerate parts of a multi-part polygon
    dropped, and the "iscrowd" and "area" fields pycocotools' evaluation needs filled in when the file lacks
    them (area of the segmentation, else of the box)."""
    ann = dict(ann)
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        ann["segmentation"] = [p for p in seg if isinstance(p, list) and len(p) >= 6]
    ann.setdefault("iscrowd", 0)
    if "area" not in ann:
        ann["area"] = _segmentation_area(ann["segmentation"], image_info) if seg else None
        if ann["area"] is None:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    return ann


def _segmentation_area(seg, image_info):
    from pycocotools import mask as mask_utils

    height, width = image_info.get("height"), image_info.get("width")
    if height is None or width is None:
        return None
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = seg
    return float(mask_utils.area(rle))


class COCODataset(torch.utils.data.Dataset):
    """COCO instances dataset returning (image, target BoxList, index) after `transforms`; the image is read by
    ``data.image_io.read_image`` (PIL RGB for 8-bit files, float32 Tensor[3, H, W] for more bits, EXIF applied).

    Targets: BoxList [N, 4] xyxy in pixels with fields "labels" (int64 [N], contiguous 1..C in the order of the
    sorted category ids), "masks" (SegmentationMask; polygons, or binary masks when an image has RLE annotations)
    and "keypoints" (PersonKeypoints) when the file has them. Crowd regions are never targets. Annotations that
    cannot be used (box of zero area, polygon with < 3 points, unknown category id, broken segmentation) are dropped
    at construction; their count is logged once per dataset. ``self.coco`` then holds only the usable
    annotations (see :func:`unusable_annotation_reason`), so evaluation scores against the same ground truth.

    Args:
        ann_file (str): COCO instances JSON.
        root (str): folder the images' "file_name"s are relative to.
        remove_images_without_annotations (bool): drop images with no usable non-crowd annotation (training).
        transforms (callable or None): f(image, target) -> (image, target).
    """

    def __init__(self, ann_file, root, remove_images_without_annotations, transforms=None):
        self.ann_file = ann_file
        self.root = root
        self.coco = _load_coco_json(ann_file)
        self._transforms = transforms
        logger = logging.getLogger(__name__)

        category_ids = sorted(self.coco.getCatIds())
        self.json_category_id_to_contiguous_id = {cid: i + 1 for i, cid in enumerate(category_ids)}
        self.contiguous_category_id_to_json_id = {v: k for k, v in self.json_category_id_to_contiguous_id.items()}
        self.categories = {cat["id"]: cat.get("name", str(cat["id"])) for cat in self.coco.dataset["categories"]}

        self._has_masks = any("segmentation" in a for a in self.coco.dataset["annotations"])
        self._has_keypoints = any("keypoints" in a for a in self.coco.dataset["annotations"])
        skipped = collections.Counter()
        usable = []
        self._clean_annotations = {}
        for image_id in sorted(self.coco.imgs.keys()):
            image_info = self.coco.imgs[image_id]
            kept = []
            for ann in self.coco.imgToAnns.get(image_id, []):
                reason = unusable_annotation_reason(ann, image_info, self.json_category_id_to_contiguous_id,
                                                    self._has_masks)
                if reason is not None:
                    skipped[reason] += 1
                    continue
                ann = cleaned_annotation(ann, image_info)
                usable.append(ann)
                if not ann["iscrowd"]:
                    kept.append(ann)
            self._clean_annotations[image_id] = kept
        if skipped:
            logger.warning(
                "%s: skipped %d unusable annotation(s): %s", ann_file, sum(skipped.values()),
                ", ".join("{} x{}".format(reason, n) for reason, n in sorted(skipped.items())),
            )
        self.skipped_annotations = dict(skipped)
        # The evaluators score against self.coco: it holds exactly the annotations training uses (plus the valid
        # crowd regions), so an annotation skipped here can neither crash evaluation nor count in it.
        self.coco = _coco_from_dict(dict(self.coco.dataset, annotations=usable))

        ids = sorted(self.coco.imgs.keys())
        if remove_images_without_annotations:
            kept_ids = [i for i in ids if self._has_valid_annotation(self._clean_annotations[i])]
            if len(kept_ids) < len(ids):
                logger.info(
                    "%s: removed %d of %d images without usable annotations from training",
                    ann_file, len(ids) - len(kept_ids), len(ids),
                )
            ids = kept_ids
        self.ids = ids
        self.id_to_img_map = {k: v for k, v in enumerate(self.ids)}

    @property
    def has_masks(self):
        """True when the file has segmentations, i.e. targets carry a "masks" field."""
        return self._has_masks

    @property
    def has_keypoints(self):
        """True when the file's annotations have person keypoints."""
        return self._has_keypoints

    @staticmethod
    def _has_valid_annotation(anns):
        if len(anns) == 0:
            return False
        if "keypoints" not in anns[0]:
            return True
        visible = sum(sum(1 for v in a["keypoints"][2::3] if v > 0) for a in anns)
        return visible >= _MIN_KEYPOINTS_PER_IMAGE

    def missing_image_files(self):
        """Paths of this dataset's images that do not exist (a cheap stat per image, nothing is decoded)."""
        paths = (os.path.join(self.root, self.coco.imgs[image_id]["file_name"]) for image_id in self.ids)
        return [path for path in paths if not os.path.isfile(path)]

    # ------------------------------------------------------------------ loading
    def _load_image(self, image_info):
        """The image of ``image_info`` through ``data.image_io.read_image`` (PIL RGB for 8-bit files, float
        Tensor[3, H, W] for more bits; EXIF orientation applied), refused when its size is not the JSON's."""
        path = os.path.join(self.root, image_info["file_name"])
        where = "image id {} of '{}'".format(image_info["id"], self.ann_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                "Image file not found: '{}' ({}; check the image folder)".format(path, where))
        try:
            image = read_image(path)
        except ImageFileError as e:
            raise ImageFileError("{} ({})".format(e, where)) from e
        except OSError as e:
            raise OSError("{} ({})".format(e, where)) from e
        expected = (image_info.get("width"), image_info.get("height"))
        size = image_size(image)
        if None not in expected and size != tuple(expected):
            raise ValueError(
                "Image file '{}' is {}x{} (after its EXIF orientation) but '{}' says {}x{} (width x height); "
                "annotations would be misplaced".format(path, size[0], size[1], self.ann_file, expected[0],
                                                        expected[1]))
        return image

    def _build_target(self, anns, image_size):
        from maskrcnn_benchmark.structures.bounding_box import BoxList
        from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

        boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        target = BoxList(boxes, image_size, mode="xywh").convert("xyxy")
        labels = [self.json_category_id_to_contiguous_id[a["category_id"]] for a in anns]
        target.add_field("labels", torch.tensor(labels, dtype=torch.int64))
        if self._has_masks:
            segs = [a["segmentation"] for a in anns]
            if any(isinstance(s, dict) for s in segs):
                target.add_field("masks", SegmentationMask(self._decode_masks(segs, image_size), image_size,
                                                           mode="mask"))
            else:
                target.add_field("masks", SegmentationMask(segs, image_size, mode="poly"))
        if anns and "keypoints" in anns[0]:
            from maskrcnn_benchmark.structures.keypoint import PersonKeypoints

            target.add_field("keypoints", PersonKeypoints([a["keypoints"] for a in anns], image_size))
        return target

    @staticmethod
    def _decode_masks(segs, image_size):
        """Polygons and RLEs of one image -> uint8 Tensor[N, H, W]."""
        from pycocotools import mask as mask_utils

        width, height = image_size
        rles = []
        for seg in segs:
            if isinstance(seg, list):
                rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, height, width)))
            elif isinstance(seg["counts"], list):
                rles.append(mask_utils.frPyObjects(seg, height, width))  # uncompressed RLE
            else:
                rles.append(seg)
        if not rles:
            return torch.zeros((0, height, width), dtype=torch.uint8)
        # One decode call gives an H x W x N Fortran-ordered array; one contiguous copy is far cheaper than
        # stacking N strided per-instance views.
        decoded = mask_utils.decode(rles)
        return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)))

    def __getitem__(self, idx):
        image_id = self.id_to_img_map[idx]
        image_info = self.coco.imgs[image_id]
        image = self._load_image(image_info)
        target = self._build_target(self._clean_annotations[image_id], image_size(image))
        target = target.clip_to_image(remove_empty=True)
        if self._transforms is not None:
            image, target = self._transforms(image, target)
        return image, target, idx

    def __len__(self):
        return len(self.ids)

    def get_img_info(self, index):
        """COCO image record ({"id", "file_name", "height", "width", ...}) of dataset index `index`."""
        return self.coco.imgs[self.id_to_img_map[index]]
