"""Anchor boxes for the RPN: a set of cell anchors per feature map, shifted over its grid.

Cell anchors follow Detectron's ``generate_anchors`` exactly (rounded widths/heights around a
``stride x stride`` base box, +1 pixel convention), so maskrcnn-benchmark checkpoints see the
anchors they were trained with; with MODEL.BOX_CONVENTION "torchvision" they follow torchvision's
``AnchorGenerator`` instead, for its weights.
"""

import torch
from torch import nn

from maskrcnn_benchmark.modeling.box_coder import box_convention_to_remove
from maskrcnn_benchmark.structures.bounding_box import BoxList


def _mkanchors(ws, hs, x_ctr, y_ctr):
    """Boxes of widths ``ws`` and heights ``hs`` (Tensor[A]) centred at (x_ctr, y_ctr) -> Tensor[A, 4]."""
    return torch.stack(
        [x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1), x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)], dim=1
    )


def generate_anchors(stride=16, sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1, 2)):
    """Cell anchors for one feature map: Tensor[len(aspect_ratios) * len(sizes), 4] (float32, xyxy).

    Ratio-major order: all sizes for aspect_ratios[0], then for aspect_ratios[1], ... For each
    ratio r (= h / w) the base box of area stride^2 gets w = round(sqrt(stride^2 / r)),
    h = round(w * r), and is then scaled by size / stride, all centred on the base box centre
    ((stride - 1) / 2).
    """
    sizes = torch.as_tensor(sizes, dtype=torch.float64)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float64)
    base = float(stride)
    ctr = 0.5 * (base - 1)
    ws = torch.round(torch.sqrt(base * base / ratios))
    hs = torch.round(ws * ratios)
    scales = sizes / base
    all_ws = (ws[:, None] * scales[None, :]).reshape(-1)
    all_hs = (hs[:, None] * scales[None, :]).reshape(-1)
    return _mkanchors(all_ws, all_hs, ctr, ctr).to(torch.float32)


