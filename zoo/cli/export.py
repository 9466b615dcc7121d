"""zoo export: write a trained generator as ONNX or as a torch.export program (.pt2), with dynamic B, H, W."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("onnx", "pt2")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a trained generator to ONNX or torch.export (.pt2)",
                       description="Export the generator of a run (input L (B, 1, H, W) in [-1, 1], output ab "
                                   "(B, 2, H, W)) with dynamic batch, height and width. H and W must be multiples "
                                   "of the generator's size multiple (2**n_down for the U-Net); it is printed.")
    p.add_argument("--model", required=True, metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run folder (its newest good checkpoint) or a step-*.safetensors file")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write, e.g. colorizer.onnx")
    p.add_argument("--format", choices=FORMATS,
                   help="onnx or pt2 (default: from the --out suffix, else onnx)")
    p.add_argument("--size", type=int, metavar="PX", help="side of the example input (default: the training size)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset version (default: torch's)")
    p.add_argument("--device", default="cpu", metavar="DEV",
                   help="device the generator is traced on (default: cpu; a .pt2 program keeps it)")
    p.add_argument("--weights", choices=("ema", "raw"), metavar="W",
                   help="ema or raw: the moving average of the generator's weights or those of the last step "
                        "(default: ema when the checkpoint has them, i.e. the run was trained with ema; else raw)")
    p.add_argument("--force", action="store_true",
                   help="replace a zoo checkpoint or a file inside a run folder (a folder, FIFO or device never)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from zoo.export import export
    from zoo.text import one_line

    fmt = args.format or ("pt2" if Path(args.out).suffix.lower() == ".pt2" else "onnx")
    done = export(args.model, args.out, format=fmt, size=args.size, opset=args.opset, device=args.device,
                  force=args.force, weights=args.weights or "auto")
    print(f"zoo: exported {one_line(done.generator)}{' (EMA weights)' if done.weights == 'ema' else ''} to {one_line(str(done.path))} ({done.format}): "
          f"{done.describe()}", file=sys.stderr)
    print(one_line(str(done.path)))
    return 0
