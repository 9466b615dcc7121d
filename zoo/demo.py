"""``zoo demo``: a local web page to try trained models on your own photos (Flask, served by werkzeug).

Upload a photo, tick one or more of the models given with ``--model``, and the page shows the gray photo and each
model's colorization side by side, at the photo's full resolution; a slider sets the saturation
(:func:`zoo.colour_control.saturate_image`: 0 gray, 1 the model, > 1 more vivid) and each result downloads as a
PNG. Uploads are read by :func:`zoo.image_file.load_rgb`, so the same pixel limit and the same messages apply as for
files: a file that is not an image, or too large, gets its message on the page.

It binds 127.0.0.1 by default (this machine only). Results are kept in memory for the last few uploads only.

Why Flask and not gradio: the page needs one upload form, some images and a slider. Flask is small, maintained
and already a common dependency, and the page is plain HTML that a test can drive in a real browser; gradio
would bring a large front-end bundle and its own web stack for the same page.
"""
from __future__ import annotations

import io
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from zoo.errors import ZooError
from zoo.text import shown

#: uploads kept in memory (their gray photo and colorizations), oldest dropped first
KEEP_UPLOADS = 8
#: largest upload in bytes (the pixel limit of zoo.image_file.load_rgb applies too)
MAX_UPLOAD_BYTES = 64 << 20


class DemoError(ZooError):
    """The demo cannot start (a model that does not load, a port in use)."""


