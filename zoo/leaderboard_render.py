"""Rendering of a leaderboard from its JSON data alone: the Markdown table, the self-contained HTML page (inline
CSS, a small inline script that sorts the table, the quality-vs-throughput plot and the images as PNG data URIs)
and the column titles and formats both share.

:mod:`zoo.leaderboard` trains and evaluates; this module only turns ``leaderboard.json``'s data into text.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from typing import Any

from zoo.metrics import ALL_METRICS
from zoo.text import escape

#: non-metric columns: key -> (title, which direction is better)
EXTRA_COLUMNS: dict[str, tuple[str, str | None]] = {
    "steps": ("steps", None),
    "train_time_s": ("train s", "lower"),
    "train_img_per_s": ("train img/s", "higher"),
    "infer_img_per_s": ("infer img/s", "higher"),
    "params": ("G params", "lower"),
    "disc_params": ("D params", None),
}
#: column order of the tables (after rank and model); metrics a board lacks (FID offline) are left out
TABLE_COLUMNS = ["deltae00", "ab_l1_lab", "ab_l2_lab", "psnr", "ssim", "lpips", "fid", "colorfulness",
                 "colorfulness_truth", "colorfulness_abs_diff", "colorfulness_dataset_abs_diff", "steps",
                 "train_time_s", "train_img_per_s", "infer_img_per_s", "params"]
_FORMATS = {"train_time_s": ".1f", "train_img_per_s": ".2f", "infer_img_per_s": ".1f"}
TIED = "≈"


def png_data_uri(rgb) -> str:
    """A uint8 (H, W, 3) image as a ``data:image/png;base64,...`` URI (the HTML embeds its images)."""
    from PIL import Image  # only when images are embedded: rendering text needs no imaging library

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _title(key: str) -> str:
    if key in ALL_METRICS:
        title, better, _ = ALL_METRICS[key]
    else:
        title, better = EXTRA_COLUMNS[key]
    return title + {"lower": " ↓", "higher": " ↑"}.get(better, "")


def _num(key: str, value: Any) -> str:
    from zoo.evaluate import format_value  # zoo.evaluate loads torch: only when a table is rendered

    if value is None:
        return "-"
    if key in ("params", "disc_params"):
        return f"{value / 1e6:.2f} M"
    if key == "steps":
        return str(int(value))
    if key in _FORMATS:
        return format(value, _FORMATS[key])
    return format_value(key, float(value))


def _cell(key: str, row: dict[str, Any]) -> str:
    """'mean [low, high]' (the seed interval) or the plain value."""
    value = row.get(key)
    text = _num(key, value)
    ci = row.get(f"{key}_ci")
    if value is not None and ci and ci[0] is not None:
        text += f" [{_num(key, ci[0])}, {_num(key, ci[1])}]"
    return text


def columns(data: dict[str, Any]) -> list[str]:
    """The table's columns: TABLE_COLUMNS that at least one row has."""
    return [k for k in TABLE_COLUMNS if any(r.get(k) is not None for r in data["rows"])]


def _leader_cell(data: dict[str, Any], row: dict[str, Any]) -> str:
    key = data["sort"]["key"]
    if not row["vs_leader"] and row["rank_label"] == "1":
        return "leader"
    d = row["vs_leader"].get(key)
    if d is None:
        return "no paired test"
    text = f"{d['diff']:+.3g}"
    if d.get("low") is not None:
        text += f" [{d['low']:+.3g}, {d['high']:+.3g}]"
    return text + (f" {TIED} tied" if d.get("tied") else "")


def _rank_cell(row: dict[str, Any]) -> str:
    return f"{TIED}1" if row["rank_label"] == "=1" else row["rank_label"]


