"""Test-time augmentation (TEST.BBOX_AUG): detect on flipped and rescaled copies of each image, merge.

maskrcnn-benchmark's ``engine/bbox_aug.py`` runs the detector on the image at INPUT.MIN_SIZE_TEST, on its mirror
(H_FLIP), at every size of SCALES (longer side capped at MAX_SIZE) and their mirrors (SCALE_H_FLIP), maps every
pass's boxes back into the original image and merges the union by per-class NMS. It merges boxes only.

Masks here: after the boxes are merged, the mask head is run on the merged boxes once per augmentation (the boxes
mapped into that augmentation's frame, the backbone run again on that copy) and the M x M mask probabilities of
the passes are averaged, mirrored passes flipped back first (Detectron's ``im_detect_mask_aug`` recipe). Every
detection thus gets one mask from every pass, in its own merged box; pasting each pass's own masks and averaging
would need a correspondence between the detections of different passes that NMS does not give. The price is a
second backbone pass per augmentation (features are not kept: at the large SCALES they would not fit).
"""
import torch
from PIL import ImageOps
from torchvision.ops import batched_nms

from maskrcnn_benchmark.data.image_io import image_size
from maskrcnn_benchmark.data.transforms import build_transforms
from maskrcnn_benchmark.engine.mixed_precision import build_inference_precision, detections_to_float32
from maskrcnn_benchmark.structures.bounding_box import FLIP_LEFT_RIGHT
from maskrcnn_benchmark.structures.boxlist_ops import cat_boxlist
from maskrcnn_benchmark.structures.image_list import to_image_list


