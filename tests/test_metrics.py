"""zoo.metrics against scikit-image on real photos and against values computed by hand on tiny images."""
import math

import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.metrics

from zoo import metrics


def photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


def noisy(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(np.rint(rgb + noise), 0, 255).astype(np.uint8)


def desaturated(rgb: np.ndarray, factor: float) -> np.ndarray:
    hsv = skimage.color.rgb2hsv(rgb)
    hsv[..., 1] *= factor
    return np.clip(np.rint(skimage.color.hsv2rgb(hsv) * 255), 0, 255).astype(np.uint8)


# ---- against scikit-image on real photos ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_psnr_and_ssim_match_skimage_on_photos(name):
    truth = photo(name)
    pred = noisy(truth, 12.0)
    expected_psnr = skimage.metrics.peak_signal_noise_ratio(truth, pred, data_range=255)
    expected_ssim = skimage.metrics.structural_similarity(truth, pred, data_range=255, channel_axis=-1)
    assert 20 < expected_psnr < 40  # a real, finite PSNR: the cap must not touch it
    assert metrics.psnr(pred, truth) == pytest.approx(expected_psnr, rel=1e-12)
    assert metrics.ssim(pred, truth) == pytest.approx(expected_ssim, rel=1e-12)
    assert 0 < metrics.ssim(pred, truth) < 1


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_deltae2000_matches_skimage_on_photos(name):
    truth = photo(name)
    pred = desaturated(truth, 0.5)
    lab_t, lab_p = skimage.color.rgb2lab(truth), skimage.color.rgb2lab(pred)
    expected = skimage.color.deltaE_ciede2000(lab_t, lab_p, channel_axis=-1).mean()
    assert expected > 1  # halving saturation is a visible difference
    assert metrics.deltae2000(metrics.rgb_to_lab(pred), metrics.rgb_to_lab(truth)) == pytest.approx(expected)
    assert np.allclose(metrics.rgb_to_lab(truth), lab_t)


def test_colorfulness_orders_real_photos_by_saturation():
    rgb = photo("astronaut")
    full, half, gray = rgb, desaturated(rgb, 0.5), desaturated(rgb, 0.0)
    assert metrics.colorfulness(full) > metrics.colorfulness(half) > metrics.colorfulness(gray)
    assert metrics.colorfulness(gray) < 0.5  # zero saturation is gray (up to rounding to uint8)


def test_image_metrics_of_a_photo_against_itself():
    rgb = photo("coffee")
    lab = skimage.color.rgb2lab(rgb)
    ab = lab[..., 1:] / metrics.AB_SCALE
    scores = metrics.image_metrics(rgb, rgb, ab, ab)
    assert set(scores) == set(metrics.METRICS)
    assert scores["ab_l1"] == scores["ab_l2"] == scores["deltae00"] == scores["colorfulness_abs_diff"] == 0.0
    assert scores["psnr"] == metrics.PSNR_MAX_DB  # identical images: infinite PSNR, capped
    assert scores["ssim"] == pytest.approx(1.0)
    assert scores["colorfulness"] == scores["colorfulness_truth"] > 20


def test_image_metrics_lab_units_are_the_model_scale_times_110():
    truth = photo("chelsea")[:64, :64]
    pred = desaturated(truth, 0.3)
    ab_t = skimage.color.rgb2lab(truth)[..., 1:] / 110
    ab_p = skimage.color.rgb2lab(pred)[..., 1:] / 110
    s = metrics.image_metrics(pred, truth, ab_p, ab_t)
    assert s["ab_l1"] > 0.01
    assert s["ab_l1_lab"] == pytest.approx(110 * s["ab_l1"])
    assert s["ab_l2_lab"] == pytest.approx(110**2 * s["ab_l2"])
    assert s["ab_l1_lab"] == pytest.approx(np.abs(skimage.color.rgb2lab(pred)[..., 1:]
                                                  - skimage.color.rgb2lab(truth)[..., 1:]).mean())


# ---- hand-computed values on tiny arrays ---------------------------------------------------------------------

def test_ab_l1_and_l2_by_hand():
    pred = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert metrics.ab_l1(pred, np.zeros((2, 2))) == 1.5  # (0 + 1 + 2 + 3) / 4
    assert metrics.ab_l2(pred, np.zeros((2, 2))) == 3.5  # (0 + 1 + 4 + 9) / 4
    assert metrics.ab_l1(-pred, pred) == 3.0


def test_psnr_by_hand_on_2x2_images():
    truth = np.zeros((2, 2, 3), np.uint8)
    pred = truth.copy()
    pred[0, 0, 0] = 10  # one of 12 values off by 10: MSE = 100 / 12
    assert metrics.psnr(pred, truth) == pytest.approx(10 * math.log10(255**2 / (100 / 12)))  # 38.92 dB
    pred[:] = 255  # every value off by 255: MSE = 255^2 -> 0 dB
    assert metrics.psnr(pred, truth) == pytest.approx(0.0)


def test_psnr_rule_caps_identical_images():
    gray = np.full((2, 2, 3), 77, np.uint8)
    assert metrics.psnr(gray, gray) == metrics.PSNR_MAX_DB == 100.0
    assert metrics.psnr(gray, gray, max_db=60.0) == 60.0
    camera = np.repeat(photo("camera")[..., None], 3, axis=-1)
    assert math.isfinite(np.mean([metrics.psnr(camera, camera), metrics.psnr(noisy(camera, 5.0), camera)]))


def test_ssim_by_hand_on_constant_images():
    # Constant images have no variance, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1), C1 = (0.01 * 255)^2.
    a, b = np.full((7, 7, 3), 100, np.uint8), np.full((7, 7, 3), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))


def test_deltae2000_by_hand_for_lightness_differences():
    # a = b = 0: dE00 = dL / S_L with S_L = 1 + 0.015 (Lm - 50)^2 / sqrt(20 + (Lm - 50)^2), Lm the mean L.
    lab1 = np.zeros((2, 2, 3))
    lab2 = np.zeros((2, 2, 3))
    lab1[..., 0], lab2[..., 0] = 45.0, 55.0  # Lm = 50: S_L = 1
    assert metrics.deltae2000(lab1, lab2) == pytest.approx(10.0)
    lab1[..., 0], lab2[..., 0] = 50.0, 60.0  # Lm = 55: S_L = 1 + 0.375 / sqrt(45)
    assert metrics.deltae2000(lab1, lab2) == pytest.approx(10.0 / (1 + 0.375 / math.sqrt(45)))


def test_colorfulness_by_hand_on_2x2_images():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255  # rg = 255, yb = 127.5 everywhere: no spread, M = 0.3 * sqrt(255^2 + 127.5^2)
    assert metrics.colorfulness(red) == pytest.approx(0.3 * math.sqrt(255**2 + 127.5**2))
    half = np.zeros((2, 2, 3), np.uint8)
    half[0, :, 0] = 255  # two red, two black pixels: rg mean = std = 127.5, yb mean = std = 63.75
    assert metrics.colorfulness(half) == pytest.approx(1.3 * math.sqrt(127.5**2 + 63.75**2))
    assert metrics.colorfulness(np.full((2, 2, 3), 200, np.uint8)) == 0.0


def test_metrics_refuse_mismatched_or_non_uint8_images():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        metrics.ssim(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ab_l1(np.zeros((2, 2)), np.zeros((2, 3)))
