"""The nets, losses and optimizers of one run: built from a resolved spec, initialised, loaded from weights."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import CheckpointError
from zoo.registry import Registry, get_registry
from zoo.runtime import Runtime, adam_kernel
from zoo.spec import TrainSpec
from zoo.text import shown


def init_weights(net: nn.Module, kind: str, gain: float) -> None:
    """pix2pix init: conv/linear weights ~ N(0, gain) (or xavier/kaiming), biases 0; norm weights ~ N(1, gain)."""
    if kind == "none":
        return
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


@dataclass
class LossTerm:
    """A built loss term of the spec's ``losses``: called as ``module(ctx)`` in each role it ``trains``."""

    name: str
    module: nn.Module
    weight: float
    trains: tuple[str, ...]


@dataclass
class Models:
    """The nets, losses and optimizers of one run."""

    generator: nn.Module
    discriminator: nn.Module
    gan_loss: nn.Module
    pixel_loss: nn.Module
    gen_optim: torch.optim.Optimizer
    disc_optim: torch.optim.Optimizer
    pretrain_optim: torch.optim.Optimizer | None
    # Gradient scalers (fp16 only; disabled pass-throughs otherwise): one per optimised net, since D and G
    # steps are separate backward passes. The generator's serves its pretraining stage too.
    gen_scaler: torch.amp.GradScaler | None = None
    disc_scaler: torch.amp.GradScaler | None = None
    # Contract 2 (zoo.hookspecs "Version 2"): the contract each component was registered with, the extra loss
    # terms, and the weight of the GAN loss in G's loss.
    contracts: dict[str, int] = field(default_factory=lambda: {k: 1 for k in ("generator", "discriminator",
                                                                               "gan_loss", "pixel_loss")})
    terms: list[LossTerm] = field(default_factory=list)
    gan_weight: float = 1.0

    def __post_init__(self):
        for name in ("gen_scaler", "disc_scaler"):
            if getattr(self, name) is None:
                setattr(self, name, torch.amp.GradScaler("cpu", enabled=False))

    def loss_modules(self) -> dict[str, nn.Module]:
        """Every loss by where the spec puts it: ``gan_loss``, ``pixel_loss``, ``losses.<i>.<name>``."""
        out = {"gan_loss": self.gan_loss, "pixel_loss": self.pixel_loss}
        out.update({f"losses.{i}.{t.name}": t.module for i, t in enumerate(self.terms)})
        return out

    def loss_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The persistent state of the losses that have one (a loss's buffers, e.g. eccv16_ce's running class
        counts): saved in the training state so a resumed run continues them, as it does the optimizers'."""
        return {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()}
                for k, m in self.loss_modules().items() if m.state_dict()}


def build_models(spec: TrainSpec, runtime: Runtime, registry: Registry | None = None,
                 sync_batchnorm: bool = False) -> Models:
    """Build every component of a resolved spec on the runtime's device, initialise weights (seeded), make the
    optimizers and the runtime's gradient scalers. The nets stay in the default layout (see
    :func:`prepare_for_training`).

    ``sync_batchnorm``: BatchNorm layers become torch.nn.SyncBatchNorm (multi-process CUDA training), before
    the optimizers are made; the state dicts keep the same keys.
    """
    registry = registry or get_registry()
    device = runtime.device
    ctx = spec.context()
    torch.manual_seed(spec.seed)
    slots = {kind: registry.get(kind, getattr(spec, kind).name, getattr(spec, kind).provider)
             for kind in ("generator", "discriminator", "gan_loss", "pixel_loss")}
    gen, disc, gan_loss, pixel_loss = (slots[k].create(getattr(spec, k).options, ctx) for k in slots)
    terms = []
    for term in spec.losses:
        component = registry.get("loss", term.name, term.provider)
        terms.append(LossTerm(term.name, component.create(term.options, ctx).to(device), term.weight,
                              component.trains))
    # A component built with pretrained weights (as its plugin declares: Component.is_pretrained) keeps them.
    for kind, part, net in (("generator", spec.generator, gen), ("discriminator", spec.discriminator, disc)):
        if kind in spec.init.apply_to and not slots[kind].is_pretrained(part.options):
            init_weights(net, spec.init.kind, spec.init.gain)
    if sync_batchnorm:
        gen = nn.SyncBatchNorm.convert_sync_batchnorm(gen)
        disc = nn.SyncBatchNorm.convert_sync_batchnorm(disc)
    gen, disc = gen.to(device), disc.to(device)
    gan_loss, pixel_loss = gan_loss.to(device), pixel_loss.to(device)

    kernel = adam_kernel(device)  # fused (or foreach) Adam: measured in benchmarks/bench_training_speed.py

    def adam(params, o):
        return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay, **kernel)

    pre = None
    if spec.pretrain.steps or spec.pretrain.epochs:
        p = spec.pretrain
        pre = torch.optim.Adam(gen.parameters(), lr=p.lr, betas=(p.beta1, p.beta2), **kernel)
    return Models(gen, disc, gan_loss, pixel_loss, adam(gen.parameters(), spec.gen_optim),
                  adam(disc.parameters(), spec.disc_optim), pre, runtime.scaler(), runtime.scaler(),
                  contracts={k: c.contract for k, c in slots.items()}, terms=terms, gan_weight=spec.gan_weight)


