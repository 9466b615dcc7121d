"""One optimisation step of a GAN colorizer, as a pure function of the models and a batch.

GAN step (the call order is part of the contract, see :mod:`zoo.hookspecs` "Version 2"): ``fake = G(L)``; a D
step on ``D(cat(L, fake.detach()))`` then ``D(cat(L, real))`` with every loss that trains D; then a G step with
D's parameters frozen on ``D(cat(L, fake))`` with every loss that trains G (GAN loss x gan_weight + pixel loss x
pixel_weight + each extra term x its weight). Pretraining step: G alone with the pixel loss (the seed's recipe
for the pretrained ResNet18 U-Net). Losses are computed in fp32 under the runtime's autocast; each backward goes
through its net's gradient scaler (a pass-through unless fp16).

v1 components (``contract=1``, the default) are called as the first contract says: ``gan_loss(logits,
target_is_real)`` (D loss = mean of the real and fake terms), ``pixel_loss(fake_ab, real_ab)``. v2 losses get
one :class:`zoo.hookspecs.StepContext`. A v1 GAN loss on a discriminator with several logit maps is applied to
each map and averaged.

The trainer (:mod:`zoo.engine`), :class:`zoo.bench.GanBench` and ``benchmarks/bench_training_speed.py`` all call
these functions, so a benchmark measures exactly what ``zoo train`` runs. ``G`` / ``D`` are what the step calls:
the nets themselves, or their DistributedDataParallel wrappers under torchrun.

Logged losses: ``d_real``, ``d_fake`` (a v1 GAN loss's two D terms) or ``d_gan`` (a v2 GAN loss's D objective),
``g_gan``, ``g_pixel``, and ``d_<term>`` / ``g_<term>`` for each extra term (unweighted values).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from zoo.hookspecs import DiscriminatorOutput, StepContext
from zoo.models import Models
from zoo.runtime import Runtime

LOSS_NAMES = ("d_real", "d_fake", "g_gan", "g_pixel")


def _optimise(loss: torch.Tensor, optim: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """backward + step through the optimiser's grad scaler (a pass-through unless fp16)."""
    scaler.scale(loss).backward()
    scaler.step(optim)
    scaler.update()


def split_generator_output(out) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A generator's return value as (ab, auxiliary outputs): a tensor is ab; a v2 generator in train mode may
    return ``{"ab": ab, NAME: tensor, ...}`` ("ab" is the declared decoding of the others)."""
    if isinstance(out, dict):
        if "ab" not in out:
            raise ValueError(f"the generator returned auxiliary outputs {sorted(map(str, out))} with no decoding "
                             f"to ab: a v2 generator's dict must hold 'ab' (see zoo.hookspecs)")
        return out["ab"], {k: v for k, v in out.items() if k != "ab"}
    return out, {}


def _v1_gan(loss: nn.Module, d_out: DiscriminatorOutput, target_is_real: bool) -> torch.Tensor:
    values = [loss(logits, target_is_real) for logits in d_out.logits]
    return values[0] if len(values) == 1 else torch.stack(values).mean()


def gan_step(m: Models, L: torch.Tensor, ab: torch.Tensor, runtime: Runtime, pixel_weight: float,
             G: nn.Module | None = None, D: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """One GAN step (D, then G); returns the logged losses as detached 0-dim fp32 tensors on the device (no host
    sync: the trainer reads them at log steps through :class:`zoo.losswatch.LossWatch`)."""
    G, D = G or m.generator, D or m.discriminator
    amp = runtime.autocast
    v2_gan, v2_pixel = m.contracts.get("gan_loss") == 2, m.contracts.get("pixel_loss") == 2
    m.generator.train()
    m.discriminator.train()
    with amp():
        fake, outputs = split_generator_output(G(L))

    def disc(x) -> DiscriminatorOutput:
        return DiscriminatorOutput.of(D(x)).float()

    logged: dict[str, torch.Tensor] = {}
    # D step on (fake.detach(), real)
    m.discriminator.requires_grad_(True)
    m.disc_optim.zero_grad(set_to_none=True)
    with amp():
        fake_d = fake.detach()
        d_fake = disc(torch.cat([L, fake_d], 1))
        d_real = disc(torch.cat([L, ab], 1))
        ctx = StepContext("discriminator", L, ab, fake_d.float(), {k: v.detach() for k, v in outputs.items()},
                          d_fake=d_fake, discriminator=D)
        ctx.d_real = d_real
        if v2_gan:
            d_loss = logged["d_gan"] = m.gan_loss(ctx)
        else:
            logged["d_fake"], logged["d_real"] = _v1_gan(m.gan_loss, d_fake, False), _v1_gan(m.gan_loss, d_real, True)
            d_loss = 0.5 * (logged["d_fake"] + logged["d_real"])
        for term in m.terms:
            if "discriminator" in term.trains:
                value = logged[f"d_{term.name}"] = term.module(ctx)
                d_loss = d_loss + term.weight * value
    _optimise(d_loss, m.disc_optim, m.disc_scaler)
    # G step with D frozen (under DDP: D's forward must not expect a gradient reduction)
    m.discriminator.requires_grad_(False)
    m.gen_optim.zero_grad(set_to_none=True)
    no_sync = D.no_sync() if hasattr(D, "no_sync") else contextlib.nullcontext()
    with amp(), no_sync:
        d_fake = disc(torch.cat([L, fake], 1))

        def real_no_grad() -> DiscriminatorOutput:
            with torch.no_grad():
                return disc(torch.cat([L, ab], 1))

        ctx = StepContext("generator", L, ab, fake.float(), outputs, d_fake=d_fake, d_real_fn=real_no_grad,
                          discriminator=D)
        g_gan = logged["g_gan"] = m.gan_loss(ctx) if v2_gan else _v1_gan(m.gan_loss, d_fake, True)
        g_pixel = logged["g_pixel"] = m.pixel_loss(ctx) if v2_pixel else m.pixel_loss(fake.float(), ab)
        g_loss = m.gan_weight * g_gan + pixel_weight * g_pixel
        for term in m.terms:
            if "generator" in term.trains:
                value = logged[f"g_{term.name}"] = term.module(ctx)
                g_loss = g_loss + term.weight * value
    _optimise(g_loss, m.gen_optim, m.gen_scaler)
    m.discriminator.requires_grad_(True)
    return {k: t.detach().float() for k, t in logged.items()}


def pretrain_step(m: Models, L: torch.Tensor, ab: torch.Tensor, runtime: Runtime,
                  G: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """One pixel-loss-only generator step; returns g_pixel as a detached 0-dim fp32 device tensor."""
    G = G or m.generator
    m.generator.train()
    m.pretrain_optim.zero_grad(set_to_none=True)
    with runtime.autocast():
        fake, outputs = split_generator_output(G(L))
        if m.contracts.get("pixel_loss") == 2:
            loss = m.pixel_loss(StepContext("generator", L, ab, fake.float(), outputs))
        else:
            loss = m.pixel_loss(fake.float(), ab)
    _optimise(loss, m.pretrain_optim, m.gen_scaler)
    return {"g_pixel": loss.detach().float()}


__all__ = ["LOSS_NAMES", "gan_step", "pretrain_step", "split_generator_output"]
