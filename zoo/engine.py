"""The one training engine for any generator x discriminator x loss.

Each GAN step (pix2pix): D step on (real, fake.detach()), then a G step with D's parameters frozen, G loss =
GAN loss + pixel_weight * pixel loss. An optional first stage trains G alone with the pixel loss (the
seed's recipe for the pretrained ResNet18 U-Net).

Data are decoded and resized once into one uint8 tensor; every step indexes a batch, augments it in
torch and converts it to Lab on the compute device. Batches, augmentation and dropout are all seeded, and
the torch RNG state is checkpointed, so on CPU a run resumed from a checkpoint ends with the same weights
as one that was never interrupted.

Speed (measured numbers in README, "Speed"):

* **No DataLoader, no workers.** The images are already decoded and resized in memory, and a step's data
  work (index a uint8 batch, crop/flip, sRGB -> Lab in torch) costs milliseconds next to the networks, so
  worker processes would only add copies and compete with the math for the same cores. On CUDA the uint8
  training set is moved to the GPU once when it fits in a quarter of the free memory; otherwise each
  batch goes through one pinned staging buffer with a non-blocking copy.
* **Mixed precision** (``precision``, default ``auto``, see :func:`resolve_precision`): bf16 autocast on
  CPUs with avx512_bf16 or AMX, bf16 on CUDA GPUs with bf16 tensor cores (compute capability >= 8), fp16
  with a ``torch.amp.GradScaler`` per optimizer on older GPUs, fp32 elsewhere. Losses are computed in fp32.
  The scalers are the same objects, disabled, in fp32 and bf16 runs, and their state is checkpointed.
  bf16 autocast on CPU is deterministic, so resume stays exact.
* **channels_last** weights and batches whenever autocast is on (oneDNN's bf16 convolutions and CUDA tensor
  cores want NHWC); fp32 on CPU stays NCHW, which is faster there.
* **DistributedDataParallel** under torchrun (``zoo.distributed``): the global batch is split across ranks,
  only rank 0 writes, all ranks agree on every stop.
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
from zoo import distributed
from zoo.distributed import SINGLE, World
from zoo.errors import SpecError, ZooError
from zoo.registry import Registry, get_registry
from zoo.fileio import write_text
from zoo.runtime import Runtime, resolve_precision, select_device
from zoo.spec import TrainSpec, spec_from_json, spec_to_json


class TrainingStopped(ZooError):
    """Training stopped early (signal or non-finite loss); a checkpoint says where."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


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
    """Autocast context for a precision on a device (rules: :mod:`zoo.runtime`)."""
    return Runtime(device, *resolve_precision(device, precision)).autocast()


def memory_format_for(device: torch.device, precision: str) -> torch.memory_format:
    return Runtime(device, *resolve_precision(device, precision)).memory_format


class InferenceGenerator(nn.Module):
    """A trained generator set up for fast inference: eval mode, the precision's autocast and memory layout.

    ``InferenceGenerator(gen, device)(L)`` takes L (B, 1, H, W) in [-1, 1] and returns ab (B, 2, H, W) as
    contiguous float32, like the plain generator; use it under ``torch.inference_mode()``. The generator itself
    is moved and converted in place (``Module.to``). Measured with the seed U-Net at 256 px on a 2-core Xeon
    with AMX: bf16 + channels_last gives 2.8x (two threads) to 4.6x (one thread) the img/s of fp32 (README,
    "Speed").
    """

    def __init__(self, generator: nn.Module, device: torch.device | str, precision: str = "auto"):
        super().__init__()
        self.device = torch.device(device)
        self.precision, self.why = resolve_precision(self.device, precision)
        self.memory_format = memory_format_for(self.device, self.precision)
        self.generator = generator.to(self.device, memory_format=self.memory_format).eval()

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        L = L.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with autocast_for(self.device, self.precision):
            ab = self.generator(L)
        return ab.float().contiguous()


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
    # Gradient scalers (fp16 only; disabled pass-throughs otherwise): one per optimised net, since D and G
    # steps are separate backward passes. The generator's serves its pretraining stage too.
    gen_scaler: torch.amp.GradScaler | None = None
    disc_scaler: torch.amp.GradScaler | None = None

    def __post_init__(self):
        for name in ("gen_scaler", "disc_scaler"):
            if getattr(self, name) is None:
                setattr(self, name, torch.amp.GradScaler("cpu", enabled=False))


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    return Runtime(device, *resolve_precision(device, precision)).scaler()


