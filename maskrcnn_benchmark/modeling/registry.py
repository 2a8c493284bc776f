"""Name -> builder registries through which config strings pick modules.

A config key such as ``MODEL.BACKBONE.CONV_BODY = "R-50-FPN"`` or
``MODEL.ROI_BOX_HEAD.PREDICTOR = "FPNPredictor"`` is looked up in one of the registries below.

The builders call an entry as maskrcnn-benchmark does: ``BACKBONES[name](cfg)``, ``RPN_HEADS[name](cfg,
in_channels, num_anchors)`` and ``ROI_*_FEATURE_EXTRACTORS[name](cfg, in_channels)`` / ``ROI_*_PREDICTOR[name](cfg,
in_channels)``. So a class written for maskrcnn-benchmark (``__init__(self, cfg, in_channels)``) or a builder
function can be registered as it is; the package's own classes take explicit arguments and accept that call through
``config.configurable`` (see its docstring).
"""


class Registry(dict):
    """A dict from names to modules/builders with a ``register`` decorator.

    Usage::

        BACKBONES = Registry("BACKBONES")

        @BACKBONES.register("R-50-FPN")
        def build_resnet_fpn_backbone(cfg): ...

        # or, without decorator:
        BACKBONES.register("R-50-FPN", build_resnet_fpn_backbone)

    Registering a name twice raises ``KeyError`` naming it (a silent overwrite would make the
    result depend on import order). Looking up an unknown name raises ``KeyError`` listing the
    known names, so a typo in a config file is easy to fix.
    """

    def __init__(self, name="registry", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = name

    def register(self, module_name, module=None):
        """Register ``module`` under ``module_name``; with ``module=None`` return a decorator."""
        if module is not None:
            self._register(module_name, module)
            return module

        def decorator(fn):
            self._register(module_name, fn)
            return fn

        return decorator

    def _register(self, module_name, module):
        if module_name in self:
            raise KeyError(
                "{}: '{}' is already registered (by {!r}); pick another name".format(
                    self.name, module_name, super().__getitem__(module_name)
                )
            )
        super().__setitem__(module_name, module)

    def __missing__(self, key):
        raise KeyError(
            "{}: unknown name '{}'. Known names: {}. Check the config key that selects it".format(
                self.name, key, ", ".join(sorted(map(str, self.keys()))) or "(none registered)"
            )
        )


BACKBONES = Registry("BACKBONES (MODEL.BACKBONE.CONV_BODY)")
RPN_HEADS = Registry("RPN_HEADS (MODEL.RPN.RPN_HEAD)")
ROI_BOX_FEATURE_EXTRACTORS = Registry("ROI_BOX_FEATURE_EXTRACTORS (MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR)")
ROI_BOX_PREDICTOR = Registry("ROI_BOX_PREDICTOR (MODEL.ROI_BOX_HEAD.PREDICTOR)")
ROI_MASK_FEATURE_EXTRACTORS = Registry("ROI_MASK_FEATURE_EXTRACTORS (MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR)")
ROI_MASK_PREDICTOR = Registry("ROI_MASK_PREDICTOR (MODEL.ROI_MASK_HEAD.PREDICTOR)")
ROI_KEYPOINT_FEATURE_EXTRACTORS = Registry(
    "ROI_KEYPOINT_FEATURE_EXTRACTORS (MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR)"
)
ROI_KEYPOINT_PREDICTOR = Registry("ROI_KEYPOINT_PREDICTOR (MODEL.ROI_KEYPOINT_HEAD.PREDICTOR)")