def test_transform(cfg, min_size, max_size):
    """The evaluation transform of INPUT (high-bit rule, resize, normalisation) at another size."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = min_size, max_size
    return build_transforms(cfg, is_train=False)


def mirror(image):
    """The left-right mirror of a reader image: PIL image, or Tensor[C, H, W] of a high-bit file."""
    return image.flip(-1) if isinstance(image, torch.Tensor) else ImageOps.mirror(image)


def augmentations(cfg):
    """The passes of TEST.BBOX_AUG as (min_size, max_size, hflip), the plain test pass first."""
    aug = cfg.TEST.BBOX_AUG
    passes = [(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, False)]
    if aug.H_FLIP:
        passes.append((cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, True))
    for scale in aug.SCALES:
        passes.append((int(scale), aug.MAX_SIZE, False))
        if aug.SCALE_H_FLIP:
            passes.append((int(scale), aug.MAX_SIZE, True))
    return passes


def check_bbox_aug_supported(cfg):
    """Refuse, by name, TEST.BBOX_AUG on a model whose outputs it cannot merge."""
    if not cfg.TEST.BBOX_AUG.ENABLED:
        if cfg.TEST.BBOX_AUG.SCALES or cfg.TEST.BBOX_AUG.H_FLIP or cfg.TEST.BBOX_AUG.SCALE_H_FLIP:
            raise ValueError("TEST.BBOX_AUG.H_FLIP / SCALES / SCALE_H_FLIP are set but TEST.BBOX_AUG.ENABLED is "
                             "False, so they would be ignored; set TEST.BBOX_AUG.ENABLED True or remove them")
        return
    if cfg.MODEL.KEYPOINT_ON:
        raise ValueError("TEST.BBOX_AUG merges boxes and masks; keypoints are not merged (MODEL.KEYPOINT_ON is "
                         "True). Set TEST.BBOX_AUG.ENABLED False for a keypoint model")
    if cfg.MODEL.RPN_ONLY and not cfg.MODEL.RETINANET_ON:
        raise ValueError("TEST.BBOX_AUG merges detections; an RPN-only model (MODEL.RPN_ONLY) gives proposals. "
                         "Set TEST.BBOX_AUG.ENABLED False")


class BBoxAugDetector:
    """Runs a GeneralizedRCNN over the TEST.BBOX_AUG passes of images and merges the results.

    Args:
        model (GeneralizedRCNN): in eval mode.
        cfg: its config (INPUT.*, DATALOADER.SIZE_DIVISIBILITY, TEST.BBOX_AUG.*, TEST.DTYPE, MODEL.ROI_HEADS.NMS,
            MODEL.ROI_HEADS.DETECTIONS_PER_IMG or TEST.DETECTIONS_PER_IMG for RetinaNet).
        device: where the model runs.
    """

    def __init__(self, model, cfg, device):
        check_bbox_aug_supported(cfg)
        self.model = model
        self.device = torch.device(device)
        self.size_divisible = cfg.DATALOADER.SIZE_DIVISIBILITY
        self.passes = [(test_transform(cfg, min_size, max_size), hflip)
                       for min_size, max_size, hflip in augmentations(cfg)]
        self.precision = build_inference_precision(cfg, self.device)
        box_head = model.roi_heads["box"] if model.roi_heads is not None else None
        post = getattr(box_head, "post_processor", None)
        self.nms = post.nms if post is not None else cfg.MODEL.RETINANET.NMS_TH
        self.detections_per_img = post.detections_per_img if post is not None else cfg.TEST.DETECTIONS_PER_IMG

    def _batch(self, images, transform, hflip):
        # The original is mirrored before the transform, so a mirrored pass sees exactly the plain pass of the
        # mirrored image (a flip of a flip is the identity, bit for bit).
        tensors = [transform(mirror(image) if hflip else image)[0] for image in images]
        return to_image_list(tensors, self.size_divisible).to(self.device)

    # The mirror is taken in the original frame, where the image was mirrored: mirroring (x -> W - 1 - x) and
    # resizing (x -> s x) do not commute, and mirroring in the resized frame would shift boxes by up to ~1 px.
    def _to_original(self, detections, original_size, hflip):
        detections = detections.resize(original_size)
        return detections.transpose(FLIP_LEFT_RIGHT) if hflip else detections

    def _to_pass(self, detections, pass_size, hflip):
        if hflip:
            detections = detections.transpose(FLIP_LEFT_RIGHT)
        detections = detections.resize(pass_size)
        # The box head can give a box a fraction of a pixel inverted (x1 < x0); scaled up to a larger pass it
        # would reach the mask pooler with a negative size. Collapse such boxes to zero width or height.
        box = detections.bbox.clone()
        box[:, 2:] = torch.max(box[:, 2:], box[:, :2])
        detections.bbox = box
        return detections

    def _detect(self, image_list):
        model = self.model
        features = model.backbone(image_list.tensors)
        proposals = model.rpn(image_list, features)[0]
        if model.roi_heads is None:
            return features, proposals  # RetinaNet: the RPN's outputs are detections
        return features, model.roi_heads["box"](features, proposals)[1]

    @torch.no_grad()
    def __call__(self, images):
        """
        Args:
            images (list[PIL.Image | Tensor[3, H, W]]): RGB originals, as data.image_io.read_image returns.
        Returns:
            list[BoxList]: per image, in its original size (xyxy), fields "scores", "labels" and, with a mask head,
            "mask" (Tensor[N, 1, M, M] probabilities averaged over the passes), float32.
        """
        sizes = [image_size(image) for image in images]
        per_pass = []
        for transform, hflip in self.passes:
            image_list = self._batch(images, transform, hflip)
            with self.precision.autocast():
                _, detections = self._detect(image_list)
            per_pass.append([self._to_original(detections_to_float32(d.to("cpu")), size, hflip)
                             for d, size in zip(detections, sizes)])
        merged = [self._merge([p[i] for p in per_pass]) for i in range(len(images))]
        if self.model.roi_heads is not None and "mask" in self.model.roi_heads:
            self._average_masks(images, merged)
        return merged

    def _merge(self, detections):
        """Per-class NMS over the union of the passes' detections (all in the original frame), top-k by score."""
        union = cat_boxlist([d.copy_with_fields(["scores", "labels"]) for d in detections])
        keep = batched_nms(union.bbox, union.get_field("scores"), union.get_field("labels"), self.nms)
        return union[keep[: self.detections_per_img]]

    def _average_masks(self, images, merged):
        mask_head = self.model.roi_heads["mask"]
        total = None
        for transform, hflip in self.passes:
            image_list = self._batch(images, transform, hflip)
            boxes = [self._to_pass(d, (w, h), hflip).to(self.device)
                     for d, (h, w) in zip(merged, image_list.image_sizes)]
            labels = torch.cat([b.get_field("labels") for b in boxes]).to(torch.int64)
            with self.precision.autocast():
                features = self.model.backbone(image_list.tensors)
                probs = mask_head.detection_class_logits(mask_head.feature_extractor(features, boxes), labels)
            probs = probs.float().sigmoid().cpu()
            if hflip:
                probs = probs.flip(-1)
            total = probs if total is None else total + probs
        total = total / len(self.passes)
        for detections, masks in zip(merged, total.split([len(d) for d in merged])):
            detections.add_field("mask", masks)


def im_detect_bbox_aug(model, images, cfg, device):
    """maskrcnn-benchmark's entry point: BBoxAugDetector(model, cfg, device)(images)."""
    return BBoxAugDetector(model, cfg, device)(images)


def mirror_detections(detections):
    """A BoxList's mirror image: boxes flipped left-right, M x M (or pasted) masks flipped along their width."""
    mirrored = detections.transpose(FLIP_LEFT_RIGHT)
    if detections.has_field("mask"):
        mirrored.add_field("mask", detections.get_field("mask").flip(-1))
    return mirrored

