"""`zoo export`: ONNX (run in onnxruntime) and torch.export (.pt2) files of a tiny model trained once for this
module, matching PyTorch on random and real inputs at sizes other than the training size."""
import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.runfolder import save_checkpoint
from zoo.cli import main
from zoo.sources import embedded_source
from zoo.lab import uint8_to_model_input
from zoo.loading import load_trained

from conftest import one_error_line, run_zoo

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run  # the session's 2-step TINY run (conftest)


@pytest.fixture(scope="module")
def generator(run_dir):
    return load_trained(run_dir).generator


def inputs() -> dict[str, torch.Tensor]:
    """Random L at several batch sizes, at the training size and others (multiples of 2**n_down = 8); a real L."""
    rng = torch.Generator().manual_seed(0)
    photo = embedded_source().val[0].load().resize((96, 64), Image.BICUBIC)  # W 96, H 64
    real, _ = uint8_to_model_input(torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)[None])
    return {"random 1x32x32": torch.rand(1, 1, 32, 32, generator=rng) * 2 - 1,
            "random 3x48x64": torch.rand(3, 1, 48, 64, generator=rng) * 2 - 1,
            "real photo 1x64x96": real}


def expected(generator, L: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return generator(L).numpy()


def test_onnx_runs_in_onnxruntime_and_matches_pytorch(run_dir, generator, tmp_path):
    import onnx
    import onnxruntime

    out = tmp_path / "colorizer.onnx"
    proc = run_zoo("export", "--model", str(run_dir), "--format", "onnx", "--out", str(out), check_rc=0)
    assert proc.stdout.strip() == str(out) and "multiples of 8" in proc.stderr
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (given,), (produced,) = session.get_inputs(), session.get_outputs()
    assert given.name == "L" and produced.name == "ab"
    assert [isinstance(d, str) for d in given.shape] == [True, False, True, True]  # dynamic B, H, W
    for what, L in inputs().items():
        (ab,) = session.run(["ab"], {"L": L.numpy()})
        assert ab.shape == (L.shape[0], 2, *L.shape[2:]), what
        assert np.abs(ab - expected(generator, L)).max() < TOLERANCE, what
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["zoo.size_multiple"] == "8" and json.loads(meta["zoo.spec"])["generator"]["name"] == "unet"
    with pytest.raises(Exception, match="(?i)concat"):  # 36 is not a multiple of 8: the skips no longer line up
        session.run(["ab"], {"L": np.zeros((1, 1, 36, 36), np.float32)})


def test_pt2_program_matches_pytorch_and_checks_sizes(run_dir, generator, tmp_path):
    out = tmp_path / "colorizer.pt2"  # the format follows the suffix
    proc = run_zoo("export", "--model", str(run_dir), "--out", str(out), check_rc=0)
    assert "(pt2)" in proc.stderr
    program = torch.export.load(str(out)).module()
    for what, L in inputs().items():
        with torch.no_grad():
            assert np.abs(program(L).numpy() - expected(generator, L)).max() < TOLERANCE, what
    with pytest.raises(Exception, match="(?i)guard"):
        program(torch.zeros(1, 1, 36, 36))


def test_export_errors_are_one_line(run_dir, tmp_path, plugin_dist, capsys):
    assert main(["export", "--model", str(run_dir), "--size", "36", "--out", str(tmp_path / "x.onnx")]) == 2
    line = one_error_line(capsys.readouterr())
    assert "36 px" in line and "multiple of 8" in line
    (tmp_path / "bogus.safetensors").write_bytes(b"\x80\x04not a checkpoint")
    assert main(["export", "--model", str(tmp_path / "bogus.safetensors"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "pickle" in one_error_line(capsys.readouterr())
    assert not (tmp_path / "x.onnx").exists()
    # a generator built from an operator ONNX cannot express
    env = plugin_dist("fftplug", {"fft_gen": FFT_GEN}, {"fft_gen": "fft_gen"})
    namespace: dict = {}
    exec(textwrap.dedent(FFT_GEN), namespace)  # the plugin's own code builds the net saved in the checkpoint
    spec = json.loads((run_dir / "spec.json").read_text())
    spec["generator"] = {"name": "fft_gen", "options": {}}
    checkpoint = save_checkpoint(tmp_path / "ckpt", 1, json.dumps(spec), namespace["FftGen"](), None, None)
    out = tmp_path / "fft.onnx"
    line = one_error_line(run_zoo("export", "--model", str(checkpoint), "--out", str(out), env=env))
    assert "exporting generator 'fft_gen' to onnx failed" in line and "fft" in line.split("failed", 1)[1]
    assert not out.exists() and not list(tmp_path.glob(".fft.onnx.*"))  # no partial file left behind


FFT_GEN = """
    import torch
    from torch import nn
    import zoo

    class FftOptions(zoo.Options):
        \"\"\"A conv over the image's Fourier round trip.\"\"\"

    class FftGen(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, L):
            return torch.tanh(self.conv(torch.fft.ifft2(torch.fft.fft2(L)).real))

    @zoo.hookimpl
    def register_generators(register):
        register("fft_gen", lambda options, context: FftGen(), FftOptions)
    """
