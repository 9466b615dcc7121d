"""The one training engine for any generator x discriminator x loss.

Each GAN step (pix2pix): D step on (real, fake.detach()), then a G step with D's parameters frozen, G loss =
GAN loss + pixel_weight * pixel loss. An optional first stage trains G alone with the pixel loss (the
seed's recipe for the pretrained ResNet18 U-Net).

Data are decoded and resized once into one uint8 tensor; every step indexes a batch, augments it in
torch and converts it to Lab on the compute device. Batches, augmentation and dropout are all seeded, and
the torch RNG state is checkpointed, so on CPU a run resumed from a checkpoint ends with the same weights
as one that was never interrupted.
"""
from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from zoo import checkpoint as ckpt_io
from zoo.errors import SpecError, ZooError
from zoo.registry import Registry, get_registry
from zoo.spec import TrainSpec, spec_from_json, spec_to_json


class TrainingStopped(ZooError):
    """Training stopped early (signal or non-finite loss); a checkpoint says where."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def select_device(name: str) -> torch.device:
    """'auto' -> CUDA if available, else CPU; an explicit device that is missing is a SpecError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"device {name!r} asked for but CUDA is not available here: use --device cpu or auto")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise SpecError("device 'mps' asked for but it is not available here: use --device cpu or auto")
    return torch.device(name)


