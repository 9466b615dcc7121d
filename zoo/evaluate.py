"""Evaluation: colorize every image of a source with trained generators and score them with zoo.metrics.

The protocol is part of every result (``Evaluation.protocol``, printed by ``zoo eval``, stored in JSON):

1. Each image of the chosen split is decoded to 8-bit RGB and resized, whole, to ``image_size`` x
   ``image_size`` with PIL bicubic (``zoo.data.decode_items``: no crop, no flip, aspect ratio not kept),
   exactly as training resizes its validation images.
2. The ground truth is that resized uint8 RGB image, round-tripped through nothing else.
3. The model sees its L (``zoo.lab``, which matches ``skimage.color.rgb2lab``), scaled ``L/50 - 1``; it runs
   through :class:`zoo.inference.Predictor`: eval mode, in the precision it was trained in as this device runs it
   (or ``--precision``; the one used is in each model's info), without test-time augmentation.
4. The prediction is exactly what ``zoo colorize`` writes for the resized image (:func:`zoo.colorize.compose`):
   Lab (the input's L, the predicted ab x 110) to sRGB, colours outside sRGB desaturated keeping L and hue
   (:func:`zoo.lab.fit_gamut`), rounded to uint8 half up (:func:`zoo.lab.to_uint8`). ab L1/L2 use the
   generator's raw ab output (times the saturation S, below); every other metric uses the uint8 RGB prediction.
   ``--saturation S1,S2,...`` scores each model once per S (a row "NAME S=1.2"), composed at that
   saturation as ``zoo colorize --saturation S`` writes it: the way to pick S on a validation set.
5. The gray baseline (ab = 0: the input's L alone) is scored the same way, in every table.
6. A mean is the arithmetic mean over images of per-image values; PSNR is capped per image at
   ``zoo.metrics.PSNR_MAX_DB`` so a photo that is already gray (gray baseline PSNR infinite) keeps the mean finite.
7. Dataset-level numbers are computed from the whole set: |dCF| set = |mean CF(pred) - mean CF(truth)|, and FID
   (:mod:`zoo.perceptual`, with LPIPS per image) when its weights are available; each skipped one says why in
   the protocol (``protocol["fid"]``, ``protocol["lpips"]``).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo import metrics
from zoo.errors import DataError, SpecError, ZooError

GRAY_BASELINE = "gray baseline"
SPLITS = ("val", "train", "all")
MIN_SIZE, MAX_SIZE = 16, 4096  # SSIM's 7x7 window needs a few pixels; the spec's image_size bounds

#: metric -> number format in text and markdown tables
FORMATS = {"ab_l1": ".4f", "ab_l2": ".5f", "ab_l1_lab": ".2f", "ab_l2_lab": ".1f", "psnr": ".2f", "ssim": ".4f",
           "deltae00": ".2f", "colorfulness": ".2f", "colorfulness_truth": ".2f", "colorfulness_abs_diff": ".2f",
           "lpips": ".4f", "colorfulness_dataset_abs_diff": ".2f", "fid": ".2f"}


@dataclass
class Candidate:
    """Something to score: ``predict`` maps L (B, 1, S, S) in [-1, 1] to ab (B, 2, S, S) in the model's scale."""

    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    saturation: float = 1.0  # the colour saturation its outputs are composed at (zoo.colour_control)


def gray_baseline() -> Candidate:
    """ab = 0 everywhere: the input's L alone, i.e. doing nothing."""
    return Candidate(GRAY_BASELINE, lambda L: torch.zeros((L.shape[0], 2, *L.shape[2:]), dtype=L.dtype,
                                                           device=L.device),
                     {"description": "ab = 0: the gray input's L alone"})


def candidate_from_trained(model, name: str, precision: str | None = None) -> Candidate:
    """A :class:`zoo.loading.TrainedModel` as a Candidate, run by a :class:`zoo.inference.Predictor`
    (``precision``: None for the training precision as this device runs it, or fp32, bf16, fp16, auto)."""
    from zoo.inference import Predictor

    predictor = Predictor.from_trained(model, precision)
    spec, ckpt = model.spec, model.checkpoint
    info = {"checkpoint": str(ckpt.path), "step": ckpt.step, "generator": spec.generator.name,
            "generator_options": spec.generator.options, "discriminator": spec.discriminator.name,
            "trained_image_size": spec.data.image_size, "trained_on": spec.data.source,
            "precision": predictor.precision, "trained_precision": spec.precision, "weights": model.weights}
    return Candidate(name, predictor.predict_ab, info)


