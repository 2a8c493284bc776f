"""Export a trained Mask R-CNN for deployment: one traceable module, written to ONNX or TorchScript.

``ExportableMaskRCNN`` runs the eval path of ``GeneralizedRCNN`` (backbone, RPN, box head, mask head) on one image
with tensors only (no BoxList, no Python branch on a tensor's value), so ``torch.jit.trace`` records a graph in
which the image size and the number of detections stay dynamic. It reuses the detector's own modules and helpers
(heads, feature extractors, poolers, box coders, ``filter_detections``); only the glue between them is written
again, and ``tests/tools/test_export.py`` checks that it gives the detector's detections.

Input and output convention (see docs/deployment.md):
    image: float Tensor[3, H, W], BGR, 0-255, already resized to the model's test size (INPUT.MIN_SIZE_TEST /
        MAX_SIZE_TEST, ``data.transforms.Resize``); ``export_input`` prepares it from an image file with the
        project's reader, as evaluation does. The normalisation (INPUT.TO_BGR255, PIXEL_MEAN, PIXEL_STD)
        and the padding to DATALOADER.SIZE_DIVISIBILITY happen in the graph. The resize does not: the project
        resizes with PIL (antialiased), which no ONNX Resize reproduces, so it stays a preprocessing step.
    boxes: float Tensor[N, 4] xyxy in the input image's pixels; scores: Tensor[N]; labels: int64 Tensor[N]
        (contiguous ids, 0 = background never returned); masks: Tensor[N, 1, M, M] mask probabilities in each box
        (M = 2 x MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION, 28 by default). Pasting them into the image is a numpy step
        outside the graph (``paste_masks_in_image`` here, or ``paste_mask`` of demo/onnxruntime_example.py): an
        image-sized mask per detection is what makes the graph slow and large, and it depends on a threshold the
        user chooses.
"""
import logging
import os
import tempfile
import time
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling.roi_heads.box_head.inference import filter_detections
from maskrcnn_benchmark.modeling.rpn.utils import permute_and_flatten

EXPORT_FORMATS = ("onnx", "torchscript")
# onnxruntime 1.2x runs opset 17 (RoiAlign, NonMaxSuppression, TopK with a tensor k all exist since 11).
ONNX_OPSET = 17
INPUT_NAMES = ["image"]
OUTPUT_NAMES = ["boxes", "scores", "labels", "masks"]


def unsupported_export_reasons(cfg):
    """Why ``cfg`` cannot be exported: list of "KEY=value: reason" strings, empty when it can.

    Read from the config alone, so a refusal comes before any weight is loaded.
    """
    model = cfg.MODEL
    reasons = []
    if model.META_ARCHITECTURE != "GeneralizedRCNN":
        reasons.append("MODEL.META_ARCHITECTURE={}: only GeneralizedRCNN is exported".format(model.META_ARCHITECTURE))
    if model.RETINANET_ON:
        reasons.append("MODEL.RETINANET_ON=True: RetinaNet's post-processing is not in the export module")
    if model.RPN_ONLY:
        reasons.append("MODEL.RPN_ONLY=True: the export module outputs RoI-head detections with masks")
    if not model.MASK_ON:
        reasons.append("MODEL.MASK_ON=False: the export module outputs masks (a box-only model is not exported)")
    if model.KEYPOINT_ON:
        reasons.append("MODEL.KEYPOINT_ON=True: the keypoint head is not in the export module")
    if any(model.RESNETS.STAGE_WITH_DCN):
        reasons.append("MODEL.RESNETS.STAGE_WITH_DCN={}: deformable convolution has no standard ONNX operator"
                       .format(tuple(model.RESNETS.STAGE_WITH_DCN)))
    if model.BACKBONE.CONV_BODY.startswith("FBNet"):
        reasons.append("MODEL.BACKBONE.CONV_BODY={}: FBNet models are not tested for export".format(
            model.BACKBONE.CONV_BODY))
    for head in ("ROI_BOX_HEAD", "ROI_MASK_HEAD"):
        if model[head].POOLER_TYPE != "ROIAlign":
            reasons.append("MODEL.{}.POOLER_TYPE={}: only ROIAlign has an ONNX operator".format(
                head, model[head].POOLER_TYPE))
    if model.BOX_CONVENTION != "maskrcnn_benchmark":
        reasons.append("MODEL.BOX_CONVENTION={}: the export module places anchors the maskrcnn_benchmark way only"
                       .format(model.BOX_CONVENTION))
    if cfg.INPUT.RESIZE_STYLE != "maskrcnn_benchmark":
        reasons.append("INPUT.RESIZE_STYLE={}: the export module's input is a BGR 0-255 image resized the "
                       "maskrcnn_benchmark way (normalised in the graph)".format(cfg.INPUT.RESIZE_STYLE))
    # the exported graph is one float32 pass: exporting would drop these test settings without a word
    if cfg.TEST.BBOX_AUG.ENABLED:
        reasons.append("TEST.BBOX_AUG.ENABLED=True: test-time augmentation runs the model once per flip and scale "
                       "and merges in Python, outside the graph; set it False to export the plain pass")
    if cfg.TEST.DTYPE != "float32":
        reasons.append("TEST.DTYPE={}: the exported graph computes in float32; set TEST.DTYPE float32 to export "
                       "(and convert the file with your runtime's tools)".format(cfg.TEST.DTYPE))
    return reasons


