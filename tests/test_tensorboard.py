"""TensorBoard event files of a run (zoo.tensorboard), read back with TensorBoard's own reader."""
import io
import json

import numpy as np
from PIL import Image

from zoo.engine import Trainer
from zoo.runfolder import list_checkpoints

from conftest import tiny_spec, train

LOSSES = {"loss/d_real", "loss/d_fake", "loss/g_gan", "loss/g_pixel"}
VAL = {"val/l1", "val/deltae00", "val/psnr", "val/ssim"}


def spec(steps, *extra):
    return tiny_spec(steps=steps, extra_set=["checkpoint_every=2", "sample_every=2", "log_every=1", *extra])


def events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return acc


def test_events_hold_every_logged_number_and_the_sample_grids_and_a_resume_continues_them(tmp_path, one_thread):
    run = tmp_path / "run"
    train(spec(3), run)  # checkpoints at 2 and 3; samples at 2 and 3
    # as if the run had been killed after logging step 3 but before its checkpoint: resume from step 2
    for p in list_checkpoints(run / "checkpoints")[-1:]:
        p.unlink()
        p.with_name(p.name.replace(".safetensors", ".state.pt")).unlink()
    Trainer.resume(run, steps=4, progress=False, log=lambda line: None).fit()
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 2  # one file per process that trained

    acc = events(run)
    tags = acc.Tags()
    assert set(tags["scalars"]) == LOSSES | VAL | {"speed/img_per_s", "progress/epoch", "lr/generator",
                                                   "lr/discriminator"}
    for tag in LOSSES | {"speed/img_per_s", "lr/generator"}:
        # steps 1-4 once each: the first run's step 3 (logged after its last checkpoint) is purged
        assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3, 4], tag
    assert [e.value for e in acc.Scalars("lr/generator")] == [np.float32(2e-4)] * 4
    rows = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    val_rows = {r["step"]: r for r in rows if "val_l1" in r}
    for tag in VAL:
        got = acc.Scalars(tag)
        assert [e.step for e in got] == [2, 4], tag  # sample steps: 2, then 4 after the resume
        key = "val_" + tag.split("/")[1]
        assert [e.value for e in got] == [np.float32(val_rows[s][key]) for s in (2, 4)], tag  # losses.jsonl's
    assert 0 < val_rows[4]["val_ssim"] <= 1 and val_rows[4]["val_psnr"] > 5 and val_rows[4]["val_deltae00"] > 0
    # the sample grid of step 4, pixel for pixel the PNG in samples/
    (image,) = [e for e in acc.Images("samples") if e.step == 4]
    shown = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    assert np.array_equal(shown, np.asarray(Image.open(run / "samples" / "step-000004.png").convert("RGB")))
    assert shown.std() > 10  # a real picture, not a blank
    assert "spec/text_summary" in tags["tensors"]


def test_tensorboard_off_writes_no_events(tmp_path, one_thread):
    train(spec(1, "tensorboard=false"), tmp_path / "run")
    assert not (tmp_path / "run" / "tb").exists() and (tmp_path / "run" / "losses.jsonl").is_file()


def test_events_that_cannot_be_written_are_one_warning_and_training_goes_on(tmp_path, one_thread):
    run = tmp_path / "run"
    lines = []
    trainer = Trainer.create(spec(2), run_dir=run, progress=False, log=lines.append)
    (run / "tb").write_text("a file where the events folder goes")
    trainer.fit()
    warnings = [line for line in lines if "TensorBoard" in line]
    assert len(warnings) == 1 and "training goes on" in warnings[0], lines
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-000002.safetensors"
    assert (run / "tb").read_text() == "a file where the events folder goes"  # nothing of the user's replaced
