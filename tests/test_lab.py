"""zoo.lab against scikit-image on real photos and random colours."""
import warnings

import numpy as np
import pytest
import skimage.color
import skimage.data
import torch

from zoo.lab import (
    denormalize_lab,
    lab_to_rgb,
    model_output_to_rgb,
    normalize_lab,
    rgb_to_lab,
    uint8_to_model_input,
)

PHOTOS = ("astronaut", "chelsea", "coffee")


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).numpy()


def random_rgb(dtype=np.float32) -> np.ndarray:
    rgb = np.random.default_rng(0).random((48, 40, 3)).astype(dtype)
    rgb[0, :, :] = 0.0  # exact black and white rows, and the sRGB gamma threshold
    rgb[1, :, :] = 1.0
    rgb[2, :, :] = 0.04045
    return rgb


def skimage_lab2rgb(lab: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # skimage warns when it clips negative Z; we clip the same way
        warnings.simplefilter("ignore")
        return skimage.color.lab2rgb(lab)


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_to_lab_matches_skimage_on_photos(name):
    rgb = (getattr(skimage.data, name)() / 255.0).astype(np.float32)
    ours = hwc(rgb_to_lab(chw(rgb)))
    assert ours.dtype == np.float32
    assert np.abs(ours - skimage.color.rgb2lab(rgb)).max() < 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rgb_to_lab_matches_skimage_on_random_colours(dtype):
    rgb = random_rgb(dtype)
    ours = hwc(rgb_to_lab(chw(rgb)))
    assert ours.dtype == dtype
    assert np.abs(ours - skimage.color.rgb2lab(rgb)).max() < 1e-3


@pytest.mark.parametrize("name", PHOTOS)
def test_lab_to_rgb_matches_skimage_on_photos(name):
    lab = skimage.color.rgb2lab((getattr(skimage.data, name)() / 255.0).astype(np.float32))
    assert np.abs(hwc(lab_to_rgb(chw(lab))) - skimage_lab2rgb(lab)).max() < 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lab_to_rgb_matches_skimage_out_of_gamut(dtype):
    rng = np.random.default_rng(1)
    lab = np.stack(
        [rng.uniform(0, 100, (32, 32)), rng.uniform(-128, 127, (32, 32)), rng.uniform(-128, 127, (32, 32))], axis=-1
    ).astype(dtype)
    ours = hwc(lab_to_rgb(chw(lab)))
    assert ours.min() >= 0.0 and ours.max() <= 1.0
    assert np.abs(ours - skimage_lab2rgb(lab)).max() < 1e-3


def test_batched_roundtrip_and_shapes():
    rgb = torch.from_numpy(np.stack([random_rgb(), random_rgb()[::-1].copy()])).permute(0, 3, 1, 2)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    assert (lab_to_rgb(lab) - rgb).abs().max() < 1e-4
    assert rgb_to_lab(rgb[0]).shape == (3, 48, 40)


def test_normalize_ranges_and_inverse():
    rgb = chw(random_rgb()).unsqueeze(0)
    L, ab = normalize_lab(rgb_to_lab(rgb))
    assert L.shape == (1, 1, 48, 40) and ab.shape == (1, 2, 48, 40)
    assert L.min() >= -1.0 - 1e-6 and L.max() <= 1.0 + 1e-6
    assert ab.abs().max() <= 1.0
    assert torch.allclose(denormalize_lab(L, ab), rgb_to_lab(rgb), atol=1e-5)


def test_uint8_model_input_and_output_roundtrip():
    image = torch.from_numpy(skimage.data.chelsea()[:64, :64]).permute(2, 0, 1).unsqueeze(0)
    L, ab = uint8_to_model_input(image)
    assert L.dtype == ab.dtype == torch.float32
    assert L.shape == (1, 1, 64, 64) and ab.shape == (1, 2, 64, 64)
    rgb = model_output_to_rgb(L, ab)
    assert rgb.shape == (1, 3, 64, 64)
    assert (rgb * 255 - image.float()).abs().max() < 0.5


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="uint8_to_model_input"):
        rgb_to_lab(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_one_rounding_rule_half_up_and_clamped():
    from zoo.lab import to_uint8

    values = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 2.4999 / 255, 254.5 / 255, 1.0, 3.0])
    assert to_uint8(values).tolist() == [0, 0, 1, 2, 2, 255, 255, 255]
    assert to_uint8(values).dtype == torch.uint8


def test_fit_gamut_is_lab_to_rgb_in_gamut_and_keeps_lightness_outside():
    from zoo.lab import fit_gamut, lab_to_uint8

    photo = rgb_to_lab(chw((skimage.data.astronaut()[:32, :32] / 255.0).astype(np.float32)))
    assert torch.equal(fit_gamut(photo), lab_to_rgb(photo))  # a real photo's colours all fit: nothing changes
    rng = np.random.default_rng(2)
    wild = torch.from_numpy(np.stack([rng.uniform(5, 95, (2, 16, 16)), rng.uniform(-120, 120, (2, 16, 16)),
                                      rng.uniform(-120, 120, (2, 16, 16))], axis=1).astype(np.float32))
    fitted = fit_gamut(wild)
    assert fitted.shape == wild.shape and fitted.min() >= 0 and fitted.max() <= 1
    back = rgb_to_lab(fitted)
    assert (back[:, 0] - wild[:, 0]).abs().max() < 0.1  # L kept exactly (clipping moves it by up to ~30)
    assert (rgb_to_lab(lab_to_rgb(wild))[:, 0] - wild[:, 0]).abs().max() > 5
    chroma_in, chroma_out = wild[:, 1:].norm(dim=1), back[:, 1:].norm(dim=1)
    assert (chroma_out <= chroma_in + 0.1).all()  # chroma only shrinks
    assert torch.equal(lab_to_uint8(wild[0]), lab_to_uint8(wild)[0])  # batched or not, the same pixels


def test_sample_grids_use_the_same_rounding(tmp_path):
    from PIL import Image

    from zoo.lab import to_uint8
    from zoo.visual import save_grid

    cells = torch.rand(1, 2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    path = save_grid(cells, tmp_path / "grid.png", min_cell=8, pad=0)
    sheet = np.asarray(Image.open(path))
    assert np.array_equal(sheet[:, :8], to_uint8(cells[0, 0]).permute(1, 2, 0).numpy())
    save_grid(to_uint8(cells), tmp_path / "grid8.png", min_cell=8, pad=0)  # uint8 cells: the same sheet
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid8.png")), sheet)
