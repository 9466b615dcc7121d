"""A training run's view of its validation photos at a sample step: the val metrics and the sample grid.

:func:`validation_grid` runs the generator (through :class:`zoo.inference.Predictor`, the one inference path)
over the first ``spec.data.val_images`` validation photos and returns

* the metrics row: ``val_l1`` (mean ab L1 in model units over those photos), and ``val_deltae00``, ``val_psnr``,
  ``val_ssim`` over the grid's photos (the first ``spec.num_samples``), each defined as ``zoo eval`` defines it
  (:mod:`zoo.metrics`), at the training size: a few images, so cheap at every sample step;
* the grid: uint8 ``(k, 3 columns, 3, H, W)``, columns gray input | prediction | ground truth.

The trainer writes the row to the run's log and the grid to ``samples/`` (:mod:`zoo.engine`).
"""
from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def validation_grid(predictor: Any, images: torch.Tensor, n_eval: int, batch_size: int,
                    num_samples: int) -> tuple[dict[str, float], torch.Tensor]:
    """(metrics row, grid) of ``predictor`` (a :class:`zoo.inference.Predictor`) on the first ``n_eval`` of the
    uint8 RGB ``images`` (N, 3, H, W), in batches of ``batch_size``; the grid holds the first ``num_samples``."""
    from zoo.lab import model_output_to_uint8, uint8_to_model_input

    device = predictor.runtime.device
    l1_sum, rows = 0.0, []
    for start in range(0, n_eval, batch_size):
        L, ab = uint8_to_model_input(images[start:min(n_eval, start + batch_size)].to(device))
        fake = predictor.predict_ab(L, check_finite=False)  # a NaN shows in val_l1 and the trainer's loss check
        l1_sum += (fake - ab).abs().mean(dim=(1, 2, 3)).sum().item()
        if start < num_samples:
            k = min(num_samples - start, L.shape[0])
            cells = [model_output_to_uint8(L[:k], x[:k]) for x in (torch.zeros_like(ab), fake, ab)]
            rows.append(torch.stack(cells, 1).cpu())
    grid = torch.cat(rows, 0)
    return {"val_l1": l1_sum / n_eval, **grid_metrics(grid)}, grid


def grid_metrics(grid: torch.Tensor) -> dict[str, float]:
    """Mean ΔE00, PSNR and SSIM of a sample grid's predictions (column 1) against its ground truths (column 2)."""
    from zoo.metrics import deltae2000, psnr, rgb_to_lab, ssim

    scores: dict[str, list[float]] = {"val_deltae00": [], "val_psnr": [], "val_ssim": []}
    for row in grid:
        pred, truth = (row[c].permute(1, 2, 0).numpy() for c in (1, 2))
        scores["val_deltae00"].append(deltae2000(rgb_to_lab(pred), rgb_to_lab(truth)))
        scores["val_psnr"].append(psnr(pred, truth))
        scores["val_ssim"].append(ssim(pred, truth))
    return {key: sum(values) / len(values) for key, values in scores.items()}


__all__ = ["grid_metrics", "validation_grid"]
