"""Native mixed precision: torch.autocast plus one GradScaler per optimizer for training (DTYPE), autocast alone
for inference (TEST.DTYPE)."""
import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class MixedPrecision(object):
    """Which autocast region the forward passes run in, and whether losses are scaled before backward.

    float16 has a narrow exponent range: small gradients underflow to zero, so its losses are multiplied by a
    dynamic factor (torch.amp.GradScaler) that is divided out before the optimizer step, and steps whose
    gradients overflowed are skipped by the scaler. bfloat16 has float32's exponent range and needs no scaling.
    """

    def __init__(self, dtype="float32", device_type="cpu", key="DTYPE"):
        """
        Arguments:
            dtype (str): "float32" (autocast off), "float16" (CUDA only) or "bfloat16" (CUDA and CPU).
            device_type (str): "cpu" or "cuda", the device the model runs on.
            key (str): the config key ``dtype`` came from, named in error messages.
        """
        if dtype not in DTYPES:
            raise ValueError("{} must be one of {}, got {!r}".format(key, sorted(DTYPES), dtype))
        if dtype == "float16" and device_type != "cuda":
            raise ValueError("{} 'float16' needs a CUDA device (MODEL.DEVICE is {!r}); use {} 'bfloat16' "
                             "for mixed precision on the CPU".format(key, device_type, key))
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]
        self.device_type = device_type
        self.enabled = dtype != "float32"
        self.scales_loss = dtype == "float16"

    def autocast(self):
        """Context manager for the forward passes (a no-op for float32)."""
        return torch.autocast(device_type=self.device_type, dtype=self.dtype, enabled=self.enabled)

    def grad_scaler(self):
        """A new GradScaler for one optimizer; disabled (scale 1, every call a pass-through) unless float16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_loss)

    def __repr__(self):
        return "MixedPrecision(dtype={}, device_type={})".format(self.dtype_name, self.device_type)


def build_mixed_precision(cfg, device):
    """MixedPrecision from cfg.DTYPE for the torch.device the model runs on."""
    return MixedPrecision(cfg.DTYPE, torch.device(device).type)


def build_inference_precision(cfg, device):
    """MixedPrecision of inference, from cfg.TEST.DTYPE, for the torch.device the model runs on."""
    return MixedPrecision(cfg.TEST.DTYPE, torch.device(device).type, key="TEST.DTYPE")


def detections_to_float32(boxlist):
    """The BoxList with its boxes and floating-point fields in float32 (autocast leaves some in bfloat16/float16,
    which the evaluators and mask pasting do not expect); other fields unchanged. Returns a new BoxList."""
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    result = BoxList(boxlist.bbox.float(), boxlist.size, mode=boxlist.mode)
    for name in boxlist.fields():
        value = boxlist.get_field(name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.float()
        result.add_field(name, value)
    return result


def backward_and_step(loss, optimizer, scaler=None):
    """zero_grad, backward of ``loss`` (scaled when ``scaler`` is enabled), optimizer step, scaler update.

    Arguments:
        loss (Tensor[]): the objective of ``optimizer``'s parameters.
        optimizer (Optimizer)
        scaler (GradScaler or None): this optimizer's own scaler (each optimizer needs its own: the scale
            tracks overflows of the gradients it steps).
    """
    optimizer.zero_grad()
    if scaler is None or not scaler.is_enabled():
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
