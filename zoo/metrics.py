"""Colorization metrics: pure functions on numpy arrays, one number per image.

Conventions (see :mod:`zoo.evaluate` for the full protocol):

* RGB images are ``uint8`` arrays ``(H, W, 3)``, exactly what a user sees;
* Lab images are float arrays ``(H, W, 3)`` as :func:`skimage.color.rgb2lab` makes them (L* in [0, 100]);
* ab arrays are any two same-shaped float arrays, in whatever units the caller chooses (the model's
  ``ab / 110`` scale, or Lab units).

Every function returns a Python float; none of them modifies its inputs. PSNR, SSIM and CIEDE2000 are
scikit-image's; the colourfulness of Hasler & Süsstrunk is written out here because no library we use has it.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import skimage.color
import skimage.metrics

#: PSNR of identical images is infinite; every PSNR is capped here so that means stay finite (see psnr()).
PSNR_MAX_DB = 100.0

#: Scale between the model's ab (``ab / 110``, in about [-1, 1]) and Lab units.
AB_SCALE = 110.0

#: metric key -> (column title, which direction is better: "lower", "higher" or None, one-line definition)
METRICS: dict[str, tuple[str, str | None, str]] = {
    "ab_l1": ("ab L1", "lower", "mean |predicted ab - true ab|, model scale (ab/110)"),
    "ab_l2": ("ab L2", "lower", "mean (predicted ab - true ab)^2 (MSE), model scale (ab/110)"),
    "ab_l1_lab": ("ab L1 Lab", "lower", "mean |predicted ab - true ab| in Lab units (110 x ab L1)"),
    "ab_l2_lab": ("ab L2 Lab", "lower", "mean (predicted ab - true ab)^2 in Lab units squared (110^2 x ab L2)"),
    "psnr": ("PSNR dB", "higher", f"PSNR of the uint8 RGB image, data range 255, capped at {PSNR_MAX_DB:g} dB"),
    "ssim": ("SSIM", "higher", "SSIM of the uint8 RGB image (skimage defaults: 7x7 uniform window), data range "
                               "255, channel_axis=-1"),
    "deltae00": ("dE00", "lower", "mean CIEDE2000 colour difference per pixel, Lab of the uint8 RGB images"),
    "colorfulness": ("CF", None, "Hasler-Suesstrunk colourfulness M of the predicted uint8 RGB image"),
    "colorfulness_truth": ("CF truth", None, "Hasler-Suesstrunk colourfulness M of the ground truth"),
    "colorfulness_abs_diff": ("|dCF|", "lower", "|CF(prediction) - CF(ground truth)|"),
}

#: per-image metrics that need a pretrained network (zoo.perceptual); present only when it is available
PERCEPTUAL_METRICS: dict[str, tuple[str, str | None, str]] = {
    "lpips": ("LPIPS", "lower", "LPIPS (lpips package, AlexNet v0.1) of the uint8 RGB prediction vs the truth"),
}

#: dataset-level metrics: one number per set of images, not a mean of per-image numbers
DATASET_METRICS: dict[str, tuple[str, str | None, str]] = {
    "colorfulness_dataset_abs_diff": ("|dCF| set", "lower", "|mean CF(predictions) - mean CF(truths)| over the "
                                      "images (DDColor's convention), next to the per-image mean |dCF|"),
    "fid": ("FID", "lower", "Frechet Inception Distance of the predictions to the truths (zoo.perceptual)"),
}

#: every metric key an evaluation can report, in table order
ALL_METRICS = {**METRICS, **PERCEPTUAL_METRICS, **DATASET_METRICS}


def dataset_colorfulness_gap(pred_cf, true_cf) -> float:
    """|mean CF(prediction) - mean CF(truth)| over a set of images, from their per-image colourfulness."""
    return float(abs(np.mean(np.asarray(pred_cf, np.float64)) - np.mean(np.asarray(true_cf, np.float64))))


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ: {a.shape} vs {b.shape}")


def _check_rgb(*images: np.ndarray) -> None:
    for img in images:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {img.dtype} {img.shape}")


def ab_l1(pred_ab: np.ndarray, true_ab: np.ndarray) -> float:
    """Mean absolute difference of two ab arrays (every pixel and both channels weigh the same).

    The result is in the units of the inputs: pass the model's ``ab / 110`` arrays for the training loss's
    scale, or multiply by :data:`AB_SCALE` (the result scales linearly) for Lab units.
    """
    pred, true = np.asarray(pred_ab, np.float64), np.asarray(true_ab, np.float64)
    _same_shape(pred, true, "ab_l1")
    return float(np.mean(np.abs(pred - true)))


def ab_l2(pred_ab: np.ndarray, true_ab: np.ndarray) -> float:
    """Mean squared difference (MSE) of two ab arrays, in the inputs' units squared.

    In Lab units it is ``AB_SCALE**2`` times the value in the model's scale.
    """
    pred, true = np.asarray(pred_ab, np.float64), np.asarray(true_ab, np.float64)
    _same_shape(pred, true, "ab_l2")
    return float(np.mean((pred - true) ** 2))


def psnr(pred_rgb: np.ndarray, true_rgb: np.ndarray, max_db: float = PSNR_MAX_DB) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 RGB images (data range 255), at most ``max_db``.

    ``skimage.metrics.peak_signal_noise_ratio``: ``10 log10(255^2 / MSE)`` over all pixels and channels.
    Identical images (MSE 0, for instance the gray baseline on a photo that is already gray) have an
    infinite PSNR; they, and any PSNR above ``max_db``, count as ``max_db``, so a mean over images stays finite.
    """
    _check_rgb(pred_rgb, true_rgb)
    _same_shape(pred_rgb, true_rgb, "psnr")
    with warnings.catch_warnings():  # skimage warns on MSE 0 before returning inf
        warnings.simplefilter("ignore", RuntimeWarning)
        value = skimage.metrics.peak_signal_noise_ratio(true_rgb, pred_rgb, data_range=255)
    return float(min(value, max_db))


