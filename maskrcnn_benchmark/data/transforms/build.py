"""Build the train / test transform pipeline from cfg.INPUT."""
from . import transforms as T


def build_transforms(cfg, is_train=True):
    """Resize -> flips -> colour jitter -> ToTensor -> Normalize for training; Resize -> ToTensor -> Normalize for test;
    with INPUT.HIGH_BIT_DEPTH "percentiles", MapHighBitDepth first (it only changes images of more than 8 bits).

    Reads INPUT.{MIN,MAX}_SIZE_{TRAIN,TEST}, HORIZONTAL_FLIP_PROB_TRAIN, VERTICAL_FLIP_PROB_TRAIN, BRIGHTNESS,
    CONTRAST, SATURATION, HUE, PIXEL_MEAN, PIXEL_STD, TO_BGR255, HIGH_BIT_DEPTH, HIGH_BIT_DEPTH_PERCENTILES,
    RESIZE_STYLE (torchvision's: ToTensor -> colour jitter -> Normalize -> Resize -> flips, its own order).
    """
    if is_train:
        min_size, max_size = cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN
        horizontal_prob = cfg.INPUT.HORIZONTAL_FLIP_PROB_TRAIN
        vertical_prob = cfg.INPUT.VERTICAL_FLIP_PROB_TRAIN
        jitter = (cfg.INPUT.BRIGHTNESS, cfg.INPUT.CONTRAST, cfg.INPUT.SATURATION, cfg.INPUT.HUE)
    else:
        min_size, max_size = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
        horizontal_prob = vertical_prob = 0.0
        jitter = (0.0, 0.0, 0.0, 0.0)

    resize = T.Resize(min_size, max_size, cfg.INPUT.RESIZE_STYLE)
    flips = []
    if horizontal_prob > 0:
        flips.append(T.RandomHorizontalFlip(horizontal_prob))
    if vertical_prob > 0:
        flips.append(T.RandomVerticalFlip(vertical_prob))
    colour = [T.ColorJitter(*jitter)] if any(v > 0 for v in jitter) else []
    normalize = T.Normalize(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD, cfg.INPUT.TO_BGR255)
    # "full_range" is what read_image already returns: no step, so default pipelines are unchanged
    high_bit = T.MapHighBitDepth(cfg.INPUT.HIGH_BIT_DEPTH, cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES)
    first = [high_bit] if high_bit.rule != "full_range" else []
    if cfg.INPUT.RESIZE_STYLE == "torchvision":
        # torchvision's GeneralizedRCNNTransform normalises the float image, then resizes it
        return T.Compose(first + [T.ToTensor()] + colour + [normalize, resize] + flips)
    return T.Compose(first + [resize] + flips + colour + [T.ToTensor(), normalize])
