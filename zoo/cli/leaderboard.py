"""zoo leaderboard: train each generator the same way, evaluate them on the same held-out images, rank them."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    from zoo.leaderboard import DEFAULT_BUDGET, SORT_KEYS

    p = sub.add_parser(
        "leaderboard", help="train every generator under one budget and rank them against the gray baseline",
        description="Train each chosen generator with the same discriminator, losses, data, seed and budget (the "
                    "'cpu' preset's sizes), evaluate each on the same held-out images, and write leaderboard.md, "
                    "leaderboard.json and leaderboard.html (one self-contained file with an image grid).")
    p.add_argument("--gens", metavar="A,B,...", help="generators to compare (default: every registered one)")
    p.add_argument("--disc", metavar="NAME", help="discriminator shared by all (default: the preset's, patch)")
    p.add_argument("--budget", metavar="STEPS|Nm", default=DEFAULT_BUDGET,
                   help="GAN steps per model (e.g. 300) or wall-clock minutes per model (e.g. 3m: turned into "
                        "steps from a measured step time); default: %(default)s")
    p.add_argument("--data", metavar="SOURCE", help="'embedded' (default), a folder of images, or 'coco-sample'")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/leaderboard-<time>)")
    p.add_argument("--sort", metavar="METRIC", default="deltae00",
                   help=f"column to rank by (default deltae00, lower is better): {', '.join(SORT_KEYS)}")
    p.add_argument("--image-size", type=int, metavar="PX", help="training and evaluation size (default: preset's 64)")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (default: preset's 16)")
    p.add_argument("--seed", type=int, help="seed shared by every run (default 0)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="spec override applied to every model's run, e.g. --set discriminator.options.ndf=16")
    p.add_argument("--device", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from zoo.leaderboard import LeaderboardConfig, run_leaderboard

    gens = [g.strip() for g in args.gens.split(",") if g.strip()] if args.gens else None
    config = LeaderboardConfig.from_cli(
        gens=gens, disc=args.disc, budget=args.budget, data=args.data, out=args.out, sort=args.sort,
        image_size=args.image_size, batch_size=args.batch_size, seed=args.seed, overrides=list(args.overrides),
        device=args.device, progress=not args.no_progress, command=" ".join(["zoo", *sys.argv[1:]]))
    result = run_leaderboard(config)
    print(result.out)
    return 0
