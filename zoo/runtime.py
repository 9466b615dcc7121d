"""Where and how the maths runs: device, precision and memory layout, resolved once into one object.

Training, inference, evaluation and the benchmarks all take a :class:`Runtime`; none of them re-derives the
precision rules. ``Runtime.resolve("auto", "auto")`` picks:

* **device**: CUDA when available, else the CPU (an explicit device that is missing or malformed is a one-line
  :class:`~zoo.errors.SpecError`);
* **precision**: bf16 autocast on CPUs with avx512_bf16 or AMX and on CUDA GPUs with bf16 tensor cores (compute
  capability >= 8); fp16 autocast with gradient scaling on older GPUs (the seed's P100); fp32 elsewhere. An
  explicit choice the device cannot run is a SpecError. fp16 on a CPU works but is emulated (measured ~100x
  slower than bf16 on a Xeon with AMX): it is there so that CPU tests exercise the GradScaler path;
* **memory format**: channels_last whenever autocast runs on a CPU or CUDA (oneDNN's bf16 convolutions and
  tensor cores want NHWC); fp32 on a CPU stays NCHW, measured faster there.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from zoo.errors import SpecError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matrix maths natively (avx512_bf16 or AMX), so bf16 autocast pays off."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def cuda_has_fast_bf16(device: torch.device) -> bool:
    """bf16 tensor cores: compute capability 8.0 or later (torch.cuda.is_bf16_supported() is also true on
    older GPUs, where bf16 is emulated and slow, e.g. the seed's P100)."""
    return torch.cuda.get_device_capability(device)[0] >= 8 and torch.cuda.is_bf16_supported()


def select_device(name: str | torch.device) -> torch.device:
    """'auto' -> CUDA if available, else CPU. A device that does not exist here, or is not a device name at
    all (``--device bogus``), is a one-line SpecError."""
    from zoo.text import shown

    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError, TypeError):
            raise SpecError(f"{shown(name)} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpecError(f"device {shown(str(device))} asked for but CUDA is not available here: use --device "
                            f"cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SpecError(f"device {shown(str(device))} does not exist: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise SpecError("device 'mps' asked for but it is not available here: use --device cpu or auto")
    elif device.type != "cpu":
        raise SpecError(f"device {shown(str(device))} is not supported by zoo: use auto, cpu, cuda or cuda:N")
    elif device.index not in (None, 0):  # torch names every CPU cpu:N, but there is one CPU device
        raise SpecError(f"device {shown(str(device))} does not exist: the CPU is one device, cpu (or cpu:0)")
    return device


def resolve_precision(device: torch.device, precision: str) -> tuple[str, str]:
    """(precision used: fp32, bf16 or fp16, why) for a precision setting on a device (rules: module docstring)."""
    if precision not in PRECISIONS:
        raise SpecError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cpu":
            if cpu_has_fast_bf16():
                return "bf16", "auto: this CPU has avx512_bf16/AMX, so bf16 autocast"
            return "fp32", "auto: this CPU has no avx512_bf16 or AMX (bf16 would be emulated and slower), so fp32"
        if device.type == "cuda":
            if cuda_has_fast_bf16(device):
                return "bf16", "auto: this GPU has bf16 tensor cores, so bf16 autocast"
            return "fp16", "auto: this GPU has no fast bf16, so fp16 autocast with gradient scaling"
        return "fp32", f"auto: no mixed precision on {device.type}, so fp32"
    if precision == "fp16" and device.type not in ("cuda", "cpu"):
        raise SpecError(f"precision fp16 needs a CUDA device or the CPU, not {device.type}; use fp32 or auto")
    if precision == "fp16" and device.type == "cpu":
        return "fp16", "fp16 as asked; on a CPU it is emulated and very slow: use auto or bf16 to train"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SpecError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16 or auto")
    return precision, f"{precision} as asked"


_OOM_WORDS = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception means the memory ran out: torch.OutOfMemoryError (CUDA), MemoryError, or the CPU
    allocator's RuntimeError."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _OOM_WORDS)


@dataclass(frozen=True)
class Runtime:
    """A device and the precision resolved for it, with what follows from them (autocast, layout, scaler)."""

    device: torch.device
    precision: str  # fp32, bf16 or fp16: never "auto"
    why: str  # why this precision (printed once in the log)

    @classmethod
    def resolve(cls, device: str | torch.device = "auto", precision: str = "auto") -> "Runtime":
        dev = select_device(device)
        used, why = resolve_precision(dev, precision)
        return cls(dev, used, why)

    @property
    def dtype(self) -> torch.dtype:
        """The autocast compute dtype (float32 when there is no autocast)."""
        return _DTYPES.get(self.precision, torch.float32)

    @property
    def memory_format(self) -> torch.memory_format:
        if self.precision != "fp32" and self.device.type in ("cpu", "cuda"):
            return torch.channels_last
        return torch.contiguous_format

    @property
    def layout(self) -> str:
        return "channels_last" if self.memory_format is torch.channels_last else "NCHW"

    def autocast(self):
        """The autocast context of this precision (fp32: none)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler: enabled for fp16, a disabled pass-through (same code path) otherwise."""
        kind = self.device.type if self.device.type in ("cuda", "cpu") else "cpu"
        return torch.amp.GradScaler(kind, enabled=self.precision == "fp16")

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch moved to the device in this runtime's memory layout."""
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        """Move a net to the device in this runtime's memory layout, in place (optimizers keep its parameters)."""
        return net.to(self.device, memory_format=self.memory_format)

    def describe(self) -> str:
        return f"{self.device}, precision {self.precision} ({self.why}); {self.layout} layout"


def resolve_compile(setting: str, device: torch.device) -> tuple[bool, str]:
    """Whether to torch.compile the nets for ``setting`` (auto / on / off) on ``device``, and why (for the log).

    ``auto`` is on with CUDA, where inductor's fused kernels and fewer launches pay within minutes, and off on a
    CPU, where compiling the seed's U-Net (forward, backward, the discriminator's two modes) costs about a minute
    before the first step: worth it for runs of hours, chosen there with ``compile = "on"``.
    """
    if setting == "on":
        return True, "compile=on"
    if setting == "off":
        return False, "compile=off"
    if device.type == "cuda":
        return True, "auto: on with CUDA"
    return False, f"auto: off on {device.type}; compile=on pays in long runs"


def compile_in_place(net: torch.nn.Module, cuda_graphs: bool = False) -> torch.nn.Module:
    """``net`` with its forward compiled by inductor (``nn.Module.compile``: the module, its parameters and its
    state_dict keys stay the same, so checkpoints, optimizers, EMA and DDP are unchanged). Shapes are static:
    the engine's batches all have one shape, so nothing recompiles after the first steps.

    ``cuda_graphs``: inductor's ``reduce-overhead`` mode, which replays each compiled shape as one CUDA graph (no
    per-kernel launch cost). Only the inference path asks for it (:class:`zoo.inference.Predictor` on CUDA: one
    fixed shape, no backward); its outputs live in the graph's memory and are overwritten by the next replay, so
    the caller copies them out. On a CPU the mode compiles as the default one does (inductor skips graphs there).
    Training does not use it: a GAN step calls the discriminator three times and the optimizers outside the
    graph, and that was not measured on a GPU (docs/speed.md)."""
    import logging

    # inductor's C++ build on a machine without CUDA logs "No CUDA runtime is found" once: noise for a CPU run
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    net.compile(dynamic=False, mode="reduce-overhead" if cuda_graphs else None)
    return net


def adam_kernel(device: torch.device) -> dict[str, bool]:
    """The fastest Adam implementation torch has for ``device``: the fused kernel (one kernel per parameter
    group instead of a loop over tensors) where torch has one for this device type, else the multi-tensor
    ``foreach`` one. Same update rule; results match the loop implementation to float rounding."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        fused_ok = device.type in _get_fused_kernels_supported_devices()
    except ImportError:  # a torch without the helper: the foreach kernel exists on every device
        fused_ok = False
    return {"fused": True} if fused_ok else {"foreach": True}


__all__ = ["PRECISIONS", "Runtime", "adam_kernel", "compile_in_place", "cpu_has_fast_bf16", "cuda_has_fast_bf16", "is_out_of_memory", "resolve_compile",
           "resolve_precision", "select_device"]
