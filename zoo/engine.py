"""The trainer: runs a resolved spec to the end of its schedule, in a run folder, resumable bit for bit.

``Trainer.create(spec).fit()`` or ``Trainer.resume(run_dir).fit()``. Both build through one path
(:meth:`Trainer._build`): resolve the spec -> one :class:`zoo.runtime.Runtime` (device + precision, resolved
once) -> the torchrun world -> the run folder (checked; locked on resume) -> the models -> on resume the newest
checkpoint whose files load and whose weights fit -> the data -> a new run's folder (made, locked). Every check runs before anything is written; a resumed run's
spec.json (with new --steps/--epochs/--device) is written only with its first new checkpoint.

What each part does lives in its own module: :mod:`zoo.models` (build, init, load weights), :mod:`zoo.schedule`
(stage/epoch/rows of a step), :mod:`zoo.batches` (a step's batch on the device), :mod:`zoo.gan_step` (the step),
:mod:`zoo.signals` (Ctrl-C / SIGTERM), :mod:`zoo.runfolder` (layout, checkpoints, lock), :mod:`zoo.training_log`
(losses.jsonl, TensorBoard), :mod:`zoo.validation_grid` (val metrics, sample grid), :mod:`zoo.distributed`.

Batches, augmentation and dropout are all seeded, and the torch RNG state is checkpointed, so on CPU a run resumed
from a checkpoint ends with the same weights as one that was never interrupted (the EMA of the generator's
weights, :mod:`zoo.ema`, included: it is updated after each step and saved in each checkpoint).

Logs (rank 0, :mod:`zoo.training_log`): ``losses.jsonl`` (and ``curves.png``, :mod:`zoo.plot`) and the
TensorBoard events of ``tb/`` (:mod:`zoo.tensorboard`; ``spec.tensorboard``): the same rows, plus learning rates
and the sample grids.

Faults during training (each one line; see README/docs "Reliability"):

* a non-finite loss or weight: stop, exit 3, nothing of that step saved, the last good checkpoint kept;
* Ctrl-C / SIGTERM: finish the step, save a checkpoint, exit 130 / 143;
* out of memory in a step (``torch.OutOfMemoryError``, ``MemoryError``, the CPU allocator's failure): stop,
  exit 3, saying which step and what to lower; the last checkpoint is kept;
* a sample grid that cannot be written (disk full, a file where ``samples/`` goes): a warning line, and
  training goes on: samples are a view of the run, checkpoints are the run (a checkpoint that cannot be
  written stops it, exit 2, earlier checkpoints intact).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from zoo import distributed
from zoo.batches import Batches
from zoo.distributed import SINGLE, World
from zoo.ema import GeneratorEMA
from zoo.errors import CheckpointError, SpecError, TrainingStopped, ZooError
from zoo.gan_step import gan_step, pretrain_step
from zoo.losswatch import LossWatch, NonFiniteLoss
from zoo.models import Models, build_models, load_training_state, prepare_for_training
from zoo.registry import Registry, get_registry
from zoo.training_log import TrainingLogWriter
from zoo.runfolder import RunFolder, RunLock
from zoo.runtime import Runtime, compile_in_place, is_out_of_memory, resolve_compile, select_device
from zoo.schedule import Schedule
from zoo.signals import StopSignals
from zoo.spec import TrainSpec, spec_from_json, spec_to_json, validate_spec
from zoo.text import log_line, shown


def _quiet(msg: str) -> None:
    """The log of ranks other than 0: only rank 0 speaks."""


@dataclass
class Trainer:
    """Runs a resolved spec: ``Trainer.create(spec).fit()`` or ``Trainer.resume(run_dir).fit()``."""

    spec: TrainSpec
    paths: RunFolder  # the run folder (zoo.runfolder owns its layout)
    runtime: Runtime
    models: Models
    data: Any  # zoo.data.TrainData
    schedule: Schedule
    step: int = 0
    log: Callable[[str], None] = field(default=log_line)
    progress: bool = True
    world: World = SINGLE  # this process's place in a torchrun job (a world of one without torchrun)
    lock: RunLock | None = None  # the run folder's writer lock (rank 0), released when fit() ends
    spec_written: bool = True  # False on resume: spec.json is rewritten with the first new checkpoint
    ema: GeneratorEMA | None = None  # the EMA of the generator's weights (zoo.ema; spec.ema, rank 0 only)

    def __post_init__(self):
        m = self.models
        prepare_for_training(m, self.runtime)
        self.compiled, self._compile_why = resolve_compile(self.spec.compile, self.device)
        if self.compiled:  # in place: the same modules, parameters and state_dict keys (zoo.runtime)
            compile_in_place(m.generator)
            compile_in_place(m.discriminator)
        # What a step calls: the nets themselves, or their DistributedDataParallel wrappers under torchrun.
        self._gen_run, self._disc_run = m.generator, m.discriminator
        if self.world.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._gen_run = DistributedDataParallel(m.generator, device_ids=ids)
            self._disc_run = DistributedDataParallel(m.discriminator, device_ids=ids)
        train = self.data.train if self.data is not None else None
        self.batches = Batches(self.spec, train, self.schedule, self.runtime, self.world, self.log)
        self._stop = StopSignals(self.log, lambda: f"finishing step {self.step + 1}, saving a checkpoint, then "
                                                   f"stopping")
        self._saved_step = -1
        self._watch = LossWatch()  # the steps' losses, on the device until a log/sample/checkpoint step reads them
        if self.ema is not None:
            self.runtime.prepare(self.ema.model)
        self.training_log = TrainingLogWriter(self.paths, self.log, active=self.world.is_main)  # losses.jsonl, tb/

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        return self.runtime.precision

    @property
    def memory_format(self) -> torch.memory_format:
        return self.runtime.memory_format

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: TrainSpec, run_dir: str | Path | None = None, registry: Registry | None = None,
               log: Callable[[str], None] | None = None, progress: bool = True) -> "Trainer":
        """A new run of ``spec`` in ``run_dir`` (default ``spec.out/<gen>-<disc>-<time>``): a new or empty
        folder, or one zoo made that has no checkpoint yet."""
        return cls._build(spec, run_dir, registry, log, progress)

    @classmethod
    def resume(cls, run_dir: str | Path, steps: int | None = None, epochs: int | None = None,
               registry: Registry | None = None, log: Callable[[str], None] | None = None,
               progress: bool = True, device: str | None = None) -> "Trainer":
        """Continue a run from its newest good checkpoint (older ones are used if the newest is damaged or its
        weights do not fit). ``steps``/``epochs``/``device`` change the stored spec, validated as a new run's."""
        folder = RunFolder(Path(run_dir))
        try:
            stored = spec_from_json(folder.read_spec())
        except SpecError as exc:
            raise SpecError(f"{shown(folder.spec)}: {exc}") from None
        updates = {k: v for k, v in (("steps", steps), ("epochs", epochs), ("device", device)) if v is not None}
        spec = stored
        if any(getattr(stored, k) != v for k, v in updates.items()):
            try:
                spec = validate_spec({**stored.model_dump(), **updates})
            except SpecError as exc:
                flags = ", ".join(f"--{k} {shown(str(v))}" for k, v in updates.items())
                raise SpecError(f"--resume {shown(folder.root)} with {flags}: {exc}; nothing was changed") from None
        return cls._build(spec, folder.root, registry, log, progress, resuming=True, spec_changed=spec is not stored)

    @classmethod
    def _build(cls, spec: TrainSpec, run_dir: str | Path | None, registry: Registry | None,
               log: Callable[[str], None] | None, progress: bool, resuming: bool = False,
               spec_changed: bool = False) -> "Trainer":
        """The one construction path of create and resume (``spec``: the run's, with the validated changes)."""
        from zoo.data import load_train_data

        registry = registry or get_registry()
        main = distributed.world_from_env().is_main
        log = (log or log_line) if main else _quiet
        spec = spec.resolved(registry)
        world, device = distributed.setup(select_device(spec.device))
        runtime = Runtime.resolve(device, spec.precision)  # device + precision: resolved once, here
        distributed.check_parallel(spec.data.batch_size, spec.sync_batchnorm, world, runtime.device)
        if run_dir is None:
            name = spec.run_name or f"{spec.generator.name}-{spec.discriminator.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            run_dir = Path(spec.out) / name
        folder = RunFolder(Path(distributed.broadcast_object(str(run_dir), world)))  # rank 0's clock names it
        if resuming:
            if not folder.list_checkpoints():
                raise CheckpointError(f"no checkpoint found in {shown(folder.root)}: it stopped before its first "
                                      f"checkpoint; start it again without --resume")
        else:
            folder.check_new()
        lock = folder.lock() if world.is_main and resuming else None
        try:
            # before the data: spec errors surface at once
            models = build_models(spec, runtime, registry, sync_batchnorm=spec.sync_batchnorm and world.enabled)
            ema = GeneratorEMA.for_spec(spec, models.generator) if world.is_main else None  # rank 0 samples, saves
            state, step = None, 0
            if resuming:  # before the data too: a damaged run is refused at once
                def fits(ckpt, st):
                    load_training_state(models, ckpt, st)
                    if ema is not None:
                        ema.load(ckpt.generator_ema, ckpt.path)
                checkpoint, state, notes = folder.newest_good(with_state=True, accept=fits)
                for note in notes:
                    log(f"zoo: {note}; falling back to an older checkpoint")
                step = int(state["step"])
            data = load_train_data(spec, log=log, exclude=(folder.root,))
            if resuming:
                distributed.restore_rng(state["rng"], spec.seed, world, device, step)
                if state.get("precision") not in (None, runtime.precision):
                    log(f"zoo: note: this run trained in {state['precision']} and continues in {runtime.precision} "
                        f"({runtime.why}); the result will not be bit-identical to an uninterrupted run")
            elif world.is_main:
                lock = folder.create_locked(spec_to_json(spec))  # checked again under the lock: the data took time
            if not resuming:
                distributed.seed_rank_rng(spec.seed, world)
            trainer = cls(spec, folder, runtime, models, data, Schedule.from_spec(spec, len(data.train)), step=step,
                          log=log, progress=progress and world.is_main, world=world, lock=lock,
                          spec_written=not spec_changed, ema=ema)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if resuming:
            log(f"zoo: resuming {shown(folder.root)} from {checkpoint.path.name} (step {trainer.step} of "
                f"{trainer.schedule.total})")
        return trainer

    # ---- training -----------------------------------------------------------------------------
    def train_step(self, L: torch.Tensor, ab: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        """One optimisation step of ``stage`` (zoo.gan_step); returns the losses as 0-dim device tensors."""
        if stage == "pretrain":
            return pretrain_step(self.models, L, ab, self.runtime, G=self._gen_run)
        return gan_step(self.models, L, ab, self.runtime, self.spec.pixel_weight, G=self._gen_run, D=self._disc_run)

    def fit(self) -> Path:
        """Train to the end of the schedule; returns the final checkpoint path."""
        try:
            return self._fit()
        finally:
            self.training_log.close()
            self.batches.close()  # data workers end before the lock is released: they share its file
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _fit(self) -> Path:
        total, spec = self.schedule.total, self.spec
        if self.world.is_main and self.lock is None:  # a second fit() of the same trainer
            self.lock = self.paths.lock()
        if self.step >= total:
            self.log(f"zoo: {shown(self.paths.root)} is already at step {self.step} of {total}; pass --steps/--epochs "
                     f"to train longer")
            kept = self.paths.checkpoint_path(self.step)
            return kept if kept.is_file() else self.save()
        self.log(f"zoo: training {spec.generator.name} x {spec.discriminator.name} on {self.device} for {total} "
                 f"steps ({self.schedule.pretrain_steps} pretraining + {self.schedule.gan_steps} GAN, "
                 f"{self.schedule.steps_per_epoch} steps/epoch, batch {spec.data.batch_size}, "
                 f"{spec.data.image_size} px) -> {shown(self.paths.root)}")
        self.log(f"zoo: precision {self.runtime.precision} ({self.runtime.why}); {self.runtime.layout} layout; "
                 f"torch.compile {'on' if self.compiled else 'off'} ({self._compile_why})"
                 + (f"; {self.world.size} processes, {spec.data.batch_size // self.world.size} images each per "
                    f"step{', SyncBatchNorm' if spec.sync_batchnorm else ''}" if self.world.enabled else ""))
        if (repeats := self.schedule.repeat_warning()) is not None:
            self.log(repeats)
        if self.world.is_main and self.ema is not None:
            self.log(f"zoo: {self.ema.describe()}: the sample grids and val metrics use it; checkpoints hold both "
                     f"the raw and the EMA weights")
        self.training_log.open(spec.tensorboard, self.step, spec_to_json(spec))
        bar = self._progress_bar(total)
        last_saved = None
        try:
            with self._stop as stop:
                t_window, n_window, watch = time.perf_counter(), 0, self._watch
                compiled_stages: set[str] = set()
                while self.step < total:
                    stage, epoch, _ = self.schedule.locate(self.step)
                    t_step = time.perf_counter()
                    watch.add(self._guarded_step(stage), self.step + 1)  # device tensors: no host sync here
                    if self.compiled and stage not in compiled_stages:  # the stage's first step compiles
                        compiled_stages.add(stage)
                        if self.device.type == "cuda":
                            torch.cuda.synchronize(self.device)
                        self.log(f"zoo: first {stage} step (compiling included) took "
                                 f"{time.perf_counter() - t_step:.1f} s")
                        t_window, n_window = time.perf_counter(), -spec.data.batch_size  # img/s without it
                    self.step += 1
                    if self.ema is not None:  # after the step's generator update, before anything is saved
                        self.ema.update(self.models.generator, self.step)
                    n_window += spec.data.batch_size
                    if bar is not None:
                        bar.update(1)
                    logging = self.step % spec.log_every == 0 or self.step == total
                    if not (logging or self.world.enabled or stop.name or self._writes_at(self.step)):
                        continue
                    losses, bad = watch.read()  # the one host sync: at log, sample and checkpoint steps
                    losses = self._agree(losses)  # DDP: mean losses, any rank's signal
                    if bad is None and self.world.enabled:
                        bad = next((NonFiniteLoss(k, self.step, v) for k, v in losses.items()
                                    if not math.isfinite(v)), None)
                    if bad is not None:
                        raise self._non_finite(bad)
                    ips = n_window / max(time.perf_counter() - t_window, 1e-9)
                    if bar is not None:
                        bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{ips:.1f}"},
                                        refresh=False)
                    if logging:
                        self.training_log.write({"step": self.step, "stage": stage, "epoch": epoch, **losses,
                                            "img_per_s": round(ips, 3), "time": time.time()},
                                           tensorboard_only=self._learning_rates(stage))
                        t_window, n_window = time.perf_counter(), 0
                    if self.step % spec.sample_every == 0 or self.step == total:
                        self._sample_or_warn()
                    if (self.step % spec.checkpoint_every == 0 or self.step == total
                            or self.schedule.is_stage_end(self.step)):  # the same steps as _writes_at
                        last_saved = self.save()
                    if stop.name and self.step < total:  # a signal during the last step: just finish
                        path = last_saved if last_saved and self._saved_step == self.step else self.save()
                        raise TrainingStopped(
                            f"stopped by {stop.name} at step {self.step} of {total}; checkpoint saved to "
                            f"{shown(path)}; continue with: zoo train --resume {shown(self.paths.root)}",
                            exit_code=143 if stop.name == "SIGTERM" else 130)
        finally:
            if bar is not None:
                bar.close()
        self._check_ranks_agree()
        self.log(f"zoo: done: {self.step} steps; checkpoint {shown(last_saved)}; samples in "
                 f"{shown(self.paths.samples)}")
        return last_saved

    def _non_finite(self, bad: NonFiniteLoss) -> TrainingStopped:
        stage = self.schedule.locate(bad.step - 1)[0]
        return TrainingStopped(
            f"loss {bad.name} became {bad.value} at step {bad.step} ({stage} stage); stopped without saving it; "
            f"{self._kept()}; lower the learning rate or check the data, then --resume {shown(self.paths.root)}",
            exit_code=3)

    def _writes_at(self, step: int) -> bool:
        """Whether ``step`` samples or saves a checkpoint (the losses are read and checked before either)."""
        spec = self.spec
        return (step % spec.sample_every == 0 or step % spec.checkpoint_every == 0 or step == self.schedule.total
                or self.schedule.is_stage_end(step))

    def _guarded_step(self, stage: str) -> dict[str, torch.Tensor]:
        """This step's batch and optimisation; out of memory becomes a one-line stop (exit 3)."""
        from zoo.loader import DataWorkerDied

        try:
            L, ab = self.batches(self.step)
            return self.train_step(L, ab, stage)
        except DataWorkerDied as exc:  # nothing of this step was applied: its checkpoint resumes it exactly
            bad = self._watch.read()[1]
            if bad is not None:  # a NaN earlier in the log window: those weights are not saved
                raise self._non_finite(bad) from None
            path = self.save()
            raise TrainingStopped(f"{exc}; stopped at step {self.step} with a checkpoint, {shown(path)}; continue "
                                  f"with: zoo train --resume {shown(self.paths.root)}", exit_code=3) from None
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        d = self.spec.data
        raise TrainingStopped(
            f"out of memory in step {self.step + 1} ({stage} stage, batch {d.batch_size} of {d.image_size} px on "
            f"{self.device}): lower data.batch_size (--batch-size) or data.image_size (--image-size) in a new run, or "
            f"use a device with more memory; {self._kept()}", exit_code=3)

    def _kept(self) -> str:
        kept = self.paths.list_checkpoints()
        return f"the last good checkpoint, {kept[-1].name}, is kept" if kept else "no checkpoint was saved yet"

    def _agree(self, losses: dict[str, float]) -> dict[str, float]:
        """Under DDP: the losses averaged over ranks; a stop signal seen by any rank is seen by all."""
        if self.world.enabled:
            losses, self._stop.name = distributed.agree(losses, self._stop.name, self.world, self.device)
        return losses

    def _check_ranks_agree(self) -> None:
        if self.world.enabled:
            digests = distributed.check_same_weights((self.models.generator, self.models.discriminator), self.world)
            self.log("zoo: weights digest per rank (generator/discriminator): "
                     + ", ".join(f"rank {r} {g}/{d}" for r, (g, d) in enumerate(digests)))

    def _progress_bar(self, total: int):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr,
                    mininterval=0.5)

    def _learning_rates(self, stage: str | None) -> dict[str, float]:
        """``lr_<net>``: the learning rate of the optimiser that steps each net in ``stage`` (None: none)."""
        m = self.models
        optims = {"pretrain": {"generator": m.pretrain_optim},
                  "gan": {"generator": m.gen_optim, "discriminator": m.disc_optim}}.get(stage, {})
        return {f"lr_{net}": o.param_groups[0]["lr"] for net, o in optims.items() if o is not None}

    # ---- outputs ------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        m = self.models
        return {
            "step": self.step,
            "gen_optim": m.gen_optim.state_dict(),
            "disc_optim": m.disc_optim.state_dict(),
            "pretrain_optim": m.pretrain_optim.state_dict() if m.pretrain_optim is not None else None,
            "scalers": {"generator": m.gen_scaler.state_dict(), "discriminator": m.disc_scaler.state_dict()},
            "losses": m.loss_states(),
            "precision": self.precision,
            "rng": distributed.capture_rng(self.world, self.device),
        }

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0; under DDP every rank must call this, at the same step). A resumed run's
        new spec.json goes with its first new checkpoint (after the checkpoint: it names what the run now is)."""
        state = self.training_state()
        path = None
        if self.world.is_main:
            text = spec_to_json(self.spec)
            path = self.paths.save_checkpoint(self.step, text, self.models.generator, self.models.discriminator,
                                              state, keep=self.spec.keep_checkpoints,
                                              generator_ema=self.ema.model if self.ema is not None else None)
            if not self.spec_written:
                from zoo.fileio import write_text

                write_text(self.paths.spec, text)
                self.spec_written = True
        self._saved_step = self.step
        return path

    def _sample_or_warn(self) -> None:
        try:
            self.sample()
        except OSError as exc:
            where = shown(exc.filename) if exc.filename else shown(self.paths.samples)
            self.log(f"zoo: warning: cannot write the sample grid of step {self.step} to {where} "
                     f"({exc.strerror or exc}); training goes on (checkpoints are still saved)")

    def sample(self) -> Path | None:
        """At this step: the val metrics (a log row) and the sample grid (gray | prediction | truth) of fixed
        validation photos (:func:`zoo.validation_grid.validation_grid`), the same in TensorBoard, and the run's
        curves.png. The generator (its EMA when the run keeps one: the row's ``weights``) runs through the one
        inference path (:class:`zoo.inference.Predictor`)."""
        from zoo.inference import Predictor
        from zoo.plot import write_curves
        from zoo.validation_grid import validation_grid
        from zoo.visual import save_grid

        val = self.data.val
        if val is None or len(val) == 0 or not self.world.is_main:
            return None
        weights = "ema" if self.ema is not None else "raw"
        net = self.ema.model if self.ema is not None else self.models.generator
        predictor = Predictor(net, self.runtime, name=self.spec.generator.name, prepare=False)
        n_eval = min(len(val), self.spec.data.val_images)
        metrics, grid = validation_grid(predictor, val.images, n_eval, self.spec.data.batch_size,
                                        self.spec.num_samples)
        self.training_log.write({"step": self.step, **metrics, "val_images": n_eval, "weights": weights,
                            "time": time.time()})
        out = self.paths.sample_path(self.step)
        save_grid(grid, out, column_titles=("gray input", "prediction" + " (EMA)" * (weights == "ema"),
                                            "ground truth"))
        self.training_log.image("samples", self.step, out)
        try:
            write_curves(self.paths.root)
        except (OSError, ZooError) as exc:  # a plot is never worth stopping a run for
            self.log(f"zoo: warning: cannot write {shown(self.paths.curves)} at step {self.step} "
                     f"({getattr(exc, 'strerror', None) or exc}); training goes on")
        return out


__all__ = ["Trainer", "TrainingStopped"]
