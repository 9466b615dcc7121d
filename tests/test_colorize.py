"""`zoo colorize` and zoo.Colorizer on real photos, with a tiny model trained once for this module; and the
refusal of files that are not checkpoints (pickles with a payload included) by colorize and by resume."""
import io
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import skimage.data
import torch

import zoo.errors
from PIL import Image, ImageOps
from skimage.color import rgb2lab

from zoo.runfolder import list_checkpoints, save_checkpoint
from zoo.cli import main
from zoo.colorize import Colorizer, SizeError, combine
from zoo.lab import AB_SCALE, uint8_to_model_input
from zoo.loading import load_trained

from conftest import one_error_line, run_zoo, train_tiny

# TINY (conftest) as spec overrides, with a high generator learning rate so that a few steps already give
# clearly coloured outputs (a near-gray output would make the lightness checks below trivially true).
HIGH_LR = ["gen_optim.lr=0.01", "pixel_weight=0"]
L_TOLERANCE = 1.0  # Lab units: what rounding the output to uint8 RGB can move L by


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("model") / "run", steps=4, extra_set=HIGH_LR)


@pytest.fixture(scope="module")
def colorizer(run_dir):
    return Colorizer.from_checkpoint(run_dir, device="cpu")


def camera(width=123, height=77) -> Image.Image:
    """A real gray photo (skimage's cameraman) at a non-square, odd size."""
    return Image.fromarray(skimage.data.camera()).resize((width, height), Image.BICUBIC)


def astronaut(width=90, height=70) -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BICUBIC)


def lab(image) -> np.ndarray:
    return rgb2lab(np.asarray(Image.fromarray(np.asarray(image)).convert("RGB")))


def assert_same_lightness(output: Image.Image, source) -> None:
    out, src = lab(output), lab(source)
    assert out.shape == src.shape
    assert np.abs(out[..., 0] - src[..., 0]).max() <= L_TOLERANCE
    assert np.hypot(out[..., 1], out[..., 2]).max() > 2  # it was coloured, so the check above meant something


# ---- the command -------------------------------------------------------------------------------------

def test_outputs_keep_size_orientation_and_lightness(run_dir, tmp_path):
    gray = tmp_path / "gray.png"
    camera().save(gray)
    upright = camera(77, 123).convert("L")
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels must be turned 90 degrees clockwise to be upright
    upright.rotate(90, expand=True).save(rotated, exif=exif.tobytes(), quality=95)
    assert Image.open(rotated).size == (123, 77) and ImageOps.exif_transpose(Image.open(rotated)).size == (77, 123)
    colour = tmp_path / "colour.png"
    astronaut().save(colour)

    out = tmp_path / "out"
    proc = run_zoo("colorize", str(gray), str(rotated), str(colour), "--model", str(run_dir), "--out", str(out),
                   "--batch-size", "2", check_rc=0)
    assert proc.stdout.split() == [str(out / name) for name in ("gray.png", "rotated.png", "colour.png")]
    result = Image.open(out / "gray.png")
    assert result.size == (123, 77) and result.mode == "RGB"
    assert_same_lightness(result, Image.open(gray))
    result = Image.open(out / "rotated.png")
    assert result.size == (77, 123)  # upright, as the EXIF orientation says
    assert_same_lightness(result, ImageOps.exif_transpose(Image.open(rotated)))
    # a colour photo is colorized from its lightness alone, and the command says so (naming only that one)
    message = [line for line in proc.stderr.splitlines() if "turned to gray" in line]
    assert len(message) == 1 and "colour.png" in message[0] and "gray.png" not in message[0]
    result = Image.open(out / "colour.png")
    assert_same_lightness(result, Image.open(colour))
    assert np.abs(lab(result)[..., 1:] - lab(Image.open(colour))[..., 1:]).mean() > 2  # its own colours are gone


