"""The contract probe run once when a component is built (:meth:`zoo.component.Component.create`): one tiny
forward pass of PROBE_BATCH images (a generator must map (B, 1, H, W) to (B, 2, H, W); a discriminator give
(B, 1, h, w) maps; a loss a scalar), and for v2 losses one call per role they train on a probe
:class:`~zoo.hookspecs.StepContext` (:func:`probe_context`, also the contract kit's base case). Anything the
plugin raises, SystemExit included, is one PluginError naming it."""
from __future__ import annotations

from zoo import hookspecs
from zoo.component import NET_KINDS, BuildContext, Component, failure, plugin_code
from zoo.errors import PluginError

#: the probe's batch: 2, so a net that only works for one image is caught when it is built
PROBE_BATCH = 2


def probe(component: Component, module, context: BuildContext) -> None:
    """Run one tiny forward pass of PROBE_BATCH images to catch plugins whose output breaks the contract."""
    import torch

    size, n = context.image_size, PROBE_BATCH
    was_training = getattr(module, "training", False)
    expected = None
    if component.contract == 2 and component.kind not in NET_KINDS:
        return _probe_v2_loss(component, module)
    try:
        # a net's probe keeps the graph: an output no gradient flows through (detached, integer) is caught here,
        # not as a traceback from the first backward pass
        with torch.set_grad_enabled(component.kind in NET_KINDS), plugin_code():
            if component.kind == "generator":
                module.eval()
                out = module(torch.zeros(n, 1, size, size))
                expected = f"({n}, 2, {size}, {size})"
                ok = isinstance(out, torch.Tensor) and tuple(out.shape) == (n, 2, size, size)
            elif component.kind == "discriminator":
                module.eval()
                out = module(torch.zeros(n, 3, size, size))
                expected = f"({n}, 1, h, w)" + (" maps (a tensor, a list or {'logits': [...], 'features': [...]})"
                                                if component.contract == 2 else "")
                if component.contract == 2:
                    try:
                        maps = hookspecs.DiscriminatorOutput.of(out).logits
                    except ValueError as exc:
                        raise PluginError(f"{component.title} {exc}: fix the plugin's build function") from None
                else:
                    maps = [out]
                ok = all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[:2] == (n, 1) for t in maps)
                if ok:
                    out = maps[0]
            elif component.kind == "gan_loss":
                out = module(torch.zeros(n, 1, 4, 4), True)
                expected = "a scalar tensor"
                ok = isinstance(out, torch.Tensor) and out.dim() == 0
            else:
                out = module(torch.zeros(n, 2, 4, 4), torch.zeros(n, 2, 4, 4))
                expected = "a scalar tensor"
                ok = isinstance(out, torch.Tensor) and out.dim() == 0
    except (KeyboardInterrupt, PluginError):
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a forward is the plugin's bug too
        hint = ""
        if component.kind not in NET_KINDS and isinstance(exc, (TypeError, AttributeError)):
            hint = ("; it was called as a version 1 loss, " + ("loss(logits, target_is_real)" if component.kind ==
                    "gan_loss" else "loss(fake_ab, real_ab)") + ": a loss that takes one StepContext must be "
                    "registered with contract=2 (see zoo.hookspecs)")
        raise PluginError(f"{component.title} failed its contract check at image size {size}, batch {n}: "
                          f"{failure(exc)}{hint}") from exc
    finally:
        if hasattr(module, "train"):
            module.train(was_training)
    if not ok:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        fix = "fix the plugin's build function"
        if component.kind == "discriminator" and component.contract == 1 and isinstance(out, (list, tuple, dict)):
            fix = "several logit maps or features need contract 2: register it with contract=2 (see zoo.hookspecs)"
        elif component.kind == "generator" and isinstance(out, dict):
            fix = ("in eval mode a generator returns ab itself (auxiliary outputs are for train mode, with "
                   "contract=2: see zoo.hookspecs)")
        raise PluginError(f"{component.title} returned {got}, expected {expected}: {fix}")
    if component.kind in NET_KINDS and not (out.is_floating_point() and out.requires_grad):
        raise PluginError(f"{component.title} returned a {str(out.dtype).removeprefix('torch.')} tensor that no "
                          f"gradient flows through (detached, or not floating point): its parameters could not be "
                          f"trained; fix the plugin's build function")


def probe_context(role: str, n: int = PROBE_BATCH, size: int = 8, grad: bool = False,
                  outputs: dict[str, int] | None = None):
    """A StepContext of zeros-and-noise inputs with a small fixed conv discriminator (the v2 losses' probe, and
    the contract kit's base case)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    L = torch.rand(n, 1, size, size, generator=gen) * 2 - 1
    real = torch.rand(n, 2, size, size, generator=gen) * 2 - 1
    fake = (torch.rand(n, 2, size, size, generator=gen) * 2 - 1).requires_grad_(grad)
    disc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.LeakyReLU(0.2),
                               torch.nn.Conv2d(4, 1, 3, padding=1))

    class _Features(torch.nn.Module):  # {"logits": [map], "features": [hidden]}, as a v2 discriminator may return
        def __init__(self):
            super().__init__()
            self.body, self.head = disc[:2], disc[2]

        def forward(self, x):
            hidden = self.body(x)
            return {"logits": [self.head(hidden)], "features": [hidden]}

    net = _Features()
    D = hookspecs.DiscriminatorOutput.of
    fake_in = fake if role == "generator" else fake.detach()
    aux = {k: torch.randn(n, c, size, size, generator=gen).requires_grad_(grad and role == "generator")
           for k, c in (outputs or {}).items()}
    ctx = hookspecs.StepContext(role, L, real, fake_in, aux, discriminator=net, probe=True,
                                d_fake=D(net(torch.cat([L, fake_in], 1))))
    if role == "generator":
        with torch.no_grad():
            ctx.d_real = D(net(torch.cat([L, real], 1)))
    else:
        ctx.d_real = D(net(torch.cat([L, real], 1)))
    return ctx, net


def _probe_v2_loss(component: Component, module) -> None:
    """Call a v2 loss once per role it trains on a probe context (with gradients: penalties need them)."""
    import torch

    for role in component.trains:
        try:
            ctx, _ = probe_context(role, outputs=component.output_channels())
            with plugin_code():
                out = module(ctx)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise PluginError(f"{component.title} failed its contract check in the {role} role: "
                              f"{failure(exc)}") from exc
        if not (isinstance(out, torch.Tensor) and out.dim() == 0):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(f"{component.title} returned {got} in the {role} role, expected a scalar tensor: fix "
                              f"the plugin's build function")


__all__ = ["PROBE_BATCH", "probe", "probe_context"]