def prepare_for_training(models: Models, runtime: Runtime) -> None:
    """The runtime's memory layout for both nets (in place: the optimizers keep the same parameters) and dense
    gradients into their norms."""
    for net in (models.generator, models.discriminator):
        runtime.prepare(net)
        dense_grads_into_norms(net)


def weights_mismatch(net: nn.Module, tensors: dict[str, torch.Tensor], limit: int = 3) -> str | None:
    """What keeps ``tensors`` from loading into ``net`` strictly (missing / unexpected keys, shapes), or None."""
    own = net.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shapes = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]

    def some(keys):
        return ", ".join(shown(k) for k in keys[:limit]) + (", ..." if len(keys) > limit else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' * (len(missing) > 1)} ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)} ({some(unexpected)})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch{'es' * (len(shapes) > 1)} ({shown(k)}: checkpoint "
                     f"{tuple(tensors[k].shape)}, net {tuple(own[k].shape)}"
                     + (f"; {some(shapes[1:])}" if len(shapes) > 1 else "") + ")")
    return "; ".join(parts) or None


def load_weights(net: nn.Module, tensors: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """Load a checkpoint's ``what`` weights into ``net`` strictly; a one-line CheckpointError naming the
    checkpoint and what does not fit otherwise (``net`` is left untouched then)."""
    problem = weights_mismatch(net, tensors)
    if problem is None:
        try:
            net.load_state_dict(tensors, strict=True)
            return
        except RuntimeError as exc:  # e.g. a dtype torch cannot copy
            problem = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
    raise CheckpointError(f"checkpoint {shown(path)}: its {what} weights do not fit the {what} its spec builds: "
                          f"{problem}")


def load_training_state(models: Models, ckpt, state: dict[str, Any]) -> None:
    """A checkpoint's weights and training state into the models; CheckpointError (nothing half-loaded that a
    later candidate would not overwrite) when they do not fit."""
    load_weights(models.generator, ckpt.generator, "generator", ckpt.path)
    load_weights(models.discriminator, ckpt.discriminator, "discriminator", ckpt.path)
    try:
        models.gen_optim.load_state_dict(state["gen_optim"])
        models.disc_optim.load_state_dict(state["disc_optim"])
        if models.pretrain_optim is not None and state.get("pretrain_optim") is not None:
            models.pretrain_optim.load_state_dict(state["pretrain_optim"])
        for key, scaler in (("generator", models.gen_scaler), ("discriminator", models.disc_scaler)):
            saved = (state.get("scalers") or {}).get(key)
            if scaler.is_enabled() and saved:  # a run saved in fp32/bf16 has nothing to restore
                scaler.load_state_dict(saved)
        modules = models.loss_modules()
        for key, saved in (state.get("losses") or {}).items():  # checkpoints before losses had state: none
            if key in modules:
                modules[key].load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"training state of {shown(ckpt.path.name)} does not fit the optimizers its spec "
                              f"builds ({str(exc)[:150]})") from None


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def dense_grads_into_norms(net: nn.Module) -> None:
    """Make the gradient that reaches each BatchNorm / InstanceNorm output dense in its memory layout.

    A U-Net's skip concatenation hands the norm after an up-convolution a channel slice of the concatenation's
    gradient, and torch's CPU batch-norm backward is slow on such strided gradients: measured on a 2-core
    Xeon, 16x64x128x128 bf16 channels_last, 1.55 s with the slice vs 0.12 s with a dense copy (NCHW: 0.26 vs
    0.10 s). One copy pays for itself many times over; the values change only by summation order (float
    rounding).
    """
    def on_output(module, args, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            layout = (torch.channels_last if output.dim() == 4 and not output.is_contiguous()
                      and output.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
            output.register_hook(lambda grad: grad.contiguous(memory_format=layout))

    for module in net.modules():
        if isinstance(module, _NORMS) and not getattr(module, "_zoo_dense_grads", False):
            module.register_forward_hook(on_output)
            module._zoo_dense_grads = True


__all__ = ["LossTerm", "Models", "build_models", "dense_grads_into_norms", "init_weights", "load_training_state", "load_weights",
           "prepare_for_training", "weights_mismatch"]
