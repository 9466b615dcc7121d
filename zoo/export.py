"""Export a trained generator for use outside zoo: ONNX (onnxruntime, TensorRT, ...) or a torch.export program.

The exported graph is the generator alone, in eval mode: input ``L`` (B, 1, H, W) = L*/50 - 1 in [-1, 1],
output ``ab`` (B, 2, H, W) = (a*, b*)/110. B, H and W are dynamic, but H and W must be multiples of the
generator's size multiple (2**n_down for the U-Net, 32 for a ResNet encoder; see
:func:`zoo.inference.generator_size_multiple`). A .pt2 program checks that when it runs; an ONNX file records it in its
metadata (``zoo.size_multiple``) and fails at run time on other sizes (the U-Net's skip concatenations no
longer line up).

ONNX uses torch's TorchScript-based exporter (``dynamo=False``): the newer exporter needs onnxscript, which
zoo does not depend on. Both exporters need the ``onnx`` package (``pip install onnx``).

The graph is traced in float32 through a :class:`zoo.inference.Predictor` (on ``device``, CPU by default),
after its checks: the size (:func:`zoo.inference.check_size`) and finite outputs. ``out`` goes through
:func:`zoo.fileio.check_output_file`: zoo replaces only a file of the format it writes, never a folder, FIFO or
device node, and a zoo checkpoint or a file inside a zoo run folder only with ``force``.

A run trained with ``ema`` exports the moving average of its generator's weights unless ``weights="raw"``
(:func:`zoo.loading.load_trained`); the metadata's ``zoo.weights`` says which ("ema" or "raw").
"""
from __future__ import annotations

import importlib.util
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from zoo.errors import ZooError, file_system_error
from zoo.fileio import atomic_write, check_output_file
from zoo.text import shown

#: format -> usual file suffix
FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
#: format -> what the file is, for messages
WHAT = {"onnx": "an ONNX model", "pt2": "a torch.export program"}
INPUT_NAME, OUTPUT_NAME = "L", "ab"