def model_label(path: str | Path) -> str:
    """Table name of a model given as a run folder (its name) or a checkpoint file (run/step-N)."""
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    run = path.resolve().parent
    if run.name == "checkpoints":
        run = run.parent
    return f"{run.name}/{path.stem}"


def load_candidates(paths: Sequence[str | Path], device: torch.device | str = "cpu",
                    precision: str | None = None, weights: str = "auto") -> tuple[list[Candidate], list]:
    """Load run folders / checkpoint files with ``zoo.loading.load_trained`` (``weights``: "auto", "ema" or
    "raw", as there); names are made unique."""
    from zoo.loading import load_trained

    candidates, models, seen = [], [], {GRAY_BASELINE: 1}
    for path in paths:
        model = load_trained(path, device=device, weights=weights)
        label = model_label(path)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        candidates.append(candidate_from_trained(model, label, precision))
        models.append(model)
    return candidates, models


@dataclass
class EvalImages:
    """Ground-truth images of one split: uint8 (N, 3, S, S) and their names, with the protocol facts about them."""

    images: torch.Tensor
    names: list[str]
    source: str
    split: str
    held_out: bool
    notes: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def check_size(image_size: int) -> int:
    if not MIN_SIZE <= int(image_size) <= MAX_SIZE:
        raise SpecError(f"image size {image_size} is out of range: use --size between {MIN_SIZE} and {MAX_SIZE}")
    return int(image_size)


def load_images(source: str = "embedded", split: str = "val", image_size: int = 64, split_seed: int = 123,
                val_fraction: float = 0.2, log: Callable[[str], None] | None = None) -> EvalImages:
    """Decode the images of a split of ``source`` (``zoo.sources.resolve_source``) once, resized to image_size."""
    from zoo.data import decode_items, describe_skipped
    from zoo.sources import resolve_source

    if split not in SPLITS:
        raise SpecError(f"no split named {split!r}: use one of {', '.join(SPLITS)}")
    image_size = check_size(image_size)
    src = resolve_source(source, seed=split_seed, val_fraction=val_fraction)
    if split == "val":
        items = list(src.val)
    elif split == "train":
        items = list(src.train)
    else:
        names = {item.name for item in src.train}
        items = list(src.train) + [item for item in src.val if item.name not in names]
    if not items:
        raise DataError(f"data source {src.name!r} has no {split} images: use another --split or --data")
    decoded = decode_items(items, image_size)
    notes = []
    skipped = list(src.skipped) + decoded.skipped
    if skipped:
        notes.append(describe_skipped(skipped))
        if log is not None:
            log(f"zoo: {describe_skipped(skipped)}")
    held_out = split == "val" and not src.val_is_train
    if src.val_is_train and split != "train":
        notes.append("the source has a single image: validation = train, nothing is held out")
    return EvalImages(decoded.images, decoded.names, src.name, split, held_out, notes)


