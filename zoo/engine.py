"""The trainer: runs a resolved spec to the end of its schedule, in a run folder, resumable bit for bit.

``Trainer.create(spec).fit()`` or ``Trainer.resume(run_dir).fit()``. Both build through one path
(:meth:`Trainer._build`): resolve the spec -> one :class:`zoo.runtime.Runtime` (device + precision, resolved
once) -> the torchrun world -> the run folder (checked; locked on resume) -> the models -> on resume the newest
checkpoint whose files load and whose weights fit -> the data -> a new run's folder (made, locked). Every check runs before anything is written; a resumed run's
spec.json (with new --steps/--epochs/--device) is written only with its first new checkpoint.

What each part does lives in its own module: :mod:`zoo.models` (build, init, load weights), :mod:`zoo.schedule`
(stage/epoch/rows of a step), :mod:`zoo.batches` (a step's batch on the device), :mod:`zoo.gan_step` (the step),
:mod:`zoo.signals` (Ctrl-C / SIGTERM), :mod:`zoo.runfolder` (layout, checkpoints, lock), :mod:`zoo.distributed`.

Batches, augmentation and dropout are all seeded, and the torch RNG state is checkpointed, so on CPU a run resumed
from a checkpoint ends with the same weights as one that was never interrupted (the EMA of the generator's
weights, :mod:`zoo.ema`, included: it is updated after each step and saved in each checkpoint).

Logs (rank 0): ``losses.jsonl`` (and ``curves.png``, :mod:`zoo.plot`) and the TensorBoard events of ``tb/``
(:mod:`zoo.tensorboard`; ``spec.tensorboard``): the same rows, plus learning rates and the sample grids.

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

import json
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
from zoo.errors import CheckpointError, SpecError, ZooError
from zoo.gan_step import gan_step, pretrain_step
from zoo.losswatch import LossWatch, NonFiniteLoss
from zoo.models import Models, build_models, load_training_state, prepare_for_training
from zoo.registry import Registry, get_registry
from zoo.runfolder import RunFolder, RunLock
from zoo.runtime import Runtime, compile_in_place, is_out_of_memory, resolve_compile, select_device
from zoo.schedule import Schedule
from zoo.signals import StopSignals
from zoo.spec import TrainSpec, spec_from_json, spec_to_json, validate_spec
from zoo.text import log_line, shown


class TrainingStopped(ZooError):
    """Training stopped early (signal, non-finite loss, out of memory); a checkpoint says where."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def _stderr(msg: str) -> None:
    log_line(msg)


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
    log: Callable[[str], None] = field(default=_stderr)
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
        self._saved_step, self._log_failed = -1, False
        self._watch = LossWatch()  # the steps' losses, on the device until a log/sample/checkpoint step reads them
        if self.ema is not None:
            self.runtime.prepare(self.ema.model)
        self._tb = None  # the run's TensorBoard events (zoo.tensorboard), open while fit() runs

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
        log = (log or _stderr) if main else _quiet
        spec = spec.resolved(registry)
        world, device = distributed.setup(select_device(spec.device))
        runtime = Runtime.resolve(device, spec.precision)  # device + precision: resolved once, here
        _check_parallel(spec, world, runtime.device)
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
            if self._tb is not None:
                self._tb.close()
                self._tb = None
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
        self._open_logs()
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
                        self._write_log({"step": self.step, "stage": stage, "epoch": epoch, **losses,
                                         "img_per_s": round(ips, 3), "time": time.time()})
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
        """Under DDP: the losses averaged over ranks, and a stop signal seen by any rank seen by all (one
        all-reduce per step), so every rank takes the same NaN / stop decision at the same step."""
        if not self.world.enabled:
            return losses
        stop = self._stop
        flags = [float(stop.name == "SIGINT"), float(stop.name == "SIGTERM")]
        total = distributed.all_reduce_sum(torch.tensor([*losses.values(), *flags], dtype=torch.float64,
                                                        device=self.device), self.world).tolist()
        sigint, sigterm = total[-2:]
        if not stop.name and (sigint or sigterm):
            stop.name = "SIGTERM" if sigterm else "SIGINT"
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

    def _write_log(self, row: dict[str, Any]) -> None:
        """Append a row to losses.jsonl; a failed write (disk full) is one warning and training goes on."""
        if not self.world.is_main:
            return
        if self._tb is not None:  # TensorBoard: the same numbers, plus the learning rates of training rows
            self._tb.row(row["step"], {**row, **self._learning_rates(row.get("stage"))})
        try:
            with open(self.paths.losses, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        except OSError as exc:
            if not self._log_failed:
                self.log(f"zoo: warning: cannot append to {shown(self.paths.losses)} ({exc.strerror or exc}) at step "
                         f"{self.step}; training goes on (checkpoints are still saved)")
            self._log_failed = True

    def _learning_rates(self, stage: str | None) -> dict[str, float]:
        """``lr_<net>``: the learning rate of the optimiser that steps each net in ``stage`` (None: none)."""
        m = self.models
        optims = {"pretrain": {"generator": m.pretrain_optim},
                  "gan": {"generator": m.gen_optim, "discriminator": m.disc_optim}}.get(stage, {})
        return {f"lr_{net}": o.param_groups[0]["lr"] for net, o in optims.items() if o is not None}

    def _open_logs(self) -> None:
        """Rank 0, at the start of fit(): the TensorBoard events (spec.tensorboard) and the EMA line."""
        if not self.world.is_main:
            return
        if self.ema is not None:
            self.log(f"zoo: {self.ema.describe()}: the sample grids and val metrics use it; checkpoints hold both "
                     f"the raw and the EMA weights")
        if self.spec.tensorboard and self._tb is None:
            from zoo.tensorboard import TensorBoardLog

            self._tb = TensorBoardLog(self.paths.tensorboard, self.step, self.log)
            if self._tb.active and self.step == 0:
                self._tb.text("spec", spec_to_json(self.spec))

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
            "losses": m.loss_states(),
            "precision": self.precision,
            "rng": rng,
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

    @torch.no_grad()
    def sample(self) -> Path | None:
        """Sample grid (gray | prediction | truth) of fixed validation images, the val metrics (ab L1 over
        ``data.val_images`` photos; ΔE00, PSNR and SSIM over the grid's photos) and the run's curves.png, at
        this step; the same in TensorBoard. The generator (its EMA when the run keeps one: the row's
        ``weights``) runs through the one inference path (:class:`zoo.inference.Predictor`)."""
        from zoo.inference import Predictor
        from zoo.lab import model_output_to_uint8, uint8_to_model_input
        from zoo.plot import write_curves
        from zoo.visual import save_grid

        val = self.data.val
        if val is None or len(val) == 0 or not self.world.is_main:
            return None
        weights = "ema" if self.ema is not None else "raw"
        net = self.ema.model if self.ema is not None else self.models.generator
        predictor = Predictor(net, self.runtime, name=self.spec.generator.name, prepare=False)
        n_eval = min(len(val), self.spec.data.val_images)
        l1_sum, rows = 0.0, []
        for start in range(0, n_eval, self.spec.data.batch_size):
            imgs = val.images[start:min(n_eval, start + self.spec.data.batch_size)].to(self.device)
            L, ab = uint8_to_model_input(imgs)
            fake = predictor.predict_ab(L, check_finite=False)  # a NaN shows in val_l1 and the loss check
            l1_sum += (fake - ab).abs().mean(dim=(1, 2, 3)).sum().item()
            if start < self.spec.num_samples:
                k = min(self.spec.num_samples - start, L.shape[0])
                cells = [model_output_to_uint8(L[:k], x[:k]) for x in (torch.zeros_like(ab), fake, ab)]
                rows.append(torch.stack(cells, 1).cpu())
        grid = torch.cat(rows, 0)  # (k, 3 columns, 3, H, W) uint8
        self._write_log({"step": self.step, "val_l1": l1_sum / n_eval, **_grid_metrics(grid),
                         "val_images": n_eval, "weights": weights, "time": time.time()})
        out = self.paths.sample_path(self.step)
        save_grid(grid, out, column_titles=("gray input", "prediction" + " (EMA)" * (weights == "ema"),
                                            "ground truth"))
        if self._tb is not None:
            self._tb.image("samples", self.step, out)
        try:
            write_curves(self.paths.root)
        except (OSError, ZooError) as exc:  # a plot is never worth stopping a run for
            self.log(f"zoo: warning: cannot write {shown(self.paths.curves)} at step {self.step} "
                     f"({getattr(exc, 'strerror', None) or exc}); training goes on")
        return out


def _grid_metrics(grid: torch.Tensor) -> dict[str, float]:
    """Mean ΔE00, PSNR and SSIM (zoo.metrics, as ``zoo eval`` defines them) of a sample grid's predictions
    against its ground truths, at the training size: a few images, so cheap at every sample step."""
    from zoo.metrics import deltae2000, psnr, rgb_to_lab, ssim

    scores = {"val_deltae00": [], "val_psnr": [], "val_ssim": []}
    for row in grid:
        pred, truth = (row[c].permute(1, 2, 0).numpy() for c in (1, 2))
        scores["val_deltae00"].append(deltae2000(rgb_to_lab(pred), rgb_to_lab(truth)))
        scores["val_psnr"].append(psnr(pred, truth))
        scores["val_ssim"].append(ssim(pred, truth))
    return {key: sum(values) / len(values) for key, values in scores.items()}


def _check_parallel(spec: TrainSpec, world: World, device: torch.device) -> None:
    """Refuse what this world and device cannot run, in one line."""
    if world.enabled:
        distributed.check_batch(spec.data.batch_size, world)
        if spec.sync_batchnorm and device.type != "cuda":
            raise SpecError("sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); drop "
                            "--set sync_batchnorm=true for CPU processes")


__all__ = ["Trainer", "TrainingStopped"]
