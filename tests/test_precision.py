"""Mixed precision and the speed paths of the engine: exact resume in every precision, the grad scalers'
state in checkpoints, and the layout tricks leaving values alone."""
import pytest
import torch

from zoo.checkpoint import latest_checkpoint
from zoo.engine import InferenceGenerator, Trainer, _dense_grads_into_norms, memory_format_for
from zoo.runtime import cpu_has_fast_bf16, resolve_precision
from zoo.errors import SpecError
from zoo.spec import build_spec

from conftest import TINY, TINY_SET, run_zoo

CPU = torch.device("cpu")


def tiny_spec(steps, precision, **flags):
    spec, _ = build_spec(None, None, {"data.image_size": 32, "data.batch_size": 4, "steps": steps,
                                      "checkpoint_every": 2, "sample_every": 2, "log_every": 1,
                                      "precision": precision, **flags}, TINY_SET)
    return spec


def _train(spec, run_dir):
    t = Trainer.create(spec, run_dir=run_dir, progress=False, log=lambda m: None)
    t.fit()
    return t


def _same_weights(a, b):
    for x, y in ((a.models.generator, b.models.generator), (a.models.discriminator, b.models.discriminator)):
        sx, sy = x.state_dict(), y.state_dict()
        assert sx.keys() == sy.keys()
        for k in sx:
            assert torch.equal(sx[k], sy[k]), k


def test_auto_precision_follows_the_device():
    precision, why = resolve_precision(CPU, "auto")
    assert precision == ("bf16" if cpu_has_fast_bf16() else "fp32") and why.startswith("auto:")
    assert resolve_precision(CPU, "fp32")[0] == "fp32"
    assert memory_format_for(CPU, "fp32") == torch.contiguous_format
    assert memory_format_for(CPU, "bf16") == torch.channels_last
    with pytest.raises(SpecError, match="fp16 needs a CUDA device or the CPU"):
        resolve_precision(torch.device("mps"), "fp16")


# fp16 on a CPU runs the CUDA recipe (autocast fp16 + GradScaler), slowly but exactly like on a GPU.
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_resume_is_exact_in_every_precision(tmp_path, precision):
    straight = _train(tiny_spec(4, precision), tmp_path / "straight")
    _train(tiny_spec(2, precision), tmp_path / "resumed")
    resumed = Trainer.resume(tmp_path / "resumed", steps=4, progress=False, log=lambda m: None)
    assert resumed.step == 2 and resumed.precision == precision
    resumed.fit()
    _same_weights(straight, resumed)
    assert (straight.models.gen_scaler.is_enabled(), straight.models.disc_scaler.is_enabled()) == (
        precision == "fp16",) * 2


def test_grad_scaler_state_is_checkpointed_and_restored(tmp_path):
    t = _train(tiny_spec(2, "fp16"), tmp_path / "r")
    # Give both scalers a state a fresh scaler would not have, and checkpoint it.
    t.models.gen_scaler.update(new_scale=1024.0)
    t.models.disc_scaler.update(new_scale=8.0)
    t.save()
    _, state, _ = latest_checkpoint(tmp_path / "r", with_state=True)
    assert state["precision"] == "fp16"
    assert state["scalers"]["generator"]["scale"] == 1024.0 and state["scalers"]["discriminator"]["scale"] == 8.0
    resumed = Trainer.resume(tmp_path / "r", steps=3, progress=False, log=lambda m: None)
    assert resumed.models.gen_scaler.get_scale() == 1024.0 and resumed.models.disc_scaler.get_scale() == 8.0
    resumed.fit()
    assert resumed.step == 3


def test_fp32_and_bf16_runs_store_disabled_scalers(tmp_path):
    _train(tiny_spec(2, "fp32"), tmp_path / "r")
    _, state, _ = latest_checkpoint(tmp_path / "r", with_state=True)
    assert state["scalers"] == {"generator": {}, "discriminator": {}} and state["precision"] == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dense_norm_gradients_leave_values_unchanged(tmp_path, precision):
    t = Trainer.create(tiny_spec(1, precision), run_dir=tmp_path / "r", progress=False, log=lambda m: None)
    L, ab = t._batch(0)

    def grads(hooked: bool):
        from zoo.engine import build_models

        net = build_models(t.spec, CPU).generator.to(memory_format=torch.channels_last)
        if hooked:
            _dense_grads_into_norms(net)
        torch.manual_seed(0)  # the same dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = net(L)
        (out.float() - ab).abs().mean().backward()
        return {n: p.grad for n, p in net.named_parameters()}

    plain, dense = grads(False), grads(True)
    assert plain.keys() == dense.keys()
    # Only the summation order inside batch norm's backward changes: fp32 rounding, or one bf16 ulp.
    rtol = 1e-5 if precision == "fp32" else 1e-2
    for name in plain:
        scale = plain[name].abs().max().item()
        torch.testing.assert_close(dense[name], plain[name], rtol=0, atol=rtol * scale + 1e-12, msg=name)


def test_inference_generator_matches_the_plain_generator(tmp_path):
    t = Trainer.create(tiny_spec(1, "fp32"), run_dir=tmp_path / "r", progress=False, log=lambda m: None)
    L, _ = t._batch(0)
    gen = t.models.generator.eval()
    with torch.inference_mode():
        reference = gen(L)
        fast32 = InferenceGenerator(gen, CPU, "fp32")(L)
        fast16 = InferenceGenerator(gen, CPU, "bf16")(L)
    assert torch.equal(fast32, reference)
    assert fast16.dtype == torch.float32 and fast16.is_contiguous() and fast16.shape == reference.shape
    assert (fast16 - reference).abs().max() < 0.05  # bf16 keeps ~3 significant digits; ab is in [-1, 1]


def test_train_reports_precision_and_layout(tmp_path):
    proc = run_zoo("train", "--steps", "1", "--precision", "fp32", "--out", str(tmp_path / "run"), *TINY, check_rc=0)
    assert "zoo: precision fp32 (fp32 as asked); NCHW layout" in proc.stderr
