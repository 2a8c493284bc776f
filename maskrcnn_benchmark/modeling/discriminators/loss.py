"""Adversarial losses of Le et al., "Instance Semantic Segmentation Benefits from Generative Adversarial Networks".

Pure functions of discriminator outputs. The detector (the generator G) is trained with Eq. (2),
    L_G = L_cls + L_bbox + L_mask + w_b * L_adv^Gb + w_m * L_adv^Gm,
and the discriminators with Eq. (3),
    L_D = L_adv^Db + L_adv^Dm.
The box discriminator D_b returns logits; the sigmoid that turns them into the probabilities D_b(.) of the
paper is applied here through logsigmoid, so log D_b and log(1 - D_b) stay finite for large logits.
An empty batch (no positive RoI in the images) gives a zero loss that is still connected to the graph, so
``backward`` works and the parameters get zero gradients instead of NaN.
"""
import torch
import torch.nn.functional as F


def _check_pair(real, fake, name):
    if real.shape != fake.shape:
        raise ValueError(
            "{}: the real and fake discriminator outputs must have the same shape (one real per fake RoI), "
            "got {} and {}".format(name, tuple(real.shape), tuple(fake.shape))
        )


def box_adv_generator_loss(fake_logits):
    """Generator side of the box adversarial loss, Eq. (4): L_adv^Gb = mean(-log D_b(fake)).

    Arguments:
        fake_logits (Tensor[P]): D_b's logits on the RoI features pooled at the predicted boxes.
    Returns:
        Tensor[] (scalar): the loss, 0 when P == 0.
    """
    if fake_logits.numel() == 0:
        return fake_logits.sum() * 0
    return -F.logsigmoid(fake_logits).mean()


def box_adv_discriminator_loss(real_logits, fake_logits):
    """Discriminator side of the box adversarial loss, Eq. (5):
    L_adv^Db = mean(-(log D_b(real) + log(1 - D_b(fake)))).

    Arguments:
        real_logits (Tensor[P]): D_b's logits on the RoI features pooled at the ground-truth boxes.
        fake_logits (Tensor[P]): D_b's logits on the RoI features pooled at the predicted boxes (same order).
    Returns:
        Tensor[] (scalar): the loss, 0 when P == 0.
    """
    _check_pair(real_logits, fake_logits, "box_adv_discriminator_loss")
    if real_logits.numel() == 0:
        return (real_logits.sum() + fake_logits.sum()) * 0
    # log(1 - sigmoid(x)) == logsigmoid(-x)
    return -(F.logsigmoid(real_logits) + F.logsigmoid(-fake_logits)).mean()


def mask_adv_generator_loss(real_embedding, fake_embedding):
    """Generator side of the mask adversarial loss, Eq. (6): L_adv^Gm = mean |D_m(real) - D_m(fake)|_1.

    The L1 distance between D_m's multi-layer features of the real (ground-truth mask x RoI features) and the
    fake (predicted mask x RoI features) input is averaged over the RoIs and over the vector's elements, as in
    the authors' code (the MASK_WEIGHT default 0.5 is tuned for this normalisation).

    Arguments:
        real_embedding (Tensor[M, L]): D_m's concatenated layer outputs for the real inputs.
        fake_embedding (Tensor[M, L]): the same for the fake inputs, in the same RoI order.
    Returns:
        Tensor[] (scalar): the loss, 0 when M == 0.
    """
    _check_pair(real_embedding, fake_embedding, "mask_adv_generator_loss")
    if real_embedding.numel() == 0:
        return (real_embedding.sum() + fake_embedding.sum()) * 0
    return (real_embedding - fake_embedding).abs().mean()


def mask_adv_discriminator_loss(real_embedding, fake_embedding):
    """Discriminator side of the mask adversarial loss, Eq. (6): L_adv^Dm = -L_adv^Gm.

    D_m maximises the distance the generator minimises (a min-max game on the multi-scale L1 distance).

    Arguments:
        real_embedding (Tensor[M, L]), fake_embedding (Tensor[M, L]): as in ``mask_adv_generator_loss``.
    Returns:
        Tensor[] (scalar): the loss, 0 when M == 0.
    """
    return -mask_adv_generator_loss(real_embedding, fake_embedding)
