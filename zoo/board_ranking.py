"""A board's scores turned into ranked rows with error bars, from leaderboard.json's data alone (so ``--merge``
recomputes them): each metric's mean over seeds with its 95 % interval (:func:`zoo.stats.seed_interval`), each
entry's difference from the leader with a paired bootstrap interval over (seed, image) cells
(:func:`zoo.stats.paired_difference`), ties with the leader, every pair's difference on the sort metric
(:func:`pairwise`), and the comparison with the gray baseline."""
from __future__ import annotations

from typing import Any

from zoo.leaderboard_render import EXTRA_COLUMNS
from zoo.metrics import ALL_METRICS, METRICS


def direction(key: str) -> str | None:
    if key in ALL_METRICS:
        return ALL_METRICS[key][1]
    return EXTRA_COLUMNS.get(key, (None, None))[1]


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows ranked by ``key``: ascending unless higher is better; rows without a value go last."""
    sign = -1.0 if direction(key) == "higher" else 1.0
    return sorted(rows, key=lambda r: (r.get(key) is None, sign * (r.get(key) or 0.0)))


def _cells(images: list[dict[str, Any]], model: str, seeds: list[int], names: list[str], key: str):
    """(seeds, images) array of one entry's per-image ``key`` (the gray baseline: one row, seed None)."""
    import numpy as np

    table = {(r.get("seed"), r["image"]): r.get(key) for r in images if r["model"] == model}
    rows = [[table.get((s, n)) for n in names] for s in seeds]
    if any(v is None for row in rows for v in row):
        return None
    return np.asarray(rows, dtype=np.float64)


def _paired(data: dict[str, Any], a: str, b: str, key: str) -> dict[str, Any] | None:
    """Paired bootstrap of row a - row b on ``key`` over the (seed, image) cells they share."""
    import numpy as np
    from zoo.stats import paired_difference

    names = data["image_names"]
    seeds = {e["name"]: [r["seed"] for r in e["runs"]] for e in data["entries"]}
    sa, sb = seeds.get(a, [None]), seeds.get(b, [None])

    def matrix(model, s, column):
        return _cells(data["images"], model, s, names, column)

    def aligned(column):
        ma, mb = matrix(a, sa, column), matrix(b, sb, column)
        if ma is None or mb is None:
            return None, None
        if ma.shape != mb.shape:  # the gray baseline (one row), or boards with other seeds: per-image means
            if ma.shape[0] == 1 or mb.shape[0] == 1:
                n = max(ma.shape[0], mb.shape[0])
                ma, mb = np.repeat(ma, n // ma.shape[0], 0), np.repeat(mb, n // mb.shape[0], 0)
            else:
                ma, mb = ma.mean(0, keepdims=True), mb.mean(0, keepdims=True)
        return ma, mb

    if key in METRICS or key == "lpips":
        ma, mb = aligned(key)
        return None if ma is None else paired_difference(ma, mb)
    if key == "colorfulness_dataset_abs_diff":
        pa, pb = aligned("colorfulness")
        ta, tb = aligned("colorfulness_truth")
        if pa is None or ta is None:
            return None
        return paired_difference(np.stack([pa, ta]), np.stack([pb, tb]), statistic="abs_mean_gap")
    return None  # FID and non-metric columns: no per-image values to pair


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The ranked rows of a board from its entries and per-image scores: each metric's mean over seeds with its
    95 % interval, the difference from the leader with its paired bootstrap interval, and ties."""
    from zoo.evaluate import GRAY_BASELINE
    from zoo.stats import is_tied, seed_interval

    key = data["sort"]["key"]
    rows = []
    for e in data["entries"]:
        row = {"model": e["name"], "baseline": False, "seeds": [r["seed"] for r in e["runs"]]}
        for k in ALL_METRICS:
            values = [r["means"][k] for r in e["runs"] if k in r["means"]]
            if len(values) == len(e["runs"]) and values:
                ci = seed_interval(values)
                row[k], row[f"{k}_ci"] = ci["mean"], [ci["low"], ci["high"]]
        for k in EXTRA_COLUMNS:
            row[k] = e.get(k)
        rows.append(row)
    gray = data.get("gray_baseline")
    if gray is not None:
        rows.append({"model": GRAY_BASELINE, "baseline": True, "seeds": [],
                     **{k: v for k, v in gray.items() if k in ALL_METRICS}, **{k: None for k in EXTRA_COLUMNS}})
    rows = sort_rows(rows, key)
    leader = rows[0]
    for row in rows:
        row["vs_leader"] = {}
        if row is leader or row.get(key) is None:
            continue
        for k in ALL_METRICS:
            if k in row and k in leader:
                diff = _paired(data, row["model"], leader["model"], k)
                if diff is not None:
                    diff["tied"] = is_tied(diff)
                    row["vs_leader"][k] = diff
    rank = 0
    for i, row in enumerate(rows, 1):
        d = row["vs_leader"].get(key)
        row["tied_with_leader"] = None if row is leader else (d["tied"] if d else None)
        if row is leader or row["tied_with_leader"]:
            row["rank"], row["rank_label"] = 1, "1" if row is leader else "=1"
        else:
            rank = max(rank, i)
            row["rank"], row["rank_label"] = i, str(i)
    return rows


def pairwise(data: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every pair of ranked rows (entries and the gray baseline) compared on the sort metric: the difference of
    the better-ranked row ``a`` minus ``b`` with its paired bootstrap interval over (seed, image) cells, and whether
    that interval contains 0 (tied). Each interval is a 95 % one for its pair alone, not corrected for the number
    of pairs (with many entries, some untied pairs are expected by chance: read them with that in mind)."""
    from zoo.stats import is_tied

    key = data["sort"]["key"]
    ranked = [r for r in rows if r.get(key) is not None]
    pairs = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            diff = _paired(data, a["model"], b["model"], key)
            pairs.append({"a": a["model"], "b": b["model"], "diff": None if diff is None else diff["diff"],
                          "low": None if diff is None else diff["low"],
                          "high": None if diff is None else diff["high"],
                          "tied": None if diff is None else is_tied(diff)})
    return {"key": key, "models": [r["model"] for r in ranked], "pairs": pairs,
            "correction": "none: each interval is a 95 % interval for its own pair"}


def compare_with_gray(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """For each entry: the metrics (with a direction) on which its mean beats / loses to the gray baseline."""
    gray = next((r for r in rows if r["baseline"]), None)
    out = {}
    for row in rows:
        if row["baseline"] or gray is None:
            continue
        better, worse = [], []
        for key, (_, direction, _) in ALL_METRICS.items():
            if direction is None or key not in row or key not in gray or row[key] == gray[key]:
                continue
            wins = row[key] < gray[key] if direction == "lower" else row[key] > gray[key]
            (better if wins else worse).append(key)
        out[row["model"]] = {"better": better, "worse": worse}
    return out


__all__ = ["compare_with_gray", "direction", "pairwise", "sort_rows", "summarize"]
