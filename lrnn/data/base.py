"""The DataLoader plumbing lrnn's DataModules share: one already-batched IterableDataset per split."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from lrnn.data.sentences import SentenceBatches


class ResumableLoader(DataLoader):
    """A DataLoader that knows how many batches of the current pass it has handed out, so that a checkpoint taken
    mid-epoch resumes at the next batch: Lightning saves ``state_dict()`` with every checkpoint and calls
    ``load_state_dict()`` only when it restarts inside an epoch; the next pass then skips the batches already used.

    ``epoch_batches`` returns how many batches an epoch has (``trainer.num_training_batches``, which
    ``limit_train_batches`` shortens): a pass that reached it is complete, and its position is saved as 0.
    The loader has its own random generator, so iterating it never draws from the global RNG (dropout's).
    """

    def __init__(self, dataset: IterableDataset, epoch_batches: Callable[[], float] | None = None) -> None:
        super().__init__(dataset, batch_size=None, num_workers=0, generator=torch.Generator().manual_seed(0))
        self.epoch_batches = epoch_batches
        self.batches_done = 0  # batches of the current pass handed out so far
        self._skip = 0  # batches the next pass skips (set by load_state_dict)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        skip, self._skip = self._skip, 0
        self.batches_done = skip
        for batch in islice(super().__iter__(), skip, None):
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        total = self.epoch_batches() if self.epoch_batches is not None else float("inf")
        return {"batches_done": 0 if self.batches_done >= total else self.batches_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._skip = int(state_dict.get("batches_done", 0))


class SplitDataModule(L.LightningDataModule):
    """A LightningDataModule whose splits are IterableDatasets that yield whole batches.

    Subclasses set `batch_size` (train), `eval_batch_size` (validation) and `test_batch_size`, and implement
    `split_data(split, batch_size)`. The loaders add no batching or workers (`batch_size=None`, `num_workers=0`), and
    Lightning inserts no DistributedSampler for an IterableDataset: each rank's share is the dataset's business.
    """

    batch_size: int
    eval_batch_size: int
    test_batch_size: int
    seed: int

    def split_data(self, split: str, batch_size: int) -> IterableDataset:
        """The batches of `split` ("train", "validation" or "test") with `batch_size` rows."""
        raise NotImplementedError

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _sentence_batches(
        self, split: str, inputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, batch_size: int
    ) -> SentenceBatches:
        """This rank's padded batches of sentences (see SentenceBatches): 'train' is shuffled every epoch and drops
        the uneven tail across ranks; the other splits come in length order, complete."""
        rank, world = self._rank_world()
        train = split == "train"
        return SentenceBatches(
            inputs,
            targets,
            lengths,
            batch_size,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world,
            drop_uneven=train,
            epoch_fn=lambda: self.trainer.current_epoch if self.trainer is not None else None,
        )

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        epoch_batches = None
        if split == "train":  # the stream position travels with mid-epoch checkpoints (exact resume)
            epoch_batches = lambda: self.trainer.num_training_batches if self.trainer is not None else float("inf")  # noqa: E731
        return ResumableLoader(self.split_data(split, batch_size), epoch_batches)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.test_batch_size)
