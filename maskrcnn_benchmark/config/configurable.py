"""One constructor, two ways in: explicit arguments, or a config plus maskrcnn-benchmark's positional arguments.

maskrcnn-benchmark builds every registry entry as ``entry(cfg, *args)``, e.g.
``registry.ROI_BOX_PREDICTOR[name](cfg, in_channels)`` or ``registry.RPN_HEADS[name](cfg, in_channels,
num_anchors)``, and its users register their own classes with that signature. The modules of this package take
explicit arguments instead (``FPNPredictor(in_channels, num_classes)``). ``configurable`` lets the same class be
called both ways, so our builders call every entry maskrcnn-benchmark's way and a user's class written for
maskrcnn-benchmark is built unchanged. (The pattern is detectron2's ``config.configurable``.)
"""
import functools
import inspect

from yacs.config import CfgNode

__all__ = ["configurable"]


def _called_with_cfg(args, kwargs):
    return bool(args) and isinstance(args[0], CfgNode) or isinstance(kwargs.get("cfg"), CfgNode)


def configurable(init_func):
    """Decorate ``__init__`` so the class also accepts ``(cfg, *args, **kwargs)``, read by its ``from_config``.

    The class defines a classmethod ``from_config(cls, cfg, *args, **kwargs)`` that reads the config keys it needs
    and returns a dict of the explicit ``__init__`` arguments. Calling the class with a config node as first
    argument (or as ``cfg=``) runs ``__init__(**cls.from_config(cfg, *args, **kwargs))``; any other call goes to
    ``__init__`` unchanged. Use it on every class registered in ``modeling/registry.py``, with ``from_config``
    taking the positional arguments maskrcnn-benchmark passes to that registry:

    ==============================================  ==========================================
    registry                                        call made by the builders
    ==============================================  ==========================================
    BACKBONES                                       ``entry(cfg)``
    RPN_HEADS                                       ``entry(cfg, in_channels, num_anchors)``
    ROI_{BOX,MASK,KEYPOINT}_FEATURE_EXTRACTORS      ``entry(cfg, in_channels)``
    ROI_{BOX,MASK,KEYPOINT}_PREDICTOR               ``entry(cfg, in_channels)``
    ==============================================  ==========================================

    Example::

        @registry.ROI_BOX_PREDICTOR.register("MyPredictor")
        class MyPredictor(nn.Module):
            @configurable
            def __init__(self, in_channels, num_classes):
                super().__init__()
                self.cls_score = nn.Linear(in_channels, num_classes)

            @classmethod
            def from_config(cls, cfg, in_channels):
                return {"in_channels": in_channels, "num_classes": cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES}

        MyPredictor(1024, 81)                 # explicit arguments
        MyPredictor(cfg, in_channels=1024)    # maskrcnn-benchmark's way, as make_roi_box_predictor calls it

    A subclass inherits both ways; it overrides ``from_config`` when it reads other keys. A class written with
    maskrcnn-benchmark's own signature (``__init__(self, cfg, in_channels)``) needs no decorator: the builders call
    it the same way. Builder functions ``f(cfg, *args)`` may be registered too (backbones are).
    """
    if init_func.__name__ != "__init__":
        raise TypeError("@configurable decorates __init__, got {}".format(init_func.__qualname__))

    @functools.wraps(init_func)
    def wrapped(self, *args, **kwargs):
        if not _called_with_cfg(args, kwargs):
            init_func(self, *args, **kwargs)
            return
        cls = type(self)
        from_config = getattr(cls, "from_config", None)
        if from_config is None or not inspect.ismethod(from_config):
            raise TypeError("{} was given a config but has no classmethod from_config(cls, cfg, ...) to read it; "
                            "add one that returns the __init__ arguments".format(cls.__name__))
        explicit = from_config(*args, **kwargs)
        if not isinstance(explicit, dict):
            raise TypeError("{}.from_config must return a dict of __init__ arguments, got {}".format(
                cls.__name__, type(explicit).__name__))
        init_func(self, **explicit)

    return wrapped
