"""An exponential moving average (EMA) of the generator's weights, kept next to the trained generator.

With ``ema: {decay: d, start: s}`` in the spec, after every optimiser step of the generator (pretraining and
GAN stages alike; step ``n`` counted from 1 as the run's step)::

    n <= s:  ema = w                                 (the EMA follows the weights until ``start``)
    n >  s:  ema = d * ema + (1 - d) * w             (floating-point parameters)
             buffers (BatchNorm running statistics, counters) = the generator's own

An average over the last ~1 / (1 - d) steps of a GAN generator is usually smoother and scores better than
the weights of the last step (Karras et al., "Progressive Growing of GANs", arXiv:1710.10196; Yazici et al.,
"The Unusual Effectiveness of Averaging in GAN Training", arXiv:1806.04498). Copying the buffers rather than
averaging them keeps the BatchNorm statistics those of a real net.

The average is a function of the run's step and weights only, so it is saved with each checkpoint
(``generator_ema.*`` tensors, :mod:`zoo.checkpoint`) and a resumed run's EMA is bit-identical to an
uninterrupted one's. Under torchrun only rank 0 keeps one (it alone samples and saves); its BatchNorm
statistics are rank 0's, like those of the raw generator in a checkpoint.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from zoo.checkpoint import EMA_PREFIX
from zoo.errors import CheckpointError
from zoo.text import shown

PREFIX = EMA_PREFIX  # the tensor-name prefix of the EMA weights in a checkpoint (zoo.checkpoint owns it)


class GeneratorEMA:
    """The EMA copy of a generator: ``GeneratorEMA(generator, decay, start)``, then ``update(generator, step)``
    after each optimiser step. ``model`` is the averaged net (eval mode, no gradients)."""

    def __init__(self, generator: nn.Module, decay: float, start: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.start = float(decay), int(start)
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)

    @classmethod
    def for_spec(cls, spec, generator: nn.Module) -> "GeneratorEMA | None":
        """The EMA a resolved spec asks for (``spec.ema``), or None."""
        if spec.ema is None:
            return None
        return cls(generator, spec.ema.decay, spec.ema.start)

    def describe(self) -> str:
        return f"EMA of the generator's weights (decay {self.decay:g}, averaging from step {self.start + 1})"

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int) -> None:
        """After the generator's optimiser step ``step`` (1-based): average, or copy up to ``start``."""
        own = dict(generator.named_parameters())
        averaged = [(p, own[name]) for name, p in self.model.named_parameters()]
        if step <= self.start:
            for p, w in averaged:
                p.copy_(w)
        else:
            weight = 1.0 - self.decay
            for p, w in averaged:
                if p.is_floating_point():
                    p.lerp_(w, weight)  # p + (1 - decay) * (w - p)
                else:
                    p.copy_(w)
        buffers = dict(generator.named_buffers())
        for name, b in self.model.named_buffers():
            b.copy_(buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load(self, tensors: dict[str, torch.Tensor] | None, path: Path) -> None:
        """The EMA weights of a checkpoint (``Checkpoint.generator_ema``); CheckpointError if it has none or
        they do not fit."""
        from zoo.models import load_weights

        if tensors is None:
            raise CheckpointError(f"checkpoint {shown(path)} has no EMA weights, but the run's spec has ema on "
                                  f"(a checkpoint written without them cannot resume the average)")
        load_weights(self.model, tensors, "generator EMA", path)


__all__ = ["GeneratorEMA", "PREFIX"]
