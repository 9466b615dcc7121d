"""Make docs/images/result.png: gray | zoo | truth for the two validation photos, with `zoo colorize`.

    python docs/images/make_result.py RUN_DIR [--height 150]

RUN_DIR is a run of `zoo train` (the README's picture: `zoo train --gen unet --disc patch --out RUN_DIR`).
The validation photos (coffee from scikit-image, grace_hopper from matplotlib, the embedded source's held-out
pair) are written as PNG to a temporary folder, colorized by the real `zoo colorize` command (which turns them
to gray first and keeps each photo's size), and each row of the picture is gray input | zoo's output | the
original, scaled to one height.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image

OUT = Path(__file__).with_name("result.png")


def validation_photos() -> dict[str, Image.Image]:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    return {"coffee": Image.fromarray(skimage.data.coffee()), "grace_hopper": hopper}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--height", type=int, default=150, help="height of each row in pixels")
    args = parser.parse_args()
    photos = validation_photos()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in"), Path(tmp, "out")
        src.mkdir()
        for name, image in photos.items():
            image.save(src / f"{name}.png")
        cmd = ["zoo", "colorize", *(str(src / f"{n}.png") for n in photos), "--model", str(args.run),
               "--out", str(dst), "--no-progress"]
        print("$", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
        rows = []
        for name, truth in photos.items():
            zoo_out = Image.open(next(dst.rglob(f"{name}.png"))).convert("RGB")
            gray = truth.convert("L").convert("RGB")
            width = round(truth.width * args.height / truth.height)
            rows.append(np.concatenate([np.asarray(im.resize((width, args.height), Image.LANCZOS))
                                        for im in (gray, zoo_out, truth)], axis=1))
    width = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] for r in rows) + 4 * (len(rows) - 1), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        canvas[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0] + 4
    Image.fromarray(canvas).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
