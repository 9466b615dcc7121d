"""Mixed precision, observed from outside the engine: what `zoo train --precision` says and saves, the dtype the
convolutions really compute in during a training step, exact resume in every precision with the grad scalers'
state carried over in the checkpoint, and the speed paths (dense norm gradients, the inference generator) leaving
values alone."""
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo.checkpoint import load_state, state_path_for
from zoo.engine import Trainer
from zoo.inference import Predictor
from zoo.models import build_models, dense_grads_into_norms
from zoo.runfolder import latest_checkpoint
from zoo.runtime import Runtime

from conftest import FAST, TINY, assert_same_tensors, run_zoo, tiny_spec, train

CPU = torch.device("cpu")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def spec(steps, precision, **flags):
    return tiny_spec(steps=steps, **{"checkpoint_every": 2, "sample_every": 2, "log_every": 1,
                                     "precision": precision, **flags})


def checkpoint(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:06d}.safetensors"


def quiet(**kwargs):
    return {"progress": False, "log": lambda line: None, **kwargs}


# ---- what the command says and saves ----------------------------------------------------------------------

def test_train_cli_reports_and_saves_the_precision_it_used(tmp_path):
    """bf16 as asked (auto, the default, is checked by tests/test_train.py's end-to-end run)."""
    out = tmp_path / "run"
    proc = run_zoo("train", "--steps", "1", "--precision", "bf16", "--out", str(out), *TINY, env=FAST, check_rc=0)
    # channels_last whenever autocast is on
    assert ("zoo: precision bf16 (bf16 as asked); channels_last layout; torch.compile off (auto: off on cpu; "
            "compile=on pays in long runs)") in proc.stderr.splitlines()
    _, state, _ = latest_checkpoint(out, with_state=True)
    assert state["precision"] == "bf16"
    assert state["scalers"] == {"generator": {}, "discriminator": {}}  # no gradient scaling outside fp16


# ---- what a training step computes in ---------------------------------------------------------------------

# fp16 on a CPU runs the CUDA recipe (autocast fp16 + GradScaler), slowly but exactly like on a GPU.
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_training_step_convolves_in_the_precision_and_keeps_fp32_weights(tmp_path, precision):
    trainer = Trainer.create(spec(1, precision), run_dir=tmp_path / "r", **quiet())
    nets = {"generator": trainer.models.generator, "discriminator": trainer.models.discriminator}
    seen: dict[str, set] = {name: set() for name in nets}
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: seen[name].add(out.dtype))
             for name, net in nets.items() for module in net.modules()
             if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))]
    trainer.fit()
    for hook in hooks:
        hook.remove()
    assert seen == {"generator": {DTYPES[precision]}, "discriminator": {DTYPES[precision]}}
    for name, net in nets.items():
        # the optimizers keep fp32 master weights; autocast only changes what the convolutions compute in
        assert {p.dtype for p in net.parameters()} == {torch.float32}, name
        conv_weights = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
        # (a 1-channel or 1x1 kernel is both layouts at once: left out)
        channels_last = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                         for w in conv_weights if w.shape[1] > 1 and w.shape[-1] > 1]
        assert set(channels_last) == {precision != "fp32"}, name
    from safetensors.torch import load_file

    saved = load_file(str(checkpoint(tmp_path / "r", 1)))
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.float32}


# ---- resume -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_resume_is_exact_in_every_precision(tmp_path, precision):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(spec(4, precision), straight)
    train(spec(2, precision), resumed)  # stops after step 2, with its checkpoint
    trainer = Trainer.resume(resumed, steps=4, **quiet())
    assert trainer.step == 2
    trainer.fit()
    assert_same_tensors(checkpoint(straight, 4), checkpoint(resumed, 4))
    with pytest.raises(AssertionError):  # the run changed the weights: the comparison above can fail
        assert_same_tensors(checkpoint(straight, 2), checkpoint(straight, 4))
    _, state_straight, _ = latest_checkpoint(straight, with_state=True)
    _, state_resumed, _ = latest_checkpoint(resumed, with_state=True)
    assert state_straight["precision"] == state_resumed["precision"] == precision
    assert state_resumed["scalers"] == state_straight["scalers"]
    # only fp16 scales gradients: its scalers have a state, the others save empty (disabled) ones
    assert {bool(s) for s in state_resumed["scalers"].values()} == {precision == "fp16"}