def build_models(spec: TrainSpec, device: torch.device, registry: Registry | None = None,
                 sync_batchnorm: bool = False) -> Models:
    """Build every component of a resolved spec, initialise weights (seeded) and make the optimizers.

    ``sync_batchnorm``: BatchNorm layers become torch.nn.SyncBatchNorm (multi-process CUDA training), before
    the optimizers are made; the state dicts keep the same keys.
    """
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
    if sync_batchnorm:
        gen = nn.SyncBatchNorm.convert_sync_batchnorm(gen)
        disc = nn.SyncBatchNorm.convert_sync_batchnorm(disc)
    gen, disc = gen.to(device), disc.to(device)
    gan_loss, pixel_loss = gan_loss.to(device), pixel_loss.to(device)

    def adam(params, o):
        return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)

    pre = None
    if spec.pretrain.steps or spec.pretrain.epochs:
        p = spec.pretrain
        pre = torch.optim.Adam(gen.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))
    return Models(gen, disc, gan_loss, pixel_loss, adam(gen.parameters(), spec.gen_optim),
                  adam(disc.parameters(), spec.disc_optim), pre, make_scaler(device, spec.precision),
                  make_scaler(device, spec.precision))


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
    world: World = SINGLE  # this process's place in a torchrun job (a world of one without torchrun)
    _stop_signal: str | None = None
    _last_log: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.precision, self.precision_reason = resolve_precision(self.device, self.spec.precision)
        self.memory_format = memory_format_for(self.device, self.precision)
        m = self.models
        if self.memory_format is torch.channels_last:  # in place: the optimizers keep the same parameters
            m.generator.to(memory_format=self.memory_format)
            m.discriminator.to(memory_format=self.memory_format)
        for net in (m.generator, m.discriminator):
            _dense_grads_into_norms(net)
        # What a step calls: the nets themselves, or their DistributedDataParallel wrappers under torchrun.
        self._gen_run, self._disc_run = m.generator, m.discriminator
        if self.world.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._gen_run = DistributedDataParallel(m.generator, device_ids=ids)
            self._disc_run = DistributedDataParallel(m.discriminator, device_ids=ids)
        self._epoch_batches: dict[tuple[str, int], list[list[int]]] = {}
        self._feeder: _BatchFeeder | None = None

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: TrainSpec, run_dir: str | Path | None = None, registry: Registry | None = None,
               log: Callable[[str], None] | None = None, progress: bool = True) -> "Trainer":
        registry = registry or get_registry()
        spec = spec.resolved(registry)
        world, device = distributed.setup(select_device(spec.device))
        _check_parallel(spec, world, device)  # and the precision x device, early
        from zoo.data import load_train_data

        log = log or (lambda msg: print(msg, file=sys.stderr))
        log = log if world.is_main else _quiet
        # before the data: spec errors surface at once
        models = build_models(spec, device, registry, sync_batchnorm=spec.sync_batchnorm and world.enabled)
        data = load_train_data(spec, log=log)
        if run_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = spec.run_name or f"{spec.generator.name}-{spec.discriminator.name}-{stamp}"
            run_dir = Path(spec.out) / name
        run_dir = distributed.broadcast_object(str(run_dir), world)  # rank 0's clock names the run
        paths = RunPaths(Path(run_dir))
        if paths.checkpoints.is_dir() and ckpt_io.list_checkpoints(paths.checkpoints):
            raise SpecError(f"run folder {str(paths.root)!r} already has checkpoints: continue it with "
                            f"--resume {paths.root}, or choose another --out/--set run_name=...")
        if world.is_main:
            paths.root.mkdir(parents=True, exist_ok=True)
            write_text(paths.spec, spec_to_json(spec))
        schedule = Schedule.from_spec(spec, len(data.train))
        _seed_rank_rng(spec, world)
        return cls(spec, paths, device, models, data, schedule, log=log, progress=progress and world.is_main,
                   world=world)

    @classmethod
    def resume(cls, run_dir: str | Path, steps: int | None = None, epochs: int | None = None,
               registry: Registry | None = None, log: Callable[[str], None] | None = None,
               progress: bool = True, device: str | None = None) -> "Trainer":
        """Continue a run from its newest good checkpoint (older ones are used if the newest is damaged)."""
        registry = registry or get_registry()
        log = log or (lambda msg: print(msg, file=sys.stderr))
        log = log if distributed.world_from_env().is_main else _quiet
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
            if distributed.world_from_env().is_main:
                write_text(paths.spec, spec_to_json(spec))
        spec = spec.resolved(registry)
        world, dev = distributed.setup(select_device(spec.device))
        _check_parallel(spec, world, dev)
        from zoo.data import load_train_data

        models = build_models(spec, dev, registry, sync_batchnorm=spec.sync_batchnorm and world.enabled)
        data = load_train_data(spec, log=log)
        load_weights(models.generator, checkpoint.generator, "generator", checkpoint.path)
        load_weights(models.discriminator, checkpoint.discriminator, "discriminator", checkpoint.path)
        models.gen_optim.load_state_dict(state["gen_optim"])
        models.disc_optim.load_state_dict(state["disc_optim"])
        if models.pretrain_optim is not None and state.get("pretrain_optim") is not None:
            models.pretrain_optim.load_state_dict(state["pretrain_optim"])
        for key, scaler in (("generator", models.gen_scaler), ("discriminator", models.disc_scaler)):
            saved = (state.get("scalers") or {}).get(key)
            if scaler.is_enabled() and saved:  # a run saved in fp32/bf16 has nothing to restore
                scaler.load_state_dict(saved)
        _restore_rng(state["rng"], spec, world, dev, int(state["step"]))
        if state.get("precision") not in (None, resolve_precision(dev, spec.precision)[0]):
            log(f"zoo: note: this run trained in {state['precision']} and continues in "
                f"{resolve_precision(dev, spec.precision)[0]} ({resolve_precision(dev, spec.precision)[1]}); "
                f"the result will not be bit-identical to an uninterrupted run")
        trainer = cls(spec, paths, dev, models, data, Schedule.from_spec(spec, len(data.train)),
                      step=int(state["step"]), log=log, progress=progress and world.is_main, world=world)
        log(f"zoo: resuming {paths.root} from {checkpoint.path.name} (step {trainer.step} of "
            f"{trainer.schedule.total})")
        return trainer

    # ---- training -----------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from zoo.data import augment_batch, batches_for_epoch
        from zoo.lab import uint8_to_model_input

        stage, epoch, index = self.schedule.locate(step)
        if (stage, epoch) not in self._epoch_batches:
            stage_seed = self.spec.seed * 2 + (0 if stage == "pretrain" else 1)
            self._epoch_batches = {(stage, epoch): batches_for_epoch(len(self.data.train), self.spec.data.batch_size,
                                                                     stage_seed, epoch)}
        batches = self._epoch_batches[(stage, epoch)]
        if self._feeder is None:
            self._feeder = _BatchFeeder(self.data.train.images, self.device, self.log)
        images = self._feeder(batches[index % len(batches)])  # the global batch, on the device
        gen = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + step)
        images = augment_batch(images, self.spec.data.image_size, gen, flip=self.spec.data.flip,
                               crop=self.spec.data.random_crop)
        L, ab = uint8_to_model_input(distributed.shard(images, self.world))  # this rank's share
        return L.contiguous(memory_format=self.memory_format), ab.contiguous(memory_format=self.memory_format)

    def train_step(self, L: torch.Tensor, ab: torch.Tensor, stage: str) -> dict[str, float]:
        """One optimisation step; returns the losses as floats."""
        m, spec = self.models, self.spec
        G, D = self._gen_run, self._disc_run
        amp = autocast_for(self.device, self.precision)
        if stage == "pretrain":
            m.generator.train()
            m.pretrain_optim.zero_grad(set_to_none=True)
            with amp:
                fake = G(L)
                loss = m.pixel_loss(fake.float(), ab)
            _optimise(loss, m.pretrain_optim, m.gen_scaler)
            return {"g_pixel": loss.item()}
        m.generator.train()
        m.discriminator.train()
        with amp:
            fake = G(L)
        # D step on (real, fake.detach())
        m.discriminator.requires_grad_(True)
        m.disc_optim.zero_grad(set_to_none=True)
        with amp:
            d_fake = m.gan_loss(D(torch.cat([L, fake.detach()], 1)).float(), False)
            d_real = m.gan_loss(D(torch.cat([L, ab], 1)).float(), True)
            d_loss = 0.5 * (d_fake + d_real)
        _optimise(d_loss, m.disc_optim, m.disc_scaler)
        # G step with D frozen (under DDP: D's forward must not expect a gradient reduction)
        m.discriminator.requires_grad_(False)
        m.gen_optim.zero_grad(set_to_none=True)
        with amp, (D.no_sync() if self.world.enabled else contextlib.nullcontext()):
            g_gan = m.gan_loss(D(torch.cat([L, fake], 1)).float(), True)
            g_pixel = m.pixel_loss(fake.float(), ab)
            g_loss = g_gan + spec.pixel_weight * g_pixel
        _optimise(g_loss, m.gen_optim, m.gen_scaler)
        m.discriminator.requires_grad_(True)
        values = torch.stack([t.detach() for t in (d_real, d_fake, g_gan, g_pixel)]).tolist()  # one device sync
        return dict(zip(("d_real", "d_fake", "g_gan", "g_pixel"), values))

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
        self.log(f"zoo: precision {self.precision} ({self.precision_reason}); "
                 f"{'channels_last' if self.memory_format is torch.channels_last else 'NCHW'} layout"
                 + (f"; {self.world.size} processes, {self.spec.data.batch_size // self.world.size} images each per "
                    f"step{', SyncBatchNorm' if self.spec.sync_batchnorm else ''}" if self.world.enabled else ""))
        bar = self._progress_bar(total)
        handlers = self._install_signal_handlers()
        last_saved = None
        try:
            t_window, n_window = time.perf_counter(), 0
            while self.step < total:
                stage, epoch, _ = self.schedule.locate(self.step)
                L, ab = self._batch(self.step)
                losses = self.train_step(L, ab, stage)
                losses = self._agree(losses)  # DDP: every rank sees the mean losses and any rank's signal
                bad = [k for k, v in losses.items() if not math.isfinite(v)]
                if bad:
                    kept = ckpt_io.list_checkpoints(self.paths.checkpoints)
                    last = f"the last good checkpoint, {kept[-1]}, is kept" if kept else "no checkpoint was saved yet"
                    raise TrainingStopped(
                        f"loss {bad[0]} became {losses[bad[0]]} at step {self.step + 1} ({stage} stage); stopped "
                        f"without saving it; {last}; lower the learning rate or check the data, then --resume "
                        f"{self.paths.root}", exit_code=3)
                self.step += 1
                n_window += L.shape[0] * self.world.size
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
                if self._stop_signal and self.step < total:  # a signal during the last step: just finish
                    path = last_saved if last_saved and self._saved_step == self.step else self.save()
                    raise TrainingStopped(
                        f"stopped by {self._stop_signal} at step {self.step} of {total}; checkpoint saved to "
                        f"{path}; continue with: zoo train --resume {self.paths.root}",
                        exit_code=143 if self._stop_signal == "SIGTERM" else 130)
        finally:
            if bar is not None:
                bar.close()
            self._restore_signal_handlers(handlers)
        self._check_ranks_agree()
        self.log(f"zoo: done: {self.step} steps; checkpoint {last_saved}; samples in {self.paths.samples}")
        return last_saved

    _saved_step: int = -1

    def _agree(self, losses: dict[str, float]) -> dict[str, float]:
        """Under DDP: the losses averaged over ranks, and a stop signal seen by any rank seen by all (one
        all-reduce per step), so every rank takes the same NaN / stop decision at the same step."""
        if not self.world.enabled:
            return losses
        flags = [float(self._stop_signal == "SIGINT"), float(self._stop_signal == "SIGTERM")]
        total = distributed.all_reduce_sum(torch.tensor([*losses.values(), *flags], dtype=torch.float64,
                                                        device=self.device), self.world).tolist()
        sigint, sigterm = total[-2:]
        if not self._stop_signal and (sigint or sigterm):
            self._stop_signal = "SIGTERM" if sigterm else "SIGINT"
        return {k: v / self.world.size for k, v in zip(losses, total)}

    def _check_ranks_agree(self) -> None:
        """Under DDP: give every rank rank 0's BatchNorm buffers, then check that all ranks hold the same weights
        (DDP keeps parameters in step; a mismatch would be a bug, not a user error) and log their digests."""
        if not self.world.enabled:
            return
        m = self.models
        for net in (m.generator, m.discriminator):
            distributed.broadcast_buffers(net, self.world)
        digests = distributed.gather_objects(
            [distributed.weights_digest(net.state_dict()) for net in (m.generator, m.discriminator)], self.world)
        self.log("zoo: weights digest per rank (generator/discriminator): "
                 + ", ".join(f"rank {r} {g}/{d}" for r, (g, d) in enumerate(digests)))
        if any(d != digests[0] for d in digests):
            raise RuntimeError(f"DDP ranks ended with different weights: {digests}")

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
        if not self.world.is_main:
            return
        with open(self.paths.losses, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    # ---- outputs ------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        m = self.models
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.world.enabled:  # each rank draws its own dropout masks: keep every rank's stream
            rng["ranks"] = distributed.gather_objects(dict(rng), self.world)
        return {
            "step": self.step,
            "gen_optim": m.gen_optim.state_dict(),
            "disc_optim": m.disc_optim.state_dict(),
            "pretrain_optim": m.pretrain_optim.state_dict() if m.pretrain_optim is not None else None,
            "scalers": {"generator": m.gen_scaler.state_dict(), "discriminator": m.disc_scaler.state_dict()},
            "precision": self.precision,
            "rng": rng,
        }

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0; under DDP every rank must call this, at the same step)."""
        state = self.training_state()
        path = None
        if self.world.is_main:
            path = ckpt_io.save_checkpoint(
                self.paths.checkpoints, self.step, spec_to_json(self.spec), self.models.generator,
                self.models.discriminator, state, keep=self.spec.keep_checkpoints)
        self._saved_step = self.step
        return path

    @torch.no_grad()
    def sample(self) -> Path | None:
        """Sample grid (gray | prediction | truth) of fixed validation images, and val L1, at this step."""
        from zoo.lab import model_output_to_rgb, uint8_to_model_input
        from zoo.visual import save_grid

        val = self.data.val
        if val is None or len(val) == 0 or not self.world.is_main:
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
                with autocast_for(self.device, self.precision):
                    fake = g(L.contiguous(memory_format=self.memory_format))
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


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _dense_grads_into_norms(net: nn.Module) -> None:
    """Make the gradient that reaches each BatchNorm / InstanceNorm output dense in its memory layout.

    A U-Net's skip concatenation hands the norm after an up-convolution a channel slice of the concatenation's
    gradient, and torch's CPU batch-norm backward is slow on such strided gradients: measured on a 2-core
    Xeon, 16x64x128x128 bf16 channels_last, 1.55 s with the slice vs 0.12 s with a dense copy (NCHW: 0.26 vs
    0.10 s). One copy pays for itself many times over; the values change only by summation order (float
    rounding).
    """
    def on_output(module, args, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            layout = (torch.channels_last if output.dim() == 4 and not output.is_contiguous()
                      and output.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
            output.register_hook(lambda grad: grad.contiguous(memory_format=layout))

    for module in net.modules():
        if isinstance(module, _NORMS) and not getattr(module, "_zoo_dense_grads", False):
            module.register_forward_hook(on_output)
            module._zoo_dense_grads = True


def _quiet(msg: str) -> None:
    """The log of ranks other than 0: only rank 0 speaks."""


def _optimise(loss: torch.Tensor, optim: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """backward + step through the optimiser's grad scaler (a pass-through unless fp16)."""
    scaler.scale(loss).backward()
    scaler.step(optim)
    scaler.update()


