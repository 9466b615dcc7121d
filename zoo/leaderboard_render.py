"""Rendering of a leaderboard from its JSON data alone: the Markdown table, the self-contained HTML page (inline
CSS, images as PNG data URIs, no scripts) and the column titles and formats both share.

:mod:`zoo.leaderboard` trains and evaluates; this module only turns ``leaderboard.json``'s data into text.
"""
from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from zoo.metrics import METRICS

#: non-metric columns: key -> (title, which direction is better)
EXTRA_COLUMNS: dict[str, tuple[str, str | None]] = {
    "steps": ("steps", None),
    "train_time_s": ("train s", "lower"),
    "train_img_per_s": ("train img/s", "higher"),
    "infer_img_per_s": ("infer img/s", "higher"),
    "params": ("G params", "lower"),
    "disc_params": ("D params", None),
}
#: column order of the tables (after rank and model)
TABLE_COLUMNS = ["deltae00", "ab_l1", "ab_l2", "ab_l1_lab", "ab_l2_lab", "psnr", "ssim", "colorfulness",
                 "colorfulness_truth", "colorfulness_abs_diff", "steps", "train_time_s", "train_img_per_s",
                 "infer_img_per_s", "params", "disc_params"]
_FORMATS = {"train_time_s": ".1f", "train_img_per_s": ".2f", "infer_img_per_s": ".1f"}


def png_data_uri(rgb) -> str:
    """A uint8 (H, W, 3) image as a ``data:image/png;base64,...`` URI (the HTML embeds its images)."""
    from PIL import Image  # only when images are embedded: rendering text needs no imaging library

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _title(key: str) -> str:
    if key in METRICS:
        title, better, _ = METRICS[key]
    else:
        title, better = EXTRA_COLUMNS[key]
    return title + {"lower": " ↓", "higher": " ↑"}.get(better, "")


def _cell(key: str, value: Any) -> str:
    from zoo.evaluate import format_value  # zoo.evaluate loads torch: only when a table is rendered

    if value is None:
        return "-"
    if key in ("params", "disc_params"):
        return f"{value / 1e6:.2f} M"
    if key in _FORMATS:
        return format(value, _FORMATS[key])
    return format_value(key, value)


def _summary_lines(data: dict[str, Any]) -> list[str]:
    lines = []
    for model, cmp in data["vs_gray"].items():
        titles = lambda keys: ", ".join(METRICS[k][0] for k in keys) or "nothing"  # noqa: E731
        lines.append(f"{model} beats the gray baseline on {titles(cmp['better'])}; loses on {titles(cmp['worse'])}.")
    return lines


def _hardware_line(hw: dict[str, Any]) -> str:
    gpus = ", ".join(hw.get("gpus") or []) or "none"
    return (f"{hw['cpu']}, {hw['cpu_cores']} cores ({hw['torch_threads']} torch threads); GPU: {gpus}; "
            f"device used: {hw['device']}; {hw['platform']}, Python {hw['python']}")


def render_markdown(data: dict[str, Any]) -> str:
    """leaderboard.md: the ranked table, how the numbers were made, hardware and versions."""
    p, tr = data["protocol"], data["training"]["spec"]
    headers = [h.replace("|", "\\|") for h in ["rank", "model"] + [_title(k) for k in TABLE_COLUMNS]]
    lines = [f"# {data['title']}", "",
             f"Ranked by {_title(data['sort']['key'])}; {data['created']}; made with `{data['command']}`.", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join(["---:", ":---"] + ["---:"] * len(TABLE_COLUMNS)) + "|"]
    for r in data["rows"]:
        name = r["model"].replace("|", "\\|")
        name = f"**{name}**" if r["generator"] is None else name
        lines.append("| " + " | ".join([str(r["rank"]), name] + [_cell(k, r.get(k)) for k in TABLE_COLUMNS]) + " |")
    lines += ["", *(f"- {s}" for s in _summary_lines(data)), "",
              "## How", "",
              f"- Budget: {data['budget']['description']}; total time {data['elapsed_s']:.0f} s.",
              f"- Training: preset `{data['training']['preset']}`, discriminator `{tr['discriminator']['name']}` "
              f"{json.dumps(tr['discriminator']['options'])}, GAN loss `{tr['gan_loss']['name']}`, pixel loss "
              f"`{tr['pixel_loss']['name']}` x {tr['pixel_weight']:g}, data `{tr['data']['source']}` "
              f"({tr['data']['image_size']} px, load {tr['data']['load_size']}, batch {tr['data']['batch_size']}), "
              f"seed {tr['seed']}; overrides: {' '.join(data['training']['overrides']) or 'none'}.",
              f"- Evaluation: {p['images']} {p['split']} images of `{p['data']}` at {p['image_size']} px; "
              f"{p['resize']}.",
              f"- Ground truth: {p['ground_truth']}. Prediction: {p['prediction']}.",
              f"- Means: {p['means']}. {p['psnr_rule']}.",
              "- Throughput: train img/s from the engine's GAN step on a fixed batch (median of 2 after a "
              "warm-up); infer img/s from the trained generator in eval mode (median of 3), both in the training "
              f"precision ({', '.join(sorted({str(r['precision']) for r in data['rows'] if r.get('precision')}))}); "
              "evaluation runs in float32.", "",
              "## Hardware and versions", "", f"- {_hardware_line(data['hardware'])}",
              "- " + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v), ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1a1a1a; background: #fff; }
table { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #24476b; color: #fff; }
td.name { text-align: left; font-weight: 600; }
tr.baseline td { background: #eee; font-style: italic; }
tr:nth-child(even) td { background: #f4f8fc; }
th.name { text-align: left; }
.grid th { text-align: center; }
.grid td { text-align: center; vertical-align: top; border: none; font-size: 12px; }
.grid img { width: 160px; height: 160px; image-rendering: pixelated; display: block; margin: 2px auto; }
.small { color: #555; font-size: 12px; }
"""


def render_html(data: dict[str, Any]) -> str:
    """leaderboard.html: one self-contained page (inline CSS, images as PNG data URIs, no scripts)."""
    e = html.escape
    head = "<th>rank</th><th class=\"name\">model</th>" + "".join(f"<th>{e(_title(k))}</th>" for k in TABLE_COLUMNS)
    body = []
    for r in data["rows"]:
        cls = ' class="baseline"' if r["generator"] is None else ""
        cells = "".join(f"<td>{e(_cell(k, r.get(k)))}</td>" for k in TABLE_COLUMNS)
        body.append(f"<tr{cls}><td>{r['rank']}</td><td class=\"name\">{e(r['model'])}</td>{cells}</tr>")
    grid = []
    if data["samples"]:
        titles = "".join(f"<th>{e(c['title'])}</th>" for c in data["samples"][0]["cells"])
        grid.append(f"<table class=\"grid\"><tr>{titles}</tr>")
        for s in data["samples"]:
            cells = "".join(f"<td><img alt=\"{e(c['title'])}: {e(s['image'])}\" src=\"{c['png']}\"></td>"
                            for c in s["cells"])
            grid.append(f"<tr>{cells}</tr><tr><td class=\"small\" colspan=\"{len(s['cells'])}\">{e(s['image'])}"
                        f"</td></tr>")
        grid.append("</table>")
    p = data["protocol"]
    protocol = "".join(f"<li><b>{e(k)}</b>: {e(str(p[k]))}</li>" for k in
                       ("image_size", "data", "split", "images", "resize", "ground_truth", "model_input", "prediction",
                        "gray_baseline", "means", "psnr_rule"))
    versions = ", ".join(f"{e(k)} {e(str(v))}" for k, v in data["versions"].items() if v)
    summary = "".join(f"<li>{e(s)}</li>" for s in _summary_lines(data))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(data['title'])}</title><style>{_CSS}</style></head>
<body>
<h1>{e(data['title'])}</h1>
<p>Ranked by {e(_title(data['sort']['key']))}. {e(data['budget']['description'])}; total time
{data['elapsed_s']:.0f} s. Made {e(data['created'])} with <code>{e(data['command'])}</code>.</p>
<table><tr>{head}</tr>
{''.join(body)}
</table>
<ul>{summary}</ul>
<h2>Validation photos</h2>
{''.join(grid)}
<h2>Protocol</h2>
<ul>{protocol}</ul>
<h2>Hardware and versions</h2>
<p>{e(_hardware_line(data['hardware']))}</p>
<p>{versions}</p>
</body></html>
"""


__all__ = ["EXTRA_COLUMNS", "TABLE_COLUMNS", "png_data_uri", "render_html", "render_markdown"]
