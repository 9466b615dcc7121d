"""Error bars for the leaderboard: a mean over seeds with its 95 % interval, and paired bootstrap intervals of the
difference between two entries (scipy.stats; no hand-written resampling).

* :func:`seed_interval`: the mean of one number per seed and its Student-t 95 % interval
  (``scipy.stats.t.interval``; none with a single seed).
* :func:`paired_difference`: the difference of two entries' mean scores, with a 95 % interval from
  ``scipy.stats.bootstrap(paired=True, vectorized=True)`` over the (seed, image) cells both entries share: the
  same image scored by the same seed index of each entry moves together in every resample, so image difficulty
  cancels out; the random state is fixed, so the same scores always give the same interval.
* :func:`is_tied`: an interval of the difference that contains 0.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 4999
RANDOM_STATE = 0


def seed_interval(values) -> dict[str, Any]:
    """{"mean", "low", "high", "n"} of one value per seed; low/high None with fewer than 2 seeds."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "low": None, "high": None, "n": int(x.size)}
    sem = float(stats.sem(x))
    if sem == 0.0:  # every seed gave the same number
        return {"mean": mean, "low": mean, "high": mean, "n": int(x.size)}
    low, high = stats.t.interval(CONFIDENCE, x.size - 1, loc=mean, scale=sem)
    return {"mean": mean, "low": float(low), "high": float(high), "n": int(x.size)}


def paired_difference(a, b, statistic: str = "mean") -> dict[str, Any]:
    """mean(a) - mean(b) with a paired bootstrap 95 % interval; ``a`` and ``b`` are (seeds, images) arrays of the
    same shape, cell [s, i] = image i scored by seed index s of each entry.

    ``statistic``: "mean" (of a per-image metric) or "abs_mean_gap" for a dataset-level number computed from two
    per-image columns each (``a`` and ``b`` then have shape (2, seeds, images): [0] the prediction's value, [1] the
    truth's, e.g. colourfulness; the statistic is |mean pred - mean truth|).
    Returns {"diff", "low", "high", "method", "n_cells", "n_resamples", "random_state"}.
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: shapes differ: {a.shape} vs {b.shape}")
    if statistic == "mean":
        cells = (a.reshape(-1), b.reshape(-1))

        def stat(x, y, axis=-1):
            return np.mean(x, axis=axis) - np.mean(y, axis=axis)
    elif statistic == "abs_mean_gap":
        cells = (a[0].reshape(-1), a[1].reshape(-1), b[0].reshape(-1), b[1].reshape(-1))

        def stat(pa, ta, pb, tb, axis=-1):
            return (np.abs(np.mean(pa, axis=axis) - np.mean(ta, axis=axis))
                    - np.abs(np.mean(pb, axis=axis) - np.mean(tb, axis=axis)))
    else:
        raise ValueError(f"unknown statistic {statistic!r}")
    diff = float(stat(*cells))
    n = int(cells[0].size)
    out = {"diff": diff, "low": None, "high": None, "method": None, "n_cells": n, "n_resamples": N_RESAMPLES,
           "random_state": RANDOM_STATE, "confidence": CONFIDENCE}
    if n < 2:
        return out
    per_cell = np.stack(cells)
    if np.all(per_cell == per_cell[:, :1]):  # no variation: every resample gives the same difference
        out.update(low=diff, high=diff, method="exact (no variation)")
        return out
    for method in ("BCa", "percentile"):  # BCa is undefined on some tiny samples: fall back, and say so
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(cells, stat, paired=True, vectorized=True, confidence_level=CONFIDENCE,
                                  n_resamples=N_RESAMPLES, method=method, random_state=RANDOM_STATE)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            out.update(low=low, high=high, method=method)
            return out
    return out


def is_tied(difference: dict[str, Any]) -> bool | None:
    """Whether the interval of a difference contains 0 (None when there is no interval)."""
    low, high = difference.get("low"), difference.get("high")
    if low is None or high is None:
        return None
    return low <= 0.0 <= high


__all__ = ["CONFIDENCE", "N_RESAMPLES", "RANDOM_STATE", "is_tied", "paired_difference", "seed_interval"]