def test_folder_with_a_broken_file_does_the_rest_and_exits_1(run_dir, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    camera().save(photos / "a.png")
    camera(64, 40).save(photos / "sub" / "b.jpg")
    (photos / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (photos / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "out"
    proc = run_zoo("colorize", str(photos), "--model", str(run_dir), "--out", str(out), "--format", "jpg",
                   "--batch-size", "2", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.jpg", "sub/b.jpg"]
    assert Image.open(out / "sub" / "b.jpg").size == (64, 40)
    assert "broken.png" in proc.stderr and "1 failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_never_overwrites_an_input(run_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    camera().save(photos / "x.png")
    before = (photos / "x.png").read_bytes()
    assert main(["colorize", str(photos), "--model", str(run_dir), "--out", str(photos), "--no-progress"]) == 2
    assert "overwrite" in one_error_line(capsys.readouterr())
    assert (photos / "x.png").read_bytes() == before and os.listdir(photos) == ["x.png"]


def test_output_names_mirror_inputs(tmp_path):
    from zoo.batch import plan

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("a.png", "a.JPG", "sub/b.tif", "sub/c.txt"):
        (photos / name).write_bytes(b"")  # names only: plan() reads no pixels
    (tmp_path / "single.webp").write_bytes(b"")
    out = photos / "colorized"  # inside the input folder: earlier outputs there are not inputs again
    (out / "old").mkdir(parents=True)
    (out / "old" / "a.png").write_bytes(b"")
    notes = []
    jobs, skipped = plan([str(photos), str(tmp_path / "single.webp"), str(photos / "a.png")], out, "png", notes.append)
    assert [(j.source.relative_to(tmp_path).as_posix(), j.target.relative_to(out).as_posix()) for j in jobs] == [
        ("photos/a.JPG", "a.png"), ("photos/a.png", "a-2.png"), ("photos/sub/b.tif", "sub/b.png"),
        ("single.webp", "single.png")]  # the file given twice is done once
    assert skipped == [] and len(notes) == 1 and "a-2.png" in notes[0]


def test_usage_errors_exit_2(run_dir, tmp_path, capsys):
    def error(*args: str) -> str:
        assert main(["colorize", *args, "--model", str(run_dir), "--out", str(tmp_path / "out")]) == 2
        return one_error_line(capsys.readouterr())

    assert "does not exist" in error(str(tmp_path / "nope.png"))
    (tmp_path / "empty").mkdir()
    assert "no images" in error(str(tmp_path / "empty"))
    camera().save(tmp_path / "x.png")
    line = error(str(tmp_path / "x.png"), "--size", "30")
    assert "30 px" in line and "multiple of 8" in line
    assert not (tmp_path / "out").exists()


# ---- files that are not checkpoints ------------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker``: stands for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_the_payload_is_live(tmp_path):
    """The refusals below only mean something if the payload does run when unpickled naively."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def _not_checkpoints(tmp_path, marker, run_dir):
    real = list_checkpoints(run_dir / "checkpoints")[-1]
    from safetensors.torch import save_file

    torch_zip = io.BytesIO()
    torch.save(Payload(marker), torch_zip)
    plain = tmp_path / "plain.safetensors"
    save_file({"generator.w": torch.zeros(2)}, str(plain))  # valid safetensors, no zoo spec
    return {
        "pickle.pkl": pickle.dumps(Payload(marker)),
        "pickle.safetensors": pickle.dumps(Payload(marker)),
        "torch-save.pt": torch_zip.getvalue(),
        "random.safetensors": np.random.default_rng(0).bytes(4096),
        "truncated.safetensors": real.read_bytes()[: real.stat().st_size // 2],
        "no-zoo-metadata.safetensors": plain.read_bytes(),
        "empty.safetensors": b"",
    }


BAD_FILES = ["pickle.pkl", "pickle.safetensors", "torch-save.pt", "random.safetensors", "truncated.safetensors",
             "no-zoo-metadata.safetensors", "empty.safetensors"]


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(run_dir, tmp_path, name, capsys):
    marker = tmp_path / "MARKER"
    bad = tmp_path / name
    bad.write_bytes(_not_checkpoints(tmp_path, marker, run_dir)[name])
    camera().save(tmp_path / "x.png")
    args = ["colorize", str(tmp_path / "x.png"), "--model", str(bad), "--out", str(tmp_path / "out")]
    if name == "pickle.safetensors":  # the real command, in its own process
        line = one_error_line(run_zoo(*args))
    else:  # the same entry point in this process (faster)
        assert main(args) == 2
        line = one_error_line(capsys.readouterr())
    assert name in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_checkpoint_that_starts_like_a_pickle_still_loads(run_dir, tmp_path):
    """The first byte of a safetensors file is its header length's lowest byte: 0x80 must not read as a pickle."""
    from zoo.checkpoint import load_checkpoint

    trained = load_trained(run_dir)
    for pad in range(0, 512, 8):
        path = save_checkpoint(tmp_path / f"pad{pad}", 1, trained.checkpoint.spec_json, trained.generator, None, None,
                               extra_metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert Colorizer.from_checkpoint(path, device="cpu").colorize(camera()).size == (123, 77)
    assert load_checkpoint(path).step == 1


@pytest.mark.parametrize("case", ["pickle-weights", "pickle-state", "torch-save-state"])
def test_resume_refuses_pickles_without_running_them(run_dir, tmp_path, case, capsys):
    marker = tmp_path / "MARKER"
    fake = tmp_path / "fake-run"
    (fake / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "spec.json", fake / "spec.json")
    weights, state = fake / "checkpoints" / "step-000001.safetensors", fake / "checkpoints" / "step-000001.state.pt"
    if case == "pickle-weights":
        weights.write_bytes(pickle.dumps(Payload(marker)))
    else:
        shutil.copy(list_checkpoints(run_dir / "checkpoints")[-1], weights)
    if case == "torch-save-state":
        torch.save(Payload(marker), state)
    else:
        state.write_bytes(pickle.dumps(Payload(marker)))
    args = ["train", "--resume", str(fake), "--no-progress"]
    if case == "pickle-state":
        line = one_error_line(run_zoo(*args))
    else:
        assert main(args) == 2
        line = one_error_line(capsys.readouterr())
    assert "damaged" in line and "step-000001" in line
    assert not marker.exists()


TINY_CONV = """
    from torch import nn
    import zoo

    class TinyConvOptions(zoo.Options):
        \"\"\"One 3x3 conv.\"\"\"

    def build(options, context):
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh())

    @zoo.hookimpl
    def register_generators(register):
        register("tiny_conv", build, TinyConvOptions)
    """


def plugin_checkpoint(code: str, name: str, run_dir, folder):
    """A checkpoint of the generator ``name`` that plugin ``code`` registers (built here from the same code)."""
    namespace: dict = {}
    exec(textwrap.dedent(code), namespace)
    registered = {}
    namespace["register_generators"](lambda n, build, options: registered.update({n: (build, options)}))
    build, options = registered[name]
    spec = json.loads((run_dir / "spec.json").read_text())
    spec["generator"] = {"name": name, "options": {}}
    return save_checkpoint(folder, 1, json.dumps(spec), build(options(), None), None, None)


def test_a_checkpoint_whose_generator_is_not_installed_names_it(run_dir, tmp_path, plugin_dist):
    env = plugin_dist("tinyconvplug", {"tiny_conv": TINY_CONV}, {"tiny_conv": "tiny_conv"})
    checkpoint = plugin_checkpoint(TINY_CONV, "tiny_conv", run_dir, tmp_path / "ckpt")
    camera().save(tmp_path / "x.png")
    args = ("colorize", str(tmp_path / "x.png"), "--model", str(checkpoint), "--out", str(tmp_path / "out"),
            "--no-progress")
    run_zoo(*args, env=env, check_rc=0)  # with its plugin installed the checkpoint works
    assert Image.open(tmp_path / "out" / "x.png").size == (123, 77)
    line = one_error_line(run_zoo(*args))  # and without it:
    assert "'tiny_conv'" in line and "not installed" in line


# ---- the Python API ----------------------------------------------------------------------------------

def test_colorizer_is_exported_lazily():
    code = "import sys, zoo; print('zoo.colorize' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr  # `import zoo` stays light
    import zoo
    import zoo.colorize

    assert zoo.Colorizer is zoo.colorize.Colorizer and "Colorizer" in zoo.__all__


def test_api_accepts_pil_and_numpy_images(colorizer):
    photo = camera()
    gray = np.asarray(photo)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    inputs = {"PIL L": photo, "PIL RGB": photo.convert("RGB"), "PIL LA": photo.convert("LA"),
              "PIL I;16": Image.fromarray(gray.astype(np.uint16) * 257), "HxW uint8": gray,
              "HxWx1 uint8": gray[:, :, None], "HxWx3 uint8": rgb, "HxW float": gray / 255.0,
              "HxWx3 float32": (rgb / 255.0).astype(np.float32)}
    expected = np.asarray(colorizer.colorize(photo))
    for what, image in inputs.items():
        result = colorizer.colorize(image)
        assert isinstance(result, Image.Image) and result.mode == "RGB" and result.size == (123, 77), what
        assert np.abs(np.asarray(result).astype(int) - expected).max() <= 1, what  # all the same photo
    assert_same_lightness(Image.fromarray(expected), photo)


def test_api_rejects_what_is_not_an_image(colorizer):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorizer.colorize(np.full((8, 8), 2.0))
    with pytest.raises(ValueError, match="shape"):
        colorizer.colorize(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(TypeError):
        colorizer.colorize([[0, 1], [2, 3]])


def test_batches_give_the_same_result_as_single_images(colorizer):
    photos = [camera(), camera(40, 64), astronaut(33, 21)]
    batched = colorizer.colorize_batch(photos, batch_size=2)
    assert [im.size for im in batched] == [(123, 77), (40, 64), (33, 21)]
    for photo, result in zip(photos, batched):
        assert np.abs(np.asarray(result).astype(int) - np.asarray(colorizer.colorize(photo))).max() <= 1


def test_colours_are_the_generators_at_its_own_size(run_dir, colorizer):
    """At the model's size nothing is resized: the output's ab is the generator's wherever sRGB can show it."""
    gray = np.asarray(camera(32, 32))
    trained = load_trained(run_dir)
    L, _ = uint8_to_model_input(torch.from_numpy(np.repeat(gray[None, None], 3, axis=1)))
    with torch.no_grad():
        ab = (trained.generator(L)[0] * AB_SCALE).permute(1, 2, 0).numpy()
    out = lab(colorizer.colorize(gray))
    wanted = np.concatenate([out[..., :1], ab], axis=-1)
    from skimage.color import lab2rgb
    showable = np.abs(rgb2lab(lab2rgb(wanted)) - wanted).max(-1) < 0.1
    assert showable.mean() > 0.5 and np.hypot(ab[..., 0], ab[..., 1]).max() > 2
    assert np.abs(out[..., 1:] - ab)[showable].max() < 2.5  # uint8 rounding of RGB moves ab by up to ~2


def test_colours_sRGB_cannot_show_lose_chroma_not_lightness():
    """Strong predicted colours on a full black-to-white ramp: L is kept exactly, hue is kept, chroma shrinks."""
    ramp = np.repeat(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 20, axis=0), 3, axis=2)
    ab = torch.tensor([0.45, -0.6]).view(2, 1, 1).expand(2, 4, 4)  # a* 49.5, b* -66: a saturated blue
    out = lab(combine(ramp, ab))
    assert np.abs(out[..., 0] - lab(ramp)[..., 0]).max() <= L_TOLERANCE
    chroma = np.hypot(out[..., 1], out[..., 2])
    assert chroma.max() > 40 and chroma.min() < 5  # vivid mid-tones; near black and white little colour fits
    vivid = chroma > 25  # where uint8 rounding cannot move the hue by more than a few degrees
    hue = np.degrees(np.arctan2(out[..., 2], out[..., 1]))[vivid]
    assert np.abs(hue - np.degrees(np.arctan2(-66, 49.5))).max() < 4
    assert chroma.max() <= np.hypot(49.5, 66) + 2


def test_size_must_suit_the_generator(run_dir):
    with pytest.raises(SizeError, match="multiple of 8"):
        Colorizer.from_checkpoint(run_dir, device="cpu", size=36)
    bigger = Colorizer.from_checkpoint(run_dir, device="cpu", size=48)
    assert bigger.size == 48 and bigger.colorize(camera()).size == (123, 77)


def test_precision_defaults_to_the_training_one_and_can_be_forced(run_dir, colorizer):
    from zoo.inference import inference_runtime

    assert colorizer.precision == inference_runtime("cpu", "auto").precision  # the run trained with "auto"
    full = Colorizer.from_checkpoint(run_dir, device="cpu", precision="fp32")
    assert full.precision == "fp32" and "fp32" in repr(full)
    a, b = np.asarray(full.colorize(camera())).astype(int), np.asarray(colorizer.colorize(camera())).astype(int)
    assert np.abs(a - b).max() <= 8 and np.abs(a - b).mean() < 0.5  # bf16 (where it runs natively): close
    with pytest.raises(zoo.errors.SpecError, match="precision 'fp8'"):
        Colorizer.from_checkpoint(run_dir, device="cpu", precision="fp8")


def test_saturation_from_gray_to_vivid_through_the_cli(tmp_path, run_dir):
    """--saturation 0 writes the gray photo (its own L), 1 the model, 2 more chroma; a bad value is one line."""
    photo = tmp_path / "in.png"
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).convert("L").save(photo)
    chroma = {}
    for s in ("0", "1", "2"):
        out = tmp_path / f"s{s}"
        run_zoo("colorize", str(photo), "--model", str(run_dir), "--out", str(out), "--saturation", s,
                "--no-progress", "--device", "cpu", check_rc=0)
        lab = rgb2lab(np.asarray(Image.open(out / "in.png")))
        chroma[s] = float(np.hypot(lab[..., 1], lab[..., 2]).mean())
    assert chroma["0"] < 1.0 < chroma["1"] < chroma["2"]
    proc = run_zoo("colorize", str(photo), "--model", str(run_dir), "--out", str(tmp_path / "bad"),
                   "--saturation", "nan", "--device", "cpu")
    assert proc.returncode == 2 and one_error_line(proc).startswith("zoo: error: saturation must be between 0")
    assert not (tmp_path / "bad").exists()
