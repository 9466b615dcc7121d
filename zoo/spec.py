"""The training spec: one pydantic object that is the whole experiment.

Two stages of validation (as llm does): the spec names each component, and the component validates its
own options (`Component.options`). Layers, later ones winning: TrainSpec defaults < preset < config file
(YAML, TOML or JSON) < command-line flags (--gen, --steps, ...) < ``--set dotted.key=value``.
When a later layer names a different component for a slot, the earlier layer's options for that slot
are dropped (they belonged to the other component). Config files are read by :mod:`zoo.config_file`.
"""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from zoo.errors import SpecError, UnknownComponent, ZooError
from zoo.options import Options
from zoo.component import BuildContext, Component, canonical_package, format_validation_error
from zoo.config_file import read_config
from zoo.registry import Registry, disabled_plugins
from zoo.text import shown

SLOTS = {"generator": "generator", "discriminator": "discriminator", "gan_loss": "gan_loss",
         "pixel_loss": "pixel_loss"}


class SpecOptions(Options):
    """Spec sections: strict like every Options model, and no inf/nan in any number (a pixel weight of
    .inf would only show up as a NaN loss at step 1)."""

    model_config = ConfigDict(allow_inf_nan=False)


MAX_SEED = 2**32 - 1  # numpy's seed range; torch seeds derived from it (seed * 1_000_003 + step) fit in int64


class ComponentSpec(SpecOptions):
    name: str = Field(description="registered component name, short or package:name (see `zoo list`)")
    options: dict[str, Any] = Field(default_factory=dict, description="validated by the component's own options")
    provider: str | None = Field(None, description="the distribution==version that provided it, recorded when the "
                                 "spec is resolved (a stored spec resolves to that provider; see zoo.hookspecs)")


class LossTermSpec(ComponentSpec):
    weight: float = Field(1.0, ge=0, description="multiplies the term in the loss of each net it trains")


class ProviderWarning(UserWarning):
    """A stored spec's component now comes from another version of the same distribution."""


class OptimizerSpec(SpecOptions):
    lr: float = Field(2e-4, gt=0, le=1, description="Adam learning rate")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2")
    weight_decay: float = Field(0.0, ge=0, le=1, description="Adam weight decay")


class DataSpec(SpecOptions):
    source: str = Field("embedded", description="'embedded' (photos shipped in installed packages), a folder "
                                                 "path, 'coco-sample' (fastai COCO_SAMPLE, seed split), "
                                                 "'coco:PATH' (a local COCO folder, seed rules) or "
                                                 "'hf:NAME_OR_PATH[:split]' (a Hugging Face datasets dataset)")
    image_size: int = Field(256, ge=16, le=4096, description="side of the square training image, pixels")
    load_size: int | None = Field(None, ge=16, le=8192, description="images are resized to this before a "
                                  "random crop of image_size (needs random_crop); default: image_size")
    random_crop: bool = Field(False, description="random image_size crops of the load_size image (train only)")
    flip: bool = Field(True, description="random horizontal flips (train only)")
    batch_size: int = Field(16, ge=1, le=4096, description="images per step")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of a folder held out for validation "
                                "(ignored when it has train/ and val/ subfolders)")
    split_seed: int = Field(123, ge=0, le=MAX_SEED, description="seed of the train/val split of a folder")
    val_images: int = Field(64, ge=1, description="validation images used for the val L1 logged at each sample")
    workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field("auto", description="processes decoding training images in parallel "
                                           "('auto': none for a set held in memory, else min(8, CPUs - 1)); never "
                                           "changes the result")
    in_memory_mb: int = Field(256, ge=0, le=1 << 20, description="a training set whose decoded uint8 images take at "
                              "most this many MiB is decoded once at start and kept in memory; a larger one is "
                              "streamed (from the decoded cache when there is one, else from the files)")
    cache: Literal["auto", "off"] = Field("auto", description="'auto': read a complete, current decoded cache made "
                                          "by `zoo data cache` when there is one; 'off': never")
    hf_image_column: str | None = Field(None, description="the image column of an hf: source (default: the first "
                                        "column of images)")

    @model_validator(mode="after")
    def _crop_fits(self):
        if self.load_size is not None and self.load_size < self.image_size:
            raise ValueError(f"load_size {self.load_size} is smaller than image_size {self.image_size}")
        if self.load_size not in (None, self.image_size) and not self.random_crop:
            raise ValueError("load_size differs from image_size but random_crop is off: set random_crop=true "
                             "or drop load_size")
        return self

    @property
    def decode_size(self) -> int:
        return self.load_size or self.image_size


