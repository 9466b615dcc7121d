"""The small owners every command uses: Runtime (device + precision), the output-replacement rule, escaping."""
import os
import sys
import stat

import pytest
import torch

from zoo.errors import SpecError
from zoo.fileio import OutputRefused, atomic_write, check_output_file
from zoo.runtime import Runtime, select_device
from zoo.text import one_line, shown


# ---- Runtime ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bogus", "cuda:x", "", "cpu:0:1", "tpu", "meta", "cpu:1"])
def test_a_name_that_is_no_usable_device_is_one_spec_error(name):
    with pytest.raises(SpecError) as err:
        select_device(name)
    assert "\n" not in str(err.value) and ("cpu" in str(err.value))


def test_train_and_colorize_take_the_same_cpu_names():
    from zoo.spec import build_spec

    for name in ("cpu", "cpu:0"):
        assert select_device(name) == torch.device(name)
        assert build_spec(None, None, {"device": name})[0].device == name  # the spec names what select_device takes
    with pytest.raises(SpecError, match="is not a device"):
        build_spec(None, None, {"device": "cpu:1"})


def test_cuda_is_refused_in_one_line_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SpecError, match="CUDA is not available"):
        Runtime.resolve("cuda:0", "auto")


def test_fp16_on_mps_and_unknown_precisions_are_refused():
    with pytest.raises(SpecError, match="fp16 needs a CUDA device or the CPU"):
        from zoo.runtime import resolve_precision
        resolve_precision(torch.device("mps"), "fp16")
    with pytest.raises(SpecError, match="not one of auto, fp32, bf16, fp16"):
        Runtime.resolve("cpu", "fp8")


def test_runtime_layout_and_autocast_follow_the_precision():
    fp32 = Runtime.resolve("cpu", "fp32")
    bf16 = Runtime.resolve("cpu", "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert fp32.memory_format is torch.contiguous_format and bf16.memory_format is torch.channels_last
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(1, 1, 8, 8)
    with fp32.autocast():
        assert conv(x).dtype == torch.float32
    with bf16.autocast():
        assert conv(x).dtype == torch.bfloat16
    assert not bf16.scaler().is_enabled() and Runtime.resolve("cpu", "fp16").scaler().is_enabled()
    assert bf16.batch(x).is_contiguous(memory_format=torch.channels_last)


# ---- output paths ----------------------------------------------------------------------------------------------
def test_new_paths_and_own_kind_of_file_are_allowed(tmp_path):
    assert check_output_file(tmp_path / "new.onnx", (".onnx",), "an ONNX model") == tmp_path / "new.onnx"
    old = tmp_path / "old.onnx"
    old.write_bytes(b"previous export")
    assert check_output_file(old, (".onnx",), "an ONNX model") == old


@pytest.mark.parametrize("make", ["folder", "fifo", "symlink", "other_suffix"])
def test_what_zoo_did_not_write_is_refused_and_left_alone(tmp_path, make):
    target = tmp_path / "target.onnx"
    keep = tmp_path / "keep.txt"
    keep.write_text("user data")
    if make == "folder":
        target.mkdir()
    elif make == "fifo":
        os.mkfifo(target)
    elif make == "symlink":
        target.symlink_to(keep)
    else:
        target = tmp_path / "notes.txt"
        target.write_text("user notes")
    with pytest.raises(OutputRefused) as err:
        check_output_file(target, (".onnx",), "an ONNX model")
    message = str(err.value)
    assert "\n" not in message and ("target.onnx" in message or "notes.txt" in message)
    assert keep.read_text() == "user data"
    if make == "fifo":
        assert stat.S_ISFIFO(os.lstat(target).st_mode)
    if make == "other_suffix":  # --force lets a user replace a file of theirs on purpose
        assert check_output_file(target, (".onnx",), "an ONNX model", force=True) == target


def test_device_nodes_are_refused_even_with_force():
    with pytest.raises(OutputRefused, match="device node"):
        check_output_file("/dev/null", (".onnx",), "an ONNX model", force=True)


def test_files_in_a_run_folder_need_force(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "spec.json").write_text("{}")
    inside = run / "model.onnx"
    inside.write_bytes(b"x")
    with pytest.raises(OutputRefused, match="inside the zoo run folder"):
        check_output_file(inside, (".onnx",), "an ONNX model")
    assert check_output_file(inside, (".onnx",), "an ONNX model", force=True) == inside


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def broken(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


# ---- escaping --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("\x1b[2J\x1b[Hx.jpg", r"'\x1b[2J\x1b[Hx.jpg'"),
    ("two\nlines.png", r"'two\nlines.png'"),
    (os.fsdecode(b"lat\xe9dir"), r"'lat\xe9dir'"),
    (b"lat\xe9dir", r"'lat\xe9dir'"),
    ("caf\u00e9 \u5199\u771f.jpg", "'caf\u00e9 \u5199\u771f.jpg'"),  # printable text stays readable
    ("back\\slash", r"'back\\slash'"),
    ("it's", "\"it's\""),
    ("\u202eevil", r"'\u202eevil'"),  # right-to-left override: invisible, reorders the terminal line
])
def test_names_from_outside_are_shown_escaped(raw, expected):
    assert shown(raw) == expected
    assert shown(raw).isprintable()


def test_one_line_makes_a_whole_message_printable():
    message = "cannot read 'a\nb': \x1b[31mred\x1b[0m " + os.fsdecode(b"\xff")
    assert one_line(message) == r"cannot read 'a\nb': \x1b[31mred\x1b[0m \xff"
    assert "\n" not in one_line(message) and one_line(message).isprintable()


def test_atomic_write_handles_names_up_to_the_file_system_limit(tmp_path):
    name = "\u00e9" * 125 + ".png"  # 254 bytes in UTF-8: the temporary name must not be longer than 255
    atomic_write(tmp_path / name, lambda tmp: open(tmp, "wb").write(b"png"))
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_cli_flags_are_never_abbreviated():
    from zoo.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--step", "3"])
    assert build_parser().parse_args(["train", "--steps", "3"]).steps == 3


def test_a_log_line_never_lands_on_a_progress_bars_line(capsys):
    from tqdm import tqdm

    from zoo.text import log_line

    log_line("\nzoo: before any bar")  # no bar: the newline that would end one is kept
    assert capsys.readouterr().err == "\nzoo: before any bar\n"
    with tqdm(total=3, file=sys.stderr, mininterval=0) as bar:
        bar.update(1)
        log_line("\nzoo: during the bar")
        bar.update(2)
    err = capsys.readouterr().err
    # the bar is cleared to the start of its line (\r) before the message, drawn again after it
    assert "\rzoo: during the bar\n" in err
    assert "\n\nzoo" not in err
    assert err.rindex("3/3") > err.index("zoo: during the bar")