def _check_parallel(spec: TrainSpec, world: World, device: torch.device) -> None:
    """Refuse what this world and device cannot run, in one line."""
    resolve_precision(device, spec.precision)
    if world.enabled:
        distributed.check_batch(spec.data.batch_size, world)
        if spec.sync_batchnorm and device.type != "cuda":
            raise SpecError("sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); drop "
                            "--set sync_batchnorm=true for CPU processes")


def _seed_rank_rng(spec: TrainSpec, world: World) -> None:
    """Under DDP, after the (identical) weight init: a dropout stream of its own for each rank."""
    if world.enabled:
        torch.manual_seed((spec.seed * 1_000_003 + 7919 * (world.rank + 1)) % 2**63)


def _restore_rng(rng: dict[str, Any], spec: TrainSpec, world: World, device: torch.device, step: int) -> None:
    """Restore this rank's RNG state from a checkpoint. A run resumed with another number of processes than
    it was saved with: rank 0 takes the saved main stream, other ranks a fresh one derived from the step."""
    ranks = rng.get("ranks") or []
    mine = ranks[world.rank] if len(ranks) == world.size else rng
    torch.set_rng_state(mine["torch"])
    if device.type == "cuda" and mine.get("cuda"):
        torch.cuda.set_rng_state_all(mine["cuda"])
    if mine is rng and world.rank > 0:
        torch.manual_seed((spec.seed * 1_000_003 + 7919 * (world.rank + 1) + 104_729 * step) % 2**63)


