"""Rebuild trained nets from a checkpoint alone (its embedded spec names the components)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import Checkpoint
from zoo.runfolder import open_checkpoint
from zoo.errors import CheckpointError, SpecError, UnknownComponent
from zoo.registry import Registry, get_registry
from zoo.spec import TrainSpec, spec_from_json


@dataclass
class TrainedModel:
    """A generator (eval mode, on ``device``) with the spec and checkpoint it came from."""

    generator: nn.Module
    spec: TrainSpec
    checkpoint: Checkpoint
    device: torch.device

    @property
    def image_size(self) -> int:
        return self.spec.data.image_size

    @property
    def name(self) -> str:
        return self.spec.generator.name


def load_trained(path: str | Path, device: str | torch.device = "cpu", registry: Registry | None = None,
                 with_discriminator: bool = False) -> TrainedModel | tuple[TrainedModel, nn.Module]:
    """Load a run folder (its newest good checkpoint) or a ``step-*.safetensors`` file.

    A checkpoint whose component is not installed raises a one-line error naming it.
    """
    from zoo.models import load_weights
    from zoo.runtime import select_device

    registry = registry or get_registry()
    ckpt = open_checkpoint(path)
    try:
        spec = spec_from_json(ckpt.spec_json)
    except SpecError as exc:
        raise CheckpointError(f"{str(ckpt.path)!r} holds a spec this zoo cannot use ({exc})") from None
    device = select_device(device) if isinstance(device, str) else device
    try:
        gen = registry.create("generator", spec.generator.name, spec.generator.options, spec.context(), check=False)
    except UnknownComponent as exc:
        raise CheckpointError(f"{str(ckpt.path)!r} needs generator {spec.generator.name!r}, which is not installed "
                              f"({exc}); install the plugin that provides it") from None
    load_weights(gen, ckpt.generator, "generator", ckpt.path)
    model = TrainedModel(gen.to(device).eval(), spec, ckpt, device)
    if not with_discriminator:
        return model
    try:
        disc = registry.create("discriminator", spec.discriminator.name, spec.discriminator.options, spec.context(),
                               check=False)
    except UnknownComponent as exc:
        raise CheckpointError(f"{str(ckpt.path)!r} needs discriminator {spec.discriminator.name!r}, which is not "
                              f"installed ({exc})") from None
    load_weights(disc, ckpt.discriminator, "discriminator", ckpt.path)
    return model, disc.to(device).eval()
