"""Zhang et al.'s (ECCV 2016, arXiv:1603.08511) multinomial classification loss with class rebalancing, for the
``eccv16`` generator (contract 2: it reads the generator's ``logits`` output):

- targets: the real ab, area-downsampled to the logits' resolution, soft-encoded on its 5 nearest bins with
  Gaussian weights (sigma = 5 Lab units);
- rebalancing: each pixel is weighted by ``w(q*) ~ ((1 - lambda) * p~(q*) + lambda / Q) ** -1`` (lambda = 0.5),
  normalised so that ``E_p[w] = 1``, where ``q*`` is its nearest bin and ``p~`` the empirical prior of the
  training data smoothed by a Gaussian (sigma = 5): here, the running histogram of every real training batch
  the loss has seen (the paper counts ImageNet once, before training; a buffer of the loss, saved in the
  training state of each checkpoint, so a resumed run continues it).

The loss is the weighted cross-entropy, mean over pixels. Use it as the pixel loss of ``eccv16`` (``--pixel-loss
eccv16_ce --set pixel_weight=1``; ``--set gan_weight=0`` for the paper's classification-only training).
"""
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import zoo
from zoo_plugins.generators.eccv16 import AB_SCALE, ab_bins


class Eccv16CeOptions(zoo.Options):
    """Soft-encoded, rebalanced cross-entropy over the eccv16 bins."""

    grid: int = Field(10, ge=5, le=40, description="ab quantisation step: must match the generator's grid")
    neighbours: int = Field(5, ge=1, le=32, description="bins each target pixel is soft-encoded on (paper: 5)")
    sigma: float = Field(5.0, gt=0, le=100, description="Gaussian sigma of the soft encoding and of the prior "
                                                        "smoothing, Lab units (paper: 5)")
    rebalance: float = Field(0.5, ge=0, le=1, description="lambda: mix of the prior with a uniform one (paper: "
                                                          "0.5; 1: no rebalancing)")


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """(B, 2, h, w) ab in Lab units -> (B, Q, h, w) soft targets on the k nearest bins (Gaussian weights)."""
    B, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(flat, bins) ** 2
    dist, idx = d2.topk(k, dim=1, largest=False)
    weights = torch.softmax(-dist / (2 * sigma ** 2), dim=1)
    z = torch.zeros(flat.shape[0], len(bins), device=ab.device).scatter_(1, idx, weights)
    return z.view(B, h, w, -1).permute(0, 3, 1, 2)


def rebalancing_weights(prior: torch.Tensor, bins: torch.Tensor, sigma: float, lam: float) -> torch.Tensor:
    """(Q,) weights ~ ((1 - lambda) * smoothed prior + lambda / Q)^-1 with E_prior[w] = 1."""
    p = prior / prior.sum().clamp_min(1e-12)
    kernel = torch.exp(-torch.cdist(bins, bins) ** 2 / (2 * sigma ** 2))
    smoothed = kernel @ p
    smoothed = smoothed / smoothed.sum()
    w = 1.0 / ((1 - lam) * smoothed + lam / len(bins))
    return w / (p * w).sum().clamp_min(1e-12) if p.sum() > 0 else w / w.mean()


class Eccv16Ce(nn.Module):
    def __init__(self, options: Eccv16CeOptions):
        super().__init__()
        self.options = options
        bins = ab_bins(options.grid)
        self.register_buffer("bins", bins, persistent=False)
        self.register_buffer("counts", torch.zeros(len(bins)))  # persistent: saved with the training state

    def forward(self, ctx) -> torch.Tensor:
        o = self.options
        logits = ctx.outputs.get("logits")
        if logits is None or logits.shape[1] != len(self.bins):
            raise zoo.ZooError(f"eccv16_ce needs a generator output 'logits' over its {len(self.bins)} ab bins "
                               f"(grid {o.grid}): use --gen eccv16 with the same grid")
        logits = logits.float()
        with torch.no_grad():
            real = F.interpolate(ctx.real_ab.float() * AB_SCALE, size=logits.shape[-2:], mode="area")
            z = soft_encode(real, self.bins, o.neighbours, o.sigma)
            nearest = z.argmax(1)  # (B, h, w)
            if not ctx.probe:  # the empirical prior of the training data seen so far
                self.counts += torch.bincount(nearest.flatten(), minlength=len(self.bins)).to(self.counts)
            prior = self.counts if self.counts.sum() > 0 else torch.ones_like(self.counts)
            w = rebalancing_weights(prior, self.bins, o.sigma, o.rebalance)[nearest]  # (B, h, w)
        ce = -(z * torch.log_softmax(logits, dim=1)).sum(1)
        return (w * ce).mean()


def build(options: Eccv16CeOptions, context: zoo.BuildContext) -> nn.Module:
    return Eccv16Ce(options)


@zoo.hookimpl
def register_pixel_losses(register):
    register("eccv16_ce", build, Eccv16CeOptions, contract=2, needs_outputs={"logits": lambda o: len(ab_bins(o.grid))},
             test_options=[{}],
             test_partners={"generator": {"name": "eccv16", "options": {"ngf": 8, "n_blocks": 1}}})
