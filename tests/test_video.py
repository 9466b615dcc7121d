"""Video colorization: a real clip built from photos (static shots, a pan, a zoom, one cut) with a sine audio
track, encoded and decoded with PyAV, colorized by a tiny trained model."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from conftest import run_zoo, train_tiny

W, H, FPS = 96, 64, 10
STATIC_A = range(0, 10)   # frames of the first static shot
CUT = 24                  # first frame of the second scene (a static shot)
N_FRAMES = 32


def _photo(name, size):
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(size, Image.BICUBIC)


def make_clip(path):
    """10 static frames (flickering exposure, grain) | 8 pan | 6 zoom | cut | 8 static frames of another photo (flickering exposure, grain)."""
    rng = np.random.default_rng(0)
    astronaut = _photo("astronaut", (192, 192))
    coffee = np.asarray(_photo("coffee", (W, H)))
    def flickering(a):  # old film: the exposure changes from frame to frame, plus a little grain
        gain = 1 + rng.uniform(-0.1, 0.1)
        return np.clip(a * gain + rng.normal(0, 1.5, a.shape), 0, 255).astype(np.uint8)

    frames = []
    still = np.asarray(astronaut.crop((40, 40, 40 + W, 40 + H)))
    frames += [flickering(still) for _ in STATIC_A]
    frames += [np.asarray(astronaut.crop((40 + 6 * i, 40, 40 + 6 * i + W, 40 + H))) for i in range(1, 9)]
    for i in range(1, 7):  # zoom in towards the centre
        m = 4 * i
        box = (88 - W // 2 + m, 88 - H // 2 + m * H // W, 88 + W // 2 - m, 88 + H // 2 - m * H // W)
        frames.append(np.asarray(astronaut.crop(box).resize((W, H), Image.BICUBIC)))
    assert len(frames) == CUT
    frames += [flickering(coffee) for _ in range(N_FRAMES - CUT)]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"crf": "10"}
        a = out.add_stream("aac", rate=22050)
        a.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                out.mux(p)
        samples = 22050 * N_FRAMES // FPS
        t = np.arange(samples) / 22050
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start:start + 1024][None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 22050, start
            for p in a.encode(frame):
                out.mux(p)
        for stream in (v, a):
            for p in stream.encode():
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from zoo import Colorizer

    root = tmp_path_factory.mktemp("video")
    run = train_tiny(root / "run", steps=100)  # fewer steps predict almost gray: no flicker to remove
    return make_clip(root / "clip.mp4"), Colorizer.from_checkpoint(run, device="cpu"), root


def ab_of(frames):
    from skimage.color import rgb2lab

    return [rgb2lab(f)[..., 1:] for f in frames]


def test_colorized_video_keeps_rate_size_frames_and_audio(setup):
    from zoo.video import colorize_video, probe, read_frames

    clip, colorizer, root = setup
    out = root / "smooth.mp4"
    cuts = []
    stats = colorize_video(clip, colorizer, out, progress=False, on_frame=lambda i, cut: cut and cuts.append(i))
    info_in, info_out = probe(clip), probe(out)
    assert info_out.rate == info_in.rate == Fraction(FPS)
    assert (info_out.width, info_out.height) == (W, H)
    frames = read_frames(out)
    assert len(frames) == len(read_frames(clip)) == N_FRAMES == stats["frames"]
    assert info_out.has_audio
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == 22050
        pcm = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio)])
    assert len(pcm) >= 0.9 * 22050 * N_FRAMES / FPS and np.abs(pcm).max() > 0.2  # the tone survived
    assert cuts[0] == 0 and CUT in cuts
    assert not set(cuts) & (set(STATIC_A[1:]) | set(range(CUT + 1, N_FRAMES)))  # no cut inside a static shot
    spread = [np.ptp(f.astype(int), axis=2).mean() for f in frames]
    assert min(spread) > 0.5  # the output has colour


def test_smoothing_reduces_flicker_and_resets_at_the_cut(setup):
    from zoo.video import Smoothing, colorize_video, flicker, read_frames

    clip, colorizer, root = setup
    colorize_video(clip, colorizer, root / "per-frame.mp4", smoothing=None, progress=False)
    colorize_video(clip, colorizer, root / "smooth2.mp4", progress=False)
    # the same filter with cut detection switched off: it carries the first scene's colour past the cut
    no_cuts = Smoothing(cut_histogram=1e9, cut_mean_L=1e9)
    colorize_video(clip, colorizer, root / "no-cuts.mp4", smoothing=no_cuts, progress=False)
    raw, smooth, carried = (read_frames(root / n) for n in ("per-frame.mp4", "smooth2.mp4", "no-cuts.mp4"))
    static = [slice(STATIC_A.start, STATIC_A.stop), slice(CUT, N_FRAMES)]
    f_raw = np.mean([flicker(raw[s]) for s in static])
    f_smooth = np.mean([flicker(smooth[s]) for s in static])
    print(f"\nflicker (mean |delta ab| on static shots): per-frame {f_raw:.3f}, smoothed {f_smooth:.3f}")
    assert f_raw > 0.05  # the per-frame model really flickers with the exposure
    assert f_smooth < 0.7 * f_raw
    a_raw, a_smooth, a_carried = (ab_of(x[CUT:CUT + 2]) for x in (raw, smooth, carried))
    reset_gap = np.mean([np.abs(s - r).mean() for s, r in zip(a_smooth, a_raw)])
    carried_gap = np.mean([np.abs(c - r).mean() for c, r in zip(a_carried, a_raw)])
    print(f"after the cut, |ab - per-frame ab|: with reset {reset_gap:.3f}, without {carried_gap:.3f}")
    assert reset_gap < 0.5 * carried_gap


def test_bad_videos_are_one_clear_error(setup, tmp_path):
    from zoo.video import VideoError, colorize_video

    clip, colorizer, _ = setup
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video at all\n")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    for bad in (not_video, truncated, tmp_path / "missing.mp4"):
        out = tmp_path / f"out-{bad.stem}.mp4"
        with pytest.raises(VideoError) as err:
            colorize_video(bad, colorizer, out, progress=False)
        assert "\n" not in str(err.value) and bad.name in str(err.value)
        assert not out.exists() and not list(tmp_path.glob(".out-*"))
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    with pytest.raises(Exception, match="must end in"):
        colorize_video(clip, colorizer, mine, progress=False)
    assert mine.read_text() == "mine"


def test_audio_an_mp4_cannot_take_is_refused_and_mkv_keeps_it(setup, tmp_path):
    from zoo.video import VideoError, colorize_video, probe

    _, colorizer, _ = setup
    clip = tmp_path / "pcm.mkv"
    with av.open(str(clip), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=8000)
        a.layout = "mono"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                out.mux(p)
        tone = (8000 * np.sin(np.arange(4800) / 5)).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for stream, f in ((a, frame), (a, None), (v, None)):
            for p in stream.encode(f):
                out.mux(p)
    with pytest.raises(VideoError, match=r"pcm_s16le.*\.mkv"):
        colorize_video(clip, colorizer, tmp_path / "out.mp4", progress=False)
    assert not (tmp_path / "out.mp4").exists()
    colorize_video(clip, colorizer, tmp_path / "out.mkv", progress=False)
    info = probe(tmp_path / "out.mkv")
    assert info.has_audio and (info.width, info.height) == (W, H)
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.streams.audio[0].codec_context.name == "pcm_s16le"
        assert sum(f.samples for f in c.decode(c.streams.audio[0])) == 4800


def test_zoo_colorize_takes_videos_next_to_photos(setup, tmp_path):
    """The real command: a clip and a photo in one call; a broken clip is one line and exit 1, the rest written."""
    from zoo.video import probe

    clip, colorizer, root = setup
    photo = tmp_path / "still.png"
    _photo("astronaut", (64, 64)).save(photo)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:2000])
    out = tmp_path / "out"
    proc = run_zoo("colorize", str(clip), str(photo), str(broken), "--model", str(root / "run"), "--out", str(out),
                   "--no-progress", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "still.png"]
    assert probe(out / "clip.mp4").frames == probe(clip).frames
    skipped = [line for line in proc.stderr.splitlines() if "broken.mp4" in line and "skipped" in line]
    assert len(skipped) == 1 and "Traceback" not in proc.stderr
    assert "zoo: colorizing 1 image and 2 videos with" in proc.stderr
    assert "zoo: colorized 2 of 3 inputs into" in proc.stderr and "1 failed: 'broken.mp4'" in proc.stderr
    # only videos: the summary counts videos, never "0 of 1 images" / "1 images"
    alone = run_zoo("colorize", str(broken), "--model", str(root / "run"), "--out", str(tmp_path / "o2"),
                    "--no-progress", "--device", "cpu")
    assert alone.returncode == 1 and "zoo: colorized 0 of 1 input into" in alone.stderr, alone.stderr
    ok = run_zoo("colorize", str(clip), "--model", str(root / "run"), "--out", str(tmp_path / "o3"),
                 "--no-progress", "--device", "cpu")
    assert ok.returncode == 0 and "zoo: colorizing 1 video with" in ok.stderr, ok.stderr
    assert "zoo: colorized 1 video into" in ok.stderr, ok.stderr
