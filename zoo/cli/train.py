"""zoo train: train any generator x discriminator x loss from a preset, a config file and flags."""
from __future__ import annotations

import argparse
import sys
import warnings

from zoo.errors import SpecError, ZooError, file_system_error


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a colorization GAN",
                       description="Train a generator against a discriminator. Without arguments: the 'cpu' "
                                   "preset on the embedded photos (minutes on a laptop CPU).")
    p.add_argument("--gen", metavar="NAME", help="generator (see `zoo list`), e.g. unet, resnet18_unet")
    p.add_argument("--disc", metavar="NAME", help="discriminator, e.g. patch")
    p.add_argument("--gan-loss", metavar="NAME", help="adversarial loss, e.g. vanilla, lsgan")
    p.add_argument("--pixel-loss", metavar="NAME", help="pixel loss, e.g. l1")
    p.add_argument("--data", metavar="SOURCE", help="'embedded' (default), a folder of images, or 'coco-sample'")
    p.add_argument("--preset", metavar="NAME", help="cpu (default), seed, seed-resnet18")
    p.add_argument("--config", metavar="FILE", help="spec file (.yaml, .toml or .json) applied over the preset")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one spec value, e.g. --set generator.options.ngf=32 (repeatable)")
    p.add_argument("--steps", type=int, metavar="N", help="GAN-stage steps")
    p.add_argument("--epochs", type=int, metavar="N", help="GAN-stage epochs (with --steps: whichever ends first)")
    p.add_argument("--batch-size", type=int, metavar="N")
    p.add_argument("--image-size", type=int, metavar="PX")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): bf16 on CPUs with avx512_bf16/AMX and bf16-capable GPUs, fp16 on older GPUs")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<gen>-<disc>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest good checkpoint")
    p.add_argument("--device", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda, cuda:1")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    p.set_defaults(run=run)


_SPEC_FLAGS = {"gen": "generator.name", "disc": "discriminator.name", "gan_loss": "gan_loss.name",
               "pixel_loss": "pixel_loss.name", "data": "data.source", "steps": "steps", "epochs": "epochs",
               "batch_size": "data.batch_size", "image_size": "data.image_size", "seed": "seed",
               "precision": "precision", "device": "device"}


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    # zoo.data refuses such images itself, with the file's name; PIL's own warning would only repeat it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    from zoo import distributed

    main_rank = distributed.world_from_env().is_main  # under torchrun only rank 0 speaks
    try:
        return _run(args, main_rank)
    except ZooError as exc:
        if main_rank:
            raise
        return exc.exit_code  # rank 0 reports the same error
    except OSError as exc:  # a file-system failure (full disk, read-only folder, a file where a folder goes)
        if not main_rank:
            return 2
        raise file_system_error(exc) from None


def _run(args: argparse.Namespace, main_rank: bool = True) -> int:
    from zoo import distributed
    from zoo.engine import TrainingStopped

    together = False  # whether every rank ends here at the same point (see distributed.shutdown)
    try:
        code = _train(args, main_rank)
        together = True
        return code
    except TrainingStopped:  # a stop all ranks agreed on
        together = True
        raise
    finally:
        distributed.shutdown(in_step=together)


def _train(args: argparse.Namespace, main_rank: bool) -> int:
    from zoo.engine import Trainer
    from zoo.text import print_path

    progress = not args.no_progress
    if args.resume:
        allowed = {"steps", "epochs", "device"}
        extra = [f"--{k.replace('_', '-')}" for k in _SPEC_FLAGS if k not in allowed and getattr(args, k) is not None]
        extra += ["--preset"] * bool(args.preset) + ["--config"] * bool(args.config) + ["--set"] * bool(
            args.overrides) + ["--out"] * bool(args.out)
        if extra:
            raise SpecError(f"--resume continues a run exactly as its spec.json says; {', '.join(extra)} cannot "
                            f"change it (only --steps, --epochs and --device can)")
        trainer = Trainer.resume(args.resume, steps=args.steps, epochs=args.epochs, device=args.device,
                                 progress=progress)
    else:
        from zoo.spec import build_spec

        flags = {dotted: getattr(args, flag) for flag, dotted in _SPEC_FLAGS.items()}
        spec, why = build_spec(args.preset, args.config, flags, args.overrides)
        if main_rank:
            print(f"zoo: using {why}", file=sys.stderr)
        trainer = Trainer.create(spec, run_dir=args.out, progress=progress)
    trainer.fit()
    if main_rank:  # the folder's own bytes (a name that is not UTF-8 included), for scripts: RUN=$(zoo train ...)
        print_path(trainer.paths.root)
    return 0
