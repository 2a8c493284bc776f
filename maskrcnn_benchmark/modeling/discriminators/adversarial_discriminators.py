"""AdversarialDiscriminators: D_b and D_m, the pooling that turns the detector's AdversarialInputs into their
real and fake batches (DiscriminatorBatches), and the scores they give them."""
import dataclasses
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

# What D_b judges (MODEL.GAN.BOX_DISC.INPUT): the paper's RoI features pooled at the boxes, or the boxes'
# coordinates normalised to the image (the abstract's "contextual regions vs box coordinates" ablation).
BOX_INPUTS = ("features", "coordinates")
# What D_m's masks multiply (MODEL.GAN.MASK_DISC.INPUT): the paper's RoI features, nothing (the masks alone), or
# the RoI's image pixels (the abstract's "feature space vs pixel space" ablation).
MASK_INPUTS = ("features", "mask", "pixels")
# How D sees real and fake (MODEL.GAN.D_BATCH): one call on the joint batch, so D's BatchNorm normalises both halves
# with the same statistics; or one call per half, each normalised by its own (the authors' code).
D_BATCHES = ("joint", "separate")


@dataclasses.dataclass
class DiscriminatorBatches:
    """What D_b and D_m judge in one iteration: each a single batch, the real inputs first, then as many fake ones
    in the same RoI order, in D's memory layout. D scores the batch in one call or each half in its own call
    (MODEL.GAN.D_BATCH); the pooled layout is the same for both. None for a disabled discriminator.

    Fields:
        box: Tensor[2P, C, R, R], RoI features pooled at the P ground-truth then the P predicted boxes (or
            Tensor[2P, 4], the boxes' coordinates normalised by the image size, MODEL.GAN.BOX_DISC.INPUT
            "coordinates").
        mask: Tensor[2M, C, R, R], the M ground-truth then the M predicted masks (probabilities) times their RoI's
            context (C channels of features; C = 1 for the masks alone, 3 for mask x pixels).
    """

    box: Optional[Tensor] = None
    mask: Optional[Tensor] = None

    def detach(self):
        """The same batches cut from the detector's graph (for D's update)."""
        return DiscriminatorBatches(*(None if batch is None else batch.detach() for batch in (self.box, self.mask)))


def _in_d_layout(batch, channels_last):
    """`batch` in the memory layout D's weights have: NHWC with MODEL.CHANNELS_LAST (an NCHW input would be reordered
    inside every conv, forward and backward), else as it is."""
    if channels_last and batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def _split_real_fake(batch):
    """The two halves of a D batch or of D's output on it: (real Tensor[K, ...], fake Tensor[K, ...])."""
    half = batch.shape[0] // 2
    return batch[:half], batch[half:]


def _masked_context(masks, context, channels_last):
    """D_m's batch: each of the 2M masks (Tensor[2M, 1, R, R], real then fake) times its RoI's context (Tensor[M, C,
    R, R], shared by the real and the fake mask of a RoI), as one product written in D's layout; element for element
    the same values as ``torch.cat([real * context, fake * context])``."""
    num_rois = context.shape[0]
    context = _in_d_layout(context, channels_last)
    # the broadcast product keeps the context's layout, so the [2, M, ...] result views as an NHWC batch for free
    product = masks.reshape((2, num_rois) + tuple(masks.shape[1:])) * context.unsqueeze(0)
    return _in_d_layout(product.reshape((2 * num_rois,) + tuple(product.shape[2:])), channels_last)


def _normalised_boxes(rois, image_sizes):
    """(x0, y0, x1, y1) of `rois` (Tensor[K, 5], batch index first) divided by their image's (w, h, w, h), the
    image sizes given as a list of (height, width)."""
    sizes = torch.as_tensor(image_sizes, dtype=rois.dtype, device=rois.device).reshape(-1, 2)
    height_width = sizes[rois[:, 0].long()]
    scale = torch.stack([height_width[:, 1], height_width[:, 0]] * 2, dim=1)
    return rois[:, 1:] / scale


