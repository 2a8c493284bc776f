"""Run a trained detector on single images and draw its masks, boxes, class names and scores.

The API of maskrcnn-benchmark's ``demo/predictor.py``::

    from maskrcnn_benchmark.config import cfg
    from maskrcnn_benchmark.engine.predictor import COCODemo

    cfg.merge_from_file("configs/demo/nuclei_R_18_FPN.yaml")
    demo = COCODemo(cfg, confidence_threshold=0.5, weight="output/nuclei_R_18_FPN/model_final.pth")
    overlay = demo.run_on_file("image.png")                        # any image file, BGR uint8 out
    overlay = demo.run_on_opencv_image(cv2.imread("image.png"))   # BGR uint8 in, BGR uint8 out

Files are read by ``data.image_io.read_image``, the reader of training and evaluation (EXIF orientation, 16-bit
images kept in float and mapped by INPUT.HIGH_BIT_DEPTH), so the model sees the pixels it was evaluated on.
``compute_prediction`` takes what that reader returns, or an OpenCV BGR uint8 array. Overlays are BGR uint8
arrays [H, W, 3]; predictions are BoxLists in the original image size with "scores", "labels" and, with MASK_ON,
"mask" (Tensor[N, 1, H, W] pasted into the image).
"""
import logging

import cv2
import numpy as np
import torch
from PIL import Image

from maskrcnn_benchmark.data.categories import num_classes_key
from maskrcnn_benchmark.data.image_io import from_pil_image, image_size, read_image, to_display_bgr
from maskrcnn_benchmark.engine.bbox_aug import BBoxAugDetector, check_bbox_aug_supported
from maskrcnn_benchmark.engine.mixed_precision import build_inference_precision, detections_to_float32

# Fraction of the mask colour in filled mask pixels: enough to see the shape, little enough to see the object.
MASK_ALPHA = 0.45


def category_names_from_coco_json(ann_file):
    """Names indexed by the model's contiguous label: ["__background", names of the categories sorted by id].

    This is the order COCODataset maps category ids to labels 1..C in, so label k is named names[k].
    """
    from maskrcnn_benchmark.data.datasets.coco import read_coco_json

    data = read_coco_json(ann_file, sections=("categories",))
    categories = sorted(data["categories"], key=lambda c: c["id"])
    return ["__background"] + [str(c.get("name", c["id"])) for c in categories]


def generic_category_names(num_classes):
    """["__background", "class 1", ..., "class C-1"] for a model with ``num_classes`` outputs (incl. background)."""
    return ["__background"] + ["class {}".format(k) for k in range(1, num_classes)]


def instance_colors(count):
    """Tensor[count, 3] uint8 BGR colours, well apart in hue (golden-ratio steps), for telling instances apart."""
    hues = (np.arange(count) * 0.618033988749895 * 180) % 180
    if count == 0:
        return torch.zeros(0, 3, dtype=torch.uint8)
    hsv = np.stack([hues, np.full(count, 200), np.full(count, 255)], axis=1).astype(np.uint8)[None]
    return torch.from_numpy(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0].copy())


def category_records(checkpoint_categories, ann_file, num_classes):
    """The model's categories as [{"id", "name"}] in label order (entry k - 1 is label k): those stored with the
    checkpoint, else those of ``ann_file`` (sorted by id), else ids 1..C-1 named "class k"."""
    if checkpoint_categories:
        records = [{"id": int(c["id"]), "name": str(c["name"])} for c in checkpoint_categories]
    elif ann_file:
        from maskrcnn_benchmark.data.datasets.coco import read_coco_json

        data = read_coco_json(ann_file, sections=("categories",))
        records = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))}
                   for c in sorted(data["categories"], key=lambda c: c["id"])]
    else:
        records = []
    used = {r["id"] for r in records}
    next_id = max(used, default=0) + 1
    for label in range(len(records) + 1, num_classes):  # classes the records do not name
        records.append({"id": next_id, "name": "class {}".format(label)})
        next_id += 1
    return records


