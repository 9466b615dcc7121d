"""zoo plot: loss and validation curves of one or more runs, to a PNG."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="plot the loss and validation curves of runs to a PNG",
                       description="Draw the training losses, throughput and validation metrics logged in each "
                                   "run's losses.jsonl, one colour per run, to a PNG file.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (made by zoo train)")
    p.add_argument("--out", default="curves.png", metavar="FILE.png", help="output PNG (default: curves.png)")
    p.add_argument("--force", action="store_true", help="replace --out even inside a run folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from zoo.plot import plot_runs
    from zoo.text import shown

    out, skipped = plot_runs(args.runs, args.out, force=args.force)
    if skipped:
        print(f"zoo: warning: skipped {skipped} corrupt line(s) in losses.jsonl", file=sys.stderr)
    print(f"wrote {shown(out)}")
    return 0