class InitSpec(SpecOptions):
    kind: Literal["normal", "xavier", "kaiming", "none"] = Field("normal", description="weight init of conv and "
                                                                 "linear layers (BatchNorm: N(1, gain))")
    gain: float = Field(0.02, gt=0, le=10, description="std of the normal init / gain of xavier")
    apply_to: list[Literal["generator", "discriminator"]] = Field(
        default_factory=lambda: ["generator", "discriminator"],
        description="nets to initialise (a component whose options say it holds trained weights, by its "
                    "declared pretrained option such as pretrained=true, is never re-initialised)")


class PretrainSpec(SpecOptions):
    steps: int = Field(0, ge=0, description="L1-only generator steps before the GAN stage")
    epochs: int = Field(0, ge=0, description="L1-only generator epochs before the GAN stage (the seed's "
                                             "ResNet18 recipe: 20)")
    lr: float = Field(1e-4, gt=0, le=1, description="Adam learning rate of the pretraining stage")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1 of the pretraining stage")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 of the pretraining stage")


class EmaSpec(SpecOptions):
    decay: float = Field(0.999, gt=0, lt=1, description="weight of the old average at each generator step: "
                         "ema = decay * ema + (1 - decay) * weights (averages over about 1/(1 - decay) steps)")
    start: int = Field(0, ge=0, description="steps during which the EMA just copies the weights; averaging starts "
                       "at step start + 1 (skip the first, fast-changing steps)")


#: the component of each slot when a spec names none (data, like the presets)
DEFAULT_COMPONENTS = {"generator": "unet", "discriminator": "patch", "gan_loss": "vanilla", "pixel_loss": "l1"}


def default_component(slot: str, registry: Registry) -> str:
    """The component the core pairs others with in a slot (benchmarks, ``zoo leaderboard``, the contract kit):
    the slot's default (DEFAULT_COMPONENTS) when registered, else the first registered name."""
    names = registry.names(slot)
    if not names:
        raise SpecError(f"no {slot.replace('_', ' ')} is registered (see `zoo plugins`)")
    return DEFAULT_COMPONENTS[slot] if DEFAULT_COMPONENTS[slot] in names else names[0]


def _default(slot: str):
    return lambda: ComponentSpec(name=DEFAULT_COMPONENTS[slot])


