"""zoo demo: the real server in a subprocess, driven through a real upload in headless Chromium (selenium with
Debian's chromium and chromium-driver). Only 127.0.0.1 traffic."""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import train_tiny

PHOTO_SIZE = (120, 80)  # not the model's 32 px: the page must show full resolution


def _need_browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if os.environ.get("CI") == "true":
        pytest.fail("chromium and chromium-driver are not installed (CI must have them: see .ci/run)")
    pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    run = train_tiny(root / "tiny-run", steps=100)  # fewer steps colour almost nothing
    # the same run twice: two models to pick from, shown as tiny-run and tiny-run-2
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "demo", "--model", str(run), "--model", str(run),
                             "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        pytest.fail(f"no URL printed: {line!r} {proc.stderr.read()}")
    url = line.split(" at ", 1)[1].split()[0]
    yield proc, url, root
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _post(url, filename, data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n0\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "colorize", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _huge_png_header():
    """A PNG that declares 20000 x 20000 pixels (over the pixel limit) in a few bytes."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


# JS run in the page: mean channel spread (colourfulness) and size of an <img> once it has loaded
SPREAD_JS = """
const [id, done] = [arguments[0], arguments[arguments.length - 1]];
const img = document.getElementById(id);
const measure = () => {
  const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0;
  for (let i = 0; i < d.length; i += 4) s += Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
  done([c.width, c.height, s / (d.length / 4), img.src]);
};
if (img.complete && img.naturalWidth) measure(); else img.onload = measure;
"""


def test_demo_in_headless_chromium(server, tmp_path):
    chromium, chromedriver = _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url, root = server
    import skimage.data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).resize(PHOTO_SIZE).save(photo)
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image\n")

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(url)
        assert driver.title == "zoo demo"
        assert {"tiny-run", "tiny-run-2"} <= set(driver.find_element(By.ID, "form").text.split())
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        driver.find_element(By.ID, "go").click()
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: d.find_elements(By.ID, "result-0"))
        wait.until(lambda d: d.find_elements(By.ID, "result-1"))  # both models side by side
        assert driver.execute_async_script(SPREAD_JS, "result-1")[:2] == list(PHOTO_SIZE)
        width, height, spread, _ = driver.execute_async_script(SPREAD_JS, "result-0")
        gw, gh, gray_spread, _ = driver.execute_async_script(SPREAD_JS, "gray")
        assert (width, height) == (gw, gh) == PHOTO_SIZE  # full resolution, not the model's 32 px
        assert gray_spread < 0.5 and spread > gray_spread + 1.0  # the colorized image differs from gray
        shot = tmp_path / "demo.png"
        driver.save_screenshot(str(shot))
        screen = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        assert (np.ptp(screen, axis=2) > 10).sum() > 1000  # colour pixels are on screen

        def set_saturation(value):
            driver.execute_script("const s = document.getElementById('saturation'); s.value = arguments[0];"
                                  "s.dispatchEvent(new Event('input'));", value)
            wait.until(lambda d: f"s={value}" in d.execute_async_script(SPREAD_JS, "result-0")[3])
            return driver.execute_async_script(SPREAD_JS, "result-0")[2]

        assert set_saturation("0") < 0.5  # saturation 0 is the gray photo
        assert set_saturation("2") > spread * 1.3  # more vivid than the model
        link = driver.find_element(By.CSS_SELECTOR, "a.download").get_attribute("href")
        assert "s=2" in link and "download=1" in link
        with urllib.request.urlopen(link, timeout=30) as reply:
            assert "attachment" in reply.headers["Content-Disposition"]
            assert Image.open(reply).size == PHOTO_SIZE

        # a file that is not an image, through the same form: a message on the page, the server lives on
        driver.find_element(By.ID, "photo").send_keys(str(not_image))
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: "not an image" in d.find_element(By.ID, "message").text)
        assert not driver.find_elements(By.ID, "result-0")
        # one model only: untick the second
        driver.find_elements(By.CSS_SELECTOR, "input[name=model]")[1].click()
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_elements(By.ID, "result-0"))
        assert not driver.find_elements(By.ID, "result-1")
    finally:
        driver.quit()
    assert proc.poll() is None


def test_bad_uploads_get_a_message(server):
    proc, url, _ = server
    status, reply = _post(url, "notes.jpg", b"plain text")
    assert status == 400 and "not an image" in reply["error"] and "notes.jpg" in reply["error"]
    status, reply = _post(url, "huge.png", _huge_png_header())
    from zoo.image_file import pixel_limit

    assert status == 400 and "too large" in reply["error"] and f"limit {pixel_limit():,}" in reply["error"]
    status, reply = _post(url, "empty.png", b"")
    assert status == 400 and "empty" in reply["error"]
    assert proc.poll() is None  # still serving


def test_ctrl_c_stops_cleanly(server):
    proc, url, _ = server
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130)
    assert "Traceback" not in err and err.strip().count("\n") == 0, err


def test_bad_model_is_one_line(tmp_path):
    from conftest import run_zoo

    proc = run_zoo("demo", "--model", str(tmp_path / "nope"), "--port", "0")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
