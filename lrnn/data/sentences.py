"""Sentence batching: every sequence is its own example from a zero state, padded, masked and bucketed by length.

A word-level corpus is one flat stream in which every row (sentence) ends with ``<eos>``. Sentence ``s`` with
tokens ``w_1 .. w_n <eos>`` becomes one sequence of ``n + 1`` steps with ``<eos>`` as its first input (a BOS):

    inputs  = <eos> w_1 ... w_n
    targets =  w_1  w_2 ... <eos>

so every token of the corpus is a target exactly once, as in stream batching; only the context differs (it never
crosses a sentence boundary). In the flat stream the input before each sentence is the previous sentence's
``<eos>``, so ``inputs = cat([<eos>], stream[:-1])`` and ``targets = stream``, cut at the ``<eos>`` positions: sentence
mode is stream mode with the state reset after every ``<eos>``.

Batches of ``B`` sequences are padded to their longest member (inputs with ``pad_id``, targets with
``IGNORE_INDEX``), so padding is never scored. Sequences are sorted by length (ties broken by a seeded shuffle) and
cut into consecutive batches, so a batch holds sequences of (nearly) the same length. The batches are fixed by the
seed; training visits them in a new seeded order every epoch, evaluation in length order.

Under DDP rank ``r`` of ``W`` takes batches ``r, r + W, ...`` of that order. Every rank yields the same number of
batches: training drops the last ``N mod W`` batches of the epoch's order, evaluation pads the short ranks with one
empty batch (all targets ignored), so every sequence is evaluated exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset

from lrnn.data.batching import IGNORE_INDEX


def sentence_sequences(tokens: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut a flat word-level stream [N] into sentences: ``(inputs [M], targets [M], lengths [S])``.

    Sentence ``i`` occupies ``[offsets[i], offsets[i] + lengths[i])`` of ``inputs``/``targets`` (offsets are the
    cumulative lengths). Tokens after the last ``<eos>`` (none in a word-level corpus) are dropped.
    """
    ends = (tokens == eos_id).nonzero().flatten()
    if ends.numel() == 0:
        raise ValueError("no <eos> in the stream: sentence batching needs a word-level corpus (one <eos> per row)")
    used = int(ends[-1]) + 1
    targets = tokens[:used]
    inputs = torch.cat([tokens.new_full((1,), eos_id), targets[:-1]])
    lengths = torch.diff(ends, prepend=ends.new_full((1,), -1))
    return inputs, targets, lengths


class SentenceBatches(IterableDataset):
    """Yields ``(inputs, targets)`` batches [B', T] of whole sequences, padded and bucketed by length.

    Args:
        inputs, targets: all sequences concatenated, each [M] integer ids (targets may hold ``IGNORE_INDEX``).
        lengths: [S] length of every sequence, summing to M.
        batch_size: sequences per batch (B; the last batch of the length order may be smaller).
        shuffle: visit the batches in a new order every epoch (``seed`` and the epoch fix it).
        seed: fixes the tie-breaking among equal lengths (batch composition) and the epoch orders.
        rank, world_size: this rank's share of the batches (see the module docstring).
        drop_uneven: give every rank ``N // W`` batches (training); else ``ceil(N / W)``, padding with an empty batch.
        pad_id: input id at padded positions (never scored; any valid id).
        epoch_fn: returns the current epoch (the DataModule passes the trainer's); when it is absent or returns
            None, the passes over this dataset are counted instead.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        lengths: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_uneven: bool = False,
        pad_id: int = 0,
        epoch_fn: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if inputs.shape != targets.shape or int(lengths.sum()) != inputs.numel():
            raise ValueError("inputs and targets must have the same shape, and lengths must sum to their length")
        if (lengths < 1).any():
            raise ValueError("every sequence needs at least one step")
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.drop_uneven, self.epoch_fn, self._passes = drop_uneven, epoch_fn, 0
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(lengths.numel(), generator=g)
        order = order[torch.sort(lengths[order], stable=True).indices]  # by length; ties in seeded random order
        offsets = torch.cumsum(lengths, 0) - lengths
        self.batches = [
            self._pad(inputs, targets, offsets[idx], lengths[idx], pad_id) for idx in order.split(batch_size)
        ]
        self._empty = (torch.full((1, 1), pad_id), torch.full((1, 1), IGNORE_INDEX))
        n, w = len(self.batches), world_size
        self._per_rank = n // w if drop_uneven else -(-n // w)
        if self._per_rank == 0:
            raise ValueError(f"{n} batches are too few for {w} ranks")

    @staticmethod
    def _pad(
        inputs: torch.Tensor, targets: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.full((lengths.numel(), int(lengths.max())), pad_id, dtype=torch.long)  # int64 from int32 ids
        y = torch.full_like(x, IGNORE_INDEX)
        for row, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
            x[row, :length] = inputs[start : start + length]
            y[row, :length] = targets[start : start + length]
        return x, y

    def __len__(self) -> int:
        return self._per_rank

    def epoch_order(self, epoch: int) -> list[int]:
        """Indices into ``self.batches`` that this rank visits in ``epoch`` (-1: the empty padding batch)."""
        n = len(self.batches)
        order = list(range(n))
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)).tolist()
        mine = order[self.rank :: self.world_size][: self._per_rank]
        return mine + [-1] * (self._per_rank - len(mine))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        epoch = self._passes if epoch is None else epoch
        self._passes += 1
        for i in self.epoch_order(epoch):
            yield self.batches[i] if i >= 0 else self._empty

    @property
    def num_tokens(self) -> int:
        """Number of real (scored) targets this rank sees in one pass."""
        return sum(int((self.batches[i][1] != IGNORE_INDEX).sum()) for i in self.epoch_order(0) if i >= 0)
