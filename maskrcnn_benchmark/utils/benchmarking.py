"""What the benchmark scripts of tools/ share: the synthetic training batch (two 400x600 images, three instances
each), our detector set up for it, the stages a profile splits a step into, and the GPU synchronisation around a
timed step. (tools/benchmark.py, benchmark_gan.py and benchmark_prroi_pool.py import it from here.)"""
import os

import torch

# the configs/ folder of this checkout, where the benchmarked models' YAML files are
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
NUM_CLASSES = 81
HEIGHT, WIDTH = 400, 600
INSTANCES = 3


def synchronizer(device):
    """A function that waits for `device`'s queued work: torch.cuda.synchronize on a GPU, nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def make_inputs(seed=0):
    """Two BGR uint8 images [3, H, W] and per image xyxy boxes [3, 4], labels [3], binary masks [3, H, W]."""
    g = torch.Generator().manual_seed(seed)
    images, boxes, labels, masks = [], [], [], []
    ys, xs = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    for _ in range(2):
        images.append(torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=g, dtype=torch.uint8))
        b, m = [], []
        for _ in range(INSTANCES):
            w = int(torch.randint(60, 200, (1,), generator=g))
            h = int(torch.randint(60, 200, (1,), generator=g))
            x0 = int(torch.randint(0, WIDTH - w, (1,), generator=g))
            y0 = int(torch.randint(0, HEIGHT - h, (1,), generator=g))
            b.append([x0, y0, x0 + w - 1, y0 + h - 1])
            cx, cy = x0 + w / 2.0, y0 + h / 2.0
            m.append((((xs - cx) / (w / 2.0)) ** 2 + ((ys - cy) / (h / 2.0)) ** 2 <= 1).to(torch.uint8))
        boxes.append(torch.tensor(b, dtype=torch.float32))
        labels.append(torch.randint(1, NUM_CLASSES, (INSTANCES,), generator=g))
        masks.append(torch.stack(m))
    return images, boxes, labels, masks


class BenchmarkDetector:
    """Our detector fed exactly as the data pipeline would (BGR 0-255 minus PIXEL_MEAN, padded to 32)."""

    def __init__(self, like_torchvision=False, config_file="e2e_mask_rcnn_R_50_FPN_1x.yaml", extra_opts=(),
                 benchmark_input=True):
        """benchmark_input False keeps the config's classes and input sizes (for a batch of its own data)."""
        from maskrcnn_benchmark.config import load_config
        from maskrcnn_benchmark.modeling.detector import build_detection_model

        # torchvision's forward pastes every detection's mask probabilities into a full-image Tensor[N, 1, H, W];
        # ours does the same inside the model (threshold -1 keeps probabilities), so inference does the same work.
        opts = ["MODEL.WEIGHT", "", "MODEL.DEVICE", "cpu"]
        if benchmark_input:
            opts += ["MODEL.ROI_BOX_HEAD.NUM_CLASSES", NUM_CLASSES, "INPUT.MIN_SIZE_TRAIN", (HEIGHT,),
                     "INPUT.MIN_SIZE_TEST", HEIGHT, "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS", True,
                     "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD", -1.0]
        opts += list(extra_opts)
        if like_torchvision:
            # torchvision without weights: trainable BatchNorm, no frozen stage; proposals kept per image in
            # training (our default too, but not maskrcnn-benchmark's)
            opts += ["MODEL.BACKBONE.FREEZE_CONV_BODY_AT", 0,
                     "MODEL.RESNETS.TRANS_FUNC", "BottleneckWithBatchNorm",
                     "MODEL.RESNETS.STEM_FUNC", "StemWithBatchNorm",
                     "MODEL.RPN.FPN_POST_NMS_PER_BATCH", False]
        self.cfg = load_config(os.path.join(CONFIGS, config_file), opts)
        self.model = build_detection_model(self.cfg)
        self.mean = torch.tensor(self.cfg.INPUT.PIXEL_MEAN).view(3, 1, 1)

    def settings(self):
        c = self.cfg.MODEL
        return {"backbone": "{} {} / {}, frozen up to stage {}".format(
            c.BACKBONE.CONV_BODY, c.RESNETS.STEM_FUNC, c.RESNETS.TRANS_FUNC, c.BACKBONE.FREEZE_CONV_BODY_AT),
            "rpn_post_nms_train": "{} per {}".format(
                c.RPN.FPN_POST_NMS_TOP_N_TRAIN, "batch" if c.RPN.FPN_POST_NMS_PER_BATCH else "image"),
            "roi_batch": c.ROI_HEADS.BATCH_SIZE_PER_IMAGE, "channels_last": c.CHANNELS_LAST,
            "activation_checkpointing": c.RESNETS.ACTIVATION_CHECKPOINTING}

    def prepare(self, images, boxes, labels, masks):
        from maskrcnn_benchmark.structures.bounding_box import BoxList
        from maskrcnn_benchmark.structures.image_list import to_image_list
        from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

        tensors = [image.float() - self.mean for image in images]
        targets = []
        for image_boxes, image_labels, image_masks in zip(boxes, labels, masks):
            target = BoxList(image_boxes, (WIDTH, HEIGHT))
            target.add_field("labels", image_labels)
            target.add_field("masks", SegmentationMask(image_masks, (WIDTH, HEIGHT), mode="mask"))
            targets.append(target)
        batch = to_image_list(tensors, self.cfg.DATALOADER.SIZE_DIVISIBILITY)
        singles = [to_image_list([t], self.cfg.DATALOADER.SIZE_DIVISIBILITY) for t in tensors]
        return batch, targets, singles

    def train_loss(self, batch, targets):
        return sum(self.model(batch, targets).values())

    def infer(self, single):
        return len(self.model(single)[0])


def add_detector_stages(timer, impl, model):
    """The stages of ``model`` (ours or torchvision's Mask R-CNN) on ``timer``: the same parts of both models (a
    head's RoI pooling, feature extractor and predictor; sampling, losses and post-processing fall in "other")."""
    if impl == "ours":
        heads = model.roi_heads
        timer.add_modules("backbone+FPN", [model.backbone])
        timer.add_modules("RPN", [model.rpn])
        timer.add_modules("box head", [heads.box.feature_extractor, heads.box.predictor])
        if "mask" in heads:
            mask_extractor = heads.mask.feature_extractor
            shared = mask_extractor is heads.box.feature_extractor
            timer.add_modules("mask head", [None if shared else mask_extractor, heads.mask.predictor])
        return
    heads = model.roi_heads
    timer.add_modules("transform", [model.transform])
    timer.add_modules("backbone+FPN", [model.backbone])
    timer.add_modules("RPN", [model.rpn])
    timer.add_modules("box head", [heads.box_roi_pool, heads.box_head, heads.box_predictor])
    timer.add_modules("mask head", [heads.mask_roi_pool, heads.mask_head, heads.mask_predictor])