def test_resume_is_exact_with_compile_on(tmp_path):
    """torch.compile (inductor) in place: the same modules and state_dict keys, so checkpoints and an exact
    resume work as in eager mode (the first trainer compiles, about a minute on a CPU; the resumed one hits
    inductor's cache). The resumed run is the straight run as a kill after its step-2 checkpoint leaves it."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    first = train(spec(4, "bf16", compile="on"), straight)
    assert first.compiled and first.models.generator._compiled_call_impl is not None
    shutil.copytree(straight, resumed)
    for late in (checkpoint(resumed, 4), state_path_for(checkpoint(resumed, 4))):
        late.unlink()
    trainer = Trainer.resume(resumed, steps=4, **quiet())
    assert trainer.compiled and trainer.step == 2
    trainer.fit()
    assert_same_tensors(checkpoint(straight, 4), checkpoint(resumed, 4))
    eager = train(spec(4, "bf16", compile="off"), tmp_path / "eager")
    assert not eager.compiled and eager.models.generator._compiled_call_impl is None


def test_grad_scaler_state_is_restored_from_the_checkpoint(tmp_path):
    run = tmp_path / "r"
    train(spec(2, "fp16"), run)
    state_file = state_path_for(checkpoint(run, 2))
    state = load_state(state_file)
    # a fresh GradScaler's 2**16, halved at each step whose gradients overflowed (fp16 on a CPU: the first ones)
    assert state["scalers"]["generator"]["scale"] in [2.0 ** k for k in range(14, 17)]
    # the saved scales as a long fp16 run would have left them (far from a fresh scaler's)
    state["scalers"]["generator"]["scale"], state["scalers"]["discriminator"]["scale"] = 1024.0, 8.0
    torch.save(state, state_file)
    Trainer.resume(run, steps=3, **quiet()).fit()
    _, after, _ = latest_checkpoint(run, with_state=True)
    assert after["step"] == 3
    # continued from the saved scales (halved if step 3 met an inf gradient; growth needs 2000 clean steps)
    assert after["scalers"]["generator"]["scale"] in (1024.0, 512.0)
    assert after["scalers"]["discriminator"]["scale"] in (8.0, 4.0)


# ---- speed paths leave values alone -----------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dense_norm_gradients_leave_values_unchanged(tmp_path, precision):
    t = Trainer.create(spec(1, precision), run_dir=tmp_path / "r", **quiet())
    L, ab = t.batches(0)

    def grads(hooked: bool):
        net = build_models(t.spec, t.runtime).generator.to(memory_format=torch.channels_last)
        if hooked:
            dense_grads_into_norms(net)
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


def test_the_inference_path_matches_the_plain_generator(tmp_path):
    t = Trainer.create(spec(1, "fp32"), run_dir=tmp_path / "r", **quiet())
    L, _ = t.batches(0)
    gen = t.models.generator.eval()
    with torch.inference_mode():
        reference = gen(L)
        fast32 = Predictor(gen, Runtime.resolve(CPU, "fp32"))(L)
        fast16 = Predictor(gen, Runtime.resolve(CPU, "bf16"))(L)
    assert torch.equal(fast32, reference)
    assert fast16.dtype == torch.float32 and fast16.is_contiguous() and fast16.shape == reference.shape
    difference = (fast16 - reference).abs().max()
    assert 0 < difference < 0.05  # it ran in bf16 (not exact), which keeps ~3 significant digits; ab is in [-1, 1]


def test_a_compiled_predictor_pads_a_partial_batch_and_matches_eager(tmp_path):
    """compile=True: the outputs match eager fp32 to float rounding, and a last partial batch is padded to the
    batch size (one compiled shape, so nothing compiles again for it)."""
    t = Trainer.create(spec(1, "fp32"), run_dir=tmp_path / "r", **quiet())
    L = torch.cat([t.batches(0)[0], t.batches(1)[0]])[:5]
    gen = t.models.generator.eval()
    with torch.inference_mode():
        reference = gen(L)
    compiled = Predictor(gen, Runtime.resolve(CPU, "fp32"), compile=True)
    seen = []
    gen.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    out = compiled.predict_ab(L, batch_size=2)
    assert compiled.compiled and gen._compiled_call_impl is not None
    assert seen == [2, 2, 2]  # 5 images: 2 + 2 + (1 padded to 2)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
    assert compiled.runs_at(t.spec.data.image_size) and seen[-1] == 1  # the size probe runs eagerly


def _compiled_predictor_outputs_stay_apart(device: torch.device, tmp_path) -> None:
    """Two calls of a compiled Predictor: the first result is unchanged by the second (on CUDA the graph's
    output buffer is reused by every replay, so the Predictor must hand out copies)."""
    t = Trainer.create(spec(1, "fp32"), run_dir=tmp_path / "r", **quiet())
    gen = t.models.generator.eval()
    a, b = t.batches(0)[0][:2], t.batches(1)[0][:2]
    with torch.inference_mode():
        ref_a, ref_b = gen(a), gen(b)
    compiled = Predictor(gen, Runtime.resolve(device, "fp32"), compile=True)
    assert compiled.cuda_graphs == (device.type == "cuda")
    first = compiled.predict_ab(a)
    second = compiled.predict_ab(b)
    torch.testing.assert_close(first.cpu(), ref_a.cpu(), rtol=1e-4, atol=1e-4)  # not overwritten by the replay
    torch.testing.assert_close(second.cpu(), ref_b.cpu(), rtol=1e-4, atol=1e-4)


def test_a_compiled_predictor_on_a_cpu_does_not_ask_for_cuda_graphs(tmp_path):
    _compiled_predictor_outputs_stay_apart(CPU, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device; this machine has none")
def test_a_compiled_predictor_on_cuda_replays_graphs_and_hands_out_copies(tmp_path):
    _compiled_predictor_outputs_stay_apart(torch.device("cuda"), tmp_path)
