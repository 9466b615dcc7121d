"""Running a trained generator for inference: the one forward path of zoo.

A :class:`Predictor` owns a generator and a :class:`zoo.runtime.Runtime` (device, precision, memory layout).
Every forward pass for inference goes through :meth:`Predictor.predict_ab`: eval mode, ``torch.inference_mode``,
the precision's autocast, the batch in the runtime's layout, float32 ab out, NaN/inf refused. ``zoo colorize``,
``zoo eval`` and ``zoo export``'s checks use it.

**Precision.** By default a model runs in the precision it was trained in (its spec's ``precision``) as this
device runs it natively (:func:`inference_runtime`): a model trained with ``auto`` gets this device's ``auto``
(bf16 on CPUs with AMX/avx512_bf16 and on GPUs with bf16 tensor cores, fp32 elsewhere); a model trained in a
precision this device only emulates (fp16 on a CPU, bf16 on a CPU without AMX/avx512_bf16 or an old GPU) gets
``auto`` too. ``precision="fp32"`` (``--precision fp32``) forces full precision.

**Sizes.** H and W must suit the generator (a multiple of 2**n_down for the U-Net):
:func:`generator_size_multiple` is the one place that says which multiple, and :func:`check_size` the one place
that checks a size before anything runs (the pixel limit of :mod:`zoo.data`, an estimate of the memory, then
the multiple).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.runtime import (Runtime, compile_in_place, cpu_has_fast_bf16, cuda_has_fast_bf16, is_out_of_memory,
                         resolve_compile, select_device)
from zoo.text import shown

if TYPE_CHECKING:
    from zoo.loading import TrainedModel
    from zoo.registry import Registry
    from zoo.spec import TrainSpec

_GIB = float(1 << 30)


class SizeError(ZooError):
    """The generator cannot run at the requested resolution (its size multiple, the pixel limit, memory)."""


class OutOfMemory(ZooError):
    """A forward pass ran out of memory."""


class NonFiniteOutput(ZooError):
    """The generator produced NaN or inf. ``bad``: the batch indexes concerned; ``ab``: the whole output."""

    def __init__(self, message: str, bad: list[int], ab: torch.Tensor):
        super().__init__(message)
        self.bad = bad
        self.ab = ab


def runs_natively(device: torch.device, precision: str) -> bool:
    """Whether ``device`` runs ``precision`` in hardware (not emulated): fp32 always, bf16 on CPUs with AMX or
    avx512_bf16 and GPUs with bf16 tensor cores, fp16 on CUDA."""
    if precision == "fp32":
        return True
    if precision == "bf16":
        return (device.type == "cpu" and cpu_has_fast_bf16()) or (device.type == "cuda" and cuda_has_fast_bf16(device))
    if precision == "fp16":
        return device.type == "cuda"
    return False


def inference_runtime(device: str | torch.device = "auto", trained_precision: str = "auto",
                      precision: str | None = None) -> Runtime:
    """The Runtime a model runs in: ``precision`` when given (fp32, bf16, fp16 or auto, as ``--precision``),
    else the training precision as this device runs it (module docstring)."""
    dev = select_device(device)
    if precision not in (None, "training"):
        return Runtime.resolve(dev, precision)
    if trained_precision == "auto" or runs_natively(dev, trained_precision):
        runtime = Runtime.resolve(dev, trained_precision)
        return Runtime(runtime.device, runtime.precision, f"the training precision ({trained_precision}): "
                                                          f"{runtime.why}")
    auto = Runtime.resolve(dev, "auto")
    return Runtime(auto.device, auto.precision, f"trained in {trained_precision}, which {dev.type} does not run "
                                                f"natively, so {auto.why}")


def _eager_if(compiled: bool):
    """A context in which compiled modules run eagerly (torch >= 2.6; before that a compiled probe compiles)."""
    import contextlib

    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if compiled and stance is not None else contextlib.nullcontext()


class Predictor:
    """A generator ready for inference: ``Predictor.load(run_or_checkpoint).predict_ab(L)``.

    ``generator`` is moved to the runtime's device and layout in place (optimizers keep its parameters; with
    ``prepare=False`` it is left as it is), so a trainer may wrap its own generator; a generator in training
    mode is switched to eval mode for each call and back. ``name`` and ``source`` (the checkpoint) appear in
    messages; ``spec`` is the spec it was built from; ``weights`` which of a checkpoint's generators it is ("ema"
    or "raw", :func:`zoo.loading.load_trained`; None: not from a checkpoint).

    ``compile=True`` compiles the generator's forward with inductor (:func:`zoo.runtime.compile_in_place`; the
    first call of each input shape compiles, seconds to a minute). :meth:`predict_ab` then pads a batch smaller
    than the largest it has run to that size, so a last partial batch does not compile again; calling the
    Predictor directly with many shapes compiles per shape (torch falls back to eager after its recompile limit).
    """

    def __init__(self, generator: nn.Module, runtime: Runtime, name: str = "generator", source: str | None = None,
                 spec: "TrainSpec | None" = None, prepare: bool = True, weights: str | None = None,
                 compile: bool = False):
        self.runtime = runtime
        self.generator = runtime.prepare(generator) if prepare else generator
        self.name = name
        self.source = source
        self.spec = spec
        self.weights = weights
        self.compiled = compile
        #: compiled on CUDA: replayed as CUDA graphs (:func:`zoo.runtime.compile_in_place`)
        self.cuda_graphs = compile and runtime.device.type == "cuda"
        self._largest_batch = 0  # compiled: what predict_ab pads smaller batches to
        if compile:
            compile_in_place(self.generator, cuda_graphs=self.cuda_graphs)

    @classmethod
    def from_trained(cls, model: "TrainedModel", precision: str | None = None, compile: str = "off") -> "Predictor":
        """A loaded model (:func:`zoo.loading.load_trained`) on its device; ``precision`` as
        :func:`inference_runtime` (None: the training precision); ``compile``: on, off or auto (on with CUDA,
        :func:`zoo.runtime.resolve_compile`)."""
        runtime = inference_runtime(model.device, model.spec.precision, precision)
        return cls(model.generator.eval(), runtime, model.name, str(model.checkpoint.path), model.spec,
                   weights=model.weights, compile=resolve_compile(compile, runtime.device)[0])

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto", precision: str | None = None,
             registry: "Registry | None" = None, weights: str = "auto", compile: str = "off") -> "Predictor":
        """A run folder (its newest good checkpoint) or a ``step-*.safetensors`` file; ``weights``: "auto" (the
        EMA of the generator's weights when the checkpoint has one, else the raw weights), "ema" or "raw";
        ``compile`` as :meth:`from_trained`."""
        from zoo.loading import load_trained

        return cls.from_trained(load_trained(path, device=select_device(device), registry=registry, weights=weights),
                                precision, compile)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        return self.runtime.precision

    def __repr__(self) -> str:
        return (f"Predictor({self.name!r}, {self.runtime.describe()}, source={self.source!r}"
                + (f", weights={self.weights!r}" if self.weights else "") + ")")

    def where(self) -> str:
        """The generator and its checkpoint, for messages."""
        return (f"generator {shown(self.name)}" + (" (EMA weights)" if self.weights == "ema" else "")
                + (f" of {shown(self.source)}" if self.source else ""))

    @torch.inference_mode()
    def __call__(self, L: torch.Tensor) -> torch.Tensor:
        """One forward pass: L (B, 1, H, W) in [-1, 1], any device -> ab (B, 2, H, W), contiguous float32 on the
        runtime's device. No checks: :meth:`predict_ab` is the checked way."""
        net = self.generator
        was_training = net.training
        if was_training:
            net.eval()
        try:
            if self.cuda_graphs:  # each call is a new replay: nothing of the previous one is still read
                torch.compiler.cudagraph_mark_step_begin()
            with self.runtime.autocast():
                ab = net(self.runtime.batch(L))
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(f"out of memory running {self.where()} on {L.shape[0]} image(s) of "
                                  f"{L.shape[-2]}x{L.shape[-1]} px on {self.device}: lower --batch-size or "
                                  f"--size") from None
            raise
        finally:
            if was_training:
                net.train()
        if self.cuda_graphs:  # the graph's output buffer is overwritten by the next replay: hand out a copy
            return ab.float().contiguous().clone()
        return ab.float().contiguous()

    def predict_ab(self, L: torch.Tensor, batch_size: int | None = None, check_finite: bool = True) -> torch.Tensor:
        """L (B, 1, H, W) in [-1, 1] -> ab (B, 2, H, W) float32 on the device, ``batch_size`` images per pass
        (default: all at once). NaN or inf in the output raises :class:`NonFiniteOutput` (after every batch ran,
        so the finite images can still be used)."""
        n = L.shape[0]
        step = batch_size or max(n, 1)
        parts = [self._fixed_shape_call(L[start:start + step]) for start in range(0, n, step)]
        ab = torch.cat(parts) if len(parts) != 1 else parts[0]
        if check_finite:
            bad = (~torch.isfinite(ab)).flatten(1).any(1)
            if bool(bad.any()):
                idx = [int(i) for i in bad.nonzero().flatten()]
                hint = "its weights may be damaged" + (", or try --precision fp32" if self.precision != "fp32" else "")
                raise NonFiniteOutput(f"{self.where()} produced NaN/inf colours for {len(idx)} of {n} image(s) in "
                                      f"{self.precision}: {hint}", idx, ab)
        return ab

    def _fixed_shape_call(self, L: torch.Tensor) -> torch.Tensor:
        """``self(L)``; compiled, a batch smaller than the largest run so far is padded to it (no recompile).
        Eval mode has no batch statistics, so the padding does not change the real images' outputs."""
        self._largest_batch = batch = max(self._largest_batch, L.shape[0])
        if not self.compiled or L.shape[0] == batch:
            return self(L)
        pad = L.new_zeros((batch - L.shape[0], *L.shape[1:]))
        return self(torch.cat([L, pad]))[:L.shape[0]]

    def runs_at(self, size: int) -> bool:
        """Whether the generator maps a (1, 1, size, size) L to a (1, 2, size, size) ab (OutOfMemory if the
        memory runs out: that is not an answer about the size)."""
        try:
            with _eager_if(self.compiled):  # a probe: not worth compiling for its shape
                out = self(torch.zeros(1, 1, size, size))
        except OutOfMemory:
            raise
        except Exception:  # a shape mismatch inside the net is how a size that does not fit shows up
            return False
        return isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2, size, size)


