"""Box discriminator D_b: tells RoI features pooled at ground-truth boxes from those pooled at predicted boxes."""
from torch import nn

# LeakyReLU slope and DCGAN's N(0, 0.02) initialisation: the usual choice for GAN discriminators, and the
# authors' discriminators use the same slope.
LEAKY_SLOPE = 0.2
INIT_STD = 0.02


def conv_plan(resolution, num_convs):
    """Kernel, stride and padding of each conv of an encoder that brings ``resolution`` down to 1x1.

    The first ``num_convs - 1`` convs halve the resolution (kernel 4 on even sizes, kernel 3 on odd sizes,
    stride 2, padding 1, so 28 -> 14 -> 7 -> 4 -> 2); the last conv has a kernel as large as what is left,
    so it sees the whole RoI and returns 1x1.

    Arguments:
        resolution (int): input height = width.
        num_convs (int): number of conv layers (>= 1).
    Returns:
        list[tuple[int, int, int]]: (kernel, stride, padding) per conv, and the output sizes list[int].
    """
    if num_convs < 1:
        raise ValueError("a discriminator needs at least one conv layer, got num_convs={}".format(num_convs))
    if resolution < 1:
        raise ValueError("discriminator input resolution must be >= 1, got {}".format(resolution))
    plan, sizes, size = [], [], resolution
    for _ in range(num_convs - 1):
        kernel = 4 if size % 2 == 0 else 3
        plan.append((kernel, 2, 1))
        size = (size + 2 - kernel) // 2 + 1
        sizes.append(size)
    plan.append((size, 1, 0))
    sizes.append(1)
    return plan, sizes


# MODEL.GAN.D_INIT: how D's weights are drawn
D_INITS = ("dcgan", "he_fan_out")
# the authors' BatchNorm scales are drawn from N(1, BN_SCALE_STD) with "he_fan_out"
BN_SCALE_STD = 0.02


def check_d_init(init):
    """Refuses an unknown MODEL.GAN.D_INIT by name."""
    if init not in D_INITS:
        raise ValueError("unknown MODEL.GAN.D_INIT {!r}; use one of {}".format(init, D_INITS))


def init_discriminator_weights(module, init="dcgan"):
    """Draws the weights of every conv, linear and BatchNorm layer of `module` in place (MODEL.GAN.D_INIT).

    "dcgan": conv and linear weights N(0, 0.02), BatchNorm scales 1.
    "he_fan_out" (the authors' code: gan_mrcnn.py, the init loops of MaskDiscriminator and BoxDiscriminator, lines
    550-559 and 614-623 of github.com/quangle2110/GAN_Mask-RCNN):
    conv weights N(0, 2 / (k_h * k_w * out_channels)), i.e. He's normal init over the fan-out, linear weights by
    the same rule (N(0, 2 / out_features)); BatchNorm scales N(1, 0.02).
    Both: biases and BatchNorm shifts 0.
    """
    check_d_init(init)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "dcgan":
                nn.init.normal_(m.weight, std=INIT_STD)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if init == "dcgan":
                nn.init.ones_(m.weight)
            else:
                nn.init.normal_(m.weight, mean=1.0, std=BN_SCALE_STD)
            nn.init.zeros_(m.bias)


def hidden_norm(norm_layer, width, index, batch_norm, first_conv_norm):
    """The normalisation after hidden layer `index` of a discriminator: ``norm_layer(width)`` (BatchNorm2d or
    BatchNorm1d), or nn.Identity when ``batch_norm`` is off (spectral normalisation) or when this is the first layer
    and ``first_conv_norm`` is off. The Identity keeps the index of every later layer, so checkpoints keep their
    keys."""
    if batch_norm and (index > 0 or first_conv_norm):
        return norm_layer(width)
    return nn.Identity()