@dataclass
class Upload:
    name: str
    gray: Image.Image
    results: dict[int, Image.Image]  # model index -> colorization at saturation 1


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>zoo demo</title>
<style>
 body { font-family: sans-serif; margin: 1.5em; }
 .row { display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; }
 figure { margin: 0; } figure img { max-width: 46vw; height: auto; border: 1px solid #ccc; }
 #message { color: #b00; font-weight: bold; min-height: 1.2em; }
 fieldset { margin: 0.6em 0; }
</style></head>
<body>
<h1>zoo demo</h1>
<form id="form">
 <input type="file" id="photo" name="photo" accept="image/*">
 <fieldset><legend>models</legend>
 {% for m in models %}<label><input type="checkbox" name="model" value="{{ loop.index0 }}" checked> {{ m }}</label><br>{% endfor %}
 </fieldset>
 <button type="submit" id="go">Colorize</button>
</form>
<p><label>saturation <input type="range" id="saturation" min="0" max="2" step="0.05" value="1">
 <output id="saturation-value">1.00</output></label></p>
<p id="message" role="alert"></p>
<div class="row" id="results"></div>
<script>
const form = document.getElementById("form"), results = document.getElementById("results");
const message = document.getElementById("message"), slider = document.getElementById("saturation");
function withSaturation(url) { return url + "?s=" + slider.value; }
function figure(title, url, id, download) {
  const f = document.createElement("figure");
  f.innerHTML = "<figcaption></figcaption><img><br><a>download PNG</a>";
  f.querySelector("figcaption").textContent = title;
  const img = f.querySelector("img"); img.id = id; img.dataset.src = url; img.alt = title;
  img.src = download ? withSaturation(url) : url;
  const a = f.querySelector("a"); a.href = img.src + (download ? "&" : "?") + "download=1";
  a.dataset.src = url; a.className = download ? "download" : "";
  results.appendChild(f);
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.textContent = ""; results.innerHTML = "";
  const body = new FormData(form);
  if (!document.getElementById("photo").files.length) { message.textContent = "choose a photo first"; return; }
  message.textContent = "colorizing...";
  const reply = await fetch("colorize", {method: "POST", body: body});
  const data = await reply.json();
  if (!reply.ok) { message.textContent = data.error; return; }
  message.textContent = "";
  figure("gray", data.gray, "gray", false);
  data.results.forEach((r, i) => figure(r.model, r.url, "result-" + i, true));
});
slider.addEventListener("input", () => {
  document.getElementById("saturation-value").textContent = Number(slider.value).toFixed(2);
  for (const img of results.querySelectorAll("img[id^=result]")) img.src = withSaturation(img.dataset.src);
  for (const a of results.querySelectorAll("a.download")) a.href = withSaturation(a.dataset.src) + "&download=1";
});
</script>
</body></html>
"""


def download_stem(filename: str) -> str:
    """The stem of an uploaded file's name, safe as the browser's download name: control and format characters
    (ESC, newlines, bidi overrides) would go raw into the Content-Disposition header, and werkzeug refuses a
    newline there (a 500); a name of nothing else becomes ``photo``."""
    import unicodedata

    stem = Path(filename.replace("\\", "/")).stem
    kept = "".join(c for c in stem if not unicodedata.category(c).startswith("C")).strip(" .")
    return kept[:100] or "photo"


def create_app(colorizers: Sequence, names: Sequence[str]):
    """The Flask app serving the page for ``colorizers`` (zoo.Colorizer objects) shown as ``names``."""
    from flask import Flask, abort, jsonify, render_template_string, request, send_file

    from zoo.colour_control import SaturationError, check_saturation, saturate_image
    from zoo.image_file import UnreadableImage, load_rgb

    app = Flask("zoo.demo")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    uploads: OrderedDict[str, Upload] = OrderedDict()
    lock = threading.Lock()  # one forward pass at a time, and the upload table

    def fail(text: str, code: int = 400):
        return jsonify(error=text), code

    @app.errorhandler(413)
    def too_big(_):
        return fail(f"the upload is larger than {MAX_UPLOAD_BYTES >> 20} MB: choose a smaller photo", 413)

    @app.get("/")
    def page():
        return render_template_string(PAGE, models=names)

    @app.post("/colorize")
    def colorize():
        file = request.files.get("photo")
        if file is None or not file.filename:
            return fail("choose a photo to upload")
        picked = request.form.getlist("model") or ["0"]
        try:
            indices = sorted({int(i) for i in picked})
            if not all(0 <= i < len(colorizers) for i in indices):
                raise ValueError
        except ValueError:
            return fail("unknown model picked: reload the page")
        data = file.read()
        # load_rgb checks the pixel limit, truncation and format exactly as for files on disk
        fd, tmp = tempfile.mkstemp(prefix="zoo-demo-", suffix=Path(file.filename).suffix[:16])
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                rgb = load_rgb(tmp)
            except UnreadableImage as exc:
                return fail(f"cannot use {shown(file.filename)}: {exc.reason}")
        finally:
            os.unlink(tmp)
        gray = rgb.convert("L").convert("RGB")
        with lock:
            try:
                results = {i: colorizers[i].colorize(rgb) for i in indices}
            except ZooError as exc:  # out of memory, a model giving NaN: the page says so, the server goes on
                return fail(f"cannot colorize {shown(file.filename)}: {exc}", 500)
            token = secrets.token_urlsafe(12)
            uploads[token] = Upload(download_stem(file.filename), gray, results)
            while len(uploads) > KEEP_UPLOADS:
                uploads.popitem(last=False)
        return jsonify(gray=f"image/{token}/gray.png",
                       results=[{"model": names[i], "url": f"image/{token}/{i}.png"} for i in indices])

    @app.get("/image/<token>/<which>.png")
    def image(token: str, which: str):
        with lock:
            upload = uploads.get(token)
        if upload is None:
            abort(404)
        if which == "gray":
            picture, suffix = upload.gray, "gray"
        else:
            try:
                index = int(which)
                picture = upload.results[index]
            except (ValueError, KeyError):
                abort(404)
            try:
                s = check_saturation(request.args.get("s", "1"))
            except SaturationError as exc:
                return fail(str(exc))
            picture = saturate_image(picture, s)
            suffix = f"{names[index]}-s{s:.2f}"
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        buffer.seek(0)
        return send_file(buffer, mimetype="image/png", as_attachment="download" in request.args,
                         download_name=f"{upload.name}-{suffix}.png")

    return app


def _names(paths: Sequence[str]) -> list[str]:
    """Short distinct names for the models: the run folder's name (or checkpoint's), numbered if repeated."""
    names: list[str] = []
    for p in paths:
        path = Path(p).resolve()
        base = path.parent.parent.name if path.is_file() and path.parent.name == "checkpoints" else path.name
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def serve(models: Sequence[str], host: str = "127.0.0.1", port: int = 7860, device: str = "auto",
          ready=None) -> None:
    """Load ``models`` and serve the demo until Ctrl-C; prints the URL (flushed) once it accepts connections."""
    import logging

    from werkzeug.serving import make_server

    from zoo import Colorizer

    if not 0 <= port <= 65535:
        raise DemoError(f"--port must be between 0 and 65535, got {port}")
    colorizers = [Colorizer.from_checkpoint(m, device=device) for m in models]
    app = create_app(colorizers, _names(models))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise DemoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --port "
                        f"(0 picks a free one)") from None
    shown_host = f"[{host}]" if ":" in host else host
    print(f"zoo demo: serving {len(colorizers)} model(s) at http://{shown_host}:{server.server_port}/ "
          f"(Ctrl-C to stop)", flush=True)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()


__all__ = ["DemoError", "KEEP_UPLOADS", "MAX_UPLOAD_BYTES", "create_app", "download_stem", "serve"]
