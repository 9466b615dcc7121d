"""The EMA of the generator's weights (zoo.ema): the averaging rule, checkpoints, exact resume, and the choice of
weights in colorize / export / the Python API."""
import json

import pytest
import torch
from torch import nn

from zoo.cli import main
from zoo.ema import GeneratorEMA
from zoo.engine import Trainer
from zoo.errors import CheckpointError, SpecError
from zoo.inference import Predictor
from zoo.lab import uint8_to_model_input
from zoo.loading import load_trained
from zoo.runfolder import latest_checkpoint
from zoo.spec import build_spec

from conftest import assert_same_tensors, one_error_line, tiny_spec, train

EMA = {"ema.decay": 0.9, "ema.start": 1}


def spec(steps, **flags):
    """The TINY spec with an EMA (decay 0.9 from step 2) and one pretraining step: EMA updates in both stages;
    samples only at the end (curves.png takes seconds to draw)."""
    extra = [f"{k}={v}" for k, v in {**EMA, **flags}.items()]
    return tiny_spec(steps=steps, extra_set=["checkpoint_every=2", "sample_every=100", "log_every=1",
                                             "pretrain.steps=1", *extra])


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_the_average_copies_until_start_then_averages_params_and_copies_buffers():
    net = small_net()
    ema = GeneratorEMA(net, decay=0.75, start=1)
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training

    def train_a_little():
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(3, 1, 8, 8))  # moves BatchNorm's running statistics

    train_a_little()
    ema.update(net, step=1)  # step <= start: a copy
    for (name, a), b in zip(ema.model.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    train_a_little()
    ema.update(net, step=2)  # averaging: 0.75 * old + 0.25 * new, buffers copied
    now, raw = ema.model.state_dict(), net.state_dict()
    for name, _ in net.named_parameters():
        assert torch.allclose(now[name], 0.75 * before[name] + 0.25 * raw[name], atol=1e-6), name
        assert not torch.equal(now[name], raw[name]), name
    for name, _ in net.named_buffers():
        assert torch.equal(now[name], raw[name]), name


def test_ema_spec_is_strict_and_off_by_default():
    default, _ = build_spec(None, None, {}, [])
    assert default.ema is None
    on, _ = build_spec(None, None, {}, ["ema.decay=0.99"])
    assert on.ema.decay == 0.99 and on.ema.start == 0
    for bad, words in (("ema.decay=1", "decay"), ("ema.start=-1", "start"), ("ema.decy=0.9", "decy")):
        with pytest.raises(SpecError, match=words):
            build_spec(None, None, {}, [bad])


def test_a_resumed_run_with_ema_ends_bit_identical_to_an_uninterrupted_one(tmp_path, one_thread):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(spec(3), straight)  # 1 pretraining + 3 GAN steps
    train(spec(1), resumed)  # stops after step 2, with its checkpoint (EMA included)
    trainer = Trainer.resume(resumed, steps=3, progress=False, log=lambda line: None)
    assert trainer.ema is not None
    trainer.fit()
    a, b = (latest_checkpoint(run)[0] for run in (straight, resumed))
    assert a.step == b.step == 4
    assert_same_tensors(a.path, b.path)  # generator, discriminator and generator_ema tensors, bit for bit
    assert a.generator_ema is not None and a.generator_ema.keys() == a.generator.keys()
    # the average is not the raw weights (nor a copy of the initial ones)
    assert any(not torch.equal(a.generator_ema[k], a.generator[k]) for k in a.generator)


def test_samples_use_the_ema_and_colorize_export_choose_it_by_default(tmp_path, one_thread, capsys):
    run = tmp_path / "run"
    trainer = train(spec(3), run)  # sample and checkpoint at step 4 (the end)
    rows = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    (last,) = [r for r in rows if "val_l1" in r and r["step"] == 4]
    assert last["weights"] == "ema"
    ema, raw = (Predictor.load(run, device="cpu", weights=w) for w in ("auto", "raw"))
    assert ema.weights == "ema" and raw.weights == "raw" and "(EMA weights)" in ema.where()
    # the logged val L1 is the EMA's, recomputed here through the public door
    val = trainer.data.val.images[:trainer.spec.data.val_images]
    L, ab = uint8_to_model_input(val)
    l1 = {w: (p.predict_ab(L) - ab).abs().mean().item() for w, p in (("ema", ema), ("raw", raw))}
    assert l1["ema"] == pytest.approx(last["val_l1"], rel=1e-5)
    assert l1["raw"] != pytest.approx(last["val_l1"], rel=1e-5)
    # the CLI: colorize writes different pictures with --weights raw; --weights ema needs an EMA
    photo = tmp_path / "in" / "gray.png"
    photo.parent.mkdir()
    from PIL import Image
    Image.fromarray(val[0].permute(1, 2, 0).numpy()).convert("L").save(photo)
    outs = {}
    for w in ("ema", "raw"):
        assert main(["colorize", str(photo), "--model", str(run), "--out", str(tmp_path / w), "--weights", w,
                     "--device", "cpu", "--no-progress"]) == 0
        outs[w] = (tmp_path / w / "gray.png").read_bytes()
    assert "(EMA weights)" in capsys.readouterr().err
    assert outs["ema"] != outs["raw"]
    # zoo eval scores the weights asked for (default: the EMA) and says which
    scores = {}
    for w in (None, "ema", "raw"):
        assert main(["eval", str(run), "--json", "--no-perceptual", "--device", "cpu",
                     *(["--weights", w] if w else [])]) == 0
        report = json.loads(capsys.readouterr().out)
        scores[w] = report["models"][run.name]
        assert report["model_info"][run.name]["weights"] == (w or "ema")
    assert scores[None] == scores["ema"] != scores["raw"]


def test_asking_for_ema_weights_of_a_run_without_them_is_one_line(tiny_run, photos, tmp_path, capsys):
    assert load_trained(tiny_run).weights == "raw"  # auto: no EMA in this run, the raw weights
    with pytest.raises(CheckpointError, match="has no EMA weights"):
        load_trained(tiny_run, weights="ema")
    assert main(["colorize", str(photos / "coffee.png"), "--model", str(tiny_run), "--out", str(tmp_path / "o"),
                 "--weights", "ema"]) == 2
    line = one_error_line(capsys.readouterr())
    assert "has no EMA weights" in line and "--weights raw" in line