def protocol(images: EvalImages, split_seed: int | None = None, val_fraction: float | None = None,
             perceptual: dict[str, str] | None = None) -> dict[str, Any]:
    """The protocol of an evaluation, as stored in JSON (``image_size`` is the side of every image);
    ``perceptual``: the status line of FID and LPIPS (what computed them, or why they were skipped)."""
    s = images.image_size
    out: dict[str, Any] = {
        "image_size": s,
        "data": images.source,
        "split": images.split,
        "held_out": images.held_out,
        "images": len(images.names),
        "resize": f"each image decoded to 8-bit RGB (EXIF-rotated, alpha over white) and resized whole to {s}x{s} "
                  f"with PIL bicubic: no crop, no flip, aspect ratio not kept (as training's validation images)",
        "ground_truth": "the resized uint8 RGB image, round-tripped through nothing else",
        "model_input": "L of the ground truth (CIE Lab D65 / 2 degrees, = skimage rgb2lab) scaled L/50 - 1; "
                       "generators in eval mode, in their training precision as this device runs it unless "
                       "--precision says otherwise (each model's info has the one used), no test-time augmentation",
        "prediction": "exactly what zoo colorize writes for the resized image: Lab (the input's L, predicted ab x "
                      "110) -> sRGB with out-of-gamut colours desaturated (L and hue kept) -> uint8 (round half "
                      "up); ab L1/L2 use the raw predicted ab, all other metrics the uint8 RGB",
        "gray_baseline": "ab = 0 (the input's L alone), scored exactly like a model",
        "colour_space": "CIE Lab, D65, 2 degree observer (skimage); PSNR, SSIM and colourfulness on sRGB uint8",
        "means": "arithmetic mean over images of per-image values (each a mean over that image's pixels); "
                 "every model is scored on the same images",
        "psnr_rule": f"PSNR per image capped at {metrics.PSNR_MAX_DB:g} dB; identical images (MSE 0, e.g. the gray "
                     f"baseline on a photo that is already gray) count as {metrics.PSNR_MAX_DB:g} dB",
        "psnr_max_db": metrics.PSNR_MAX_DB,
        "metrics": {k: {"title": t, "better": b, "definition": d} for k, (t, b, d) in metrics.ALL_METRICS.items()},
        "dataset_metrics": "|dCF| set = |mean CF(pred) - mean CF(truth)| over all images; FID over all images "
                           "(one number per set)",
        "fid": (perceptual or {}).get("fid", "skipped: not requested"),
        "lpips": (perceptual or {}).get("lpips", "skipped: not requested"),
    }
    if split_seed is not None:
        out["folder_split"] = {"seed": split_seed, "val_fraction": val_fraction,
                               "rule": "folders without train/ and val/, and file lists, are split by a seeded "
                                       "permutation (zoo.sources.split_paths)"}
    if images.notes:
        out["notes"] = list(images.notes)
    return out


@dataclass
class Evaluation:
    """Scores of several candidates on the same images."""

    protocol: dict[str, Any]
    means: dict[str, dict[str, float]]
    rows: list[dict[str, Any]]
    info: dict[str, dict[str, Any]]
    previews: dict[str, np.ndarray] = field(default_factory=dict)  # name -> uint8 (k, S, S, 3); "ground truth" too

    def to_json(self) -> dict[str, Any]:
        """{"protocol": ..., "models": {name: means}, "model_info": ..., "images": [per-image rows]}."""
        return {"protocol": self.protocol, "models": self.means, "model_info": self.info, "images": self.rows}


def metric_keys(means: dict[str, dict[str, float]]) -> list[str]:
    """The metrics an evaluation has (zoo.metrics.ALL_METRICS order): LPIPS and FID only when they were computed."""
    present = set().union(*(m.keys() for m in means.values())) if means else set()
    return [k for k in metrics.ALL_METRICS if k in present]


