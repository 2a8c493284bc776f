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


def discriminator_losses(scores, weights=None):
    """D's side, Eq. (3): loss_box_disc = L_adv^Db (Eq. (5)), loss_mask_disc = L_adv^Dm (Eq. (6)).

    Arguments:
        scores (dict): ``AdversarialDiscriminators`` output on detached inputs.
        weights (dict or None): {"loss_box_disc": w_b, "loss_mask_disc": w_m} to weight the terms as the authors'
            code does (MODEL.GAN.D_LOSS_WEIGHTED); None: unweighted, as Eq. (3).
    Returns:
        (dict[str, Tensor] losses as they enter L_D, dict[str, Tensor[]] statistics: mean D_b probability on real /
        fake boxes, mean L2 norm of D_m's embedding of the real inputs, a measure of D_m's scale)
    """
    losses, stats = {}, {}
    if "box" in scores:
        real, fake = scores["box"]
        losses["loss_box_disc"] = box_adv_discriminator_loss(real, fake)
        if real.numel() > 0:
            stats["d_box_real_prob"] = real.detach().sigmoid().mean()
            stats["d_box_fake_prob"] = fake.detach().sigmoid().mean()
    if "mask" in scores:
        real, fake = scores["mask"]
        losses["loss_mask_disc"] = mask_adv_discriminator_loss(real, fake)
        if real.shape[0] > 0:
            stats["d_mask_real_embedding_norm"] = real.detach().norm(dim=1).mean()
    if weights is not None:
        losses = {k: weights[k] * v for k, v in losses.items()}
    return losses, stats


def generator_adversarial_losses(scores):
    """G's adversarial terms: loss_box_adv = L_adv^Gb (Eq. (4)), loss_mask_adv = L_adv^Gm (Eq. (6)).

    Arguments:
        scores (dict): ``AdversarialDiscriminators`` output of frozen discriminators on inputs attached to G's graph.
    Returns:
        dict[str, Tensor]: the unweighted losses.
    """
    losses = {}
    if "box" in scores:
        losses["loss_box_adv"] = box_adv_generator_loss(scores["box"][1])
    if "mask" in scores:
        losses["loss_mask_adv"] = mask_adv_generator_loss(*scores["mask"])
    return losses