def ssim(pred_rgb: np.ndarray, true_rgb: np.ndarray) -> float:
    """Mean structural similarity of two uint8 RGB images (each side at least 7 px).

    ``skimage.metrics.structural_similarity`` with ``data_range=255, channel_axis=-1`` and its defaults
    (7x7 uniform window, K1 0.01, K2 0.03, sample covariances): the mean SSIM over pixels and channels.
    """
    _check_rgb(pred_rgb, true_rgb)
    _same_shape(pred_rgb, true_rgb, "ssim")
    return float(skimage.metrics.structural_similarity(true_rgb, pred_rgb, data_range=255, channel_axis=-1))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float64 CIE Lab (D65, 2 degree observer), ``skimage.color.rgb2lab``."""
    _check_rgb(rgb)
    return skimage.color.rgb2lab(rgb)


def deltae2000(pred_lab: np.ndarray, true_lab: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference (ΔE00) over the pixels of two Lab images (H, W, 3).

    ``skimage.color.deltaE_ciede2000`` per pixel (kL = kC = kH = 1), then the plain mean. About 1 is a
    just-noticeable difference; it weighs lightness, chroma and hue differences as the eye does.
    """
    pred, true = np.asarray(pred_lab, np.float64), np.asarray(true_lab, np.float64)
    _same_shape(pred, true, "deltae2000")
    if pred.shape[-1] != 3:
        raise ValueError(f"expected Lab images (..., 3), got {pred.shape}")
    return float(np.mean(skimage.color.deltaE_ciede2000(true, pred, channel_axis=-1)))


def colorfulness(rgb: np.ndarray) -> float:
    """Colourfulness M of Hasler & Süsstrunk (2003), "Measuring colourfulness in natural images", on uint8 RGB.

    With rg = R - G and yb = (R + G) / 2 - B over all pixels (0..255 values):
    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)`` (population standard
    deviations). 0 for a gray image; the paper calls about 33 "moderately" and above 59 "extremely" colourful.
    """
    _check_rgb(rgb)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def image_metrics(pred_rgb: np.ndarray, true_rgb: np.ndarray, pred_ab: np.ndarray, true_ab: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one image.

    ``pred_rgb`` / ``true_rgb``: uint8 RGB (H, W, 3) of the prediction and the ground truth;
    ``pred_ab`` / ``true_ab``: the predicted and true ab in the model's scale (``ab / 110``), any equal shapes.
    """
    l1, l2 = ab_l1(pred_ab, true_ab), ab_l2(pred_ab, true_ab)
    cf, cf_true = colorfulness(pred_rgb), colorfulness(true_rgb)
    return {
        "ab_l1": l1,
        "ab_l2": l2,
        "ab_l1_lab": l1 * AB_SCALE,
        "ab_l2_lab": l2 * AB_SCALE**2,
        "psnr": psnr(pred_rgb, true_rgb),
        "ssim": ssim(pred_rgb, true_rgb),
        "deltae00": deltae2000(rgb_to_lab(pred_rgb), rgb_to_lab(true_rgb)),
        "colorfulness": cf,
        "colorfulness_truth": cf_true,
        "colorfulness_abs_diff": abs(cf - cf_true),
    }


__all__ = ["AB_SCALE", "ALL_METRICS", "DATASET_METRICS", "METRICS", "PERCEPTUAL_METRICS", "dataset_colorfulness_gap", "PSNR_MAX_DB", "ab_l1", "ab_l2", "colorfulness", "deltae2000", "image_metrics",
           "psnr", "rgb_to_lab", "ssim"]