def _summary_lines(data: dict[str, Any]) -> list[str]:
    key = data["sort"]["key"]
    rows = data["rows"]
    tied = [r["model"] for r in rows if r.get("tied_with_leader")]
    untested = [r["model"] for r in rows[1:] if r.get("tied_with_leader") is None and r.get(key) is not None]
    lines = [f"Leader on {_title(key)}: {rows[0]['model']}."]
    if tied:
        lines.append(f"Statistically tied with the leader ({TIED}: the 95 % paired bootstrap interval of the "
                     f"difference contains 0), so their order is within noise: {', '.join(tied)}.")
    else:
        lines.append("No entry is tied with the leader: every other difference on the sort metric is outside "
                     "its 95 % interval." if not untested else "")
    if untested:
        lines.append(f"Not tested against the leader (no per-image values to pair on this column): "
                     f"{', '.join(untested)}; their order is not a statistical claim.")
    for model, cmp in data["vs_gray"].items():
        titles = lambda keys: ", ".join(ALL_METRICS[k][0] for k in keys) or "nothing"  # noqa: E731
        lines.append(f"{model} beats the gray baseline on {titles(cmp['better'])}; loses on {titles(cmp['worse'])} "
                     f"(means over seeds).")
    return [ln for ln in lines if ln]


def _hardware_line(hw: dict[str, Any]) -> str:
    gpus = ", ".join(hw.get("gpus") or []) or "none"
    return (f"{hw['cpu']}, {hw['cpu_cores']} cores ({hw['torch_threads']} torch threads); GPU: {gpus}; "
            f"device used: {hw['device']}; {hw['platform']}, Python {hw['python']}")


def _how_lines(data: dict[str, Any]) -> list[str]:
    p = data["protocol"]
    entries = "; ".join(
        f"`{e['name']}`: {e['generator']} x {e['discriminator']}, preset {e.get('preset') or 'cpu'}"
        + (f", config {e['config']}" if e.get("config") else "")
        + (f", {' '.join(e['overrides'])}" if e.get("overrides") else "") for e in data["entries"])
    return [
        f"Budget: {data['budget']['description']}; seeds per entry: {p.get('seeds') or 'as the runs'}; total time "
        f"{data['elapsed_s']:.0f} s.",
        f"Entries: {entries}.",
        f"Training data: `{p.get('training_data')}`. Test set: `{p['eval_data']}`, {p['eval_images']} images, "
        f"{p['split_rule']}, at {p['image_size']} px; {p['resize']}.",
        f"Ground truth: {p['ground_truth']}. Prediction: {p['prediction']}.",
        f"Means: {p['means']}. {p['psnr_rule']}. Dataset-level: {p.get('dataset_metrics', '-')}.",
        f"FID: {p.get('fid')}. LPIPS: {p.get('lpips')}.",
        f"Intervals: {p.get('intervals')}.",
        "Throughput: train img/s from the engine's GAN step on a fixed batch (median of 2 after a warm-up); infer "
        "img/s from the trained generator in eval mode (median of 3), both in the training precision "
        f"({', '.join(sorted({str(e['precision']) for e in data['entries'] if e.get('precision')}))}).",
    ]


def _pair_text(pair: dict[str, Any]) -> str:
    if pair["diff"] is None:
        return "no paired test"
    text = f"{pair['diff']:+.3g}"
    if pair.get("low") is not None:
        text += f" [{pair['low']:+.3g}, {pair['high']:+.3g}]"
    return text + (f" {TIED}" if pair.get("tied") else "")


