"""``--data hf:NAME_OR_PATH[:split]``: a Hugging Face ``datasets`` dataset as an image source (``pip install
'zoo[hf]'``).

A local PATH is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or anything
``datasets.load_dataset(PATH)`` reads (an imagefolder, a folder of parquet files, one .parquet file). A NAME is a
dataset on the Hugging Face Hub: it is downloaded once into the ``datasets`` cache and read memory-mapped from there
(rows are read when a batch needs them, so memory stays flat). Offline, a NAME fails with one line.

The split (default ``train``) is the training side; validation is the dataset's ``validation`` / ``val`` / ``test``
split when it has one, else a seeded share of the training split (``data.val_fraction``, ``data.split_seed``, as for
a folder). The image column is ``data.hf_image_column``, else the first column of ``datasets.Image`` features.
Images are decoded by :func:`zoo.image_file.load_rgb` from their stored bytes (the same checks as files).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from zoo.image_file import load_rgb
from zoo.sources import ImageItem, ImageSource, reachable
from zoo.errors import DataError

VAL_SPLITS = ("validation", "val", "test")


def _hf_image(dataset, column: str, index: int, name: str):
    value = dataset[index][column]
    if isinstance(value, dict) and value.get("bytes"):
        return load_rgb(name, data=value["bytes"])
    if isinstance(value, dict) and value.get("path"):
        return load_rgb(value["path"])
    from zoo.image_file import UnreadableImage

    raise UnreadableImage(name, "no image bytes or path in this row")


def _image_column(dataset, wanted: str | None, label: str) -> str:
    import datasets

    columns = list(dataset.features)
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{label} has no column {wanted!r} (columns: {', '.join(columns)}): fix "
                            f"--set data.hf_image_column")
        if not isinstance(dataset.features[wanted], datasets.Image):
            raise DataError(f"column {wanted!r} of {label} holds {type(dataset.features[wanted]).__name__} values, "
                            f"not images: name an image column with --set data.hf_image_column=NAME")
        return wanted
    images = [c for c in columns if isinstance(dataset.features[c], datasets.Image)]
    if not images:
        raise DataError(f"{label} has no image column (columns: {', '.join(columns)}): name one with --set "
                        f"data.hf_image_column=NAME")
    return images[0]


def _load(path: str, split: str | None, label: str):
    import datasets

    if os.path.exists(path):
        saved = any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))
        try:
            if saved:
                return datasets.load_from_disk(path)
            if os.path.isfile(path) and path.endswith(".parquet"):
                return datasets.load_dataset("parquet", data_files=path)
            return datasets.load_dataset(path)
        except Exception as exc:  # datasets raises many types for a folder it cannot read
            raise DataError(f"{label}: datasets cannot read {path} ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}): give a save_to_disk folder, an "
                            f"imagefolder or parquet files") from None
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    reason = "HF_HUB_OFFLINE is set" if offline else reachable("https://huggingface.co")
    if reason is not None:
        raise DataError(f"{label}: {path!r} is not a local folder, and the Hugging Face Hub cannot be reached "
                        f"({reason}): connect to the internet, or give a local path (hf:/path/to/dataset)")
    try:
        return datasets.load_dataset(path, split=split) if split else datasets.load_dataset(path)
    except Exception as exc:
        raise DataError(f"{label}: cannot load {path!r} from the Hugging Face Hub ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def hf_source(spec: str, seed: int = 123, val_fraction: float = 0.2, image_column: str | None = None) -> ImageSource:
    """``hf:`` + ``spec`` (NAME_OR_PATH[:split]) -> :class:`ImageSource`."""
    try:
        import datasets
    except ImportError:
        raise DataError("hf: sources need the Hugging Face datasets package: pip install 'zoo[hf]' (or pip "
                        "install datasets)") from None
    path, split = spec, None
    if not os.path.exists(spec) and ":" in spec:
        path, split = spec.rsplit(":", 1)
    label = f"hf:{spec}"
    loaded = _load(path, split, label)
    val_ds = None
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        names = list(loaded)
        chosen = split or ("train" if "train" in names else names[0])
        if chosen not in names:
            raise DataError(f"{label} has no split {chosen!r} (splits: {', '.join(names)}): use hf:{path}:SPLIT")
        train_ds = loaded[chosen]
        val_name = next((v for v in VAL_SPLITS if v in names and v != chosen), None)
        val_ds = loaded[val_name] if val_name else None
    else:
        train_ds, chosen = loaded, split or "train"
    column = _image_column(train_ds, image_column, label)
    train_ds = train_ds.select_columns([column]).cast_column(column, datasets.Image(decode=False))

    def items(ds, part: str, rows) -> list[ImageItem]:
        return [ImageItem(name=f"{label}#{part}/{i}", loader=functools.partial(_hf_image, ds, column, int(i),
                                                                              f"{label}#{part}/{i}")) for i in rows]

    n = len(train_ds)
    if n == 0:
        raise DataError(f"{label}: split {chosen!r} has no rows")
    fingerprint = f"{train_ds._fingerprint}"
    if val_ds is not None:
        val_ds = val_ds.select_columns([column]).cast_column(column, datasets.Image(decode=False))
        fingerprint += f"+{val_ds._fingerprint}"
        return ImageSource(name=label, train=items(train_ds, chosen, range(n)),
                           val=items(val_ds, val_name, range(len(val_ds))), fingerprint=fingerprint)
    if n == 1:
        one = items(train_ds, chosen, [0])
        return ImageSource(name=label, train=one, val=one, val_is_train=True, fingerprint=fingerprint)
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return ImageSource(name=label, train=items(train_ds, chosen, sorted(order[n_val:])),
                       val=items(train_ds, chosen, sorted(order[:n_val])), fingerprint=fingerprint)