class BoxDiscriminator(nn.Module):
    """D_b of the paper: a conv encoder from a K x C x R x R RoI feature map to one real/fake logit per RoI.

    ``num_convs - 1`` blocks of conv -> BatchNorm -> LeakyReLU halve the resolution (28 -> 14 -> 7 -> 4 -> 2
    for five convs) while the width doubles from ``channels`` (capped at 8x); the last conv covers what is
    left and outputs the score. That last conv has no BatchNorm / LeakyReLU: BatchNorm would force the batch
    of scores to zero mean, i.e. make D_b call half of every batch fake whatever it sees.
    The logit is returned (no sigmoid): the losses apply logsigmoid, which is stable.

    ``first_conv_norm=False`` (the authors' convblock1, gan_mrcnn.py lines 577-582) drops the first block's
    BatchNorm: conv -> LeakyReLU. The module keeps an nn.Identity in its place, so ``layers`` has the same indices
    either way.
    """

    def __init__(self, in_channels, channels=64, num_convs=5, resolution=28, batch_norm=True, first_conv_norm=True,
                 init="dcgan"):
        """
        Arguments:
            in_channels (int): channels of the pooled RoI features (the FPN's 256).
            channels (int): width of the first conv; doubles with each further block up to 8 * channels.
            num_convs (int): conv layers including the scoring one (the paper studies 3, 4, 5).
            resolution (int): side of the square RoI features (28).
            batch_norm (bool): BatchNorm after each hidden conv (False with spectral normalisation).
            first_conv_norm (bool): with ``batch_norm``, False leaves the first conv without BatchNorm (and, as
                every conv of a BatchNorm discriminator, without bias), MODEL.GAN.FIRST_CONV_NORM. Without
                ``batch_norm`` there is no BatchNorm to drop: it changes nothing, every conv keeps its bias.
            init (str): how the weights are drawn, one of D_INITS (MODEL.GAN.D_INIT, see init_discriminator_weights).
        """
        super(BoxDiscriminator, self).__init__()
        plan, _ = conv_plan(resolution, num_convs)
        layers, width_in = [], in_channels
        for index, (kernel, stride, padding) in enumerate(plan[:-1]):
            width_out = channels * 2 ** min(index, 3)
            layers += [
                # no conv bias with BatchNorm: its shift right after makes it redundant (and the authors' first conv,
                # without BatchNorm, has none either)
                nn.Conv2d(width_in, width_out, kernel, stride, padding, bias=not batch_norm),
                hidden_norm(nn.BatchNorm2d, width_out, index, batch_norm, first_conv_norm),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
            width_in = width_out
        kernel, stride, padding = plan[-1]
        layers.append(nn.Conv2d(width_in, 1, kernel, stride, padding))
        self.layers = nn.Sequential(*layers)
        self.resolution = resolution
        # drawn once every layer exists, so that the rule reaches all of them
        init_discriminator_weights(self, init)

    def forward(self, x):
        """
        Arguments:
            x (Tensor[K, in_channels, R, R]): RoI features (K may be 0).
        Returns:
            Tensor[K]: real/fake logits (sigmoid gives the probability that the box is a ground-truth box).
        """
        if x.dim() != 4 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                "BoxDiscriminator expects RoI features K x C x {0} x {0}, got {1}".format(
                    self.resolution, tuple(x.shape)
                )
            )
        return self.layers(x).reshape(x.shape[0])


class BoxCoordinateDiscriminator(nn.Module):
    """An ablation of D_b that judges box coordinates instead of pooled regions (MODEL.GAN.BOX_DISC.INPUT
    "coordinates"): the abstract claims that judging the contextual region works better than judging the box's
    coordinates, and this is the other side of that comparison.

    An MLP over (x0, y0, x1, y1) normalised by the image's width and height: ``num_layers - 1`` hidden layers
    Linear -> BatchNorm -> LeakyReLU of width ``channels`` (doubling, capped at 8x, as D_b's convs), then a Linear
    to one logit. The gradient reaches the predicted coordinates directly, so no box-differentiable pooling is needed.
    ``first_conv_norm=False`` drops the first hidden layer's BatchNorm (an nn.Identity keeps the indices).
    """

    def __init__(self, channels=64, num_layers=5, batch_norm=True, first_conv_norm=True, init="dcgan"):
        """
        Arguments:
            channels (int): width of the first hidden layer.
            num_layers (int): linear layers including the scoring one (>= 1).
            batch_norm (bool): BatchNorm after each hidden layer (False with spectral normalisation).
            first_conv_norm (bool): with ``batch_norm``, False leaves the first Linear without BatchNorm and bias
                (MODEL.GAN.FIRST_CONV_NORM); without ``batch_norm`` it changes nothing.
            init (str): one of D_INITS (MODEL.GAN.D_INIT); "he_fan_out" draws each Linear's weights from
                N(0, 2 / out_features), the authors' conv rule with a 1 x 1 kernel.
        """
        super(BoxCoordinateDiscriminator, self).__init__()
        if num_layers < 1:
            raise ValueError("a discriminator needs at least one layer, got num_layers={}".format(num_layers))
        layers, width_in = [], 4
        for index in range(num_layers - 1):
            width_out = channels * 2 ** min(index, 3)
            layers += [nn.Linear(width_in, width_out, bias=not batch_norm),
                       hidden_norm(nn.BatchNorm1d, width_out, index, batch_norm, first_conv_norm),
                       nn.LeakyReLU(LEAKY_SLOPE)]
            width_in = width_out
        layers.append(nn.Linear(width_in, 1))
        self.layers = nn.Sequential(*layers)
        init_discriminator_weights(self, init)

    def forward(self, x):
        """
        Arguments:
            x (Tensor[K, 4]): boxes (x0, y0, x1, y1) divided by their image's (width, height, width, height).
        Returns:
            Tensor[K]: real/fake logits.
        """
        if x.dim() != 2 or x.shape[1] != 4:
            raise ValueError("BoxCoordinateDiscriminator expects K x 4 normalised boxes, got {}".format(
                tuple(x.shape)))
        return self.layers(x).reshape(x.shape[0])