def init_weights(net: nn.Module, kind: str, gain: float) -> None:
    """pix2pix init: conv/linear weights ~ N(0, gain) (or xavier/kaiming), biases 0; norm weights ~ N(1, gain)."""
    if kind == "none":
        return
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def autocast_for(device: torch.device, precision: str):
    """Autocast context for the spec's precision (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise SpecError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Models:
    """The nets, losses and optimizers of one run."""

    generator: nn.Module
    discriminator: nn.Module
    gan_loss: nn.Module
    pixel_loss: nn.Module
    gen_optim: torch.optim.Optimizer
    disc_optim: torch.optim.Optimizer
    pretrain_optim: torch.optim.Optimizer | None


def build_models(spec: TrainSpec, device: torch.device, registry: Registry | None = None) -> Models:
    """Build every component of a resolved spec, initialise weights (seeded) and make the optimizers."""
    registry = registry or get_registry()
    ctx = spec.context()
    torch.manual_seed(spec.seed)
    gen = registry.create("generator", spec.generator.name, spec.generator.options, ctx)
    disc = registry.create("discriminator", spec.discriminator.name, spec.discriminator.options, ctx)
    gan_loss = registry.create("gan_loss", spec.gan_loss.name, spec.gan_loss.options, ctx)
    pixel_loss = registry.create("pixel_loss", spec.pixel_loss.name, spec.pixel_loss.options, ctx)
    # A component whose options ask for pretrained weights keeps them: init would erase them.
    if "generator" in spec.init.apply_to and not spec.generator.options.get("pretrained"):
        init_weights(gen, spec.init.kind, spec.init.gain)
    if "discriminator" in spec.init.apply_to and not spec.discriminator.options.get("pretrained"):
        init_weights(disc, spec.init.kind, spec.init.gain)
    gen, disc = gen.to(device), disc.to(device)
    gan_loss, pixel_loss = gan_loss.to(device), pixel_loss.to(device)

    def adam(params, o):
        return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)

    pre = None
    if spec.pretrain.steps or spec.pretrain.epochs:
        p = spec.pretrain
        pre = torch.optim.Adam(gen.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))
    return Models(gen, disc, gan_loss, pixel_loss, adam(gen.parameters(), spec.gen_optim),
                  adam(disc.parameters(), spec.disc_optim), pre)


@dataclass
class Schedule:
    """Maps a global step to (stage, epoch, batch index); every batch is full (see zoo.data)."""

    steps_per_epoch: int
    pretrain_steps: int
    gan_steps: int

    @classmethod
    def from_spec(cls, spec: TrainSpec, n_train: int) -> "Schedule":
        spe = max(1, n_train // spec.data.batch_size)
        pre = spec.pretrain.steps or spec.pretrain.epochs * spe
        if spec.pretrain.steps and spec.pretrain.epochs:
            pre = min(spec.pretrain.steps, spec.pretrain.epochs * spe)
        limits = [n for n in (spec.steps, spec.epochs * spe if spec.epochs else None) if n]
        return cls(spe, pre, min(limits))

    @property
    def total(self) -> int:
        return self.pretrain_steps + self.gan_steps

    def locate(self, step: int) -> tuple[str, int, int]:
        """(stage, epoch within the stage, batch index within the epoch) of a 0-based global step."""
        stage, local = ("pretrain", step) if step < self.pretrain_steps else ("gan", step - self.pretrain_steps)
        return stage, local // self.steps_per_epoch, local % self.steps_per_epoch


@dataclass
class RunPaths:
    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def losses(self) -> Path:
        return self.root / "losses.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


@dataclass
class Trainer:
    """Runs a resolved spec: ``Trainer.create(spec).fit()`` or ``Trainer.resume(run_dir).fit()``."""

    spec: TrainSpec
    paths: RunPaths
    device: torch.device
    models: Models
    data: Any  # zoo.data.TrainData
    schedule: Schedule
    step: int = 0
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))
    progress: bool = True
    _stop_signal: str | None = None
    _last_log: dict[str, float] = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: TrainSpec, run_dir: str | Path | None = None, registry: Registry | None = None,
               log: Callable[[str], None] | None = None, progress: bool = True) -> "Trainer":
        registry = registry or get_registry()
        spec = spec.resolved(registry)
        device = select_device(spec.device)
        autocast_for(device, spec.precision)  # validates precision x device early
        from zoo.data import load_train_data

        log = log or (lambda msg: print(msg, file=sys.stderr))
        models = build_models(spec, device, registry)  # before the data: spec errors surface at once
        data = load_train_data(spec, log=log)
        if run_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = spec.run_name or f"{spec.generator.name}-{spec.discriminator.name}-{stamp}"
            run_dir = Path(spec.out) / name
        paths = RunPaths(Path(run_dir))
        if paths.checkpoints.is_dir() and ckpt_io.list_checkpoints(paths.checkpoints):
            raise SpecError(f"run folder {str(paths.root)!r} already has checkpoints: continue it with "
                            f"--resume {paths.root}, or choose another --out/--set run_name=...")
        paths.root.mkdir(parents=True, exist_ok=True)
        ckpt_io.atomic_write(paths.spec, lambda tmp: Path(tmp).write_text(spec_to_json(spec), encoding="utf-8"))
        schedule = Schedule.from_spec(spec, len(data.train))
        return cls(spec, paths, device, models, data, schedule, log=log, progress=progress)

    @classmethod
    def resume(cls, run_dir: str | Path, steps: int | None = None, epochs: int | None = None,
               registry: Registry | None = None, log: Callable[[str], None] | None = None,
               progress: bool = True, device: str | None = None) -> "Trainer":
        """Continue a run from its newest good checkpoint (older ones are used if the newest is damaged)."""
        registry = registry or get_registry()
        log = log or (lambda msg: print(msg, file=sys.stderr))
        paths = RunPaths(Path(run_dir))
        spec = spec_from_json(ckpt_io.read_run_spec(paths.root))
        checkpoint, state, notes = ckpt_io.latest_checkpoint(paths.root, with_state=True)
        for note in notes:
            log(f"zoo: {note}; falling back to an older checkpoint")
        updates: dict[str, Any] = {}
        if steps is not None:
            updates["steps"] = steps
        if epochs is not None:
            updates["epochs"] = epochs
        if device is not None:
            updates["device"] = device
        if updates:
            spec = spec.model_copy(update=updates)
            ckpt_io.atomic_write(paths.spec, lambda tmp: Path(tmp).write_text(spec_to_json(spec), encoding="utf-8"))
        spec = spec.resolved(registry)
        dev = select_device(spec.device)
        from zoo.data import load_train_data

        models = build_models(spec, dev, registry)
        data = load_train_data(spec, log=log)
        load_weights(models.generator, checkpoint.generator, "generator", checkpoint.path)
        load_weights(models.discriminator, checkpoint.discriminator, "discriminator", checkpoint.path)
        models.gen_optim.load_state_dict(state["gen_optim"])
        models.disc_optim.load_state_dict(state["disc_optim"])
        if models.pretrain_optim is not None and state.get("pretrain_optim") is not None:
            models.pretrain_optim.load_state_dict(state["pretrain_optim"])
        torch.set_rng_state(state["rng"]["torch"])
        if dev.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        trainer = cls(spec, paths, dev, models, data, Schedule.from_spec(spec, len(data.train)),
                      step=int(state["step"]), log=log, progress=progress)
        log(f"zoo: resuming {paths.root} from {checkpoint.path.name} (step {trainer.step} of "
            f"{trainer.schedule.total})")
        return trainer

    # ---- training -----------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from zoo.data import augment_batch, batches_for_epoch
        from zoo.lab import uint8_to_model_input

        stage, epoch, index = self.schedule.locate(step)
        stage_seed = self.spec.seed * 2 + (0 if stage == "pretrain" else 1)
        batches = batches_for_epoch(len(self.data.train), self.spec.data.batch_size, stage_seed, epoch)
        idx = torch.as_tensor(batches[index % len(batches)])
        images = self.data.train.images[idx]
        gen = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + step)
        images = images.to(self.device, non_blocking=True)
        images = augment_batch(images, self.spec.data.image_size, gen, flip=self.spec.data.flip,
                               crop=self.spec.data.random_crop)
        return uint8_to_model_input(images)

    def train_step(self, L: torch.Tensor, ab: torch.Tensor, stage: str) -> dict[str, float]:
        """One optimisation step; returns the losses as floats."""
        m, spec = self.models, self.spec
        amp = autocast_for(self.device, spec.precision)
        if stage == "pretrain":
            m.generator.train()
            m.pretrain_optim.zero_grad(set_to_none=True)
            with amp:
                fake = m.generator(L)
                loss = m.pixel_loss(fake.float(), ab)
            loss.backward()
            m.pretrain_optim.step()
            return {"g_pixel": loss.item()}
        m.generator.train()
        m.discriminator.train()
        with amp:
            fake = m.generator(L)
        # D step on (real, fake.detach())
        m.discriminator.requires_grad_(True)
        m.disc_optim.zero_grad(set_to_none=True)
        with amp:
            d_fake = m.gan_loss(m.discriminator(torch.cat([L, fake.detach()], 1)).float(), False)
            d_real = m.gan_loss(m.discriminator(torch.cat([L, ab], 1)).float(), True)
            d_loss = 0.5 * (d_fake + d_real)
        d_loss.backward()
        m.disc_optim.step()
        # G step with D frozen
        m.discriminator.requires_grad_(False)
        m.gen_optim.zero_grad(set_to_none=True)
        with amp:
            g_gan = m.gan_loss(m.discriminator(torch.cat([L, fake], 1)).float(), True)
            g_pixel = m.pixel_loss(fake.float(), ab)
            g_loss = g_gan + spec.pixel_weight * g_pixel
        g_loss.backward()
        m.gen_optim.step()
        m.discriminator.requires_grad_(True)
        return {"d_real": d_real.item(), "d_fake": d_fake.item(), "g_gan": g_gan.item(), "g_pixel": g_pixel.item()}

    def fit(self) -> Path:
        """Train to the end of the schedule; returns the final checkpoint path."""
        total = self.schedule.total
        if self.step >= total:
            self.log(f"zoo: {self.paths.root} is already at step {self.step} of {total}; pass --steps/--epochs "
                     f"to train longer")
            return self.save()
        self.log(f"zoo: training {self.spec.generator.name} x {self.spec.discriminator.name} on {self.device} "
                 f"for {total} steps ({self.schedule.pretrain_steps} pretraining + {self.schedule.gan_steps} GAN, "
                 f"{self.schedule.steps_per_epoch} steps/epoch, batch {self.spec.data.batch_size}, "
                 f"{self.spec.data.image_size} px) -> {self.paths.root}")
        bar = self._progress_bar(total)
        handlers = self._install_signal_handlers()
        last_saved = None
        try:
            t_window, n_window = time.perf_counter(), 0
            while self.step < total:
                stage, epoch, _ = self.schedule.locate(self.step)
                L, ab = self._batch(self.step)
                losses = self.train_step(L, ab, stage)
                bad = [k for k, v in losses.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingStopped(
                        f"loss {bad[0]} became {losses[bad[0]]} at step {self.step + 1} ({stage} stage); stopped "
                        f"without saving it. The last good checkpoint is kept in {self.paths.checkpoints}; "
                        f"lower the learning rate or check the data, then --resume {self.paths.root}",
                        exit_code=3)
                self.step += 1
                n_window += L.shape[0]
                now = time.perf_counter()
                ips = n_window / max(now - t_window, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{ips:.1f}"},
                                    refresh=False)
                if self.step % self.spec.log_every == 0 or self.step == total:
                    self._write_log({"step": self.step, "stage": stage, "epoch": epoch, **losses,
                                     "img_per_s": round(ips, 3), "time": time.time()})
                    t_window, n_window = time.perf_counter(), 0
                if self.step % self.spec.sample_every == 0 or self.step == total:
                    self.sample()
                stage_end = self.step == self.schedule.pretrain_steps and self.schedule.pretrain_steps > 0
                if self.step % self.spec.checkpoint_every == 0 or self.step == total or stage_end:
                    last_saved = self.save()
                if self._stop_signal:
                    path = last_saved if last_saved and self._saved_step == self.step else self.save()
                    raise TrainingStopped(
                        f"stopped by {self._stop_signal} at step {self.step} of {total}; checkpoint saved to "
                        f"{path}; continue with: zoo train --resume {self.paths.root}")
        finally:
            if bar is not None:
                bar.close()
            self._restore_signal_handlers(handlers)
        self.log(f"zoo: done: {self.step} steps; checkpoint {last_saved}; samples in {self.paths.samples}")
        return last_saved

    _saved_step: int = -1

    def _progress_bar(self, total: int):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr,
                    mininterval=0.5)

    def _install_signal_handlers(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def handler(signum, _frame):
            name = signal.Signals(signum).name
            if self._stop_signal:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_signal = name
            self.log(f"\nzoo: {name} received: finishing step {self.step + 1}, saving a checkpoint, then stopping")

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signal_handlers(old) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    def _write_log(self, row: dict[str, Any]) -> None:
        with open(self.paths.losses, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    # ---- outputs ------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        m = self.models
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "gen_optim": m.gen_optim.state_dict(),
            "disc_optim": m.disc_optim.state_dict(),
            "pretrain_optim": m.pretrain_optim.state_dict() if m.pretrain_optim is not None else None,
            "rng": rng,
        }

    def save(self) -> Path:
        path = ckpt_io.save_checkpoint(
            self.paths.checkpoints, self.step, spec_to_json(self.spec), self.models.generator,
            self.models.discriminator, self.training_state(), keep=self.spec.keep_checkpoints)
        self._saved_step = self.step
        return path

    @torch.no_grad()
    def sample(self) -> Path | None:
        """Sample grid (gray | prediction | truth) of fixed validation images, and val L1, at this step."""
        from zoo.lab import model_output_to_rgb, uint8_to_model_input
        from zoo.visual import save_grid

        val = self.data.val
        if val is None or len(val) == 0:
            return None
        g = self.models.generator
        was_training = g.training
        g.eval()
        try:
            n_eval = min(len(val), self.spec.data.val_images)
            l1_sum, rows = 0.0, []
            for start in range(0, n_eval, self.spec.data.batch_size):
                imgs = val.images[start:min(n_eval, start + self.spec.data.batch_size)].to(self.device)
                L, ab = uint8_to_model_input(imgs)
                with autocast_for(self.device, self.spec.precision):
                    fake = g(L)
                fake = fake.float()
                l1_sum += (fake - ab).abs().mean(dim=(1, 2, 3)).sum().item()
                if start < self.spec.num_samples:
                    k = min(self.spec.num_samples - start, L.shape[0])
                    gray = model_output_to_rgb(L[:k], torch.zeros_like(ab[:k]))
                    rows.append(torch.stack([gray, model_output_to_rgb(L[:k], fake[:k]),
                                             model_output_to_rgb(L[:k], ab[:k])], 1).cpu())
        finally:
            g.train(was_training)
        self._write_log({"step": self.step, "val_l1": l1_sum / n_eval, "val_images": n_eval, "time": time.time()})
        out = self.paths.samples / f"step-{self.step:06d}.png"
        save_grid(torch.cat(rows, 0), out, column_titles=("gray input", "prediction", "ground truth"))
        return out


def load_weights(net: nn.Module, tensors: dict[str, torch.Tensor], what: str, path: Path) -> None:
    from zoo.errors import CheckpointError

    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{str(path)!r}: its {what} weights do not fit the {what} its spec builds "
                              f"({first[:200]})") from None
