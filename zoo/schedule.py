"""The schedule of a run: which stage, epoch and batch rows each global step trains on.

Steps are counted from 0 over both stages (an optional L1-only pretraining of the generator, then the GAN
stage). Each stage's epochs draw their batches with :func:`zoo.data.batches_for_epoch`, seeded by the spec's seed
and the stage, so a step's rows depend only on (spec, number of training images, step): a resumed run sees
exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from zoo.spec import TrainSpec


@dataclass
class Schedule:
    """Maps a global step to (stage, epoch, batch index) and to its batch rows; every batch is full."""

    steps_per_epoch: int
    pretrain_steps: int
    gan_steps: int
    n_items: int = 0  # training images (0: rows() unavailable, as for a benchmark without data)
    batch_size: int = 1
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_spec(cls, spec: TrainSpec, n_train: int) -> "Schedule":
        spe = max(1, n_train // spec.data.batch_size)
        pre = spec.pretrain.steps or spec.pretrain.epochs * spe
        if spec.pretrain.steps and spec.pretrain.epochs:
            pre = min(spec.pretrain.steps, spec.pretrain.epochs * spe)
        limits = [n for n in (spec.steps, spec.epochs * spe if spec.epochs else None) if n]
        return cls(spe, pre, min(limits), n_train, spec.data.batch_size, spec.seed)

    def repeat_warning(self) -> str | None:
        """A warning line when the batch is larger than the training set (every batch then repeats images, so a
        run of "batch 16" on 5 images is not what its spec reads as), else None."""
        if not 0 < self.n_items < self.batch_size:
            return None
        return (f"zoo: warning: batch size {self.batch_size} is larger than the {self.n_items} training images: "
                f"each batch repeats images; lower --batch-size to {self.n_items} or less, or train on more images")

    @property
    def total(self) -> int:
        return self.pretrain_steps + self.gan_steps

    def stage(self, step: int) -> str:
        return "pretrain" if step < self.pretrain_steps else "gan"

    def locate(self, step: int) -> tuple[str, int, int]:
        """(stage, epoch within the stage, batch index within the epoch) of a 0-based global step."""
        stage, local = ("pretrain", step) if step < self.pretrain_steps else ("gan", step - self.pretrain_steps)
        return stage, local // self.steps_per_epoch, local % self.steps_per_epoch

    def is_stage_end(self, done: int) -> bool:
        """Whether ``done`` completed steps end the pretraining stage (a checkpoint is saved there)."""
        return self.pretrain_steps > 0 and done == self.pretrain_steps

    def rows(self, step: int) -> list[int]:
        """Indices of the training images of this step's global batch (the current epoch's draw is cached)."""
        from zoo.data import batches_for_epoch

        stage, epoch, index = self.locate(step)
        if (stage, epoch) not in self._cache:
            stage_seed = self.seed * 2 + (0 if stage == "pretrain" else 1)
            self._cache.clear()
            self._cache[(stage, epoch)] = batches_for_epoch(self.n_items, self.batch_size, stage_seed, epoch)
        batches = self._cache[(stage, epoch)]
        return batches[index % len(batches)]


__all__ = ["Schedule"]
