"""sRGB <-> CIE Lab in torch, batched, on any device.

The maths is exactly that of ``skimage.color.rgb2lab`` / ``skimage.color.lab2rgb`` (illuminant D65,
2 degree observer): sRGB gamma with the 0.04045 / 0.0031308 thresholds, skimage's RGB -> XYZ matrix and
its inverse, skimage's D65 white point, and the CIE f(t) with skimage's 0.008856 / 7.787 constants.
The test suite checks it against skimage to within 1e-3. It is reimplemented (rather than calling
skimage) so that conversion runs on the batch, on the training device, without a round trip to numpy.

Scaling convention used by every model in the zoo:

* ``L`` (B, 1, H, W) = L* / 50 - 1, so L* in [0, 100] maps to [-1, 1];
* ``ab`` (B, 2, H, W) = (a*, b*) / 110, so the sRGB gamut (|a*|, |b*| < about 110) maps to about [-1, 1].

Tensors are (B, 3, H, W) or a single (3, H, W) image; float32 and float64 are computed in their own
precision, half precision inputs are computed in float32.

What a user sees of a model has one definition here, used by ``zoo colorize``, ``zoo eval`` and the sample grids:
:func:`fit_gamut` (Lab -> sRGB; a colour sRGB cannot show loses chroma, keeping its L and hue, instead of
being clipped per channel, which would change its lightness) and :func:`to_uint8` (the one rounding rule from
float to 8-bit pixels). :func:`lab_to_uint8` is the two together.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

# skimage.color.colorconv.xyz_from_rgb (sRGB primaries, D65) and the D65 / 2 degree white point.
_XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])

L_SCALE = 50.0
AB_SCALE = 110.0

#: Lab round-trip error above which a colour counts as outside sRGB (float32 noise is about 1e-3)
GAMUT_TOLERANCE = 0.05
#: bisection steps on the chroma scale of an out-of-gamut colour: within 1/128 of the largest chroma that fits
GAMUT_STEPS = 7


@functools.lru_cache(maxsize=None)
def _constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    as_t = functools.partial(torch.as_tensor, dtype=dtype, device=device)
    return as_t(_XYZ_FROM_RGB), as_t(_RGB_FROM_XYZ), as_t(_WHITE_D65).view(1, 3, 1, 1)


def _batched(x: torch.Tensor, what: str) -> tuple[torch.Tensor, bool]:
    """(3, H, W) or (B, 3, H, W) floating tensor -> (B, 3, H, W) in float32/float64, and whether it was 3-D."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating point tensor, got {x.dtype} (for uint8 images use uint8_to_model_input)")
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must have shape (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x, unbatched


def _apply_matrix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix, x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (B, 3, H, W) or (3, H, W) -> CIE Lab (L* in [0, 100]) of the same shape."""
    x, unbatched = _batched(rgb, "rgb")
    xyz_from_rgb, _, white = _constants(x.dtype, x.device)
    # The clamps only keep the unused branch of torch.where finite (and its gradient NaN free).
    linear = torch.where(x > 0.04045, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = _apply_matrix(xyz_from_rgb, linear) / white
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(1)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)
    return lab.squeeze(0) if unbatched else lab


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab, (B, 3, H, W) or (3, H, W) -> sRGB clipped to [0, 1], like ``skimage.color.lab2rgb``."""
    x, unbatched = _batched(lab, "lab")
    _, rgb_from_xyz, white = _constants(x.dtype, x.device)
    L, a, b = x.unbind(1)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)  # skimage clips negative z to 0 (and warns)
    f = torch.stack([fx, fy, fz], dim=1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * white
    linear = _apply_matrix(rgb_from_xyz, xyz)
    rgb = torch.where(
        linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * linear
    ).clamp(0.0, 1.0)
    return rgb.squeeze(0) if unbatched else rgb


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB floats in [0, 1] -> uint8 of the same shape: clamped, times 255, rounded half up.

    The one rounding rule of zoo (colorized files, evaluation predictions, sample grids).
    """
    return (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).floor_().to(torch.uint8)


def fit_gamut(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab, (B, 3, H, W) or (3, H, W) -> sRGB in [0, 1]; colours outside sRGB are desaturated to fit.

    A colour whose sRGB conversion does not convert back to itself (within :data:`GAMUT_TOLERANCE`) keeps its
    L and hue and gets the largest chroma that fits (bisection, :data:`GAMUT_STEPS` steps): per-channel
    clipping, as ``skimage.color.lab2rgb`` does, would change its lightness. In-gamut colours are exactly
    :func:`lab_to_rgb`'s.
    """
    x, unbatched = _batched(lab, "lab")

    def round_trips(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = lab_to_rgb(v)
        return rgb, (rgb_to_lab(rgb) - v).abs().amax(1) <= GAMUT_TOLERANCE

    rgb, ok = round_trips(x)
    if not bool(ok.all()):
        bad = x.permute(0, 2, 3, 1)[~ok].T.reshape(1, 3, -1, 1)  # the n colours that do not fit: (1, 3, n, 1)
        lo = torch.zeros_like(bad[:, :1])  # chroma scale known to fit: 0 (a gray of that L always does)
        hi = torch.ones_like(lo)
        for _ in range(GAMUT_STEPS):
            mid = (lo + hi) / 2
            _, fits = round_trips(torch.cat([bad[:, :1], bad[:, 1:] * mid], 1))
            fits = fits.unsqueeze(1)
            lo, hi = torch.where(fits, mid, lo), torch.where(fits, hi, mid)
        fitted = lab_to_rgb(torch.cat([bad[:, :1], bad[:, 1:] * lo], 1))  # (1, 3, n, 1)
        rgb.permute(0, 2, 3, 1)[~ok] = fitted.reshape(3, -1).T
    return rgb.squeeze(0) if unbatched else rgb


def lab_to_uint8(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (B, 3, H, W) or (3, H, W) -> what a user sees: uint8 sRGB of the same shape (:func:`fit_gamut`,
    then :func:`to_uint8`)."""
    return to_uint8(fit_gamut(lab))


def normalize_lab(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab (B, 3, H, W) -> (L, ab): L (B, 1, H, W) = L*/50 - 1 in [-1, 1], ab (B, 2, H, W) = ab/110."""
    return lab[..., :1, :, :] / L_SCALE - 1.0, lab[..., 1:, :, :] / AB_SCALE


def denormalize_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_lab`: (L (B, 1, H, W), ab (B, 2, H, W)) -> Lab (B, 3, H, W)."""
    return torch.cat([(L + 1.0) * L_SCALE, ab * AB_SCALE], dim=-3)


def uint8_to_model_input(rgb_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 sRGB (B, 3, H, W) -> normalized float32 (L (B, 1, H, W), ab (B, 2, H, W)), on the same device."""
    if rgb_uint8.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 image tensor, got {rgb_uint8.dtype}")
    return normalize_lab(rgb_to_lab(rgb_uint8.to(torch.float32) / 255.0))


def model_output_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Normalized (L (B, 1, H, W), ab (B, 2, H, W)) -> sRGB (B, 3, H, W) float in [0, 1], out-of-gamut colours
    desaturated (:func:`fit_gamut`)."""
    dtype = torch.float64 if torch.float64 in (L.dtype, ab.dtype) else torch.float32
    return fit_gamut(denormalize_lab(L.to(dtype), ab.to(dtype)))


def model_output_to_uint8(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Normalized (L, ab) -> uint8 sRGB (B, 3, H, W): :func:`model_output_to_rgb`, then :func:`to_uint8`."""
    return to_uint8(model_output_to_rgb(L, ab))