class TrainSpec(SpecOptions):
    generator: ComponentSpec = Field(default_factory=_default("generator"))
    discriminator: ComponentSpec = Field(default_factory=_default("discriminator"))
    gan_loss: ComponentSpec = Field(default_factory=_default("gan_loss"))
    pixel_loss: ComponentSpec = Field(default_factory=_default("pixel_loss"))
    pixel_weight: float = Field(100.0, ge=0, description="lambda: weight of the pixel loss in the G loss")
    gan_weight: float = Field(1.0, ge=0, description="weight of the GAN loss in the G loss (0: no adversarial "
                              "term for G, e.g. a classification colorizer alone)")
    losses: list[LossTermSpec] = Field(default_factory=list, description="extra loss terms (kind 'loss': r1, "
                                       "feature_matching, ...), each added with its weight to the nets it trains")
    data: DataSpec = Field(default_factory=DataSpec)
    gen_optim: OptimizerSpec = Field(default_factory=OptimizerSpec)
    disc_optim: OptimizerSpec = Field(default_factory=OptimizerSpec)
    init: InitSpec = Field(default_factory=InitSpec)
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    steps: int | None = Field(None, ge=1, description="GAN-stage steps (with epochs: whichever ends first)")
    epochs: int | None = Field(None, ge=1, description="GAN-stage epochs (with steps: whichever ends first)")
    log_every: int = Field(10, ge=1, description="steps between loss-log lines")
    sample_every: int = Field(200, ge=1, description="steps between sample grids and val L1")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (also at the end, "
                                  "at the end of the pretraining stage, and on Ctrl-C/SIGTERM)")
    keep_checkpoints: int = Field(3, ge=2, description="checkpoints kept (older ones are deleted)")
    num_samples: int = Field(6, ge=1, le=64, description="validation images in each sample grid")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of init, dropout, sampling and augmentation")
    device: str = Field("auto", description="auto (CUDA if available), cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast precision; auto: bf16 on CPUs with avx512_bf16/AMX and on GPUs with bf16 "
        "tensor cores, fp16 with gradient scaling on older GPUs, else fp32 (fp16 on a CPU is emulated and very slow)")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile (inductor) the generator and discriminator for training; auto: on with "
        "CUDA, off on a CPU (there compiling the seed's U-Net takes about a minute and pays only in long runs); "
        "on / off: always / never")
    ema: EmaSpec | None = Field(None, description="exponential moving average of the generator's weights, saved "
                                "in every checkpoint and used by colorize/eval/export (null: off; e.g. --set "
                                "ema.decay=0.999)")
    tensorboard: bool = Field(True, description="write TensorBoard event files (losses, img/s, learning rates, "
                              "validation metrics, sample grids) into the run folder's tb/")
    sync_batchnorm: bool = Field(False, description="multi-process (torchrun) CUDA training: BatchNorm statistics "
                                 "over the global batch (torch.nn.SyncBatchNorm); ignored in a single process")
    out: str = Field("runs", description="folder in which the run folder is made")
    run_name: str | None = Field(None, description="run folder name (default: <gen>-<disc>-<timestamp>)")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_switch(cls, value):
        """YAML (and so ``--set compile=on``) reads on/off as booleans: they mean on/off here."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("run_name")
    @classmethod
    def _one_folder_name(cls, value):
        """run_name becomes one folder inside ``out``: a path (``..``, ``/``, absolute) would put the run elsewhere."""
        if value is None:
            return value
        if value in ("", ".", "..") or "/" in value or "\\" in value or "\0" in value or not value.isprintable():
            raise ValueError("a run name is one folder name: not empty, '.' or '..', without '/', '\\' or control "
                             "characters (to put the run elsewhere, use --out DIR)")
        if len(os.fsencode(value)) > 255:
            raise ValueError(f"a run name is at most 255 bytes (a folder name), got {len(os.fsencode(value))}")
        return value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        """Only the name is checked here: whether the device exists is a matter of the machine that runs the spec."""
        if not re.fullmatch(r"auto|cpu(:0)?|cuda(:\d{1,4})?|mps", value):  # the names select_device takes
            raise ValueError(f"{shown(value)} is not a device: use auto, cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _has_length(self):
        if self.steps is None and self.epochs is None:
            raise ValueError("give steps or epochs (or both)")
        return self

    def context(self) -> BuildContext:
        return BuildContext(image_size=self.data.image_size)

    def resolved(self, registry: Registry) -> "TrainSpec":
        """Every component looked up and its options validated and filled with defaults."""
        updates: dict[str, Any] = {slot: resolve_component(slot, getattr(self, slot), registry) for slot in SLOTS}
        updates["losses"] = [resolve_component("loss", term, registry) for term in self.losses]
        return self.model_copy(update=updates)


def recorded_component(kind: str, comp_spec: ComponentSpec, registry: Registry) -> Component:
    """The component a spec slot names, looked up by its recorded provider when the slot has one (a stored spec:
    spec.json, a checkpoint's spec, a leaderboard entry), so a short name that another package now also registers
    still means the component the run was trained with.

    The provider rule (documented in zoo.hookspecs): a recorded provider whose distribution no longer provides the
    name is refused (SpecError, one line); a different version of it is a ProviderWarning (one line)."""
    import warnings

    where = f"{kind.replace('_', ' ')} {shown(comp_spec.name)}"
    try:
        component = registry.get(kind, comp_spec.name, comp_spec.provider)
    except ZooError as exc:
        if comp_spec.provider is None:
            raise
        if isinstance(exc, UnknownComponent) and disabled_plugins():  # its message names ZOO_DISABLE_PLUGINS:
            raise  # the plugin is there but disabled, so "install it" would mislead
        raise SpecError(f"{where} was recorded from {shown(comp_spec.provider)}, which provides no such component "
                        f"now ({exc}): install {shown(comp_spec.provider)} to continue this run") from None
    pin = component.plugin.pin
    if comp_spec.provider is not None:
        recorded, _, version = comp_spec.provider.partition("==")
        if canonical_package(recorded) != component.plugin.package:
            raise SpecError(f"{where} was recorded from {shown(comp_spec.provider)} but now comes from "
                            f"{component.plugin.provider}: install {shown(comp_spec.provider)}, or start a new run "
                            f"to use {shown(component.qualified_name)}")
        if pin is not None and pin != comp_spec.provider:
            warnings.warn(f"{where} was recorded from {comp_spec.provider} and now comes from {pin}: its defaults or "
                          f"behaviour may have changed", ProviderWarning, stacklevel=3)
    return component


def resolve_component(kind: str, comp_spec: ComponentSpec, registry: Registry) -> ComponentSpec:
    """One slot resolved: the component looked up (:func:`recorded_component`: by its recorded provider when the
    spec has one), its options validated and filled, its provider recorded; its name kept short unless that short
    name clashes."""
    component = recorded_component(kind, comp_spec, registry)
    pin = component.plugin.pin
    opts = component.options(comp_spec.options)
    clashes = component.name in registry.clashes[kind]
    out = {"name": component.qualified_name if clashes else component.name,
           "options": opts.model_dump(mode="json"), "provider": pin or comp_spec.provider}
    if isinstance(comp_spec, LossTermSpec):
        return LossTermSpec(**out, weight=comp_spec.weight)
    return ComponentSpec(**out)


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "cpu": (
        "small U-Net (n_down 6, ngf 32) + PatchGAN (ndf 32) on 64 px crops, 600 steps: a few minutes on a CPU",
        {
            "generator": {"name": "unet", "options": {"n_down": 6, "ngf": 32}},
            "discriminator": {"name": "patch", "options": {"ndf": 32, "n_layers": 3}},
            "data": {"image_size": 64, "load_size": 80, "random_crop": True, "batch_size": 16},
            "steps": 600, "sample_every": 200, "checkpoint_every": 200,
        },
    ),
    "seed": (
        "the seed recipe: COCO_SAMPLE 8000/2000, 256 px, U-Net n_down 8 ngf 64, PatchGAN ndf 64 x3, batch 16, "
        "vanilla GAN + 100*L1, Adam 2e-4 (0.5, 0.999), N(0, 0.02) init, 100 epochs",
        {
            "generator": {"name": "unet", "options": {"n_down": 8, "ngf": 64}},
            "discriminator": {"name": "patch", "options": {"ndf": 64, "n_layers": 3}},
            "gan_loss": {"name": "vanilla"}, "pixel_loss": {"name": "l1"}, "pixel_weight": 100.0,
            "data": {"source": "coco-sample", "image_size": 256, "batch_size": 16},
            "epochs": 100, "sample_every": 500, "checkpoint_every": 500,
        },
    ),
    "seed-resnet18": (
        "the seed's second model: ImageNet ResNet18 DynamicUnet, 20 epochs L1-only pretraining (Adam 1e-4), "
        "then 20 GAN epochs as the seed recipe",
        {
            "generator": {"name": "resnet18_unet", "options": {"backbone": "resnet18", "pretrained": True}},
            "discriminator": {"name": "patch", "options": {"ndf": 64, "n_layers": 3}},
            "data": {"source": "coco-sample", "image_size": 256, "batch_size": 16},
            "init": {"apply_to": ["discriminator"]},
            "pretrain": {"epochs": 20, "lr": 1e-4},
            "epochs": 20, "sample_every": 500, "checkpoint_every": 500,
        },
    ),
}
DEFAULT_PRESET = "cpu"


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a', 'b', 'c'], value); the value is read as a YAML scalar (32, 2e-4, false, [1, 2])."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {shown(item)}: expected dotted.key=value, e.g. --set generator.options.ngf=32")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def merge(base: dict[str, Any], layer: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """Deep-merge ``layer`` into a copy of ``base``; a component slot renamed by ``layer`` drops old options."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            if top and key in SLOTS and "name" in value and value["name"] != old.get("name"):
                old = {}  # the old options belonged to another component
            out[key] = merge(old, value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _nested(path: list[str], value: Any) -> dict[str, Any]:
    layer: Any = value
    for part in reversed(path):
        layer = {part: layer}
    return layer


def build_spec(preset: str | None = None, config: str | Path | None = None, flags: dict[str, Any] | None = None,
               overrides: list[str] = ()) -> tuple[TrainSpec, str]:
    """Layer preset, config file, flags and --set overrides into a validated TrainSpec.

    Returns the spec and a sentence saying which preset was used and why.
    """
    if preset is None:
        preset_name = DEFAULT_PRESET
        why = f"preset {preset_name!r} (the default when no --preset is given: {PRESETS[preset_name][0]}; " \
              f"--preset seed runs the seed recipe)"
    else:
        if preset not in PRESETS:
            import difflib
            close = difflib.get_close_matches(preset, list(PRESETS), n=1)
            hint = f" Did you mean {shown(close[0])}?" if close else ""
            raise SpecError(f"no preset named {shown(preset)}.{hint} Available: {', '.join(PRESETS)}")
        preset_name = preset
        why = f"preset {preset_name!r} ({PRESETS[preset_name][0]})"
    raw: dict[str, Any] = merge({}, PRESETS[preset_name][1])
    if config is not None:
        raw = merge(raw, read_config(config))
        why += f", then config {shown(config)}"
    for key, value in (flags or {}).items():
        if value is not None:
            raw = merge(raw, _nested(key.split("."), value))
    for item in overrides:
        path, value = parse_override(item)
        raw = merge(raw, _nested(path, value))
    return validate_spec(raw), why


def validate_spec(raw: dict[str, Any]) -> TrainSpec:
    try:
        return TrainSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"invalid spec: {format_validation_error(exc)}") from None


def spec_to_json(spec: TrainSpec) -> str:
    # ASCII JSON: a path with bytes that are not UTF-8 (kept by Python as lone surrogates) round-trips as \udcXX
    return json.dumps(spec.model_dump(mode="json"), indent=2)


def spec_from_json(text: str) -> TrainSpec:
    try:
        return TrainSpec.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid stored spec: not JSON ({exc})") from None
    except RecursionError:
        raise SpecError("invalid stored spec: JSON nested too deeply to be a spec") from None
    except ValidationError as exc:
        raise SpecError(f"invalid stored spec: {format_validation_error(exc)}") from None
