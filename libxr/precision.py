"""The arithmetic a model's forward pass runs in: xr-train's and xr-predict's ``--precision``.

``auto`` is what torchvision's references do with ``--amp``: float16 autocast, with a gradient
scaler, on CUDA; float32 on the CPU. ``bf16`` autocasts to bfloat16 on either, with no scaler
(bfloat16 has float32's range). On a CPU with bfloat16 in hardware (AMX or AVX512-BF16: Xeon
Sapphire Rapids and later, AMD Zen 4 and later) an xr-train epoch at 128 px measured 1.7x
(VGG-5) and 2.0x (ResNet-18) faster than float32 (two cores; ``make bench``); at 32 px it was
slower, the work too small for the casts to pay. bfloat16 keeps 8 bits of mantissa, so a run's
numbers are not float32's within float noise: the CPU's default stays float32, and bfloat16 is
asked for. Without the hardware it is emulated, slower than the default, and :func:`check` says
so. ``fp32`` turns autocast off everywhere, CUDA included.

Importable without torch, so that a command's ``--help`` lists the choices without loading it.
"""

PRECISIONS = ("auto", "fp32", "bf16")

_NATIVE_FLAGS = {"amx_bf16", "avx512_bf16", "bf16"}
"""/proc/cpuinfo flags of bfloat16 arithmetic in hardware (x86: AMX, AVX512-BF16; Arm: BF16)."""


def autocast_dtype(device, precision):
    """The dtype ``precision`` autocasts to on ``device`` (a torch.device), or None for float32."""
    import torch

    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda":
        return torch.float16
    return None


def autocast(device, precision):
    """The autocast context of one forward pass."""
    import torch

    dtype = autocast_dtype(device, precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def needs_scaler(device, precision):
    """Whether gradients need scaling: float16's range, not bfloat16's."""
    import torch

    return autocast_dtype(device, precision) == torch.float16


def native_bf16(device, cpuinfo="/proc/cpuinfo"):
    """Whether ``device`` does bfloat16 arithmetic in hardware; None when this cannot be told."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8       # Ampere and later
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = {word for line in f if line.startswith(("flags", "Features")) for word in line.split()}
    except OSError:
        return None
    return bool(flags & _NATIVE_FLAGS)


def check(device, precision, warn):
    """Warn when ``--precision bf16`` will be emulated: slower than the default, not faster."""
    if precision == "bf16" and native_bf16(device) is False:
        if device.type == "cuda":
            warn(f"--precision bf16: {device} has no bfloat16 units (compute capability below 8.0), so bfloat16 is "
                 "emulated and slower than --precision auto's float16 there")
        else:
            warn("--precision bf16: this CPU has no bfloat16 arithmetic (AMX, AVX512-BF16 or Arm's BF16), so "
                 "bfloat16 is emulated and slower than --precision auto's float32 here")
