"""Colorize a video: every frame through the model, with temporal smoothing of the colours that resets at cuts.

Decoding and encoding use PyAV (``av``, which ships its own ffmpeg). The output keeps the input's frame rate,
size and frame count; its audio track is copied unchanged (remuxed, not re-encoded). Video is written as H.264
(yuv420p for even sizes, yuv444p otherwise) to ``.mp4``, ``.mkv`` or ``.mov``, atomically: a failure part way
leaves no output file.

Why smoothing: a per-frame model sees each frame alone, so small changes (grain, compression noise, a slight
move) change its colour guess and the colours flicker. The smoothing here is a confidence-weighted exponential
moving average of the model-size ab: at each pixel the previous smoothed ab is kept with weight
``strength * exp(-|dL - mean(dL)| / motion_L)``, where ``dL`` is that pixel's change in lightness (L*) since the
last frame, less the frame's mean change (a change of exposure, old film's flicker, is not motion).
Where nothing moved the colour settles; where something moved (|dL| large) the new prediction takes over, so
moving edges do not smear colour. A scene cut (the L* histograms of two consecutive frames, each centred on its mean, differ by more than
``cut_histogram`` in total variation, or the mean |dL| exceeds ``cut_mean_L``) restarts the average, so a new
scene never carries the old one's colours.

    from zoo import Colorizer
    from zoo.video import colorize_video, Smoothing
    colorize_video("clip.mp4", Colorizer.from_checkpoint("runs/x"), "clip-colour.mp4", smoothing=Smoothing())
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from zoo.errors import ZooError
from zoo.text import shown

#: output file endings -> ffmpeg container format
FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
#: file endings treated as video by ``zoo colorize`` (inputs)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
HIST_BINS = 32
#: audio codecs each output container takes as they are (the audio is copied, never re-encoded); Matroska takes all
AUDIO_CODECS = {"mp4": {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"},
                "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}}


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``zoo colorize`` treats an input file as a video (by its ending: see VIDEO_EXTENSIONS)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class VideoError(ZooError):
    """A video file cannot be read (not a video, truncated, no video stream, a codec ffmpeg cannot decode)."""


@dataclass(frozen=True)
class Smoothing:
    """Temporal smoothing of the predicted colours (see the module docstring)."""

    strength: float = 0.85   # weight of the past where nothing moved (0 = per-frame colorization)
    motion_L: float = 6.0    # L* change at which the past's weight falls to 1/e
    cut_histogram: float = 0.35  # total-variation distance of L* histograms that marks a cut (0..1)
    cut_mean_L: float = 30.0     # mean |dL*| over the frame that marks a cut

    def __post_init__(self):
        if not 0.0 <= self.strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {self.strength}")
        if self.motion_L <= 0 or self.cut_histogram <= 0 or self.cut_mean_L <= 0:
            raise ValueError("motion_L, cut_histogram and cut_mean_L must be positive")


def _histogram(L: torch.Tensor) -> torch.Tensor:
    """The L* histogram around the frame's mean, so that a change of exposure alone does not look like a cut."""
    centred = L.float() - L.float().mean()
    return torch.histc(centred, bins=HIST_BINS, min=-50.0, max=50.0) / L.numel()


class TemporalSmoother:
    """Feed model-size (L*, ab) frame by frame; returns the smoothed ab and whether the frame started a scene."""

    def __init__(self, smoothing: Smoothing):
        self.smoothing = smoothing
        self.prev_L: torch.Tensor | None = None
        self.prev_hist: torch.Tensor | None = None
        self.state: torch.Tensor | None = None

    def is_cut(self, L: torch.Tensor, hist: torch.Tensor) -> bool:
        if self.prev_L is None:
            return True
        s = self.smoothing
        hist_distance = 0.5 * float((hist - self.prev_hist).abs().sum())
        return hist_distance > s.cut_histogram or float((L - self.prev_L).abs().mean()) > s.cut_mean_L

    def __call__(self, L: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """L (h, w) L* in [0, 100], ab (2, h, w) -> (smoothed ab (2, h, w), cut)."""
        hist = _histogram(L)
        cut = self.is_cut(L, hist)
        if cut:
            self.state = ab.clone()
        else:
            dL = L - self.prev_L
            # a change of exposure (old film's flicker, auto-exposure) shifts every pixel alike: it is not motion
            motion = (dL - dL.mean()).abs()
            keep = self.smoothing.strength * torch.exp(-motion / self.smoothing.motion_L)
            self.state = keep * self.state + (1 - keep) * ab
        self.prev_L, self.prev_hist = L, hist
        return self.state, cut


def model_size_L(rgbs: Sequence[np.ndarray], size: int, device) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> L* (B, size, size) at the model's resolution (bicubic, as the model sees them)."""
    from zoo.lab import rgb_to_lab

    small = np.stack([np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC)) for rgb in rgbs])
    rgb = torch.from_numpy(small).to(device).permute(0, 3, 1, 2).float() / 255.0
    return rgb_to_lab(rgb)[:, 0]


