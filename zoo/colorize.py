"""Colorize photos with a trained generator, keeping each photo's own size and sharpness.

The generator runs at its training resolution (``spec.data.image_size``, or ``size``): the photo is resized
to size x size (PIL bicubic, as the training images were) and its L channel goes through the generator. The
predicted ab is upsampled bilinearly to the photo's size and combined with the photo's own full-resolution L,
so fine detail and lightness are the input's; only the colour comes from the model.

Colours that the combination would push outside sRGB lose chroma (hue and L kept) until they fit, instead
of being clipped per channel, which would change their lightness. A colour photo is treated as the gray
photo with its lightness: its own colours are discarded.

    from zoo import Colorizer
    colorizer = Colorizer.from_checkpoint("runs/unet-patch-20261128-120000", device="auto")
    colorizer.colorize(Image.open("grandma.jpg")).save("grandma-colour.png")
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

from zoo.errors import ZooError
from zoo.lab import AB_SCALE, lab_to_rgb, rgb_to_lab, uint8_to_model_input

#: the full-resolution combination runs in strips of about this many pixels (bounded memory for any size)
STRIP_PIXELS = 1 << 20
#: a photo whose R, G and B differ by more than this (out of 255) somewhere is a colour photo
COLOUR_TOLERANCE = 2
#: Lab round-trip error above which a colour counts as outside sRGB (float32 noise is about 1e-3)
_GAMUT_TOLERANCE = 0.05
_GAMUT_STEPS = 7  # bisection steps on the chroma scale: within 1/128 of the largest chroma that fits
_PROBE_LIMIT = 4096


class SizeError(ZooError):
    """The generator cannot run at the requested resolution."""


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or a numpy array -> uint8 (H, W, 3) RGB.

    PIL images of any mode are converted as files are (``zoo.data.load_rgb``) and turned upright by their EXIF
    orientation. Arrays: (H, W) or (H, W, 1) gray, or (H, W, 3) RGB; uint8, or float in [0, 1].
    """
    if isinstance(image, Image.Image):
        from zoo.data import _to_rgb

        return np.asarray(_to_rgb(ImageOps.exif_transpose(image)), dtype=np.uint8)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    array = image
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError(f"expected an (H, W) gray or (H, W, 3) RGB array, got shape {image.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("a float image array must hold values in [0, 1]")
        return np.rint(array * 255.0).astype(np.uint8)
    raise ValueError(f"expected a uint8 or float array, got {array.dtype}")


def is_colour(rgb: np.ndarray) -> bool:
    """Whether a uint8 (H, W, 3) image has colour (channels differing by more than COLOUR_TOLERANCE)."""
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return bool(spread.max() > COLOUR_TOLERANCE)


def runs_at(generator: nn.Module, size: int, device: torch.device | str = "cpu") -> bool:
    """Whether the generator maps a (1, 1, size, size) L to a (1, 2, size, size) ab."""
    try:
        with torch.inference_mode():
            out = generator(torch.zeros(1, 1, size, size, device=device))
    except Exception:  # a shape mismatch inside the net is how a size that does not fit shows up
        return False
    return isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2, size, size)


def size_multiple(generator: nn.Module, device: torch.device | str = "cpu") -> int | None:
    """The power of two that H and W must be multiples of for this generator, found by running it.

    First the smallest power-of-two side it accepts (2**n_down for the U-Net), then the smallest power-of-two
    step above that which it also accepts. None if it accepts no power-of-two side up to 4096.
    """
    base = 1
    while base <= _PROBE_LIMIT and not runs_at(generator, base, device):
        base *= 2
    if base > _PROBE_LIMIT:
        return None
    step = 1
    while step < base and not runs_at(generator, base + step, device):
        step *= 2
    return step