@torch.no_grad()
def evaluate(candidates: Sequence[Candidate], images: EvalImages, device: torch.device | str = "cpu",
             batch_size: int = 16, previews: int = 0, split_seed: int | None = None,
             val_fraction: float | None = None, baseline: bool = True, perceptual=None) -> Evaluation:
    """Score every candidate and the gray baseline (added first if missing, unless ``baseline`` is False) on
    ``images``.

    ``previews``: keep that many predicted images per candidate (and the ground truth) for image grids.
    ``perceptual``: a :class:`zoo.perceptual.Perceptual` (FID and LPIPS when available), or None for neither.
    """
    from zoo.colorize import compose
    from zoo.lab import uint8_to_model_input

    device = torch.device(device)
    cands = list(candidates)
    if baseline and not any(c.name == GRAY_BASELINE for c in cands):
        cands.insert(0, gray_baseline())
    use_lpips = perceptual is not None and perceptual.has_lpips
    use_fid = perceptual is not None and perceptual.has_fid
    if use_fid:
        perceptual.set_real(images.images.permute(0, 2, 3, 1).numpy())
    all_preds: dict[str, list[np.ndarray]] = {c.name: [] for c in cands}
    size = images.image_size
    per_model: dict[str, list[dict[str, float]]] = {c.name: [] for c in cands}
    kept: dict[str, list[np.ndarray]] = {c.name: [] for c in cands}
    kept["ground truth"] = []
    rows: list[dict[str, Any]] = []
    n = len(images.names)
    for start in range(0, n, batch_size):
        rgb = images.images[start:start + batch_size]
        truth = rgb.permute(0, 2, 3, 1).numpy()
        L, ab = uint8_to_model_input(rgb.to(device))
        true_ab = ab.double().cpu().numpy()
        if start < previews:
            kept["ground truth"].append(truth[:previews - start])
        batch_scores: dict[str, list[dict[str, float]]] = {}
        for cand in cands:
            try:
                fake = cand.predict(L)
            except ZooError:
                raise
            except Exception as exc:  # a size the architecture cannot take, most often
                trained = cand.info.get("trained_image_size")
                hint = f" (trained at {trained} px: try --size {trained})" if trained else ""
                raise SpecError(f"{cand.name} cannot colorize {size} px images: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]}{hint}") from None
            if not isinstance(fake, torch.Tensor) or tuple(fake.shape) != (L.shape[0], 2, size, size):
                got = tuple(fake.shape) if isinstance(fake, torch.Tensor) else type(fake).__name__
                raise SpecError(f"{cand.name} returned {got} for {size} px images, expected "
                                f"({L.shape[0]}, 2, {size}, {size})")
            fake = fake.float()
            pred = np.stack([compose(truth[i], fake[i], cand.saturation) for i in range(fake.shape[0])])
            pred_ab = (fake.double() * cand.saturation).cpu().numpy()
            batch_scores[cand.name] = [metrics.image_metrics(pred[i], truth[i], pred_ab[i], true_ab[i])
                                       for i in range(pred.shape[0])]
            if use_lpips:
                for scores, value in zip(batch_scores[cand.name], perceptual.lpips(pred, truth)):
                    scores["lpips"] = float(value)
            if use_fid:
                all_preds[cand.name].append(pred)
            per_model[cand.name].extend(batch_scores[cand.name])
            if start < previews:
                kept[cand.name].append(pred[:previews - start])
        for i in range(rgb.shape[0]):  # image-major rows: each image's models together
            rows.extend({"image": images.names[start + i], "model": name, **scores[i]}
                        for name, scores in batch_scores.items())
    per_image_keys = list(metrics.METRICS) + (["lpips"] if use_lpips else [])
    means = {name: {k: float(np.mean([s[k] for s in scores])) for k in per_image_keys}
             for name, scores in per_model.items()}
    for name, scores in per_model.items():
        means[name]["colorfulness_dataset_abs_diff"] = metrics.dataset_colorfulness_gap(
            [s["colorfulness"] for s in scores], [s["colorfulness_truth"] for s in scores])
        if use_fid:
            value = perceptual.fid(np.concatenate(all_preds[name]))
            if value is not None:
                means[name]["fid"] = value
    info = {c.name: c.info for c in cands}
    kept_arrays = {k: np.concatenate(v) for k, v in kept.items() if v}
    status = perceptual.status if perceptual is not None else None
    return Evaluation(protocol(images, split_seed, val_fraction, status), means, rows, info, kept_arrays)