class DetectionVisualizer:
    """Draws detections or ground truth (BoxList in the image's size) on BGR uint8 images.

    Args:
        categories (list[str]): names indexed by label (index 0 is the background).
        color_by_label (bool): one colour per class (maskrcnn-benchmark) instead of one per instance.
        masks_per_dim (int): the heat-map montage is masks_per_dim x masks_per_dim masks.
        show_text (bool): write class names and scores (off: less clutter in crowded images).
    """

    def __init__(self, categories, color_by_label=False, masks_per_dim=2, show_text=True):
        self.CATEGORIES = list(categories)
        self.show_text = show_text
        self.color_by_label = color_by_label
        self.masks_per_dim = masks_per_dim
        # maskrcnn-benchmark's per-class colour recipe: label times large odd numbers, mod 255.
        self.palette = torch.tensor([2 ** 25 - 1, 2 ** 15 - 1, 2 ** 21 - 1])

    def draw(self, image, predictions, mask_windows=None, show_text=None):
        """Overlay ``predictions`` (BoxList in the image's size; fields "labels", optional "scores", "mask",
        "keypoints") on a copy of ``image`` (BGR uint8 [H, W, 3]); returns the copy.

        ``mask_windows`` (list of (top, left, bool ndarray[h, w]), one per detection) gives the masks instead of an
        image-sized "mask" field: a large image's thousands of masks then need no [N, H, W] tensor.
        ``show_text`` overrides ``self.show_text`` for this call."""
        result = image.copy()
        if mask_windows is not None:
            result = self.overlay_mask_windows(result, predictions, mask_windows)
        elif predictions.has_field("mask"):
            result = self.overlay_mask(result, predictions)
        result = self.overlay_boxes(result, predictions)
        if predictions.has_field("keypoints"):
            result = self.overlay_keypoints(result, predictions)
        show_text = self.show_text if show_text is None else show_text
        return self.overlay_class_names(result, predictions) if show_text else result

    def compute_colors_for_labels(self, labels):
        """Tensor[N] labels -> Tensor[N, 3] uint8 colours, one per class."""
        return ((labels[:, None].long() * self.palette) % 255).to(torch.uint8)

    def _colors(self, predictions):
        if self.color_by_label:
            return self.compute_colors_for_labels(predictions.get_field("labels"))
        return instance_colors(len(predictions))

    def overlay_boxes(self, image, predictions):
        """Draw each box (xyxy, image pixels) in its colour; returns the image (drawn in place)."""
        for box, color in zip(predictions.bbox.round().to(torch.int64).tolist(), self._colors(predictions).tolist()):
            cv2.rectangle(image, (box[0], box[1]), (box[2], box[3]), tuple(color), 1)
        return image

    def overlay_mask(self, image, predictions):
        """Fill each binary mask with its colour (alpha MASK_ALPHA) and trace its contour."""
        masks = predictions.get_field("mask")
        if masks.dtype.is_floating_point:
            masks = masks > 0.5
        masks = masks.reshape(len(predictions), image.shape[0], image.shape[1]).to(torch.uint8).numpy()
        blended = image.astype(np.float32)
        for mask, color in zip(masks, self._colors(predictions).tolist()):
            region = mask.astype(bool)
            blended[region] = (1 - MASK_ALPHA) * blended[region] + MASK_ALPHA * np.asarray(color, np.float32)
        image[...] = blended.round().astype(np.uint8)
        for mask, color in zip(masks, self._colors(predictions).tolist()):
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(image, contours, -1, tuple(color), 1)
        return image

    def overlay_mask_windows(self, image, predictions, mask_windows):
        """overlay_mask for masks given as windows (top, left, bool [h, w]); the same pixels."""
        blended = image.astype(np.float32)
        colors = self._colors(predictions).tolist()
        for (top, left, region), color in zip(mask_windows, colors):
            view = blended[top:top + region.shape[0], left:left + region.shape[1]]
            view[region] = (1 - MASK_ALPHA) * view[region] + MASK_ALPHA * np.asarray(color, np.float32)
        image[...] = blended.round().astype(np.uint8)
        for (top, left, region), color in zip(mask_windows, colors):
            if region.size:
                contours, _ = cv2.findContours(np.ascontiguousarray(region, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                               cv2.CHAIN_APPROX_NONE, offset=(int(left), int(top)))
                cv2.drawContours(image, contours, -1, tuple(color), 1)
        return image

    def overlay_keypoints(self, image, predictions):
        """Mark each visible keypoint (score > 0) with a small filled circle in its instance's colour."""
        keypoints = predictions.get_field("keypoints")
        keypoints = getattr(keypoints, "keypoints", keypoints)
        for instance, color in zip(keypoints.tolist(), self._colors(predictions).tolist()):
            for x, y, score in instance:
                if score > 0:
                    cv2.circle(image, (int(round(x)), int(round(y))), 2, tuple(color), -1)
        return image

    def overlay_class_names(self, image, predictions):
        """Write "name score" above each box's top-left corner."""
        scores = predictions.get_field("scores").tolist() if predictions.has_field("scores") else None
        labels = predictions.get_field("labels").tolist()
        font_scale = max(0.3, min(image.shape[:2]) / 800.0)
        for k, (box, label) in enumerate(zip(predictions.bbox.tolist(), labels)):
            name = self.CATEGORIES[label] if 0 <= label < len(self.CATEGORIES) else str(label)
            text = name if scores is None else "{} {:.2f}".format(name, scores[k])
            cv2.putText(image, text, (int(box[0]), max(int(box[1]) - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                        (255, 255, 255), 1, cv2.LINE_AA)
        return image

    def create_mask_montage(self, image, predictions):
        """Grid of masks_per_dim x masks_per_dim mask probability maps (highest scores first), JET colour map.

        Returns:
            ndarray[H, W, 3] uint8 of the input's size.
        """
        masks = predictions.get_field("mask").float()
        height, width = image.shape[:2]
        n = self.masks_per_dim
        cell_h, cell_w = max(height // n, 1), max(width // n, 1)
        montage = np.zeros((cell_h * n, cell_w * n), np.float32)
        for k, mask in enumerate(masks[: n * n].reshape(-1, height, width).numpy()):
            row, col = divmod(k, n)
            montage[row * cell_h:(row + 1) * cell_h, col * cell_w:(col + 1) * cell_w] = cv2.resize(
                mask, (cell_w, cell_h), interpolation=cv2.INTER_LINEAR)
        montage = cv2.resize(montage, (width, height), interpolation=cv2.INTER_NEAREST)
        return cv2.applyColorMap((np.clip(montage, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)


class COCODemo(DetectionVisualizer):
    """A detector ready for single images, with drawing helpers.

    Args:
        cfg: the model's config (frozen or not; cloned here).
        confidence_threshold (float): detections scoring at most this are not drawn.
        show_mask_heatmaps (bool): run_on_opencv_image returns a montage of the mask probabilities instead.
        masks_per_dim (int): the montage is masks_per_dim x masks_per_dim masks.
        min_image_size (int | None): shorter side the image is resized to (longer side capped at
            INPUT.MAX_SIZE_TEST); None uses INPUT.MIN_SIZE_TEST. 224 is maskrcnn-benchmark's default.
        weight (str | None): checkpoint to load. None: the one OUTPUT_DIR/last_checkpoint names, else MODEL.WEIGHT;
            with neither the model keeps its random initialisation (a warning says so).
        categories (list[str] | None): names indexed by label; None: those stored with the checkpoint, else from
            ``ann_file`` if given, else generic.
        ann_file (str | None): COCO JSON the category names are read from.
        color_by_label (bool): colour masks and boxes by class (maskrcnn-benchmark) instead of by instance.

    The config's TEST.DTYPE (autocast of the forward pass) and TEST.BBOX_AUG (test-time augmentation; then
    min_image_size must be None or INPUT.MIN_SIZE_TEST) apply to every prediction. ``category_records`` holds the
    model's categories as [{"id", "name"}] in label order, for files other tools read.
    """

    def __init__(self, cfg, confidence_threshold=0.7, show_mask_heatmaps=False, masks_per_dim=2,
                 min_image_size=224, weight=None, categories=None, ann_file=None, color_by_label=False):
        from maskrcnn_benchmark.data.transforms import MapHighBitDepth, build_transforms
        from maskrcnn_benchmark.modeling.detector import build_detection_model
        from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker
        from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

        self.cfg = cfg.clone()
        self.model = build_detection_model(self.cfg)
        self.model.eval()
        self.device = torch.device(self.cfg.MODEL.DEVICE if (not self.cfg.MODEL.DEVICE.startswith("cuda")
                                                             or torch.cuda.is_available()) else "cpu")
        self.model.to(self.device)
        self.min_image_size = self.cfg.INPUT.MIN_SIZE_TEST if min_image_size is None else int(min_image_size)

        checkpointer = DetectronCheckpointer(self.cfg, self.model, save_dir=self.cfg.OUTPUT_DIR, save_to_disk=False)
        # strict: a checkpoint that does not fit the config would draw the detections of random heads.
        extra = {}
        if weight:
            extra = checkpointer.load(weight, use_latest=False, strict=True)
        elif checkpointer.has_checkpoint() or self.cfg.MODEL.WEIGHT:
            extra = checkpointer.load(self.cfg.MODEL.WEIGHT, use_latest=True, strict=True)
        else:
            logging.getLogger(__name__).warning(
                "No weight given, no last_checkpoint in OUTPUT_DIR '%s' and MODEL.WEIGHT is empty: the detector "
                "is randomly initialised", self.cfg.OUTPUT_DIR)

        # The evaluation pipeline at this demo's shorter side. INPUT.HIGH_BIT_DEPTH is taken out of it and applied
        # by map_high_bit_depth, so a caller that tiles an image maps the whole image once (its percentiles, not
        # each tile's); predict_raw applies it to what it is given otherwise.
        self.high_bit_depth = MapHighBitDepth(self.cfg.INPUT.HIGH_BIT_DEPTH, self.cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES)
        test_cfg = self.cfg.clone()
        test_cfg.defrost()
        test_cfg.INPUT.MIN_SIZE_TEST = self.min_image_size
        test_cfg.INPUT.HIGH_BIT_DEPTH = "full_range"  # the identity on the reader's images
        test_cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES = (0.0, 100.0)
        self.transforms = build_transforms(test_cfg, is_train=False)
        self.precision = build_inference_precision(self.cfg, self.device)
        self.bbox_aug = None
        if self.cfg.TEST.BBOX_AUG.ENABLED:
            if min_image_size is not None and self.min_image_size != self.cfg.INPUT.MIN_SIZE_TEST:
                raise ValueError("TEST.BBOX_AUG tests at INPUT.MIN_SIZE_TEST and TEST.BBOX_AUG.SCALES; a different "
                                 "min_image_size ({}) would be ignored. Pass min_image_size=None or change "
                                 "INPUT.MIN_SIZE_TEST".format(min_image_size))
            self.bbox_aug = BBoxAugDetector(self.model, test_cfg, self.device)
        else:
            check_bbox_aug_supported(self.cfg)
        # Probabilities for the heat-map montage, binary masks (p > 0.5) for the overlays.
        self.masker = Masker(threshold=-1 if show_mask_heatmaps else 0.5, padding=1)
        self.show_mask_heatmaps = show_mask_heatmaps
        self.confidence_threshold = confidence_threshold
        num_classes = self.cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES
        # [{"id", "name"}] in label order (entry k - 1 is label k), for files others read (COCO category ids)
        self.category_records = category_records(extra.get("categories"), ann_file, num_classes_key(self.cfg)[1])
        if categories is None and extra.get("categories"):  # the names the model was trained with
            categories = ["__background"] + [c["name"] for c in extra["categories"]]
            categories += ["class {}".format(k) for k in range(len(categories), num_classes)]
        if categories is None:
            categories = category_names_from_coco_json(ann_file) if ann_file else generic_category_names(num_classes)
        if len(categories) < num_classes:
            raise ValueError("{} category names for a model with MODEL.ROI_BOX_HEAD.NUM_CLASSES = {} (background "
                             "included); the annotation file does not belong to this model".format(
                                 len(categories), num_classes))
        super().__init__(categories, color_by_label=color_by_label, masks_per_dim=masks_per_dim)

    # ----------------------------------------------------------------------------------------------- prediction
    def read(self, path):
        """``path`` read as training and evaluation read it (``data.image_io.read_image``): PIL RGB for 8-bit
        files, float32 Tensor[3, H, W] for more bits; EXIF orientation applied."""
        return read_image(path)

    def display_image(self, image):
        """BGR uint8 [H, W, 3] picture of a ``read`` result, with this config's INPUT.HIGH_BIT_DEPTH rule."""
        return to_display_bgr(image, self.cfg.INPUT.HIGH_BIT_DEPTH, self.cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES)

    def run_on_file(self, path):
        """Read ``path`` with the project's reader, detect and draw.

        Returns:
            ndarray[H, W, 3] uint8: BGR picture of the image (``display_image``) with the detections above the
            confidence threshold drawn (or the heat-map montage with show_mask_heatmaps).
        """
        image = self.read(path)
        top_predictions = self.select_top_predictions(self.compute_prediction(image))
        picture = self.display_image(image)
        if self.show_mask_heatmaps:
            return self.create_mask_montage(picture, top_predictions)
        return self.draw(picture, top_predictions)

    def run_on_opencv_image(self, image):
        """Detect and draw.

        Args:
            image (ndarray[H, W, 3] uint8): BGR, as cv2.imread returns.
        Returns:
            ndarray[H, W, 3] uint8: BGR image with masks, boxes, class names and scores of the detections above
            the confidence threshold (or the heat-map montage with show_mask_heatmaps).
        """
        top_predictions = self.select_top_predictions(self.compute_prediction(image))
        if self.show_mask_heatmaps:
            return self.create_mask_montage(image.copy(), top_predictions)
        return self.draw(image, top_predictions)

    @staticmethod
    def _as_model_image(original_image):
        """An OpenCV BGR uint8 array, a PIL image or the reader's tensor, as data.image_io.read_image returns it."""
        if isinstance(original_image, np.ndarray):
            if original_image.ndim != 3 or original_image.shape[2] != 3 or original_image.dtype != np.uint8:
                raise ValueError("compute_prediction expects a BGR uint8 array [H, W, 3] (cv2.imread) or an image "
                                 "from data.image_io.read_image, got an array {} {} (16-bit images: use run_on_file, "
                                 "or data.image_io.from_bgr_array on the array)".format(
                                     original_image.dtype, original_image.shape))
            return Image.fromarray(np.ascontiguousarray(original_image[:, :, ::-1]))
        if isinstance(original_image, Image.Image):
            return from_pil_image(original_image)
        if not isinstance(original_image, torch.Tensor):
            raise ValueError("compute_prediction expects a BGR uint8 array [H, W, 3] (cv2.imread) or an image from "
                             "data.image_io.read_image, got {}".format(type(original_image).__name__))
        return original_image

    def map_high_bit_depth(self, image):
        """INPUT.HIGH_BIT_DEPTH applied to a whole image (``read``'s result; 8-bit images and arrays unchanged)."""
        return image if isinstance(image, np.ndarray) else self.high_bit_depth(image)[0]

    def predict_raw(self, original_image, mapped=False):
        """The model's detections on one image, masks not pasted: TEST.BBOX_AUG and TEST.DTYPE apply.

        Args:
            original_image: an OpenCV BGR uint8 array [H, W, 3], or what ``read`` / ``data.image_io.read_image``
                returns (PIL RGB image, or float32 Tensor[3, H, W] of a high-bit file).
            mapped (bool): ``map_high_bit_depth`` was already applied (to the whole image this is a part of).
        Returns:
            BoxList in the original image's size (W, H), float32, on the CPU, fields "scores", "labels" and with
            MASK_ON "mask" (Tensor[N, 1, M, M] probabilities; pasted Tensor[N, 1, H, W] if
            MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS).
        """
        from maskrcnn_benchmark.structures.image_list import to_image_list

        image = self._as_model_image(original_image)
        if not mapped:
            image = self.high_bit_depth(image)[0]
        width, height = image_size(image)
        if self.bbox_aug is not None:
            return self.bbox_aug([image])[0]
        image, _ = self.transforms(image)
        image_list = to_image_list(image, self.cfg.DATALOADER.SIZE_DIVISIBILITY).to(self.device)
        with torch.no_grad(), self.precision.autocast():
            predictions = self.model(image_list)
        return detections_to_float32(predictions[0].to(torch.device("cpu"))).resize((width, height))

    def compute_prediction(self, original_image, output_size=None):
        """
        Args:
            original_image: an OpenCV BGR uint8 array [H, W, 3], or what ``read`` / ``data.image_io.read_image``
                returns (PIL RGB image, or float32 Tensor[3, H, W] of a high-bit file).
            output_size ((width, height) | None): size the detections are returned in (masks pasted at it);
                None: the original image's. The model sees the same input either way.
        Returns:
            BoxList of every detection in ``output_size``, fields "scores", "labels", and "mask"
            (Tensor[N, 1, H, W]: uint8 {0, 1}, or probabilities with show_mask_heatmaps) when MASK_ON.
        """
        prediction = self.predict_raw(original_image)  # checks the input, in the original image's size
        width, height = output_size if output_size is not None else prediction.size
        prediction = prediction.resize((width, height))
        if prediction.has_field("mask"):
            masks = prediction.get_field("mask")
            if list(masks.shape[-2:]) != [height, width]:
                prediction.add_field("mask", self.masker([masks], [prediction])[0])
        return prediction

    def select_top_predictions(self, predictions):
        """Detections scoring above confidence_threshold, highest score first."""
        scores = predictions.get_field("scores")
        keep = torch.nonzero(scores > self.confidence_threshold).squeeze(1)
        predictions = predictions[keep]
        order = predictions.get_field("scores").sort(descending=True)[1]
        return predictions[order]
