"""FID and LPIPS (zoo.perceptual): the Fréchet distance and its wiring through zoo.evaluate against a direct
computation with scipy on the features of a small real network standing in for Inception; LPIPS against a direct
call of the lpips package; offline, each is skipped with one line."""
import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from zoo.evaluate import evaluate, load_images
from zoo.perceptual import Perceptual, fid_features, load_fid, load_lpips


class TinyFeatures(nn.Module):
    """A small random conv net: uint8 (N, 3, H, W) -> (N, 6) features (the stand-in for Inception's pool3)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2), nn.Tanh(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return 100.0 * self.net(x.float() / 255.0)  # features of order 1-10, as Inception's


def frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets, written out with scipy.linalg.sqrtm."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.fixture(scope="module")
def images(photos):
    return load_images(str(photos), "all", 32)  # six real photos


def test_fid_matches_a_direct_frechet_distance_on_known_features(images):
    net = TinyFeatures().eval()
    truth = images.images.permute(0, 2, 3, 1).numpy()
    rng = np.random.default_rng(0)
    noisy = np.clip(truth.astype(int) + rng.integers(-60, 60, truth.shape), 0, 255).astype(np.uint8)
    scorer = Perceptual(fid_features=net, load=False)
    scorer.set_real(truth)
    expected = frechet(fid_features(net, noisy), fid_features(net, truth))
    assert expected > 0.1  # the noise moved the features: the comparison means something
    assert scorer.fid(noisy) == pytest.approx(expected, rel=1e-5, abs=1e-8)
    assert scorer.fid(truth) == pytest.approx(0.0, abs=1e-6)  # the truth against itself
    assert scorer.fid(noisy[:1]) is None  # one image has no covariance: no number rather than a made-up one


def test_evaluate_wires_fid_and_lpips_to_each_candidates_predictions(images):
    import lpips
    from zoo.evaluate import Candidate

    net = TinyFeatures().eval()
    lp = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)  # package's linear layers over a random AlexNet
    reddish = Candidate("reddish", lambda L: torch.stack([torch.full_like(L[:, 0], 0.3),
                                                          torch.full_like(L[:, 0], 0.1)], 1))
    n = len(images.names)
    ev = evaluate([reddish], images, previews=n, perceptual=Perceptual(fid_features=net, lpips_model=lp, load=False))
    truth = ev.previews["ground truth"]
    for name in ("gray baseline", "reddish"):
        pred = ev.previews[name]
        assert ev.means[name]["fid"] == pytest.approx(frechet(fid_features(net, pred), fid_features(net, truth)),
                                                      rel=1e-5, abs=1e-8)
        with torch.no_grad():
            to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
            direct = lp(to(pred), to(truth)).reshape(-1).numpy()
        mine = [r["lpips"] for r in ev.rows if r["model"] == name]
        np.testing.assert_allclose(mine, direct, rtol=1e-5)
        assert ev.means[name]["lpips"] == pytest.approx(np.mean(direct), rel=1e-5)
    assert ev.means["reddish"]["fid"] != ev.means["gray baseline"]["fid"]
    # dataset-level |dCF| is |mean CF(pred) - mean CF(truth)|, next to the per-image mean
    rows = [r for r in ev.rows if r["model"] == "reddish"]
    gap = abs(np.mean([r["colorfulness"] for r in rows]) - np.mean([r["colorfulness_truth"] for r in rows]))
    assert ev.means["reddish"]["colorfulness_dataset_abs_diff"] == pytest.approx(gap)
    assert ev.means["reddish"]["colorfulness_abs_diff"] >= ev.means["reddish"]["colorfulness_dataset_abs_diff"]


def test_offline_each_metric_is_skipped_with_one_line():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from zoo.sources import reachable

    if reachable(URL_INCEPTION_V3) is None:
        pytest.skip("this machine is online: the weights would be downloaded, not skipped")
    for load in (load_fid, load_lpips):
        model, status = load(torch.device("cpu"))
        if model is not None:  # weights cached by an earlier online use: real metric, nothing to skip
            continue
        assert status.startswith("skipped: ") and "offline" in status and "\n" not in status
    ev = evaluate([], load_images("embedded", "val", 32), perceptual=Perceptual())
    for key in ("fid", "lpips"):
        if ev.protocol[key].startswith("skipped"):
            assert key not in ev.means["gray baseline"]  # never faked
