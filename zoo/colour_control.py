"""Colour control: scale a colorization's saturation in Lab chroma, keeping lightness and hue.

``s`` = 0 gives the gray photo (its own L), 1 the model's colours unchanged, > 1 more vivid. The a*, b* channels
are multiplied by ``s``; colours pushed outside sRGB are desaturated until they fit, keeping L and hue, by the
same gamut fitting :func:`zoo.colorize.combine` uses (:func:`zoo.lab.fit_gamut`) (never per-channel clipping, which would change lightness).

    from zoo.colour_control import saturate_image
    vivid = saturate_image(colorizer.colorize(photo), 1.3)
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from zoo.errors import ZooError

#: the largest saturation accepted; past it every colour is at the gamut edge anyway
MAX_SATURATION = 4.0


class SaturationError(ZooError):
    """A saturation value outside [0, MAX_SATURATION]."""


def check_saturation(s: float) -> float:
    """``s`` as a float, or a SaturationError saying the accepted range."""
    try:
        value = float(s)
    except (TypeError, ValueError):
        raise SaturationError(f"saturation must be a number, got {s!r}") from None
    if not np.isfinite(value) or not 0.0 <= value <= MAX_SATURATION:
        raise SaturationError(f"saturation must be between 0 (gray) and {MAX_SATURATION:g}, got {s!r}; "
                              f"1 keeps the model's colours")
    return value


def saturate(L: torch.Tensor, ab: torch.Tensor, s: float) -> torch.Tensor:
    """L* (1, H, W) in [0, 100] and a*b* (2, H, W) in Lab units -> sRGB (3, H, W) in [0, 1], chroma times ``s``.

    Out-of-gamut colours are desaturated by :func:`zoo.lab.fit_gamut`, the one gamut rule of zoo.
    """
    from zoo.lab import fit_gamut

    s = check_saturation(s)
    return fit_gamut(torch.cat([L.float(), ab.float() * s]))


def saturate_image(image: Image.Image | np.ndarray, s: float) -> Image.Image:
    """An RGB image (PIL or uint8 (H, W, 3)) with its Lab chroma scaled by ``s`` -> RGB PIL image, same size."""
    from zoo.colorize import STRIP_PIXELS, to_rgb_array
    from zoo.lab import rgb_to_lab, to_uint8

    s = check_saturation(s)
    rgb = to_rgb_array(image)
    if s == 1.0:
        return Image.fromarray(rgb)
    out = np.empty_like(rgb)
    rows = max(1, STRIP_PIXELS // rgb.shape[1])
    for top in range(0, rgb.shape[0], rows):
        strip = torch.tensor(rgb[top:top + rows]).permute(2, 0, 1).float() / 255.0
        lab = rgb_to_lab(strip)
        out[top:top + rows] = to_uint8(saturate(lab[:1], lab[1:], s)).permute(1, 2, 0).numpy()
    return Image.fromarray(out)


__all__ = ["MAX_SATURATION", "SaturationError", "check_saturation", "saturate", "saturate_image"]