def check_exportable(cfg, config_file=""):
    """Raise ValueError naming the config file and every key that makes ``cfg`` unexportable."""
    reasons = unsupported_export_reasons(cfg)
    if reasons:
        raise ValueError("cannot export config '{}':\n  {}".format(config_file or "<given cfg>", "\n  ".join(reasons)))


def _min_int(size, k):
    # min(size, k) that stays a graph value when ``size`` comes from a traced shape (a 0-dim tensor when tracing)
    if isinstance(size, torch.Tensor):
        return size.clamp(max=k)
    return min(size, k)


def _clip(boxes, height, width, to_remove):
    """Tensor[..., 4] xyxy clipped to x in [0, width - to_remove], y in [0, height - to_remove]; height and width
    may be traced 0-dim tensors, which ``clip_boxes``'s ``new_tensor`` would freeze into constants."""
    size = torch.stack([width, height, width, height]) if isinstance(width, torch.Tensor) else \
        boxes.new_tensor([width, height, width, height])
    upper = (size - to_remove).to(boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), upper)


def _rois_with_spare(boxes):
    """Tensor[K, 4] boxes of image 0 -> Tensor[K + 1, 5] RoIs, the last a spare 16 x 16 box whose result the caller
    drops. With it a head never runs on zero RoIs: the ONNX GroupNorm (Reshape to [K, groups, -1]) cannot take
    K = 0 in onnxruntime, and an image with no detection would fail instead of returning empty outputs. GroupNorm
    and frozen BatchNorm work per RoI, so the spare changes no other RoI's result."""
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
    return torch.cat([rois, rois.new_tensor([[0.0, 0.0, 0.0, 15.0, 15.0]])])


