"""The contract kit's per-kind tensor checks (:func:`zoo.testing.check_component` runs them on each option set
it builds): a generator maps L in [-1, 1] to ab in [-1, 1] of the same size, a discriminator gives (B, 1, h, w)
maps (v2: a list of maps, optional features), GAN and pixel losses give finite scalars that order real above
fake, v2 losses read their StepContext and train in the roles they declare, and a backward pass reaches every
parameter with finite gradients. A failure is one ``AssertionError`` naming the component (:class:`Checker`)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.component import Component
from zoo.contract_probe import probe_context
from zoo.hookspecs import DiscriminatorOutput

BATCH = 2  # images per checked forward pass: 2, so a net that only works for one image fails


class Checker:
    """Fails with one AssertionError naming the component, its plugin, the options and the image size."""

    def __init__(self, component: Component, image_size: int):
        self.component = component
        self.image_size = image_size
        self.options: dict[str, Any] | None = None

    def fail(self, what: str) -> None:
        c = self.component
        where = ""
        if self.options is not None:
            where = f" with options {self.options}" if self.options else " with default options"
        raise AssertionError(f"zoo contract: {c.title}{where} at "
                             f"{self.image_size} px: {what}")

    def without_prefix(self, message: str) -> str:
        """A registry error without its "<kind> '<name>' from <provider> " start, which fail() adds anyway."""
        c = self.component
        prefix = f"{c.title} "
        return message[len(prefix):] if message.startswith(prefix) else message

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.fail(what)


# ---- per-kind tensor checks ---------------------------------------------------------------------------

def _check_trainable(checker: Checker, net: nn.Module) -> None:
    checker.check(any(p.requires_grad for p in net.parameters()),
                  "has no trainable parameters: weights kept in plain tensors or buffers are not trained "
                  "(use nn.Parameter or torch layers)")


def _check_gradients(checker: Checker, module: nn.Module) -> None:
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    checker.check(not missing, f"no gradient reaches parameters {missing[:5]}: they are unused or detached")
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    checker.check(not bad, f"non-finite gradients in {bad[:5]}")
    checker.check(not params or any(p.grad.abs().sum() > 0 for _, p in params), "every gradient is zero")


def _check_generator(checker: Checker, net: nn.Module) -> None:
    size = checker.image_size
    _check_trainable(checker, net)
    net.train()
    x = (torch.rand(BATCH, 1, size, size) * 2 - 1).requires_grad_()
    out = net(x)
    expected = (BATCH, 2, size, size)
    aux = {}
    if isinstance(out, dict):
        checker.check(checker.component.contract == 2, "returned a dict in train mode: only a contract 2 generator "
                                                       "may (register it with contract=2, see zoo.hookspecs)")
        checker.check("ab" in out, f"returned auxiliary outputs {sorted(map(str, out))} with no decoding to ab: a v2 "
                                   f"generator's dict must hold 'ab' (the declared decoding, see zoo.hookspecs)")
        aux = {k: v for k, v in out.items() if k != "ab"}
        out = out["ab"]
    checker.check(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor {expected}")
    checker.check(tuple(out.shape) == expected, f"L {tuple(x.shape)} gave {tuple(out.shape)}, expected {expected}")
    checker.check(out.dtype == torch.float32, f"output dtype {out.dtype}, expected float32")
    checker.check(bool(torch.isfinite(out).all()), "output has NaN or inf")
    lo, hi = out.min().item(), out.max().item()
    checker.check(lo >= -1 and hi <= 1, f"output range [{lo:.3g}, {hi:.3g}] leaves [-1, 1]: end with a Tanh "
                                        f"(ab is scaled ab/110)")
    total = (out * torch.randn_like(out)).sum() + sum((v.float() * torch.randn_like(v.float())).sum()
                                                      for v in aux.values() if v.is_floating_point())
    total.backward()
    _check_gradients(checker, net)
    checker.check(x.grad is not None and x.grad.abs().sum() > 0, "the output does not depend on the input L")
    net.eval()
    with torch.no_grad():
        one = net(torch.rand(1, 1, size, size) * 2 - 1)
    checker.check(isinstance(one, torch.Tensor), f"in eval mode it returned {type(one).__name__}: inference, "
                                                 f"export and evaluation need ab (B, 2, H, W) in eval mode")
    checker.check(tuple(one.shape) == (1, 2, size, size), f"in eval mode batch 1 gave {tuple(one.shape)}")


def _check_discriminator(checker: Checker, net: nn.Module) -> None:
    size = checker.image_size
    _check_trainable(checker, net)
    net.train()
    x = (torch.rand(BATCH, 3, size, size) * 2 - 1).requires_grad_()
    raw = net(x)
    if checker.component.contract == 2:
        try:
            result = DiscriminatorOutput.of(raw)
        except ValueError as exc:
            checker.fail(str(exc))
        maps, features = result.logits, result.features
    else:
        checker.check(isinstance(raw, torch.Tensor), f"returned {type(raw).__name__}, expected logits (B, 1, h, w) "
                                                     f"(several maps or features: register it with contract=2)")
        maps, features = [raw], []
    for out in maps:
        shape = tuple(out.shape)
        checker.check(out.dim() == 4 and shape[:2] == (BATCH, 1) and min(shape[2:]) >= 1,
                      f"Lab {tuple(x.shape)} gave {shape}, expected ({BATCH}, 1, h, w) with h, w >= 1")
        checker.check(bool(torch.isfinite(out).all()), "logits have NaN or inf")
    for f in features:
        checker.check(f.shape[0] == BATCH, f"a feature map has batch {f.shape[0]}, expected {BATCH}")
    out = torch.cat([m.flatten() for m in maps])
    (out * torch.randn_like(out)).sum().backward()
    _check_gradients(checker, net)
    checker.check(x.grad[:, :1].abs().sum() > 0 and x.grad[:, 1:].abs().sum() > 0,
                  "the logits must depend on both L (channel 0) and ab (channels 1-2): it is a conditional D")
    net.eval()
    with torch.no_grad():
        one = net(torch.rand(1, 3, size, size) * 2 - 1)
    one = DiscriminatorOutput.of(one).logits[0] if checker.component.contract == 2 else one
    checker.check(tuple(one.shape[:2]) == (1, 1), f"in eval mode batch 1 gave {tuple(one.shape)}")


def _scalar(checker: Checker, value: Any, call: str) -> torch.Tensor:
    checker.check(isinstance(value, torch.Tensor) and value.dim() == 0,
                  f"{call} returned {getattr(value, 'shape', type(value).__name__)}, expected a scalar tensor")
    checker.check(bool(torch.isfinite(value)), f"{call} is {value.item()}")
    return value


def _check_gan_loss(checker: Checker, loss: nn.Module) -> None:
    if checker.component.contract == 2:
        return _check_v2_loss(checker, loss)
    logits = torch.randn(BATCH, 1, 6, 6, requires_grad=True)
    for target in (True, False):
        value = _scalar(checker, loss(logits, target), f"loss(logits, {target})")
        (grad,) = torch.autograd.grad(value, logits)
        checker.check(bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0,
                      f"loss(logits, {target}) gives no finite, nonzero gradient to the logits")
    # Logits of 1 lean "real", 0 "undecided/fake" for BCE, least squares (targets 1/0), hinge and Wasserstein.
    real, fake = torch.ones(BATCH, 1, 6, 6), torch.zeros(BATCH, 1, 6, 6)
    with torch.no_grad():
        pairs = {t: (_scalar(checker, loss(real, t), f"loss(ones, {t})").item(),
                     _scalar(checker, loss(fake, t), f"loss(zeros, {t})").item()) for t in (True, False)}
    checker.check(pairs[True][0] < pairs[True][1], f"target real: loss on logits 1 ({pairs[True][0]:.4g}) must be "
                                                   f"lower than on logits 0 ({pairs[True][1]:.4g})")
    checker.check(pairs[False][1] < pairs[False][0], f"target fake: loss on logits 0 ({pairs[False][1]:.4g}) must "
                                                     f"be lower than on logits 1 ({pairs[False][0]:.4g})")


def _check_pixel_loss(checker: Checker, loss: nn.Module) -> None:
    if checker.component.contract == 2:
        return _check_v2_loss(checker, loss)
    real = torch.rand(BATCH, 2, 8, 8) * 2 - 1
    fake = (torch.rand(BATCH, 2, 8, 8) * 2 - 1).requires_grad_()
    value = _scalar(checker, loss(fake, real), "loss(fake, real)")
    (grad,) = torch.autograd.grad(value, fake)
    checker.check(bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0,
                  "loss(fake, real) gives no finite, nonzero gradient to fake")
    same = _scalar(checker, loss(real.clone(), real), "loss(real, real)").item()
    checker.check(abs(same) < 1e-5, f"loss(real, real) is {same:.4g}, expected 0")
    checker.check(value.item() > same, f"loss(fake, real) {value.item():.4g} is not above loss(real, real)")


class _CountingD(nn.Module):
    """The probe discriminator, counting the calls a loss makes itself (penalties)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _v2_context(role: str, d_logits: tuple[float, float] | None = None, outputs: dict[str, int] | None = None):
    """A probe StepContext (zoo.contract_probe.probe_context) whose discriminator counts its calls; ``d_logits``
    (real, fake): constant logit maps instead of the probe net's, for the objective's direction checks."""
    ctx, net = probe_context(role, BATCH, 8, grad=True, outputs=outputs)
    ctx.discriminator = counting = _CountingD(net)
    if d_logits is not None:
        real, fake = d_logits
        shape = ctx.d_fake.logits[0].shape
        ctx.d_real = DiscriminatorOutput([torch.full(shape, real)], [f.detach() for f in ctx.d_real.features])
        ctx.d_fake = DiscriminatorOutput([torch.full(shape, fake, requires_grad=True)],
                                         [f.detach() for f in ctx.d_fake.features])
    return ctx, counting


