"""zoo.colour_control.saturate_image: Lab chroma scaling with the gamut rule of zoo.colorize."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.color import rgb2lab


@pytest.fixture(scope="module")
def photo():
    return Image.fromarray(skimage.data.coffee()).resize((120, 80), Image.BICUBIC)


def chroma(img):
    lab = rgb2lab(np.asarray(img))
    return lab, np.hypot(lab[..., 1], lab[..., 2])


def test_zero_is_gray_one_is_identity(photo):
    from zoo.colour_control import saturate_image

    gray = np.asarray(saturate_image(photo, 0)).astype(int)
    assert np.ptp(gray, axis=2).max() <= 1
    assert np.abs(rgb2lab(gray.astype(np.uint8))[..., 0] - rgb2lab(np.asarray(photo))[..., 0]).mean() < 0.5
    assert np.array_equal(np.asarray(saturate_image(photo, 1)), np.asarray(photo))


def test_more_vivid_keeps_lightness_and_hue(photo):
    from zoo.colour_control import saturate_image

    lab0, c0 = chroma(photo)
    lab2, c2 = chroma(saturate_image(photo, 2.0))
    assert c2.mean() > 1.4 * c0.mean()
    assert np.abs(lab2[..., 0] - lab0[..., 0]).mean() < 1.0  # lightness kept (gamut fit never clips per channel)
    coloured = c0 > 10
    hue = lambda lab: np.arctan2(lab[..., 2], lab[..., 1])
    dh = np.angle(np.exp(1j * (hue(lab2) - hue(lab0))))[coloured]
    assert np.abs(dh).mean() < 0.1
    # per-channel clipping, what the gamut fit avoids, changes the lightness much more
    lab_clip = lab0.copy()
    lab_clip[..., 1:] *= 2
    from skimage.color import lab2rgb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the very out-of-gamut colours this shows
        clipped = rgb2lab(np.clip(lab2rgb(lab_clip), 0, 1))
    assert np.abs(clipped[..., 0] - lab0[..., 0]).mean() > np.abs(lab2[..., 0] - lab0[..., 0]).mean()
    half = chroma(saturate_image(photo, 0.5))[1]
    assert abs(half.mean() - 0.5 * c0.mean()) < 0.05 * c0.mean()


@pytest.mark.parametrize("bad", [-0.1, 4.5, float("nan"), "x"])
def test_bad_saturation_is_a_clear_error(photo, bad):
    from zoo.colour_control import SaturationError, saturate_image

    with pytest.raises(SaturationError, match="saturation must"):
        saturate_image(photo, bad)
