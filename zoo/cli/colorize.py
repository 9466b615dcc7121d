"""zoo colorize: colorize photos (files or folders) with a trained model; each output keeps its photo's size.

The work is :func:`zoo.batch.colorize_paths`; this module parses and prints. Written paths go to stdout, one a
line (non-printable characters escaped), messages to stderr.
"""
from __future__ import annotations

import argparse

from zoo.runtime import PRECISIONS

FORMATS = ("png", "jpg")


def add_parser(sub) -> None:
    p = sub.add_parser("colorize", help="colorize photos with a trained model",
                       description="Colorize image files and folders (recursive) with a trained model. The model "
                                   "runs at its training resolution; its colours are upsampled and combined with each "
                                   "photo's own full-resolution lightness, so outputs keep the input's size and "
                                   "sharpness. Exit code: 0 all done, 1 some images failed, 2 usage error.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files or folders (searched recursively for images), or video files (.mp4, .mkv, ...)")
    p.add_argument("--model", required=True, metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run folder (its newest good checkpoint) or a step-*.safetensors file")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder; names mirror the inputs (relative paths kept for folders)")
    p.add_argument("--format", choices=FORMATS, default="png", help="output format (default: png)")
    p.add_argument("--size", type=int, metavar="PX", help="resolution the model runs at (default: its training size)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="photos per forward pass (default: 8)")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda:1")
    p.add_argument("--precision", choices=PRECISIONS, metavar="P",
                   help="fp32, bf16, fp16 or auto (default: the precision the model was trained in, as this device "
                        "runs it)")
    p.add_argument("--weights", choices=("ema", "raw"), metavar="W",
                   help="ema or raw: the moving average of the generator's weights or those of the last step "
                        "(default: ema when the checkpoint has them, i.e. the run was trained with ema; else raw)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the generator: auto (default: on with CUDA, off on a CPU, where compiling "
                        "takes about a minute and pays only for large folders), on, off")
    p.add_argument("--force", action="store_true",
                   help="write even inside a zoo run folder (a folder, FIFO or device is never replaced)")
    p.add_argument("--saturation", type=float, default=1.0, metavar="S",
                   help="colour saturation: 0 gray, 1 the model's colours (default), above 1 more vivid (Lab chroma, "
                        "out-of-gamut colours desaturated to fit)")
    p.add_argument("--no-smoothing", action="store_true",
                   help="videos: colorize every frame on its own (default: temporal smoothing that resets at cuts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from zoo.batch import colorize_paths
    from zoo.text import one_line

    def written(path) -> None:
        print(one_line(str(path)), flush=True)

    result = colorize_paths(args.inputs, args.model, args.out, format=args.format, size=args.size,
                            batch_size=args.batch_size, device=args.device, precision=args.precision,
                            force=args.force, progress=not args.no_progress, on_written=written,
                            saturation=args.saturation, smoothing=not args.no_smoothing,
                            weights=args.weights or "auto", compile=args.compile)
    return result.exit_code
