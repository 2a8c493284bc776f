import pytest

from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.registry import Registry


def test_register_as_decorator_and_call():
    reg = Registry("THINGS")

    @reg.register("a")
    def make_a():
        return "A"

    reg.register("b", lambda: "B")
    assert reg["a"]() == "A" and reg["b"]() == "B"
    assert make_a() == "A"  # the decorator returns the function unchanged


def test_duplicate_name_is_an_error_naming_it():
    reg = Registry("THINGS")
    reg.register("dup", object())
    with pytest.raises(KeyError, match="dup"):
        reg.register("dup", object())


def test_unknown_name_lists_known_names():
    reg = Registry("THINGS")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    with pytest.raises(KeyError) as excinfo:
        reg["gamma"]
    message = str(excinfo.value)
    assert "gamma" in message and "alpha" in message and "beta" in message


def test_backbone_and_rpn_head_names_are_registered():
    import maskrcnn_benchmark.modeling.backbone  # noqa: F401 -- registers BACKBONES
    import maskrcnn_benchmark.modeling.rpn.rpn  # noqa: F401 -- registers RPN_HEADS

    for name in ("R-50-C4", "R-50-C5", "R-101-C4", "R-18-FPN", "R-34-FPN", "R-50-FPN", "R-101-FPN", "R-152-FPN"):
        assert name in registry.BACKBONES
    assert "SingleConvRPNHead" in registry.RPN_HEADS
    with pytest.raises(KeyError, match="R-50-FPN"):
        registry.BACKBONES["R-51-FPN"]
