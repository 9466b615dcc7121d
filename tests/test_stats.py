"""zoo.stats: seed intervals against the t formula, paired bootstrap intervals of differences (pairing matters,
ties, reproducibility, the dataset-level statistic)."""
import numpy as np
import pytest
from scipy import stats as sps

from zoo.stats import is_tied, paired_difference, seed_interval


def test_seed_interval_is_the_student_t_interval():
    values = [14.2, 15.1, 14.7]
    got = seed_interval(values)
    x = np.array(values)
    half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    assert got["mean"] == pytest.approx(x.mean())
    assert got["low"] == pytest.approx(x.mean() - half) and got["high"] == pytest.approx(x.mean() + half)
    assert seed_interval([3.0])["low"] is None  # one seed: no interval, not a zero-width one
    assert seed_interval([2.0, 2.0])["low"] == seed_interval([2.0, 2.0])["high"] == 2.0


def test_pairing_over_images_separates_a_small_consistent_gain_from_noise():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(15.0, 5.0, size=(2, 30))  # images differ far more than the entries do
    a = difficulty + rng.normal(0, 0.05, difficulty.shape)
    b = difficulty + 0.3 + rng.normal(0, 0.05, difficulty.shape)  # b is worse by 0.3 on every image
    d = paired_difference(a, b)
    assert d["diff"] == pytest.approx(a.mean() - b.mean())
    assert d["high"] < 0 and not is_tied(d)  # paired: the gain is clear
    unpaired = sps.bootstrap((a.ravel(), b.ravel()), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                             vectorized=True, n_resamples=999, random_state=0).confidence_interval
    assert unpaired.low < 0 < unpaired.high  # without pairing the same scores look tied: the pairing is live
    same = difficulty + rng.normal(0, 0.05, difficulty.shape)
    assert is_tied(paired_difference(a, same))


def test_paired_difference_is_reproducible_and_handles_no_variation():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    assert paired_difference(a, b) == paired_difference(a, b)
    shifted = paired_difference(a, a + 1.0)  # every cell differs by exactly 1
    assert shifted["diff"] == pytest.approx(-1.0)
    assert shifted["low"] == pytest.approx(-1.0) and shifted["high"] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        paired_difference(a, b[:, :4])


def test_dataset_level_gap_statistic():
    rng = np.random.default_rng(3)
    truth = rng.uniform(20, 60, size=(2, 10))
    a = np.stack([truth * 0.9, truth])  # predictions 10 % less colourful than the truth
    b = np.stack([truth * 0.5, truth])
    d = paired_difference(a, b, statistic="abs_mean_gap")
    expected = abs((truth * 0.9).mean() - truth.mean()) - abs((truth * 0.5).mean() - truth.mean())
    assert d["diff"] == pytest.approx(expected)
    assert d["high"] < 0  # a is closer to the truth's colourfulness on every resample
