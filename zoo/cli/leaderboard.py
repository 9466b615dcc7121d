"""zoo leaderboard: train entries (whole specs) with N seeds, score them on one test set, rank them with intervals."""
from __future__ import annotations

import argparse
import sys


def _names(text: str | None) -> list[str] | None:
    return [g.strip() for g in text.split(",") if g.strip()] if text is not None else None


def add_parser(sub) -> None:
    from zoo.board_entries import DEFAULT_BUDGET, SORT_KEYS

    p = sub.add_parser(
        "leaderboard", help="train entries with N seeds and rank them with 95 %% intervals against the gray baseline",
        description="Train each entry (a whole spec: --preset/--config for all, a board file's entries, or the grid "
                    "of --gens/--discs/--gan-losses/--pixel-losses) with --seeds seeds, score every run on the same "
                    "test set, and write leaderboard.json, leaderboard.md and leaderboard.html (a self-contained "
                    "page). Finished runs in --out are reused; rerunning an interrupted command continues it.")
    p.add_argument("--gens", metavar="A,B,...", help="generators to compare (default: every registered one)")
    p.add_argument("--discs", metavar="A,B,...", help="discriminators to compare (grid with the other lists)")
    p.add_argument("--disc", metavar="NAME", help="one discriminator shared by all (same as --discs NAME)")
    p.add_argument("--gan-losses", metavar="A,B,...", help="GAN losses to compare")
    p.add_argument("--pixel-losses", metavar="A,B,...", help="pixel losses to compare")
    p.add_argument("--preset", metavar="NAME", help="preset of every entry (default: cpu)")
    p.add_argument("--config", metavar="FILE", help="a spec config for every entry, or a board file with entries:")
    p.add_argument("--budget", metavar="STEPS|Nm",
                   help=f"GAN steps per run (e.g. 300) or wall-clock minutes per run (e.g. 3m: turned into steps "
                        f"from a measured step time); default: {DEFAULT_BUDGET}, or the length of --preset/--config")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per entry (default 1; 3 for intervals)")
    p.add_argument("--data", metavar="SOURCE", help="training data: 'embedded' (default), a folder, 'coco-sample'")
    p.add_argument("--eval-data", metavar="SOURCE", help="a separate test set (all its images unless --split); "
                                                         "default: the training source's held-out split")
    p.add_argument("--split", choices=["val", "train", "all"], help="which images of the test set")
    p.add_argument("--runs", nargs="+", metavar="RUN", help="rank these finished run folders; no training")
    p.add_argument("--merge", nargs="+", metavar="BOARD", help="combine these leaderboard.json files into --out")
    p.add_argument("--out", metavar="DIR", help="board folder (default: runs/leaderboard-<time>)")
    p.add_argument("--sort", metavar="METRIC", default="deltae00",
                   help=f"column to rank by (default deltae00, lower is better): {', '.join(SORT_KEYS)}")
    p.add_argument("--image-size", type=int, metavar="PX", help="training and evaluation size (default: preset's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (default: preset's)")
    p.add_argument("--seed", type=int, help="first seed (default: the spec's, 0); seeds are seed .. seed+N-1")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="spec override applied to every entry, e.g. --set discriminator.options.ndf=16")
    p.add_argument("--device", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda")
    p.add_argument("--no-perceptual", action="store_true", help="skip FID and LPIPS")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from zoo.errors import SpecError
    from zoo.board_entries import LeaderboardConfig
    from zoo.board_merge import merge_boards
    from zoo.leaderboard import run_leaderboard
    from zoo.text import print_path

    command = " ".join(["zoo", *sys.argv[1:]])
    if args.merge:
        if not args.out:
            raise SpecError("--merge needs --out DIR: the folder of the combined board")
        print_path(merge_boards(args.merge, args.out, command=command).out)
        return 0
    config = LeaderboardConfig.from_cli(
        gens=_names(args.gens), disc=args.disc, discs=_names(args.discs), gan_losses=_names(args.gan_losses),
        pixel_losses=_names(args.pixel_losses), preset=args.preset, config=args.config, budget=args.budget,
        seeds=args.seeds, data=args.data, eval_data=args.eval_data, split=args.split, runs=args.runs, out=args.out,
        sort=args.sort, image_size=args.image_size, batch_size=args.batch_size, seed=args.seed,
        overrides=list(args.overrides), device=args.device, progress=not args.no_progress,
        perceptual=not args.no_perceptual, command=command)
    result = run_leaderboard(config)
    print_path(result.out)
    return 0