class ExportableMaskRCNN(nn.Module):
    """A GeneralizedRCNN Mask R-CNN in eval mode as one traceable function of one image.

    Args:
        model: GeneralizedRCNN with a box and a mask head (see ``unsupported_export_reasons``).
        pixel_mean, pixel_std: INPUT.PIXEL_MEAN / PIXEL_STD (in the channel order the model is fed).
        to_bgr255: INPUT.TO_BGR255; False means the model is fed RGB in 0-1, converted from the BGR 0-255 input here.
    forward(image float Tensor[3, H, W] BGR 0-255) -> (boxes Tensor[N, 4], scores Tensor[N], labels int64 Tensor[N],
        masks Tensor[N, 1, M, M] probabilities), sorted by decreasing score, in the input image's pixels.
    """

    @configurable
    def __init__(self, model, pixel_mean, pixel_std, to_bgr255=True):
        super().__init__()
        self.model = model.eval()
        self.size_divisible = model.size_divisible
        self.to_bgr255 = to_bgr255
        self.register_buffer("pixel_mean", torch.as_tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("pixel_std", torch.as_tensor(pixel_std, dtype=torch.float32).view(3, 1, 1))

    @classmethod
    def from_config(cls, cfg, model):
        """The constructor arguments for ``model`` from ``cfg`` (INPUT.PIXEL_MEAN, PIXEL_STD, TO_BGR255), after
        refusing what the export does not cover (check_exportable); ``ExportableMaskRCNN(cfg, model)`` builds it."""
        check_exportable(cfg)
        return dict(model=model, pixel_mean=cfg.INPUT.PIXEL_MEAN, pixel_std=cfg.INPUT.PIXEL_STD,
                    to_bgr255=cfg.INPUT.TO_BGR255)

    def preprocess(self, image):
        """Tensor[3, H, W] BGR 0-255 -> normalised Tensor[1, 3, H', W'] padded (bottom/right, zeros) to a multiple
        of size_divisible, as ``to_image_list`` pads after ``Normalize``."""
        if not self.to_bgr255:
            image = image[[2, 1, 0]] / 255.0
        image = (image - self.pixel_mean) / self.pixel_std
        if self.size_divisible > 0:
            height, width = image.shape[-2:]
            d = self.size_divisible
            image = F.pad(image, (0, (width + d - 1) // d * d - width, 0, (height + d - 1) // d * d - height))
        return image[None]

    def proposals(self, features, height, width):
        """RPN proposals Tensor[P, 4] of the image, as ``RPNPostProcessor`` in eval (per level top-k, decode, clip,
        min size, NMS per level, post_nms_top_n per level, fpn_post_nms_top_n overall)."""
        rpn = self.model.rpn
        selector = rpn.box_selector_test
        objectness, box_regression = rpn.head(features)
        boxes, scores, levels = [], [], []
        anchors_per_level = rpn.anchor_generator.grid_anchors([f.shape[-2:] for f in features])
        for level, (anchors, obj, reg) in enumerate(zip(anchors_per_level, objectness, box_regression)):
            N, A, H, W = obj.shape
            obj = permute_and_flatten(obj, N, A, 1, H, W).reshape(-1)
            reg = permute_and_flatten(reg, N, A, 4, H, W).reshape(-1, 4)
            obj, topk_idx = obj.topk(_min_int(obj.shape[0], selector.pre_nms_top_n), sorted=True)
            boxes.append(selector.box_coder.decode(reg[topk_idx], anchors[topk_idx]))
            scores.append(obj.sigmoid())
            levels.append(torch.full_like(topk_idx, level))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        to_remove = selector.to_remove
        boxes = _clip(boxes, height, width, to_remove)
        if selector.min_size > 0:
            sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + to_remove
            keep = torch.nonzero(sides >= selector.min_size).squeeze(1)
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(torch.cat([boxes[:, :2], boxes[:, 2:] + to_remove], dim=1), scores, levels,
                           selector.nms_thresh)
        num_levels = len(objectness)
        # int64 one-hot: ONNX CumSum takes no booleans
        one_hot = (levels[keep][:, None] == torch.arange(num_levels, device=levels.device)[None, :]).long()
        rank_in_level = (one_hot.cumsum(0) * one_hot).sum(1) - 1
        keep = keep[rank_in_level < selector.post_nms_top_n]
        if num_levels > 1:
            keep = keep[:selector.fpn_post_nms_top_n]
        return boxes[keep]

    def detections(self, features, proposals, height, width):
        """Box head on the proposals, as ``ROIBoxHead`` + ``PostProcessor`` in eval: (boxes, scores, labels)."""
        box_head = self.model.roi_heads.box
        post = box_head.post_processor
        class_logits, box_regression = box_head.predictor(
            box_head.feature_extractor(features, _rois_with_spare(proposals)))
        class_logits, box_regression = class_logits[:-1], box_regression[:-1]
        class_prob = F.softmax(class_logits, -1)
        num_classes = class_prob.shape[1]
        if post.cls_agnostic_bbox_reg:
            box_regression = box_regression[:, -4:]
        boxes = post.box_coder.decode(box_regression, proposals)
        if post.cls_agnostic_bbox_reg:
            boxes = boxes.repeat(1, num_classes)
        boxes = _clip(boxes.view(-1, num_classes, 4), height, width, post.box_coder.to_remove)
        return filter_detections(boxes, class_prob, post.score_thresh, post.nms, post.detections_per_img,
                                 post.box_coder.to_remove, post.min_size)

    def masks(self, features, boxes, labels):
        """Mask probabilities Tensor[N, 1, M, M] of each detection's own class, as ``ROIMaskHead`` in eval (all
        detections in one predictor call: its chunking would be a loop frozen by the trace)."""
        mask_head = self.model.roi_heads.mask
        logits = mask_head.predictor(mask_head.feature_extractor(features, _rois_with_spare(boxes)))[:-1]
        if logits.shape[1] > 1:
            logits = logits[torch.arange(labels.shape[0], device=labels.device), labels]
        else:
            logits = logits[:, 0]
        return logits[:, None].sigmoid()

    def forward(self, image):
        height, width = image.shape[-2:]
        features = self.model.backbone(self.preprocess(image))
        proposals = self.proposals(list(features), height, width)
        boxes, scores, labels = self.detections(features, proposals, height, width)
        return boxes, scores, labels, self.masks(features, boxes, labels)


def export_input(image, cfg):
    """The exported graph's input for one image, prepared as evaluation prepares it.

    The file is read by ``data.image_io.read_image`` (EXIF orientation, 16-bit kept in float), mapped by
    INPUT.HIGH_BIT_DEPTH and resized by the test transform (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, RESIZE_STYLE), so the
    graph, which normalises and pads, sees what ``tools/test_net.py`` feeds the model.

    Args:
        image (str or read_image result): an image file, or what ``read_image`` returned for it.
        cfg: the model's config.
    Returns:
        (Tensor[3, H', W'] float32 BGR 0-255, (sx, sy)): the graph input, and the factors that take its pixel
        coordinates back to the original image's (multiply boxes by [sx, sy, sx, sy]).
    """
    from maskrcnn_benchmark.data.image_io import image_size, read_image
    from maskrcnn_benchmark.data.transforms import transforms as T

    if isinstance(image, str):
        image = read_image(image)
    width, height = image_size(image)
    steps = [T.MapHighBitDepth(cfg.INPUT.HIGH_BIT_DEPTH, cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES)]
    resize = T.Resize(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.RESIZE_STYLE)
    # the order of the test transforms: torchvision's style resizes the float tensor, maskrcnn-benchmark's the image
    steps += [T.ToTensor(), resize] if cfg.INPUT.RESIZE_STYLE == "torchvision" else [resize, T.ToTensor()]
    rgb, _ = T.Compose(steps)(image)
    # the arithmetic of transforms.Normalize (reorder, times 255), so the graph's (x - mean) / std is the same
    bgr = rgb[[2, 1, 0]] * 255
    return bgr, (width / bgr.shape[-1], height / bgr.shape[-2])


def export_model(export_module, example_images, output, fmt):
    """Trace ``export_module`` on ``example_images[0]`` and write it to ``output`` (written to a temporary file in
    the same folder, then renamed, so a failed export leaves no half file).

    Args:
        export_module: ExportableMaskRCNN.
        example_images: list of Tensor[3, H, W] inputs; the first is traced; the trace must not depend on it.
        output: file path.
        fmt: "onnx" (opset ONNX_OPSET, dynamic H, W and N) or "torchscript" (torch.jit.trace + torch.jit.save).
    Returns:
        seconds spent tracing and writing.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError("export format '{}' is unknown; use one of {}".format(fmt, ", ".join(EXPORT_FORMATS)))
    export_module = export_module.eval()
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_export_", suffix=os.path.splitext(output)[1], dir=folder)
    os.close(fd)
    start = time.perf_counter()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns at every Python use of a traced value; the ones left are constants of the model
            # (class count, batch-size checks). Whether the trace generalises is what tools/export.py's check and
            # tests/tools/test_export.py establish, at two image sizes.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if fmt == "torchscript":
                traced = torch.jit.trace(export_module, (example_images[0],), check_trace=False)
                torch.jit.save(traced, tmp)
            else:
                torch.onnx.export(
                    export_module, (example_images[0],), tmp, dynamo=False, opset_version=ONNX_OPSET,
                    input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                    dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                                  "scores": {0: "detections"}, "labels": {0: "detections"},
                                  "masks": {0: "detections"}})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the export is an ordinary file
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    seconds = time.perf_counter() - start
    logging.getLogger(__name__).info("wrote %s (%s, %.1f MB) in %.1f s", output, fmt,
                                     os.path.getsize(output) / 2 ** 20, seconds)
    return seconds