def generate_anchors_torchvision(sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1, 2)):
    """torchvision's cell anchors: Tensor[len(aspect_ratios) * len(sizes), 4] (float32, xyxy), ratio-major.

    For ratio r (= h / w) and size s: w = s / sqrt(r), h = s * sqrt(r), the box (-w/2, -h/2, w/2, h/2) centred on the
    cell's top-left corner, its coordinates rounded (float32 arithmetic, as torchvision's).
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class BufferList(nn.Module):
    """Tensors registered as buffers named "0", "1", ... (state-dict keys ``cell_anchors.<i>``).

    They are in the state dict as in maskrcnn-benchmark's checkpoints, but follow from the config: a checkpoint
    without them (torchvision's weights) still fits the model (``derived_from_config``, see load_state_dict).
    """

    derived_from_config = True

    def __init__(self, buffers):
        super().__init__()
        for i, buffer in enumerate(buffers):
            self.register_buffer(str(i), buffer)

    def __len__(self):
        return len(self._buffers)

    def __iter__(self):
        return iter(self._buffers.values())


class AnchorGenerator(nn.Module):
    """Anchors for every location of every feature map.

    Args:
        sizes: anchor sizes (px); with several ``anchor_strides`` (FPN) one entry per map, either a number or a
            tuple of sizes (RetinaNet's octave scales: several sizes on one map).
        aspect_ratios: height/width ratios, shared by all maps.
        anchor_strides: stride of each feature map (px).
        straddle_thresh: anchors reaching more than this many px outside the image get
            visibility False (the RPN loss ignores them); a negative value keeps all.
        style: "maskrcnn_benchmark" (Detectron cell anchors, shifts of ``anchor_strides``) or "torchvision"
            (``generate_anchors_torchvision``, shifted by the stride torchvision derives per batch: padded image
            size // feature map size, per axis, which differs from the nominal stride on odd-sized coarse maps).
    forward(image_list, feature_maps) -> list (per image) of list (per map) of BoxList[H_l*W_l*A]
    with a bool field "visibility"; anchors are ordered (y, x, anchor) to match the RPN head's
    permuted outputs.
    """

    def __init__(self, sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), anchor_strides=(8, 16, 32),
                 straddle_thresh=0, style="maskrcnn_benchmark"):
        super().__init__()
        if style not in ("maskrcnn_benchmark", "torchvision"):
            raise ValueError("anchor style '{}' is unknown (MODEL.BOX_CONVENTION): maskrcnn_benchmark or torchvision"
                             .format(style))
        if style == "torchvision":
            def generate(stride, sizes_, ratios):
                return generate_anchors_torchvision(sizes_, ratios)
        else:
            generate = generate_anchors
        if len(anchor_strides) == 1:
            if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):  # one level given RetinaNet's way
                sizes = tuple(sizes[0])
            cell_anchors = [generate(anchor_strides[0], sizes, aspect_ratios)]
        else:
            if len(anchor_strides) != len(sizes):
                raise ValueError(
                    "FPN anchors need one size per stride: MODEL.RPN.ANCHOR_SIZES {} vs ANCHOR_STRIDE {}".format(
                        tuple(sizes), tuple(anchor_strides)))
            cell_anchors = [
                generate(s, tuple(size) if isinstance(size, (tuple, list)) else (size,), aspect_ratios)
                for s, size in zip(anchor_strides, sizes)]
        self.style = style
        self.strides = tuple(anchor_strides)
        self.cell_anchors = BufferList(cell_anchors)
        self.straddle_thresh = straddle_thresh
        self._grid_cache = {}

    def num_anchors_per_location(self):
        """list[int]: anchors per grid cell of each feature map."""
        return [len(cell_anchors) for cell_anchors in self.cell_anchors]

    def grid_anchors(self, grid_sizes, strides=None):
        """list[(H, W)] (and per-map (stride_y, stride_x), default ``anchor_strides``) -> list[Tensor[H*W*A, 4]],
        cached per (sizes, strides, device, dtype)."""
        cell_list = list(self.cell_anchors)
        if strides is None:
            strides = [(s, s) for s in self.strides]
        strides = tuple(tuple(s) for s in strides)
        # While tracing (export) nothing is cached: a cached tensor would enter the trace as a constant of one
        # image size.
        tracing = torch.jit.is_tracing()
        key = (tuple(tuple(g) for g in grid_sizes), strides, cell_list[0].device, cell_list[0].dtype)
        cached = None if tracing else self._grid_cache.get(key)
        if cached is not None:
            return cached
        anchors = []
        for (grid_h, grid_w), (stride_y, stride_x), base_anchors in zip(grid_sizes, strides, cell_list):
            device = base_anchors.device
            shifts_x = torch.arange(0, grid_w, dtype=torch.float32, device=device) * stride_x
            shifts_y = torch.arange(0, grid_h, dtype=torch.float32, device=device) * stride_y
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x = shift_x.reshape(-1)
            shift_y = shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4)).reshape(-1, 4))
        if tracing:
            return anchors
        if len(self._grid_cache) > 16:  # many image sizes at test time: keep the cache bounded
            self._grid_cache.clear()
        self._grid_cache[key] = anchors
        return anchors

    def visibility(self, anchors, image_size):
        """Tensor[A, 4], image_size (h, w) -> bool Tensor[A]: anchor within straddle_thresh of the image."""
        if self.straddle_thresh < 0:
            return torch.ones(anchors.shape[0], dtype=torch.bool, device=anchors.device)
        t = self.straddle_thresh
        image_height, image_width = image_size
        return (
            (anchors[:, 0] >= -t) & (anchors[:, 1] >= -t)
            & (anchors[:, 2] < image_width + t) & (anchors[:, 3] < image_height + t)
        )

    def forward(self, image_list, feature_maps):
        grid_sizes = [tuple(feature_map.shape[-2:]) for feature_map in feature_maps]
        if len(grid_sizes) != len(self.strides):
            raise ValueError(
                "the RPN got {} feature maps but MODEL.RPN.ANCHOR_STRIDE has {} entries {}; for FPN backbones set "
                "MODEL.RPN.USE_FPN True and one stride per map (e.g. (4, 8, 16, 32, 64))".format(
                    len(grid_sizes), len(self.strides), self.strides))
        strides = None
        if self.style == "torchvision":
            padded_h, padded_w = image_list.tensors.shape[-2:]
            strides = [(padded_h // h, padded_w // w) for h, w in grid_sizes]
        anchors_over_all_feature_maps = self.grid_anchors(grid_sizes, strides)
        anchors = []
        for image_height, image_width in image_list.image_sizes:
            anchors_in_image = []
            for anchors_per_feature_map in anchors_over_all_feature_maps:
                boxlist = BoxList(anchors_per_feature_map, (image_width, image_height), mode="xyxy")
                boxlist.add_field("visibility", self.visibility(anchors_per_feature_map, (image_height, image_width)))
                anchors_in_image.append(boxlist)
            anchors.append(anchors_in_image)
        return anchors


def make_anchor_generator(cfg):
    """AnchorGenerator from MODEL.RPN.{ANCHOR_SIZES, ASPECT_RATIOS, ANCHOR_STRIDE, STRADDLE_THRESH, USE_FPN}."""
    sizes = cfg.MODEL.RPN.ANCHOR_SIZES
    strides = cfg.MODEL.RPN.ANCHOR_STRIDE
    if cfg.MODEL.RPN.USE_FPN:
        if len(strides) != len(sizes):
            raise ValueError(
                "MODEL.RPN.USE_FPN needs len(MODEL.RPN.ANCHOR_STRIDE) == len(MODEL.RPN.ANCHOR_SIZES); got {} and {}"
                .format(tuple(strides), tuple(sizes)))
    elif len(strides) != 1:
        raise ValueError(
            "without MODEL.RPN.USE_FPN, MODEL.RPN.ANCHOR_STRIDE must have one entry; got {}".format(tuple(strides)))
    box_convention_to_remove(cfg)  # refuses an unknown MODEL.BOX_CONVENTION by name
    return AnchorGenerator(tuple(sizes), tuple(cfg.MODEL.RPN.ASPECT_RATIOS), tuple(strides),
                           cfg.MODEL.RPN.STRADDLE_THRESH, style=cfg.MODEL.BOX_CONVENTION)


def retinanet_anchor_sizes(anchor_sizes, octave, scales_per_octave):
    """RetinaNet's anchor sizes per level: each base size times octave ** (i / scales_per_octave), for
    i < scales_per_octave.

    (32, 64), octave 2, 3 scales -> ((32, 40.3, 50.8), (64, 80.6, 101.6)).
    """
    if scales_per_octave < 1:
        raise ValueError("MODEL.RETINANET.SCALES_PER_OCTAVE must be >= 1, got {}".format(scales_per_octave))
    return tuple(
        tuple(size * octave ** (i / float(scales_per_octave)) for i in range(scales_per_octave))
        for size in anchor_sizes)


def make_anchor_generator_retinanet(cfg):
    """AnchorGenerator from MODEL.RETINANET.{ANCHOR_SIZES, ASPECT_RATIOS, ANCHOR_STRIDES, STRADDLE_THRESH, OCTAVE,
    SCALES_PER_OCTAVE}: len(ASPECT_RATIOS) * SCALES_PER_OCTAVE anchors per location of each level."""
    retina = cfg.MODEL.RETINANET
    if len(retina.ANCHOR_STRIDES) != len(retina.ANCHOR_SIZES):
        raise ValueError(
            "MODEL.RETINANET.ANCHOR_STRIDES {} and MODEL.RETINANET.ANCHOR_SIZES {} need one entry per pyramid level"
            .format(tuple(retina.ANCHOR_STRIDES), tuple(retina.ANCHOR_SIZES)))
    sizes = retinanet_anchor_sizes(retina.ANCHOR_SIZES, retina.OCTAVE, retina.SCALES_PER_OCTAVE)
    return AnchorGenerator(sizes, tuple(retina.ASPECT_RATIOS), tuple(retina.ANCHOR_STRIDES),
                           retina.STRADDLE_THRESH)
