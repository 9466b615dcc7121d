"""zoo eval: score trained models (and the gray baseline) on the images of a source, in one table."""
from __future__ import annotations

import argparse
import json

from zoo.runtime import PRECISIONS


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score trained models against the gray baseline (L1/L2, PSNR, SSIM, dE00, "
                                    "colourfulness, LPIPS, FID)",
                       description="Colorize every image of a split with each model and score it against the "
                                   "ground truth, next to the gray baseline (ab = 0). The protocol is printed with "
                                   "the results.")
    p.add_argument("models", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT",
                   help="run folders (their newest good checkpoint) or step-*.safetensors files")
    p.add_argument("--data", metavar="SOURCE", default="embedded",
                   help="'embedded' (default), a folder of images, or 'coco-sample'")
    p.add_argument("--split", choices=["val", "train", "all"], default="val",
                   help="which images of the source (default: val, the held-out ones)")
    p.add_argument("--size", type=int, metavar="N",
                   help="side of the square images scored (default: the models' training size)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"protocol", "models": {name: means}, "images": [rows]}')
    p.add_argument("--means-only", action="store_true", help="text output without the per-image table")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda")
    p.add_argument("--precision", choices=PRECISIONS, metavar="P",
                   help="fp32, bf16, fp16 or auto (default: each model's training precision, as this device runs it)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per forward pass (default 16)")
    p.add_argument("--weights", choices=("ema", "raw"), metavar="W",
                   help="ema or raw: score the moving average of the generator's weights or those of the last step "
                        "(default: ema when a checkpoint has them, else raw)")
    p.add_argument("--saturation", metavar="S[,S...]", default="1",
                   help="colour saturation the outputs are scored at, as zoo colorize --saturation writes them; "
                        "several (e.g. 0.8,1,1.25,1.5) score each model once per value, to pick the best "
                        "(default: 1, the model's colours)")
    p.add_argument("--no-perceptual", action="store_true",
                   help="skip FID and LPIPS (otherwise computed when their weights are available; offline each is "
                        "skipped with one line in the protocol)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from zoo.errors import SpecError
    from zoo.evaluate import evaluate_paths, format_text
    from zoo.text import shown

    if args.batch_size < 1:
        raise SpecError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        saturations = [float(part) for part in args.saturation.split(",")]
    except ValueError:
        raise SpecError(f"--saturation takes numbers separated by commas (e.g. 0.8,1,1.25), got "
                        f"{shown(args.saturation)}") from None
    evaluation = evaluate_paths(args.models, data=args.data, split=args.split, image_size=args.size,
                                device=args.device, batch_size=args.batch_size, precision=args.precision,
                                perceptual=not args.no_perceptual, weights=args.weights or "auto", saturations=saturations)
    if args.json:
        print(json.dumps(evaluation.to_json(), indent=2, allow_nan=False))
    else:
        print(format_text(evaluation, per_image=not args.means_only))
    return 0