def _batch_norms(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batchnorm_scale(module):
    """Mean |gamma| over all BatchNorm scales of `module` (Tensor[], detached), or None without BatchNorm: how far
    D has grown its scales, the one way (with the conv weights) it can lower the unbounded L_adv^Dm = -L_adv^Gm."""
    gammas = [m.weight.detach().abs().flatten() for m in _batch_norms(module) if m.weight is not None]
    if not gammas:
        return None
    return torch.cat(gammas).mean()


class AdversarialDiscriminators(nn.Module):
    """D_b and D_m plus the pooling that turns the detector's adversarial inputs into their inputs.

    Either discriminator may be None (the box-only / mask-only ablations).
    """

    def __init__(self, box_discriminator, mask_discriminator, box_pooler, mask_pooler, detach_features=True,
                 box_input="features", mask_input="features", channels_last=False, d_batch="joint"):
        """
        Arguments:
            box_discriminator (BoxDiscriminator, BoxCoordinateDiscriminator or None): D_b.
            mask_discriminator (MaskDiscriminator or None): D_m.
            box_pooler, mask_pooler (RoIFeaturePooler or None): how each reads the FPN maps (the mask pooler
                reads the image instead with mask_input "pixels"; unused with "mask" and box_input "coordinates").
            detach_features (bool): True pools from detached FPN maps, so the generator's adversarial losses
                move the box regression and the mask head, not the backbone (see MODEL.GAN.DETACH_FEATURES).
            box_input (str): one of BOX_INPUTS, what D_b judges.
            mask_input (str): one of MASK_INPUTS, what D_m's masks multiply.
            channels_last (bool): keep D's conv weights and inputs in NHWC memory (MODEL.CHANNELS_LAST); the same
                scores up to float rounding, faster on the CPU.
            d_batch (str): one of D_BATCHES (MODEL.GAN.D_BATCH): "joint" scores real and fake in one call of
                each discriminator, "separate" in one call per half, real first (the authors' code), so in train
                mode each half is normalised by its own BatchNorm statistics and the running statistics move twice.
        """
        super(AdversarialDiscriminators, self).__init__()
        if box_discriminator is None and mask_discriminator is None:
            raise ValueError(
                "MODEL.GAN.ENABLED needs at least one of MODEL.GAN.BOX_DISC.ENABLED, MODEL.GAN.MASK_DISC.ENABLED"
            )
        if box_input not in BOX_INPUTS:
            raise ValueError("unknown MODEL.GAN.BOX_DISC.INPUT {!r}; use one of {}".format(box_input, BOX_INPUTS))
        if mask_input not in MASK_INPUTS:
            raise ValueError("unknown MODEL.GAN.MASK_DISC.INPUT {!r}; use one of {}".format(mask_input, MASK_INPUTS))
        if d_batch not in D_BATCHES:
            raise ValueError("unknown MODEL.GAN.D_BATCH {!r}; use one of {}".format(d_batch, D_BATCHES))
        self.box_disc = box_discriminator
        self.mask_disc = mask_discriminator
        self.box_pooler = box_pooler
        self.mask_pooler = mask_pooler
        self.detach_features = detach_features
        self.box_input = box_input
        self.mask_input = mask_input
        self.channels_last = channels_last
        self.d_batch = d_batch
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def pool_inputs(self, adv_inputs):
        """Real and fake inputs of the enabled discriminators, still attached to the detector's graph, in float32
        whatever autocast region the detector ran in (outside of which this pools).

        Arguments:
            adv_inputs (AdversarialInputs): what the detector returned with ``return_adv_inputs=True``: the
                ``features`` and ``feature_strides``, the box fields when D_b is enabled and the mask fields when
                D_m is; ``image_sizes`` for box input "coordinates" and ``images`` for mask input "pixels".
        Returns:
            DiscriminatorBatches: ``box`` when D_b is enabled, ``mask`` when D_m is.
        """
        # The discriminators pool in float32: the compiled PrRoIPool CPU kernel takes float32/float64 only, and
        # the pooled values feed log-sigmoid losses. The casts are differentiable: the graph is kept.
        adv_inputs = adv_inputs.float()
        features = adv_inputs.require("features", "the discriminators")
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            return self._pool_inputs(adv_inputs)

    def _pool_inputs(self, adv_inputs):
        features = adv_inputs.features
        if self.detach_features:
            features = [level.detach() for level in features]
        # The pooling kernels read NCHW and copy any other layout (MODEL.CHANNELS_LAST) on every call: copy each
        # level once here for the up to three calls (D_b real, D_b fake, D_m) and their levels.
        features = [level.contiguous() for level in features]
        strides = adv_inputs.require("feature_strides", "the discriminators")
        inputs = DiscriminatorBatches()
        # Real and fake form ONE batch, real first, once for both updates, in D's memory layout. D_BATCH "joint"
        # scores it in one call: with BatchNorm in training mode, separate calls would each normalise their half
        # to its own statistics, hiding from D part of the difference it has to see ("separate", the authors' code).
        if self.box_disc is not None:
            # the halves are pooled apart: pooled together, the backward would compute the gradient of the
            # ground-truth boxes too, and throw it away
            real = adv_inputs.require("box_rois_gt", "the box discriminator").detach()
            fake = adv_inputs.require("box_rois_pred", "the box discriminator")
            if self.box_input == "coordinates":
                sizes = adv_inputs.require("image_sizes", "MODEL.GAN.BOX_DISC.INPUT 'coordinates'")
                inputs.box = _normalised_boxes(torch.cat([real, fake]), sizes)
            else:
                inputs.box = self.real_fake_batch(self.box_pooler(features, strides, real),
                                                     self.box_pooler(features, strides, fake))
        if self.mask_disc is not None:
            # the fake mask is the probability map, so real (0/1 targets) and fake live on the same scale
            masks = torch.cat([adv_inputs.require("mask_targets", "the mask discriminator").detach(),
                               adv_inputs.require("mask_logits", "the mask discriminator").sigmoid()])[:, None]
            rois = adv_inputs.require("mask_rois", "the mask discriminator").detach()
            if self.mask_input == "features":
                context = self.mask_pooler(features, strides, rois)
            elif self.mask_input == "pixels":
                images = adv_inputs.require("images", "MODEL.GAN.MASK_DISC.INPUT 'pixels'")
                context = self.mask_pooler([images.detach()], [1], rois)
            else:
                context = None
            inputs.mask = masks if context is None else _masked_context(masks, context, self.channels_last)
        return inputs

    def forward(self, inputs):
        """D_b and D_m score what they are given.

        Arguments:
            inputs (DiscriminatorBatches): :meth:`pool_inputs` output (``.detach()``-ed for D's update).
        Returns:
            dict: "box" -> (real Tensor[P], fake Tensor[P]) logits when D_b is on; "mask" -> (real Tensor[M, L],
            fake Tensor[M, L]) embeddings when D_m is on; in float32 whatever autocast ran D in (the losses take
            logs of sigmoids).
        """
        scores = {}
        for name, discriminator in (("box", self.box_disc), ("mask", self.mask_disc)):
            batch = getattr(inputs, name)
            if batch is None:
                continue
            if discriminator is None:
                raise ValueError("the discriminators were given {!r} inputs, but the {} discriminator is disabled "
                                 "(MODEL.GAN.{}_DISC.ENABLED)".format(name, name, name.upper()))
            scores[name] = tuple(half.float() for half in self._score(discriminator, batch))
        return scores

    def _score(self, discriminator, batch):
        """(real, fake) outputs of `discriminator` on the joint `batch`, by one call or one call per half."""
        if self.d_batch == "joint":
            return _split_real_fake(discriminator(batch))
        real, fake = _split_real_fake(batch)
        if real.shape[0] == 1 and discriminator.training and _batch_norms(discriminator):
            # BatchNorm cannot normalise one RoI by its own statistics (PyTorch refuses a single value per channel
            # in training, as D_m's last 1 x 1 layer and the coordinate MLP's layers would see; the authors' code
            # stops there): this call scores the two RoIs as one batch instead of ending the run
            warnings.warn("MODEL.GAN.D_BATCH 'separate': an iteration with a single real and a single fake RoI "
                          "was scored as one batch of two (BatchNorm needs more than one value per channel)")
            return _split_real_fake(discriminator(batch))
        return discriminator(real), discriminator(fake)

    def real_fake_batch(self, real, fake):
        """One D batch (real first) in D's memory layout from real and fake inputs of the same shape."""
        if real.shape != fake.shape:
            raise ValueError("the real and fake discriminator inputs must have the same shape (one real per fake "
                             "RoI), got {} and {}".format(tuple(real.shape), tuple(fake.shape)))
        if self.channels_last and real.dim() == 4:
            # each half copied straight into an NHWC batch: one pass instead of a cat and a reorder
            batch = torch.empty((2 * real.shape[0],) + tuple(real.shape[1:]), dtype=real.dtype, device=real.device,
                                memory_format=torch.channels_last)
            batch[: real.shape[0]] = real
            batch[real.shape[0]:] = fake
            return batch
        return torch.cat([real, fake])

    def scale_stats(self):
        """Scale of each discriminator to log: {"d_box_bn_gamma", "d_mask_bn_gamma"} (Tensor[], mean |gamma| of
        its BatchNorms), for the enabled discriminators that have BatchNorm."""
        stats = {}
        for name, disc in (("d_box_bn_gamma", self.box_disc), ("d_mask_bn_gamma", self.mask_disc)):
            scale = batchnorm_scale(disc) if disc is not None else None
            if scale is not None:
                stats[name] = scale
        return stats
