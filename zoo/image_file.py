"""Reading one image file safely: any mode to RGB (alpha over white, 16-bit scaled, EXIF orientation applied),
a pixel limit against decompression bombs, and one :class:`UnreadableImage` with a short reason (empty,
truncated, not an image, too large, permission denied, not a regular file) instead of a crash."""
from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Refuse images above this many pixels (or above PIL's own warning threshold, if lower): a tiny file
# can claim a huge size and decoding it would exhaust memory.
MAX_PIXELS = 100_000_000

class UnreadableImage(DataError):
    """An image file cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}; fix or remove the file")


def pixel_limit() -> int:
    pil_limit = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, int(pil_limit)) if pil_limit else MAX_PIXELS


def _to_uint8(array: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Scale a single-channel high bit depth array to 0..255 (never by clipping)."""
    array = array.astype(np.float64)
    if full_scale is None:  # unknown range: stretch what is there
        lo, hi = float(array.min()), float(array.max())
        array = (array - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(array)
    else:
        array = array * (255.0 / full_scale)
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I;16"):
        return Image.fromarray(_to_uint8(np.asarray(img), 65535.0)).convert("RGB")
    if mode == "I":
        # 32-bit integer images almost always hold 16-bit data (older Pillow opened 16-bit PNGs as "I").
        array = np.asarray(img)
        in_16_bit = array.size and array.min() >= 0 and array.max() <= 65535
        return Image.fromarray(_to_uint8(array, 65535.0 if in_16_bit else None)).convert("RGB")
    if mode == "F":
        array = np.asarray(img)
        in_unit = array.size and np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1
        return Image.fromarray(_to_uint8(np.nan_to_num(array), 1.0 if in_unit else None)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image, upright according to its EXIF orientation.

    Any mode is converted: grayscale and bilevel are replicated, palettes expanded, alpha (and palette
    transparency) composited over white, 16-bit scaled by 255/65535, float in [0, 1] scaled by 255
    (other ranges are stretched), CMYK converted. Multi-frame files give their first frame.
    Raises :class:`UnreadableImage` with a short reason when the file cannot be used.
    ``data``: the file's bytes (an image stored in a dataset), ``path`` then only names it.
    """
    path = Path(path)
    try:
        if data is None:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO or a device named *.png would block or never end
                raise UnreadableImage(path, "not a regular file")
            if info.st_size == 0:
                raise UnreadableImage(path, "empty file (0 bytes)")
        elif not data:
            raise UnreadableImage(path, "empty image (0 bytes)")
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            pixels = img.size[0] * img.size[1]
            if pixels > pixel_limit():
                raise UnreadableImage(
                    path,
                    f"image too large ({img.size[0]}x{img.size[1]} pixels, limit {pixel_limit():,}): "
                    "possible decompression bomb",
                )
            try:
                img.load()  # decode everything now, so truncation is caught here and not mid-epoch
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                message = str(exc)
                reason = "truncated file" if "truncated" in message.lower() else f"corrupt image data ({message})"
                raise UnreadableImage(path, reason) from exc
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                pass
            rgb = to_rgb(img)
    except UnreadableImage:
        raise
    except FileNotFoundError as exc:
        raise UnreadableImage(path, "file not found") from exc
    except PermissionError as exc:
        raise UnreadableImage(path, "permission denied") from exc
    except IsADirectoryError as exc:
        raise UnreadableImage(path, "is a directory") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(path, "not an image") from exc
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(claimed.group(1)):,} pixels, " if claimed else ""
        raise UnreadableImage(path, f"image too large ({size}limit {pixel_limit():,}): possible decompression "
                                    f"bomb") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated file" if "truncated" in str(exc).lower() else f"corrupt image ({exc})"
        raise UnreadableImage(path, reason) from exc
    return rgb


