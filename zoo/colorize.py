"""Colorize photos with a trained generator, keeping each photo's own size and sharpness.

The generator runs at its training resolution (``spec.data.image_size``, or ``size``): the photo is resized
to size x size (PIL bicubic, as the training images were) and its L channel goes through the generator
(:class:`zoo.inference.Predictor`: by default in the precision it was trained in). The predicted ab is
upsampled bilinearly to the photo's size and combined with the photo's own full-resolution L, so fine detail
and lightness are the input's; only the colour comes from the model.

Colours that the combination would push outside sRGB lose chroma (hue and L kept) until they fit, instead
of being clipped per channel, which would change their lightness (:func:`zoo.lab.lab_to_uint8`, which ``zoo
eval`` and the sample grids use too). A colour photo is treated as the gray photo with its lightness: its own
colours are discarded. Files and folders are colorized by :func:`zoo.batch.colorize_paths` (``zoo colorize``).

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

from zoo.inference import NonFiniteOutput, Predictor, SizeError, check_size
from zoo.lab import AB_SCALE, rgb_to_lab, to_uint8, uint8_to_model_input

#: the full-resolution combination runs in strips of about this many pixels (bounded memory for any size)
STRIP_PIXELS = 1 << 20
#: a photo whose R, G and B differ by more than this (out of 255) somewhere is a colour photo
COLOUR_TOLERANCE = 2


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or a numpy array -> uint8 (H, W, 3) RGB.

    PIL images of any mode are converted as files are (``zoo.image_file.load_rgb``) and turned upright by their EXIF
    orientation. Arrays: (H, W) or (H, W, 1) gray, or (H, W, 3) RGB; uint8, or float in [0, 1].
    """
    if isinstance(image, Image.Image):
        from zoo.image_file import to_rgb

        return np.asarray(to_rgb(ImageOps.exif_transpose(image)), dtype=np.uint8)
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


def save_image(image: Image.Image, path: str | Path, format: str = "PNG", **options) -> None:
    """Write an image atomically (never a half-written file under its final name), with zoo's mark in it."""
    from zoo.fileio import atomic_write, image_mark_options

    options = {**image_mark_options(format), **options}
    atomic_write(Path(path), lambda tmp: image.save(tmp, format=format, **options))


def compose(rgb: np.ndarray, ab: torch.Tensor, saturation: float = 1.0) -> np.ndarray:
    """The photo's own L (uint8 (H, W, 3) RGB) + the predicted ab (2, h, w), upsampled -> uint8 (H, W, 3) RGB.

    What ``zoo colorize`` writes and ``zoo eval`` scores. At the photo's own size (h, w = H, W) ab is used as it
    is; otherwise it is upsampled bilinearly (pixel centres, as ``F.interpolate(..., "bilinear")``).
    ``saturation`` scales the Lab chroma before the gamut fitting (:func:`zoo.colour_control.saturate`): 0 gray,
    1 the model's colours, > 1 more vivid.
    """
    from zoo.colour_control import check_saturation, saturate

    saturation = check_saturation(saturation)
    height, width = rgb.shape[:2]
    device = ab.device
    ab = ab.float()[None]
    same_size = tuple(ab.shape[-2:]) == (height, width)
    out = np.empty_like(rgb)
    rows = max(1, STRIP_PIXELS // width)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = torch.tensor(rgb[top:bottom], device=device).permute(2, 0, 1).float() / 255.0
        L = rgb_to_lab(strip)[:1]  # (1, h, W), L* in [0, 100]
        if same_size:
            ab_strip = ab[0, :, top:bottom]
        else:
            ys = (torch.arange(top, bottom, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, h, W, (x, y))
            ab_strip = F.grid_sample(ab, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        out[top:bottom] = to_uint8(saturate(L, ab_strip * AB_SCALE, saturation)).permute(1, 2, 0).cpu().numpy()
    return out


def combine(rgb: np.ndarray, ab: torch.Tensor, saturation: float = 1.0) -> Image.Image:
    """:func:`compose` as an RGB PIL image."""
    return Image.fromarray(compose(rgb, ab, saturation))


class Colorizer:
    """A trained generator ready to colorize photos of any size: ``Colorizer.from_checkpoint(path)``.

    ``Colorizer(predictor, size, saturation)``: a :class:`zoo.inference.Predictor`, the side it runs at (default:
    its training size, checked by :func:`zoo.inference.check_size`) and the colour saturation of its outputs (0
    gray, 1 the model's colours, > 1 more vivid; see :mod:`zoo.colour_control`).
    """

    def __init__(self, predictor: Predictor, size: int | None = None, saturation: float = 1.0):
        from zoo.colour_control import check_saturation

        self.saturation = check_saturation(saturation)
        if size is None:
            if predictor.spec is None:
                raise SizeError("a Colorizer of a generator without a spec needs a size")
            size = predictor.spec.data.image_size
        check_size(predictor, size)
        self.predictor = predictor
        self.size = size

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", size: int | None = None,
                        precision: str | None = None, saturation: float = 1.0, weights: str = "auto",
                        compile: str = "off") -> "Colorizer":
        """Load a run folder (its newest good checkpoint) or a ``step-*.safetensors`` file.

        ``device``: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...; ``size``: the resolution the
        generator runs at (default: the one it was trained at); ``precision``: None (the training precision, as
        this device runs it), "auto", "fp32", "bf16" or "fp16"; ``weights``: "auto" (the moving average of the
        generator's weights when the run kept one, :mod:`zoo.ema`, else the raw weights), "ema" or "raw";
        ``compile``: "on", "off" or "auto" (on with CUDA): torch.compile the generator (a one-off cost of
        seconds to a minute that pays over many photos, :class:`zoo.inference.Predictor`).
        """
        if size is not None and size < 1:
            raise SizeError(f"size must be a positive number of pixels, got {size}")
        return cls(Predictor.load(path, device=device, precision=precision, weights=weights, compile=compile), size,
                   saturation)

    @property
    def generator(self) -> nn.Module:
        return self.predictor.generator

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    @property
    def precision(self) -> str:
        return self.predictor.precision

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def source(self) -> str | None:
        return self.predictor.source

    @property
    def weights(self) -> str | None:
        """"ema" or "raw": which of the checkpoint's generators runs (None: a generator not from a checkpoint)."""
        return self.predictor.weights

    def __repr__(self) -> str:
        return (f"Colorizer({self.name!r}, size={self.size}, device={str(self.device)!r}, "
                f"precision={self.precision!r}, saturation={self.saturation:g}, weights={self.weights!r}, "
                f"source={self.source!r})")

    def predict_ab(self, rgbs: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 (H, W, 3) photos -> the generator's ab (B, 2, size, size) in [-1, 1], float32 on the device.

        NaN/inf raise :class:`zoo.inference.NonFiniteOutput` (its ``bad`` says which photos, ``ab`` has the rest).
        """
        side = (self.size, self.size)
        small = np.stack([np.asarray(Image.fromarray(rgb).resize(side, Image.BICUBIC)) for rgb in rgbs])
        L, _ = uint8_to_model_input(torch.from_numpy(small).to(self.device).permute(0, 3, 1, 2))
        return self.predictor.predict_ab(L)

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
                    out.append(combine(rgb, ab, self.saturation))
        return out


__all__ = ["Colorizer", "NonFiniteOutput", "SizeError", "combine", "compose", "is_colour", "save_image",
           "to_rgb_array"]
