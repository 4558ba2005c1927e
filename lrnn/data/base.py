"""The DataLoader plumbing lrnn's DataModules share: one already-batched IterableDataset per split."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from lrnn.data.sentences import SentenceBatches


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
        return DataLoader(self.split_data(split, batch_size), batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.test_batch_size)
