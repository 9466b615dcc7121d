"""One optimisation step of pix2pix, as a pure function of the models and a batch.

GAN step: D step on (real, fake.detach()), then a G step with D's parameters frozen, G loss = GAN loss +
pixel_weight * pixel loss. Pretraining step: G alone with the pixel loss (the seed's recipe for the pretrained
ResNet18 U-Net). Losses are computed in fp32 under the runtime's autocast; each backward goes through its net's
gradient scaler (a pass-through unless fp16).

The trainer (:mod:`zoo.engine`), :class:`zoo.bench.GanBench` and ``benchmarks/bench_training_speed.py`` all call
these functions, so a benchmark measures exactly what ``zoo train`` runs. ``G`` / ``D`` are what the step calls:
the nets themselves, or their DistributedDataParallel wrappers under torchrun.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from zoo.models import Models
from zoo.runtime import Runtime

LOSS_NAMES = ("d_real", "d_fake", "g_gan", "g_pixel")


def _optimise(loss: torch.Tensor, optim: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """backward + step through the optimiser's grad scaler (a pass-through unless fp16)."""
    scaler.scale(loss).backward()
    scaler.step(optim)
    scaler.update()


def gan_step(m: Models, L: torch.Tensor, ab: torch.Tensor, runtime: Runtime, pixel_weight: float,
             G: nn.Module | None = None, D: nn.Module | None = None) -> dict[str, float]:
    """One GAN step (D, then G); returns d_real, d_fake, g_gan, g_pixel as floats (one device sync)."""
    G, D = G or m.generator, D or m.discriminator
    amp = runtime.autocast
    m.generator.train()
    m.discriminator.train()
    with amp():
        fake = G(L)
    # D step on (real, fake.detach())
    m.discriminator.requires_grad_(True)
    m.disc_optim.zero_grad(set_to_none=True)
    with amp():
        d_fake = m.gan_loss(D(torch.cat([L, fake.detach()], 1)).float(), False)
        d_real = m.gan_loss(D(torch.cat([L, ab], 1)).float(), True)
        d_loss = 0.5 * (d_fake + d_real)
    _optimise(d_loss, m.disc_optim, m.disc_scaler)
    # G step with D frozen (under DDP: D's forward must not expect a gradient reduction)
    m.discriminator.requires_grad_(False)
    m.gen_optim.zero_grad(set_to_none=True)
    no_sync = D.no_sync() if hasattr(D, "no_sync") else contextlib.nullcontext()
    with amp(), no_sync:
        g_gan = m.gan_loss(D(torch.cat([L, fake], 1)).float(), True)
        g_pixel = m.pixel_loss(fake.float(), ab)
        g_loss = g_gan + pixel_weight * g_pixel
    _optimise(g_loss, m.gen_optim, m.gen_scaler)
    m.discriminator.requires_grad_(True)
    values = torch.stack([t.detach() for t in (d_real, d_fake, g_gan, g_pixel)]).tolist()  # one device sync
    return dict(zip(LOSS_NAMES, values))


def pretrain_step(m: Models, L: torch.Tensor, ab: torch.Tensor, runtime: Runtime,
                  G: nn.Module | None = None) -> dict[str, float]:
    """One L1-only generator step; returns g_pixel."""
    G = G or m.generator
    m.generator.train()
    m.pretrain_optim.zero_grad(set_to_none=True)
    with runtime.autocast():
        fake = G(L)
        loss = m.pixel_loss(fake.float(), ab)
    _optimise(loss, m.pretrain_optim, m.gen_scaler)
    return {"g_pixel": loss.item()}


__all__ = ["LOSS_NAMES", "gan_step", "pretrain_step"]
