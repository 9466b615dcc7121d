"""Image grids for sample sheets and reports."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from zoo.fileio import atomic_write
from zoo.lab import to_uint8 as _to_uint8


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] (or already uint8) -> (H, W, 3) uint8, by zoo's one rounding rule
    (:func:`zoo.lab.to_uint8`)."""
    pixels = img if img.dtype == torch.uint8 else _to_uint8(img)
    return pixels.permute(1, 2, 0).cpu().numpy()


def save_grid(cells: torch.Tensor, path: str | Path, column_titles: Sequence[str] = (), pad: int = 2,
              min_cell: int = 128) -> Path:
    """Save rows x columns of RGB images ``cells`` (R, C, 3, H, W: floats in [0, 1], or uint8 as
    :func:`zoo.lab.model_output_to_uint8` makes them) as one PNG.

    Small images are upscaled (nearest) to at least ``min_cell`` pixels so a 64 px sample stays legible.
    """
    rows, cols, _, h, w = cells.shape
    scale = max(1, -(-min_cell // max(h, w)))
    ch, cw = h * scale, w * scale
    header = 14 if column_titles else 0
    sheet = Image.new("RGB", (cols * (cw + pad) + pad, header + rows * (ch + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(column_titles):
        draw.text((pad + c * (cw + pad) + 2, 1), title, fill=(0, 0, 0))
    for r in range(rows):
        for c in range(cols):
            tile = Image.fromarray(to_uint8(cells[r, c]))
            if scale > 1:
                tile = tile.resize((cw, ch), Image.NEAREST)
            sheet.paste(tile, (pad + c * (cw + pad), header + pad + r * (ch + pad)))
    path = Path(path)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))  # a full disk leaves no half-written grid
    return path