def pairwise_matrix(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The models in rank order and, for each (row, column) with the row ranked above the column, the row's
    difference from the column on the sort metric [95 % paired interval] (≈: tied); other cells are empty."""
    pw = data.get("pairwise") or {"models": [], "pairs": []}
    models = pw["models"]
    cells = [["" for _ in models] for _ in models]
    index = {m: i for i, m in enumerate(models)}
    for pair in pw["pairs"]:
        cells[index[pair["a"]]][index[pair["b"]]] = _pair_text(pair)
    return models, cells


def _pairwise_intro(data: dict[str, Any]) -> str:
    key = data["sort"]["key"]
    return (f"Every pair on {_title(key)}: the row's mean minus the column's, with its 95 % paired bootstrap "
            f"interval over (seed, image) cells; {TIED}: the interval contains 0 (tied). Each interval is for its "
            f"own pair, not corrected for the number of pairs.")


def render_markdown(data: dict[str, Any]) -> str:
    """leaderboard.md: the ranked table with intervals, ties, how the numbers were made, hardware and versions."""
    cols = columns(data)
    key = data["sort"]["key"]
    headers = ["rank", "model", *(_title(k) for k in cols), f"Δ {_title(key)} vs leader [95 % CI]"]
    headers = [h.replace("|", "\\|") for h in headers]
    lines = [f"# {data['title']}", "",
             f"Ranked by {_title(key)}; {data['created']}; made with `{data['command']}`. Cells: mean over seeds "
             f"[95 % interval]; {TIED}1: statistically tied with the leader.", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join(["---:", ":---"] + ["---:"] * (len(cols) + 1)) + "|"]
    for r in data["rows"]:
        name = r["model"].replace("|", "\\|")
        name = f"**{name}**" if r["baseline"] else name
        cells = [_rank_cell(r), name, *(_cell(k, r).replace("|", "\\|") for k in cols), _leader_cell(data, r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"- {s}" for s in _summary_lines(data)), ""]
    models, cells = pairwise_matrix(data)
    if len(models) > 1:
        esc = [m.replace("|", "\\|") for m in models]
        lines += ["## Pairwise differences", "", _pairwise_intro(data), "",
                  "| | " + " | ".join(esc[1:]) + " |", "|:---|" + "---:|" * (len(models) - 1)]
        lines += ["| " + esc[i] + " | " + " | ".join(cells[i][1:]) + " |" for i in range(len(models) - 1)]
        lines.append("")
    lines += ["## How", "",
              *(f"- {s}" for s in _how_lines(data)), "",
              "## Hardware and versions", "", f"- {_hardware_line(data['hardware'])}",
              "- " + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v), ""]
    # names come from outside (run folders, board files, merged boards): each line stays one line without
    # control characters, and a name like '<script>' is text, not HTML, in any Markdown viewer
    return "\n".join(escape(line).replace("<", "&lt;") for line in lines)


def plot_png(data: dict[str, Any]) -> str | None:
    """Quality (the sort metric, or dE00 when sorting by a non-metric column) against inference throughput, one
    point per entry with its seed interval, as a PNG data URI; None when no entry has a throughput."""
    key = data["sort"]["key"] if data["sort"]["key"] in ALL_METRICS else "deltae00"
    rows = [r for r in data["rows"] if not r["baseline"] and r.get("infer_img_per_s") and r.get(key) is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    for r in rows:
        ci = r.get(f"{key}_ci") or [None, None]
        err = None if ci[0] is None else [[r[key] - ci[0]], [ci[1] - r[key]]]
        ax.errorbar([r["infer_img_per_s"]], [r[key]], yerr=err, fmt="o", capsize=4,
                    color="#c0392b" if r["rank_label"] in ("1", "=1") else "#24476b")
        ax.annotate(escape(r["model"]), (r["infer_img_per_s"], r[key]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    gray = next((r for r in data["rows"] if r["baseline"] and r.get(key) is not None), None)
    if gray is not None:
        ax.axhline(gray[key], color="#888", linestyle="--", linewidth=1, label="gray baseline")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("inference img/s (log scale)")
    ax.set_ylabel(_title(key))
    ax.set_title(f"{_title(key)} vs throughput (red: leader and tied)", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1a1a1a; background: #fff; }
table { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #24476b; color: #fff; }
table.board th { cursor: pointer; }
td.name { text-align: left; font-weight: 600; }
tr.baseline td { background: #eee; font-style: italic; }
tr.tied td.rank { background: #fdebd0; }
th.name { text-align: left; }
.grid th { text-align: center; }
.grid td { text-align: center; vertical-align: top; border: none; font-size: 12px; }
.grid img { width: 144px; height: 144px; image-rendering: pixelated; display: block; margin: 2px auto; }
.small { color: #555; font-size: 12px; }
"""

#: clicking a header sorts the rows by that column's data-v (numbers; empty last), clicking again reverses
_SORT_SCRIPT = """
document.querySelectorAll('table.board th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var up = th.dataset.dir !== 'asc';
    th.dataset.dir = up ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === undefined || x === '') return 1;
      if (y === undefined || y === '') return -1;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return up ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


_PNG_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]*={0,2}")


def _image_src(uri: Any) -> str:
    """A sample's PNG data URI as written by :func:`png_data_uri`; anything else (a merged board's crafted
    ``javascript:`` or ``" onerror=...``) becomes an empty image, never markup or a script."""
    return uri if isinstance(uri, str) and _PNG_URI.fullmatch(uri) else ""


def render_html(data: dict[str, Any]) -> str:
    """leaderboard.html: one self-contained page (inline CSS and sorting script, plot and images as PNG data
    URIs: nothing is fetched)."""
    e = html.escape
    cols = columns(data)
    key = data["sort"]["key"]
    head = ("<th>rank</th><th class=\"name\">model</th>" + "".join(f"<th>{e(_title(k))}</th>" for k in cols)
            + f"<th>Δ {e(_title(key))} vs leader [95 % CI]</th>")
    body = []
    for r in data["rows"]:
        cls = "baseline" if r["baseline"] else ("tied" if r.get("tied_with_leader") else "")
        diff = r["vs_leader"].get(key)
        cells = "".join(f"<td data-v=\"{'' if r.get(k) is None else e(str(r[k]))}\">{e(_cell(k, r))}</td>" for k in cols)
        body.append(f"<tr class=\"{cls}\"><td class=\"rank\" data-v=\"{r['rank']}\">{e(_rank_cell(r))}</td>"
                    f"<td class=\"name\" data-v=\"{e(r['model'])}\">{e(r['model'])}</td>{cells}"
                    f"<td data-v=\"{'' if diff is None else e(str(diff['diff']))}\">{e(_leader_cell(data, r))}</td></tr>")
    grid = []
    samples = data.get("samples") or {}
    if samples.get("images"):
        titles = list(samples["cells"])
        grid.append("<table class=\"grid\"><tr>" + "".join(f"<th>{e(t)}</th>" for t in titles) + "</tr>")
        for i, name in enumerate(samples["images"]):
            cells = "".join(f"<td><img alt=\"{e(t)}: {e(name)}\" src=\"{_image_src(samples['cells'][t][i])}\"></td>"
                            for t in titles if i < len(samples["cells"][t]))
            grid.append(f"<tr>{cells}</tr><tr><td class=\"small\" colspan=\"{len(titles)}\">{e(name)}</td></tr>")
        grid.append("</table>")
    plot = plot_png(data)
    plot_html = f"<img alt=\"quality against throughput\" src=\"{plot}\">" if plot else "<p>(no throughput)</p>"
    protocol = "".join(f"<li><b>{e(k)}</b>: {e(json.dumps(v) if isinstance(v, (dict, list)) else str(v))}</li>"
                       for k, v in data["protocol"].items() if k != "metrics")
    versions = ", ".join(f"{e(k)} {e(str(v))}" for k, v in data["versions"].items() if v)
    summary = "".join(f"<li>{e(s)}</li>" for s in _summary_lines(data))
    how = "".join(f"<li>{e(s)}</li>" for s in _how_lines(data))
    models, cells = pairwise_matrix(data)
    pairs_html = ""
    if len(models) > 1:
        rows_html = "".join(f"<tr><th class=\"name\">{e(models[i])}</th>"
                            + "".join(f"<td>{e(c)}</td>" for c in cells[i][1:]) + "</tr>"
                            for i in range(len(models) - 1))
        pairs_html = (f"<h2>Pairwise differences</h2><p>{e(_pairwise_intro(data))}</p>"
                      f"<table class=\"pairs\"><tr><th></th>" + "".join(f"<th>{e(m)}</th>" for m in models[1:])
                      + f"</tr>{rows_html}</table>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(data['title'])}</title><style>{_CSS}</style></head>
<body>
<h1>{e(data['title'])}</h1>
<p>Ranked by {e(_title(key))}. Cells: mean over seeds [95 % interval]; {TIED}1: statistically tied with the
leader. Click a column to sort. Made {e(data['created'])} with <code>{e(data['command'])}</code>.</p>
<table class="board"><thead><tr>{head}</tr></thead><tbody>
{''.join(body)}
</tbody></table>
<ul>{summary}</ul>
{pairs_html}
<h2>Quality against throughput</h2>
{plot_html}
<h2>Test images, side by side (first seed of each entry)</h2>
{''.join(grid)}
<h2>How</h2>
<ul>{how}</ul>
<h2>Protocol</h2>
<ul>{protocol}</ul>
<h2>Hardware and versions</h2>
<p>{e(_hardware_line(data['hardware']))}</p>
<p>{versions}</p>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


__all__ = ["EXTRA_COLUMNS", "TABLE_COLUMNS", "columns", "plot_png", "png_data_uri", "render_html", "render_markdown"]