def _check_v2_loss(checker: Checker, loss: nn.Module) -> None:
    """A contract 2 loss (GAN loss, pixel loss or term), in each role it trains (see zoo.hookspecs)."""
    component = checker.component
    needs = component.output_channels(checker.options)
    for role in component.trains:
        ctx, counting = _v2_context(role, outputs=needs)
        value = _scalar(checker, loss(ctx), f"loss(ctx) in the {role} role")
        if role == "discriminator":
            checker.check(value.requires_grad, "in the discriminator role it carries no gradient: it must depend on "
                                               "ctx.d_real / ctx.d_fake or call ctx.discriminator")
            value.backward()
            grads = [p.grad for p in counting.parameters()]
            checker.check(any(g is not None and g.abs().sum() > 0 for g in grads),
                          "in the discriminator role no gradient reaches the discriminator's parameters")
            # a penalty: with D's outputs as constants, what it computes by calling D must still train D
            ctx, counting = _v2_context(role, (0.5, -0.5))
            calls_before = counting.calls
            value = loss(ctx)
            if counting.calls > calls_before:
                ok = value.requires_grad
                if ok:
                    value.backward()
                    ok = any(p.grad is not None and p.grad.abs().sum() > 0 for p in counting.parameters())
                checker.check(ok, "its penalty (it calls ctx.discriminator) carries no gradient to the "
                                  "discriminator's parameters: keep the graph (torch.autograd.grad(..., "
                                  "create_graph=True)) and do not .detach() it")
        else:
            checker.check(value.requires_grad, "in the generator role it carries no gradient to the generator's "
                                               "output: it must depend on ctx.fake_ab, ctx.outputs or ctx.d_fake")
            inputs = [ctx.fake_ab, *ctx.outputs.values()]
            grads = torch.autograd.grad(value, inputs, allow_unused=True)
            checker.check(any(g is not None and bool(torch.isfinite(g).all()) and g.abs().sum() > 0 for g in grads),
                          "in the generator role no finite, nonzero gradient reaches the generated ab"
                          + (f" or the outputs {sorted(needs)} it declares" if needs else ""))
    if component.kind == "gan_loss":  # the objectives point the right way in each role (grad on: penalties)
        good_d = loss(_v2_context("discriminator", (1.0, -1.0))[0]).item()
        bad_d = loss(_v2_context("discriminator", (-1.0, 1.0))[0]).item()
        fooled = loss(_v2_context("generator", (0.0, 1.0))[0]).item()
        caught = loss(_v2_context("generator", (0.0, -1.0))[0]).item()
        checker.check(good_d < bad_d, f"discriminator role: D(real)=1, D(fake)=-1 must cost less ({good_d:.4g}) than "
                                      f"D(real)=-1, D(fake)=1 ({bad_d:.4g})")
        checker.check(fooled < caught, f"generator role: D(fake)=1 must cost less ({fooled:.4g}) than D(fake)=-1 "
                                       f"({caught:.4g}): does it read ctx.role?")
    if component.kind == "pixel_loss" and not needs:  # a loss on ab alone: zero when fake == real
        ctx, _ = _v2_context("generator")
        ctx.fake_ab = ctx.real_ab.clone()
        with torch.no_grad():
            same = _scalar(checker, loss(ctx), "loss(ctx) with fake_ab == real_ab").item()
        checker.check(abs(same) < 1e-5, f"with fake_ab == real_ab it is {same:.4g}, expected 0")


def _check_term(checker: Checker, loss: nn.Module) -> None:
    _check_v2_loss(checker, loss)


#: the check of each kind, called with (checker, built module)
KIND_CHECKS = {"generator": _check_generator, "discriminator": _check_discriminator,
               "gan_loss": _check_gan_loss, "pixel_loss": _check_pixel_loss, "loss": _check_term}

__all__ = ["BATCH", "KIND_CHECKS", "Checker"]
