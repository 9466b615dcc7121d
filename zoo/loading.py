"""Rebuild trained nets from a checkpoint alone (its embedded spec names the components).

Everything that can be wrong with a checkpoint is a one-line :class:`~zoo.errors.CheckpointError` naming the
file: a spec this zoo or its plugins cannot use (an unknown option, say from another plugin version), a
component that is not installed or whose plugin ZOO_DISABLE_PLUGINS disables, weights that do not fit the
nets the spec builds (missing, unexpected or reshaped tensors), and weights holding NaN or inf.

**Which weights.** A run trained with ``ema`` keeps two generators in each checkpoint: the raw weights of the
last step and their exponential moving average (:mod:`zoo.ema`). ``weights="auto"`` (the default of
``zoo colorize``, ``zoo eval``, ``zoo export`` and the Python API) takes the EMA when the checkpoint has one and
the raw weights otherwise; ``"ema"`` insists on the EMA and ``"raw"`` takes the raw weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import Checkpoint
from zoo.models import load_weights
from zoo.runfolder import list_checkpoints, open_checkpoint
from zoo.errors import CheckpointError, DuplicateComponent, SpecError, UnknownComponent
from zoo.component import DISABLE_ENV
from zoo.registry import Registry, disabled_plugins, get_registry
from zoo.spec import TrainSpec, recorded_component, spec_from_json
from zoo.text import shown

#: the choices of ``weights`` (``--weights``): auto = the EMA when the checkpoint has one, else raw
WEIGHTS = ("auto", "ema", "raw")


@dataclass
class TrainedModel:
    """A generator (eval mode, on ``device``) with the spec and checkpoint it came from; ``weights``: "ema" (the
    moving average of the generator's weights) or "raw" (those of the checkpoint's step)."""

    generator: nn.Module
    spec: TrainSpec
    checkpoint: Checkpoint
    device: torch.device
    weights: str = "raw"

    @property
    def image_size(self) -> int:
        return self.spec.data.image_size

    @property
    def name(self) -> str:
        return self.spec.generator.name


def check_finite(tensors: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """Refuse weights holding NaN or inf, naming the checkpoint, the tensor and an earlier checkpoint to use."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan, count = bool(torch.isnan(value).any()), int((~torch.isfinite(value)).sum())
            others = [p.name for p in list_checkpoints(path.parent) if p.name != path.name]
            hint = f"use an earlier checkpoint, e.g. {shown(path.parent / others[-1])}" if others else \
                "train again (with a lower learning rate?)"
            raise CheckpointError(f"{shown(path)}: {what} tensor {shown(key)} holds {'NaN' if nan else 'inf'} "
                                  f"({count} of {value.numel()} values): the weights are damaged (a diverged "
                                  f"run?); {hint}")


def _build(registry: Registry, kind: str, spec_part, spec: TrainSpec, path: Path) -> nn.Module:
    """The net a checkpoint's spec slot names, from the provider the spec recorded (:func:`zoo.spec.recorded_component`:
    a short name another package now also registers still means the trained component; a provider that no longer
    provides it is refused, naming the checkpoint)."""
    try:
        component = recorded_component(kind, spec_part, registry)
        return component.create(spec_part.options, spec.context(), check=False)
    except UnknownComponent:
        blocked = sorted(disabled_plugins())
        if blocked:
            raise CheckpointError(
                f"{shown(path)} needs {kind} {shown(spec_part.name)}, which no enabled plugin provides: "
                f"{', '.join(shown(b) for b in blocked)} {'is' if len(blocked) == 1 else 'are'} disabled by "
                f"{DISABLE_ENV}; remove the plugin that provides it from {DISABLE_ENV} to use this checkpoint"
            ) from None
        raise CheckpointError(f"{shown(path)} needs {kind} {shown(spec_part.name)}, which is not installed; "
                              f"install the plugin that provides it (`zoo list` shows what is)") from None
    except DuplicateComponent as exc:  # a spec without a recorded provider (written before zoo recorded them)
        raise CheckpointError(f"{shown(path)}: {exc}") from None
    except SpecError as exc:
        raise CheckpointError(f"{shown(path)} holds a spec this zoo cannot use ({exc}); it was written by another "
                              f"version of zoo or of the plugin") from None


def choose_weights(ckpt: Checkpoint, weights: str = "auto") -> tuple[str, dict[str, torch.Tensor]]:
    """("ema" or "raw", the generator tensors) of a checkpoint for a ``weights`` choice (module docstring)."""
    if weights not in WEIGHTS:
        raise CheckpointError(f"unknown weights {shown(weights)}: choose one of {', '.join(WEIGHTS)}")
    if weights == "ema" and ckpt.generator_ema is None:
        raise CheckpointError(f"{shown(ckpt.path)} has no EMA weights (its run was trained without ema): use "
                              f"--weights raw, or train with --set ema.decay=0.999")
    if weights != "raw" and ckpt.generator_ema is not None:
        return "ema", ckpt.generator_ema
    return "raw", ckpt.generator


def load_trained(path: str | Path, device: str | torch.device = "cpu", registry: Registry | None = None,
                 with_discriminator: bool = False, weights: str = "auto"
                 ) -> TrainedModel | tuple[TrainedModel, nn.Module]:
    """Load a run folder (its newest good checkpoint) or a ``step-*.safetensors`` file; ``weights``: "auto"
    (the EMA when the checkpoint has one, else the raw weights), "ema" or "raw".

    Every problem is a one-line CheckpointError naming the checkpoint (module docstring).
    """
    from zoo.runtime import select_device

    if weights not in WEIGHTS:  # before anything is read
        raise CheckpointError(f"unknown weights {shown(weights)}: choose one of {', '.join(WEIGHTS)}")
    registry = registry or get_registry()
    device = select_device(device)
    ckpt = open_checkpoint(path)
    try:
        spec = spec_from_json(ckpt.spec_json)
    except SpecError as exc:
        raise CheckpointError(f"{shown(ckpt.path)} holds a spec this zoo cannot use ({exc}); it was written by "
                              f"another version of zoo") from None
    which, tensors = choose_weights(ckpt, weights)
    what = "generator EMA" if which == "ema" else "generator"
    gen = _build(registry, "generator", spec.generator, spec, ckpt.path)
    check_finite(tensors, what, ckpt.path)
    load_weights(gen, tensors, what, ckpt.path)
    model = TrainedModel(gen.to(device).eval(), spec, ckpt, device, which)
    if not with_discriminator:
        return model
    disc = _build(registry, "discriminator", spec.discriminator, spec, ckpt.path)
    check_finite(ckpt.discriminator, "discriminator", ckpt.path)
    load_weights(disc, ckpt.discriminator, "discriminator", ckpt.path)
    return model, disc.to(device).eval()


__all__ = ["WEIGHTS", "TrainedModel", "check_finite", "choose_weights", "load_trained"]