class _BatchFeeder:
    """Global batches of the decoded uint8 training images, on the compute device, with no needless copies.

    CPU: rows are gathered into one reused buffer. CUDA: the whole uint8 set moves to the GPU once when it
    takes under a quarter of the free memory (then a batch is an index_select there, no copy per step);
    otherwise rows are gathered into one pinned buffer and copied without blocking (the previous copy is
    waited for before the buffer is written again).
    """

    def __init__(self, images: torch.Tensor, device: torch.device, log: Callable[[str], None]):
        self.device, self.images, self.staging, self.copied = device, images, None, None
        self.resident = False  # the whole set lives on the device
        self.pin = device.type == "cuda"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() * images.element_size() < free // 4:
                self.images, self.resident, self.pin = images.to(device), True, False
                log(f"zoo: {images.shape[0]} training images ({images.numel() / 2**20:.0f} MiB uint8) kept on "
                    f"{device}")

    def __call__(self, rows: list[int]) -> torch.Tensor:
        if self.resident:
            return self.images.index_select(0, torch.as_tensor(rows, device=self.images.device))
        if self.copied is not None:
            self.copied.synchronize()  # the last non-blocking copy has left the pinned buffer
        shape = (len(rows), *self.images.shape[1:])
        if self.staging is None or self.staging.shape != shape:
            self.staging = torch.empty(shape, dtype=self.images.dtype, pin_memory=self.pin)
        batch = torch.index_select(self.images, 0, torch.as_tensor(rows), out=self.staging)
        if self.device.type == "cpu":
            return batch
        batch = batch.to(self.device, non_blocking=self.pin)
        if self.pin:
            self.copied = torch.cuda.Event()
            self.copied.record()
        return batch