# ---------------------------------------------------------------------------------------------------------
# Sizes


def generator_size_multiple(spec: "TrainSpec", registry: "Registry | None" = None) -> int | None:
    """What H and W must be multiples of for ``spec``'s generator, as its plugin declared at registration
    (``size_multiple``; None: the plugin declares no constraint). The one place zoo asks."""
    from zoo.registry import get_registry

    component = (registry or get_registry()).get("generator", spec.generator.name)
    return component.size_multiple_for(spec.generator.options)


def available_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on ``device`` now (CUDA: the driver's free memory; CPU: MemAvailable, within this
    process's cgroup limit), or None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            free = min(free, int(limit) - used) if free is not None else int(limit) - used
    except (OSError, ValueError):
        pass
    return free


def estimate_memory(predictor: Predictor, size: int, batch_size: int = 1, probe_size: int = 32) -> int:
    """A lower bound of the bytes one forward pass of ``batch_size`` images of ``size`` x ``size`` needs: its
    largest layer's input and output, measured at ``probe_size`` (a size the generator runs at) and scaled by
    the pixels."""
    largest = 0

    def hook(module, inputs, output):
        nonlocal largest
        tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
        largest = max(largest, sum(t.numel() * t.element_size() for t in tensors))

    leaves = [m for m in predictor.generator.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        predictor(torch.zeros(1, 1, probe_size, probe_size))
    finally:
        for handle in handles:
            handle.remove()
    return int(largest * (size / probe_size) ** 2 * batch_size)


def check_size(predictor: Predictor, size: int, batch_size: int = 1, registry: "Registry | None" = None,
               available: int | None = None) -> None:
    """Refuse, in one line saying which limit it is, a size the generator cannot run at: above zoo's pixel limit
    (:mod:`zoo.data`), more memory than is free (``available`` bytes; default: :func:`available_memory`), or not
    a size the generator takes (its multiple, :func:`generator_size_multiple`)."""
    from zoo.image_file import pixel_limit

    if size < 1:
        raise SizeError(f"size must be a positive number of pixels, got {size}")
    pixels, limit = size * size, pixel_limit()
    if pixels > limit:
        raise SizeError(f"{size} px is {size}x{size} = {pixels:,} pixels per image, above zoo's limit of {limit:,} "
                        f"pixels: memory, not the size multiple, limits this size; use a smaller --size")
    trained = predictor.spec.data.image_size if predictor.spec is not None else None
    if trained is not None and size > trained:  # the training size runs; a bigger one may not fit in memory
        need = estimate_memory(predictor, size, batch_size, probe_size=trained)
        free = available if available is not None else available_memory(predictor.device)
        if free is not None and need > free:
            raise SizeError(f"{size} px needs at least {need / _GIB:.1f} GiB of memory for {batch_size} image(s) on "
                            f"{predictor.device} and {max(free, 0) / _GIB:.1f} GiB are free: memory, not the size "
                            f"multiple, limits this size; use a smaller --size or --batch-size")
    try:
        fits = predictor.runs_at(size)
    except OutOfMemory:
        raise SizeError(f"{predictor.where()} ran out of memory at {size} px on {predictor.device}: memory, not the "
                        f"size multiple, limits this size; use a smaller --size") from None
    if not fits:
        multiple = generator_size_multiple(predictor.spec, registry) if predictor.spec is not None else None
        hint = f"use a multiple of {multiple}, e.g. {max(multiple, round(size / multiple) * multiple)}" \
            if multiple else "use the size it was trained at"
        raise SizeError(f"{predictor.where()} cannot run at {size} px: {hint}")


__all__ = ["NonFiniteOutput", "OutOfMemory", "Predictor", "SizeError", "available_memory", "check_size",
           "estimate_memory", "generator_size_multiple", "inference_runtime", "is_out_of_memory", "runs_natively"]