class ExportError(ZooError):
    """A model cannot be exported (missing package, unsupported operator, ...)."""


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote."""

    path: Path
    format: str
    generator: str
    size_multiple: int | None
    example_size: int
    weights: str = "raw"  # "ema": the moving average of the generator's weights (zoo.ema)

    def describe(self) -> str:
        sizes = f"multiples of {self.size_multiple}" if self.size_multiple else f"sizes the generator accepts " \
                f"({self.example_size} works)"
        return (f"input {INPUT_NAME} (B, 1, H, W) in [-1, 1] -> output {OUTPUT_NAME} (B, 2, H, W); B, H and W "
                f"dynamic, H and W {sizes}")


def export(model: str | Path, out: str | Path, format: str = "onnx", size: int | None = None,
           opset: int | None = None, device: str = "cpu", force: bool = False, weights: str = "auto") -> Exported:
    """Export the generator of a run folder or checkpoint to ``out``; one-line ExportError if it fails.

    ``size``: the side of the example input traced (default: the training size); ``opset``: ONNX opset
    (default: torch's); ``device``: where it is traced (a .pt2 program keeps that device); ``force``: replace a
    zoo checkpoint or a file inside a run folder (module docstring); ``weights``: "auto" (the EMA when the
    checkpoint has one), "ema" or "raw".
    """
    from zoo.inference import Predictor, check_size, generator_size_multiple
    from zoo.loading import load_trained

    if format not in FORMATS:
        raise ExportError(f"unknown export format {shown(format)}: choose one of {', '.join(FORMATS)}")
    out = check_output_file(out, (FORMATS[format],), WHAT[format], force=force, made_by_zoo=is_zoo_export)
    if out.suffix.lower() != FORMATS[format]:  # an ONNX model named .pt2 (or no suffix) misleads every tool after
        raise ExportError(f"--out {shown(out)} does not end in {FORMATS[format]}, the suffix of {WHAT[format]}: name "
                          f"it {shown(out.stem + FORMATS[format])} (without --format the suffix chooses: "
                          f"{' or '.join(FORMATS.values())})")
    trained = load_trained(model, device=device, weights=weights)
    predictor = Predictor.from_trained(trained, precision="fp32")  # the exported graph is float32
    if out.resolve() == trained.checkpoint.path.resolve():
        raise ExportError(f"--out {shown(out)} is the checkpoint itself: choose another file")
    if format == "onnx" and importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the onnx package: pip install onnx")
    side = trained.image_size if size is None else size  # --size 0 is refused by check_size, not the default
    check_size(predictor, side)
    multiple = generator_size_multiple(trained.spec)
    example = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    predictor.predict_ab(example)  # NaN/inf outputs: refused before anything is written
    example = example.to(predictor.device)
    generator = predictor.generator.eval()
    metadata = {"zoo.format": "zoo-generator/1", "zoo.spec": trained.checkpoint.spec_json,
                "zoo.step": str(trained.checkpoint.step), "zoo.size_multiple": str(multiple or ""),
                "zoo.weights": trained.weights,
                "zoo.input": f"{INPUT_NAME} (B, 1, H, W) = L*/50 - 1",
                "zoo.output": f"{OUTPUT_NAME} (B, 2, H, W) = ab/110"}
    write = _onnx_writer(generator, example, metadata, opset) if format == "onnx" else \
        _pt2_writer(generator, example, metadata, multiple)

    try:
        with warnings.catch_warnings():
            # torch deprecates the TorchScript-based ONNX exporter; it is the one that needs no onnxscript.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            atomic_write(out, write)
    except Exception as exc:  # unsupported operator, data-dependent control flow, a full disk...
        if isinstance(exc, OSError) and exc.filename is not None:  # the file, not the export, failed
            raise file_system_error(exc) from None
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ExportError(f"exporting generator {shown(trained.name)} to {format} failed: {type(exc).__name__}: "
                          f"{first}") from None
    return Exported(out, format, trained.name, multiple, side, trained.weights)


#: in the metadata of every exported model (the ONNX metadata_props, the .pt2 program's zoo.json, both stored as is)
FORMAT_MARK = b"zoo-generator/"


def is_zoo_export(path: str | Path) -> bool:
    """Whether a file is a model zoo exported (it holds :data:`FORMAT_MARK`): only those are replaced without
    --force, so a user's own model.onnx from elsewhere is kept."""
    tail = b""
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(16 * 2**20):
                if FORMAT_MARK in tail + chunk:
                    return True
                tail = chunk[-len(FORMAT_MARK):]
    except OSError:
        return False
    return False


def _onnx_writer(generator: torch.nn.Module, example: torch.Tensor, metadata: dict[str, str], opset: int | None):
    def write(tmp: str) -> None:
        import onnx

        axes = {0: "batch", 2: "height", 3: "width"}
        buffer = io.BytesIO()  # the exporter takes only str paths: a file name that is not UTF-8 would fail
        with torch.no_grad():
            torch.onnx.export(generator, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=opset,
                              dynamo=False)
        proto = onnx.load_from_string(buffer.getvalue())
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        Path(tmp).write_bytes(proto.SerializeToString())

    return write


def _pt2_writer(generator: torch.nn.Module, example: torch.Tensor, metadata: dict[str, str], multiple: int | None):
    def write(tmp: str) -> None:
        from torch.export import Dim

        if multiple and multiple > 1:  # H = multiple * k makes the program itself check the sizes it is given
            height, width = multiple * Dim("h_blocks", min=1), multiple * Dim("w_blocks", min=1)
        else:
            height, width = Dim("height", min=1), Dim("width", min=1)
        program = torch.export.export(generator, (example,),
                                      dynamic_shapes=({0: Dim("batch", min=1), 2: height, 3: width},))
        buffer = io.BytesIO()  # torch.export.save warns about a file name not ending in .pt2 (the temp file's)
        torch.export.save(program, buffer, extra_files={"zoo.json": json.dumps(metadata)})
        Path(tmp).write_bytes(buffer.getvalue())

    return write