def _fit_gamut(lab: torch.Tensor) -> torch.Tensor:
    """Lab (3, N, M) -> sRGB (3, N, M) in [0, 1]; out-of-gamut colours are desaturated, keeping L and hue."""

    def round_trips(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = lab_to_rgb(x)
        return rgb, (rgb_to_lab(rgb) - x).abs().amax(0) <= _GAMUT_TOLERANCE

    rgb, ok = round_trips(lab)
    if bool(ok.all()):
        return rgb
    bad = lab[:, ~ok].unsqueeze(-1)  # (3, n, 1)
    lo = torch.zeros_like(bad[:1])  # chroma scale known to fit: 0 (a gray of that L always does)
    hi = torch.ones_like(lo)
    for _ in range(_GAMUT_STEPS):
        mid = (lo + hi) / 2
        _, fits = round_trips(torch.cat([bad[:1], bad[1:] * mid]))
        lo, hi = torch.where(fits, mid, lo), torch.where(fits, hi, mid)
    rgb[:, ~ok] = lab_to_rgb(torch.cat([bad[:1], bad[1:] * lo])).squeeze(-1)
    return rgb


def save_image(image: Image.Image, path: str | Path, format: str = "PNG", **options) -> None:
    """Write an image atomically: never a half-written file under its final name."""
    from zoo.fileio import atomic_write

    atomic_write(Path(path), lambda tmp: image.save(tmp, format=format, **options))


def combine(rgb: np.ndarray, ab: torch.Tensor) -> Image.Image:
    """The photo's own L (uint8 (H, W, 3) RGB) + the predicted ab (2, h, w), upsampled -> RGB PIL image (H, W)."""
    height, width = rgb.shape[:2]
    device = ab.device
    ab = ab.float()[None]
    out = np.empty_like(rgb)
    rows = max(1, STRIP_PIXELS // width)
    # grid_sample with align_corners=False samples pixel centres exactly as F.interpolate(..., "bilinear") does.
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = torch.tensor(rgb[top:bottom], device=device).permute(2, 0, 1).float() / 255.0
        L = rgb_to_lab(strip)[:1]  # (1, h, W), L* in [0, 100]
        ys = (torch.arange(top, bottom, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, h, W, (x, y))
        ab_strip = F.grid_sample(ab, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        colour = _fit_gamut(torch.cat([L, ab_strip * AB_SCALE]))
        out[top:bottom] = (colour * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(out)


class Colorizer:
    """A trained generator ready to colorize photos of any size: ``Colorizer.from_checkpoint(path)``."""

    def __init__(self, generator: nn.Module, size: int, device: torch.device, name: str = "generator",
                 source: str | None = None):
        self.generator = generator.to(device).eval()
        self.size = size
        self.device = device
        self.name = name
        self.source = source
        if not runs_at(self.generator, size, device):
            multiple = size_multiple(self.generator, device)
            hint = f"use a multiple of {multiple}, e.g. {max(multiple, round(size / multiple) * multiple)}" \
                if multiple else "use the size it was trained at"
            raise SizeError(f"generator {name!r} cannot run at {size} px: {hint}")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto",
                        size: int | None = None) -> "Colorizer":
        """Load a run folder (its newest good checkpoint) or a ``step-*.safetensors`` file.

        ``device``: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...; ``size``: the resolution the
        generator runs at (default: the one it was trained at).
        """
        from zoo.loading import load_trained

        if size is not None and size < 1:
            raise SizeError(f"size must be a positive number of pixels, got {size}")
        model = load_trained(path, device=device)
        return cls(model.generator, size or model.image_size, model.device, model.name, str(model.checkpoint.path))

    def __repr__(self) -> str:
        return f"Colorizer({self.name!r}, size={self.size}, device={str(self.device)!r}, source={self.source!r})"

    @torch.inference_mode()
    def predict_ab(self, rgbs: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 (H, W, 3) photos -> the generator's ab (B, 2, size, size) in [-1, 1], on the device."""
        side = (self.size, self.size)
        small = np.stack([np.asarray(Image.fromarray(rgb).resize(side, Image.BICUBIC)) for rgb in rgbs])
        L, _ = uint8_to_model_input(torch.from_numpy(small).to(self.device).permute(0, 3, 1, 2))
        return self.generator(L).float()

    def colorize(self, image: Image.Image | np.ndarray) -> Image.Image:
        """One photo (PIL image, or (H, W) / (H, W, 3) uint8 or [0, 1] float array) -> RGB PIL image, same size."""
        return self.colorize_batch([image])[0]

    def colorize_batch(self, images: Iterable[Image.Image | np.ndarray], batch_size: int = 8) -> list[Image.Image]:
        """Several photos, ``batch_size`` at a time through the generator -> RGB PIL images, in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rgbs = [to_rgb_array(image) for image in images]
        out: list[Image.Image] = []
        for start in range(0, len(rgbs), batch_size):
            chunk = rgbs[start:start + batch_size]
            with torch.inference_mode():
                for rgb, ab in zip(chunk, self.predict_ab(chunk)):
                    out.append(combine(rgb, ab))
        return out
