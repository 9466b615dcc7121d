"""The metrics that need a pretrained network: FID and LPIPS. Each is computed by an established implementation
or skipped with one line saying why; never approximated by something else.

* **FID**: ``torchmetrics.image.fid.FrechetInceptionDistance(feature=2048)``, whose Inception is torch-fidelity's
  ``FeatureExtractorInceptionV3`` with the weights ``pt_inception-2015-12-05`` (the TensorFlow Inception of the
  original FID paper, Heusel et al. 2017, ported to PyTorch): 2048-d pool features of uint8 images resized to
  299 x 299 inside the extractor. The distance is ``||mu_p - mu_t||^2 + Tr(S_p + S_t - 2 (S_p S_t)^1/2)`` between
  the predictions' and the ground truths' feature Gaussians (float64). FID is one number per set of images (a
  dataset-level metric, biased upwards on small sets: compare entries on the same images only).
* **LPIPS**: the ``lpips`` package (Zhang et al. 2018), ``LPIPS(net="alex", version="0.1")``: its linear layers
  ship inside the package, the AlexNet under them is torchvision's ImageNet weights; inputs RGB in [-1, 1]; one
  number per image (lower is better).

Both weights are downloaded once by a user with internet (into ``torch.hub.get_dir()/checkpoints``); offline and
not cached, each is skipped with one line in the protocol. Any module can stand in for the feature extractor
(``Perceptual(fid_features=net)``): the tests pass a small real conv net through the same code path.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

FID_IMPLEMENTATION = ("torchmetrics.image.fid.FrechetInceptionDistance(feature=2048): torch-fidelity's "
                      "FeatureExtractorInceptionV3, weights pt_inception-2015-12-05 (the TF Inception of the FID "
                      "paper), 2048-d pool3 features of the uint8 images resized to 299x299 by the extractor")
LPIPS_IMPLEMENTATION = ("lpips.LPIPS(net='alex', version='0.1') (the lpips package: its linear layers, over "
                        "torchvision's ImageNet AlexNet), RGB in [-1, 1], one value per image")
#: FID needs at least this many images on each side (a covariance of one image is undefined)
FID_MIN_IMAGES = 2


def _cached(url: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _unreachable(url: str) -> str | None:
    from zoo.sources import reachable# the one probe of the network zoo has (coco-sample uses it too)

    return reachable(url)


def load_fid(device: torch.device) -> tuple[Any | None, str]:
    """(torchmetrics FID metric on ``device``, its description) or (None, "skipped: <why>").

    The weights are looked for before torchmetrics is imported (a slow import), so offline the skip is quick."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    except ImportError as exc:
        return None, (f"skipped: FID needs torchmetrics and torch-fidelity ({exc.name} is not installed: "
                      f"pip install 'zoo[metrics]')")
    path = _cached(URL_INCEPTION_V3)
    if not os.path.isfile(path):
        reason = _unreachable(URL_INCEPTION_V3)
        if reason is not None:
            return None, (f"skipped: Inception weights not available offline ({URL_INCEPTION_V3} unreachable: "
                          f"{reason}; downloaded once to {path} when online)")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:
        return None, f"skipped: FID needs torchmetrics ({exc.name} is not installed: pip install 'zoo[metrics]')"
    try:
        metric = FrechetInceptionDistance(feature=2048, reset_real_features=False, normalize=False)
    except Exception as exc:  # a failed download, a damaged cache file
        return None, f"skipped: Inception weights could not be loaded ({type(exc).__name__}: {str(exc)[:200]})"
    return metric.to(device), FID_IMPLEMENTATION


def load_lpips(device: torch.device) -> tuple[nn.Module | None, str]:
    """(lpips.LPIPS on ``device``, its description) or (None, "skipped: <why>")."""
    try:
        from torchvision.models import AlexNet_Weights
    except ImportError as exc:
        return None, f"skipped: LPIPS needs torchvision ({exc.name} is not installed)"
    url = AlexNet_Weights.IMAGENET1K_V1.url
    path = _cached(url)
    if not os.path.isfile(path):
        reason = _unreachable(url)
        if reason is not None:
            return None, (f"skipped: LPIPS's AlexNet weights not available offline ({url} unreachable: {reason}; "
                          f"downloaded once to {path} when online)")
    try:
        import lpips
    except ImportError as exc:
        return None, f"skipped: LPIPS needs the lpips package ({exc.name} is not installed: pip install 'zoo[metrics]')"
    try:
        model = lpips.LPIPS(net="alex", version="0.1", verbose=False)
    except Exception as exc:
        return None, f"skipped: LPIPS weights could not be loaded ({type(exc).__name__}: {str(exc)[:200]})"
    return model.eval().to(device), LPIPS_IMPLEMENTATION