def flicker(frames: Sequence[np.ndarray | Image.Image]) -> float:
    """Mean |delta ab| (Lab units, a* and b* averaged) between consecutive frames: 0 for a perfectly steady shot."""
    from zoo.lab import rgb_to_lab

    if len(frames) < 2:
        return 0.0
    total = 0.0
    prev = None
    for frame in frames:
        rgb = torch.from_numpy(np.asarray(frame, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        ab = rgb_to_lab(rgb)[1:]
        if prev is not None:
            total += float((ab - prev).abs().mean())
        prev = ab
    return total / (len(frames) - 1)


# ----------------------------------------------------------------------------------------------------
# Reading


def _open(path: Path):
    import av

    if not path.exists():
        raise VideoError(f"video {shown(path)} does not exist")
    if not path.is_file():
        raise VideoError(f"video {shown(path)} is not a regular file")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot read video {shown(path)}: not a video or a truncated file "
                         f"({exc.strerror or type(exc).__name__})") from None
    if not container.streams.video:
        audio = len(container.streams.audio)
        container.close()
        if not audio:  # an MP4 cut before its index (the moov box, written last) opens with one bare data stream
            raise VideoError(f"cannot read video {shown(path)}: no video or audio stream can be found in it: it is "
                             f"truncated (a copy or recording that stopped early) or not a video; copy it again")
        raise VideoError(f"cannot read video {shown(path)}: it has no video stream, only {audio} audio stream(s): "
                         f"give a file with a picture")
    if container.streams.video[0].codec_context is None:  # a stream whose header never arrived (cut short)
        container.close()
        raise VideoError(f"cannot read video {shown(path)}: its video stream has no codec that can be opened: it "
                         f"is truncated (a copy or recording that stopped early) or uses a codec ffmpeg lacks; copy "
                         f"it again")
    return container


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    rate: Fraction
    frames: int  # as the container declares it; 0 when unknown
    has_audio: bool


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, declared frame count and audio presence of a video file."""
    container = _open(Path(path))
    try:
        v = container.streams.video[0]
        rate = v.average_rate or v.guessed_rate or Fraction(25)
        return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(rate), int(v.frames or 0),
                         bool(container.streams.audio))
    finally:
        container.close()


def read_frames(path: str | os.PathLike) -> list[np.ndarray]:
    """All frames of a video as uint8 (H, W, 3) RGB arrays (for tests and small clips)."""
    container = _open(Path(path))
    try:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    except av_errors() as exc:
        raise VideoError(f"cannot decode video {shown(path)}: {exc}") from None
    finally:
        container.close()


def av_errors():
    import av

    return (av.error.FFmpegError, EOFError)


# ----------------------------------------------------------------------------------------------------
# Colorizing


def _batches(frames: Iterator, n: int) -> Iterator[list]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def has_video_mark(path: str | os.PathLike) -> bool:
    """Whether a video carries zoo's mark (the container's comment tag, as :func:`colorize_video` writes it)."""
    import av

    from zoo.fileio import IMAGE_MARK

    try:
        with av.open(os.fspath(path)) as container:
            tags = {k.lower(): v for k, v in container.metadata.items()}
    except Exception:  # not a video PyAV reads: not one zoo wrote
        return False
    return tags.get("comment") == IMAGE_MARK


def colorize_video(path: str | os.PathLike, colorizer, out_path: str | os.PathLike,
                   smoothing: Smoothing | None = Smoothing(), batch_size: int = 8, progress: bool = True,
                   force: bool = False, on_frame: Callable[[int, bool], None] | None = None) -> dict:
    """Colorize the video at ``path`` with ``colorizer`` (a :class:`zoo.Colorizer`) into ``out_path``.

    ``smoothing``: a :class:`Smoothing`, or None for independent per-frame colorization. ``on_frame(i, cut)``
    is called for each frame (the smoother's cut decisions). Returns {"frames", "cuts", "fps", "size", "audio"}.
    Raises :class:`VideoError` for an unreadable input; ``out_path`` follows ``zoo.fileio.check_output_file``.
    """
    import av
    from tqdm import tqdm

    from zoo.colorize import combine
    from zoo.fileio import IMAGE_MARK, atomic_write, check_output_file
    from zoo.text import one_line

    src = Path(path)
    out = Path(out_path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise VideoError(f"output {shown(out)} must end in {', '.join(FORMATS)}")
    check_output_file(out, tuple(FORMATS), "a video", force=force, flag="output", made_by_zoo=has_video_mark)
    if out.exists() and out.resolve() == src.resolve():
        raise VideoError(f"output {shown(out)} is the input video: give another file name")
    container = _open(src)
    if container.streams.audio and fmt in AUDIO_CODECS:
        codec = container.streams.audio[0].codec_context.name
        if codec not in AUDIO_CODECS[fmt]:
            container.close()
            raise VideoError(f"the audio of {shown(src)} ({codec}) cannot be copied into {out.suffix}: write the "
                             f"output as .mkv, which takes any audio")
    stats = {"frames": 0, "cuts": 0}

    def encode(tmp: str) -> None:
        vin = container.streams.video[0]
        ain = container.streams.audio[0] if container.streams.audio else None
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25)
        width, height = vin.codec_context.width, vin.codec_context.height
        smoother = TemporalSmoother(smoothing) if smoothing is not None else None
        bar = tqdm(total=vin.frames or None, unit="frame", desc=one_line(src.name), disable=not progress, leave=False)
        with av.open(tmp, "w", format=fmt) as sink:
            sink.metadata["comment"] = IMAGE_MARK  # zoo's mark: only a video that has it is replaced without --force
            vout = sink.add_stream("libx264", rate=rate)
            vout.width, vout.height = width, height
            vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            vout.codec_context.time_base = 1 / rate
            vout.options = {"crf": "18", "preset": "medium"}
            aout = sink.add_stream_from_template(ain) if ain is not None else None

            def emit(batch: list[np.ndarray]) -> None:
                ab = colorizer.predict_ab(batch)
                if smoother is not None:
                    Ls = model_size_L(batch, colorizer.size, ab.device)
                for i, rgb in enumerate(batch):
                    frame_ab, cut = ab[i], False
                    if smoother is not None:
                        frame_ab, cut = smoother(Ls[i], ab[i])
                    stats["cuts"] += int(cut)
                    if on_frame is not None:
                        on_frame(stats["frames"], cut)
                    image = combine(rgb, frame_ab, getattr(colorizer, "saturation", 1.0))
                    frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
                    frame.pts = stats["frames"]
                    frame.time_base = 1 / rate
                    for packet in vout.encode(frame):
                        sink.mux(packet)
                    stats["frames"] += 1
                    bar.update(1)

            def video_frames() -> Iterator[np.ndarray]:
                streams = [vin] + ([ain] if ain is not None else [])
                for packet in container.demux(*streams):
                    if packet.stream.type == "audio":
                        if packet.dts is not None:
                            packet.stream = aout
                            sink.mux(packet)
                        continue
                    for frame in packet.decode():
                        yield frame.to_ndarray(format="rgb24")

            try:
                for batch in _batches(video_frames(), batch_size):
                    emit(batch)
            except av_errors() as exc:
                raise VideoError(f"cannot decode video {shown(src)} after {stats['frames']} frames: truncated or "
                                 f"corrupt ({exc.strerror if hasattr(exc, 'strerror') and exc.strerror else exc})"
                                 ) from None
            finally:
                bar.close()
            for packet in vout.encode():
                sink.mux(packet)
        declared = int(vin.frames or 0)
        if stats["frames"] == 0:
            raise VideoError(f"cannot read video {shown(src)}: no frame could be decoded (truncated or corrupt)")
        if declared and stats["frames"] < declared:
            raise VideoError(f"video {shown(src)} is truncated: it declares {declared} frames, only "
                             f"{stats['frames']} could be decoded; nothing was written")
        stats.update(fps=float(rate), size=(width, height), audio=ain is not None)

    try:
        with torch.inference_mode():
            atomic_write(out, encode)
    finally:
        container.close()
    return stats


__all__ = ["FORMATS", "Smoothing", "TemporalSmoother", "VIDEO_EXTENSIONS", "VideoError", "VideoInfo",
           "colorize_video", "flicker", "is_video", "model_size_L", "probe", "read_frames"]
