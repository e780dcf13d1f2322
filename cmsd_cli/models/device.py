"""Resolution of the `device` and `dtype` options ("auto" included) to torch objects."""

from __future__ import annotations

import torch

from cmsd_cli.models.errors import ModelLoadError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device option into a `torch.device`.

    "auto" picks CUDA when available, else MPS, else the CPU. "cuda:N" selects one GPU.
    Raises ModelLoadError for an unknown name or a device that torch does not see.
    """
    if isinstance(device, torch.device):
        return device
    name = device.strip().lower()

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    kind = name.split(":", 1)[0]
    if kind not in DEVICE_CHOICES or (":" in name and kind != "cuda"):
        raise ModelLoadError(f"Unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise ModelLoadError(f"Unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N).") from None

    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"Device {device!r} was requested but torch sees no CUDA GPU; use --device cpu or auto.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"Device {device!r} was requested but torch sees only {torch.cuda.device_count()} CUDA GPU(s); "
                "pick an index below that."
            )
    if resolved.type == "mps" and not _mps_available():
        raise ModelLoadError(f"Device {device!r} was requested but torch sees no MPS backend; use --device cpu or auto.")
    return resolved


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    """Turn a dtype option into a `torch.dtype` for weights and activations on `device`.

    "auto" is float32 on the CPU, bfloat16 on CUDA GPUs that support it (float16 on older ones), and
    float32 on MPS, where bfloat16 support is partial and float16 overflows in Gemma models.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype.strip().lower()

    if name == "auto":
        device = device if device is not None else torch.device("cpu")
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    if name not in _DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}.")
    return _DTYPES[name]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()