class Perceptual:
    """FID and LPIPS for one evaluation. ``fid_features`` / ``lpips_model``: stand-ins (any nn.Module); by
    default the real ones are loaded, or skipped with their reason (``status``)."""

    def __init__(self, device: torch.device | str = "cpu", fid_features: nn.Module | None = None,
                 lpips_model: nn.Module | None = None, load: bool = True):
        self.device = torch.device(device)
        self.status: dict[str, str] = {}
        self._fid = None
        if fid_features is not None:
            from torchmetrics.image.fid import FrechetInceptionDistance

            self._fid = FrechetInceptionDistance(feature=fid_features, reset_real_features=False,
                                                 normalize=False).to(self.device)
            self.status["fid"] = f"torchmetrics FrechetInceptionDistance over {type(fid_features).__name__} features"
        elif load:
            self._fid, self.status["fid"] = load_fid(self.device)
        else:
            self.status["fid"] = "skipped: not requested"
        self._lpips = lpips_model.eval().to(self.device) if lpips_model is not None else None
        if lpips_model is not None:
            self.status["lpips"] = f"lpips over {type(lpips_model).__name__}"
        elif load:
            self._lpips, self.status["lpips"] = load_lpips(self.device)
        else:
            self.status["lpips"] = "skipped: not requested"
        self._real_done = False
        self._real_key = None

    @property
    def has_fid(self) -> bool:
        return self._fid is not None

    @property
    def has_lpips(self) -> bool:
        return self._lpips is not None

    @torch.no_grad()
    def lpips(self, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """LPIPS of each uint8 (B, H, W, 3) prediction against its truth: float64 (B,)."""
        def to_input(x):
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2).float()
            return t / 127.5 - 1.0

        out = self._lpips(to_input(pred), to_input(truth))
        return out.reshape(out.shape[0]).double().cpu().numpy()

    @torch.no_grad()
    def set_real(self, truth: np.ndarray) -> None:
        """The ground-truth images (uint8 (N, H, W, 3)) whose features every prediction set is compared with
        (the same images again: their features are kept, not computed anew)."""
        import hashlib

        key = (truth.shape, hashlib.sha1(np.ascontiguousarray(truth).tobytes()).hexdigest())
        if self._real_done and key == self._real_key:
            return
        self._real_key = key
        self._fid.reset_real_features = True  # a reset that also drops the old truth's features
        self._fid.reset()
        self._fid.reset_real_features = False
        self._feed(truth, real=True)
        self._real_done = True

    def _feed(self, images: np.ndarray, real: bool, batch: int = 32) -> None:
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch])).to(self.device)
            self._fid.update(x.permute(0, 3, 1, 2).contiguous(), real=real)

    @torch.no_grad()
    def fid(self, pred: np.ndarray) -> float | None:
        """FID of the uint8 (N, H, W, 3) predictions against the truth of :meth:`set_real` (None below
        FID_MIN_IMAGES images)."""
        if not self._real_done:
            raise RuntimeError("Perceptual.fid before set_real")
        if len(pred) < FID_MIN_IMAGES:
            return None
        self._fid.reset()  # keeps the real features (reset_real_features=False)
        self._feed(pred, real=False)
        return float(self._fid.compute().item())


def fid_features(extractor: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray) -> np.ndarray:
    """Features of uint8 (N, H, W, 3) images by ``extractor`` (takes uint8 (N, 3, H, W)), float64 (N, D): what
    FID's Gaussians are fitted to (the tests compute the distance from these with scipy)."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
        return extractor(x).double().reshape(len(images), -1).numpy()


__all__ = ["FID_IMPLEMENTATION", "FID_MIN_IMAGES", "LPIPS_IMPLEMENTATION", "Perceptual", "fid_features",
           "load_fid", "load_lpips"]