def evaluate_paths(paths: Sequence[str | Path], data: str = "embedded", split: str = "val",
                   image_size: int | None = None, device: str = "auto", batch_size: int = 16,
                   log: Callable[[str], None] | None = None, precision: str | None = None,
                   previews: int = 0, perceptual: bool = True, weights: str = "auto",
                   saturations: Sequence[float] = (1.0,)) -> Evaluation:
    """What ``zoo eval`` does: load the models, decode the split once, score them all and the gray baseline.

    Without ``image_size`` the models' training size is used; models trained at different sizes need one.
    The split seed and fraction of a folder source are the first model's (its held-out images). ``precision``:
    None for each model's training precision (as this device runs it), or fp32, bf16, fp16, auto for all.
    ``weights``: "auto" (each checkpoint's EMA weights when it has them, else its raw ones), "ema" or "raw".
    ``saturations``: more than one (or one other than 1) scores every model once per value, named "NAME S=s".
    """
    from zoo.colour_control import check_saturation

    saturations = [check_saturation(value) for value in saturations]
    from zoo.runtime import select_device

    log = log or (lambda msg: print(msg, file=sys.stderr))
    dev = select_device(device)
    candidates, models = load_candidates(paths, dev, precision, weights)
    if image_size is None:
        sizes = sorted({m.image_size for m in models})
        if len(sizes) > 1:
            raise SpecError(f"the models were trained at different image sizes ({', '.join(map(str, sizes))} px): "
                            f"pass --size N to compare them at one size")
        image_size = sizes[0]
    if list(saturations) != [1.0]:
        candidates = [Candidate(f"{c.name} S={value:g}", c.predict, {**c.info, "saturation": value}, value)
                      for c in candidates for value in saturations]
    data_spec = models[0].spec.data
    images = load_images(data, split, image_size, data_spec.split_seed, data_spec.val_fraction, log=log)
    folder = (Path(data).is_dir() or Path(data).is_file()) if data not in ("embedded", "coco-sample") else False
    scorer = None
    if perceptual:
        from zoo.perceptual import Perceptual

        scorer = Perceptual(dev)
    result = evaluate(candidates, images, dev, batch_size, previews=previews,
                      split_seed=data_spec.split_seed if folder else None,
                      val_fraction=data_spec.val_fraction if folder else None, perceptual=scorer)
    # said after the scores, so that an evaluation that fails says only why it failed
    for key, status in (scorer.status.items() if scorer else ()):
        if status.startswith("skipped"):
            log(f"zoo: {key.upper()} {status}")
    return result


# ---------------------------------------------------------------------------------------------------------
# Text


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """An aligned plain-text table (columns separated by two spaces, a rule under the header)."""
    right = list(right) if right is not None else [False] + [True] * (len(headers) - 1)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and key in FORMATS:
        return format(value, FORMATS[key])
    return str(value)


def format_text(evaluation: Evaluation, per_image: bool = True) -> str:
    """The protocol, the table of means (gray baseline included) and, optionally, the per-image table."""
    p = evaluation.protocol
    keys = metric_keys(evaluation.means)
    row_keys = [k for k in keys if k not in metrics.DATASET_METRICS]
    lines = [f"zoo eval: {p['images']} {p['split']} images of {p['data']} at {p['image_size']}x{p['image_size']} px"
             f"{'' if p['held_out'] else ' (NOT held out from training)'}"]
    lines += ["protocol:"] + [f"  {k}: {p[k]}" for k in ("resize", "ground_truth", "model_input", "prediction",
                                                          "gray_baseline", "means", "psnr_rule", "fid",
                                                          "lpips")]
    for note in p.get("notes", []):
        lines.append(f"  note: {note}")
    lower = ", ".join(metrics.ALL_METRICS[k][0] for k in keys if metrics.ALL_METRICS[k][1] == "lower")
    higher = ", ".join(metrics.ALL_METRICS[k][0] for k in keys if metrics.ALL_METRICS[k][1] == "higher")
    lines += [f"lower is better: {lower}; higher is better: {higher}; CF is the colourfulness (compare with CF truth)",
              ""]
    headers = ["model", *(metrics.ALL_METRICS[k][0] for k in keys)]
    lines.append(format_table(headers, [[name, *(format_value(k, m[k]) for k in keys)]
                                        for name, m in evaluation.means.items()]))
    if per_image:
        lines += ["", "per image:"]
        lines.append(format_table(["image", "model", *(metrics.ALL_METRICS[k][0] for k in row_keys)],
                                  [[r["image"], r["model"], *(format_value(k, r[k]) for k in row_keys)]
                                   for r in evaluation.rows], right=[False, False] + [True] * len(row_keys)))
    return "\n".join(lines)


__all__ = ["Candidate", "EvalImages", "Evaluation", "GRAY_BASELINE", "SPLITS", "evaluate", "evaluate_paths",
           "format_table", "format_text", "gray_baseline", "load_candidates", "load_images", "metric_keys", "model_label",
           "protocol"]
