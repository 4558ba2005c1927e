"""Stream batching (Zaremba et al. 2014; pytorch/examples ``batchify``) with carried hidden state.

The flat token stream of a split is cut into ``num_streams`` contiguous streams of equal length (the tail that does
not fill a row is dropped). Batch ``i`` holds window ``i`` of every stream, so the hidden state at the end of batch
``i`` is the right initial state for batch ``i + 1``. Windows have ``seq_len`` inputs and the targets are the inputs
shifted by one token. The stream has ``L`` tokens per row, so there are ``L - 1`` targets per row and
``ceil((L - 1) / seq_len)`` windows: the last one is shorter when ``seq_len`` does not divide ``L - 1``; it is kept
(every target is scored once) unless ``drop_last=True``. Nothing is shuffled.

Under DDP each rank owns a disjoint, contiguous block of streams, all of the same length, so every rank yields the
same number of batches and together the ranks see exactly what one process with all streams sees. For training,
``batch_size`` is per rank (``batch_size * world_size`` streams in all); for evaluation (``split_streams=True``)
``batch_size`` is the number of streams in all, split as evenly as possible over the ranks, so the streams, and with
them the scores, do not depend on the number of ranks. A rank left without a stream (fewer streams than ranks, e.g.
Zaremba's single test stream) runs the same number of batches of stream 0 with every target ignored.

Tasks whose targets are not the next token (``lrnn.data.synthetic``) pass ``targets`` aligned with the tokens: then
every position of a row is an input with its own target, and ``mask_first`` targets at the start of each row can be
set to ``IGNORE_INDEX`` (targets that depend on inputs of another row, e.g. the first D steps of a lag-D recall).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset

IGNORE_INDEX = -100  # targets with this value are not scored (F.cross_entropy's default ignore_index)


def batchify(tokens: torch.Tensor, num_streams: int) -> torch.Tensor:
    """Cut a flat stream [N] into ``num_streams`` contiguous rows: [num_streams, N // num_streams]."""
    if num_streams < 1:
        raise ValueError(f"num_streams must be >= 1, got {num_streams}")
    length = tokens.numel() // num_streams
    if length < 2:
        raise ValueError(f"{tokens.numel()} tokens are too few for {num_streams} streams (need 2 per stream)")
    return tokens[: num_streams * length].view(num_streams, length)


class StreamWindows(IterableDataset):
    """Yields ``(inputs, targets)`` batches, each [B, <=seq_len] int64, window by window over B streams.

    ``rank``/``world_size`` select this rank's block of streams out of ``batch_size * world_size`` streams.
    An ``IterableDataset`` so that Lightning never inserts a ``DistributedSampler`` that would shuffle windows.
    ``targets`` (optional, [N] like ``tokens``): per-position targets instead of the next token; ``mask_first``:
    the first that many targets of every row become ``IGNORE_INDEX``.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        batch_size: int,
        seq_len: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        targets: torch.Tensor | None = None,
        mask_first: int = 0,
        split_streams: bool = False,
    ) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if split_streams:  # batch_size streams in all, this rank's share of them
            total, lo, hi = batch_size, rank * batch_size // world_size, (rank + 1) * batch_size // world_size
        else:
            total, lo, hi = batch_size * world_size, rank * batch_size, (rank + 1) * batch_size
        self.idle = hi == lo  # no stream for this rank: stream 0 with every target ignored
        if self.idle:
            hi = lo + 1
        self.data = batchify(tokens, total)[lo:hi]
        self.targets: torch.Tensor | None = None
        if targets is not None:
            if targets.shape != tokens.shape:
                raise ValueError(f"targets must have the shape of tokens {tuple(tokens.shape)}, got {targets.shape}")
            rows = batchify(targets, total)[lo:hi].clone()
            rows[:, :mask_first] = IGNORE_INDEX
            self.targets = rows
        self.seq_len = seq_len
        self.drop_last = drop_last

    @property
    def _row_targets(self) -> int:
        """Targets per row: L - 1 next tokens, or all L positions when explicit targets are given."""
        return self.data.size(1) - (1 if self.targets is None else 0)

    def __len__(self) -> int:
        targets = self._row_targets
        return targets // self.seq_len if self.drop_last else -(-targets // self.seq_len)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            start = i * self.seq_len
            end = min(start + self.seq_len, self._row_targets)
            if self.targets is None:
                x, y = self.data[:, start:end], self.data[:, start + 1 : end + 1]
            else:
                x, y = self.data[:, start:end], self.targets[:, start:end]
            x, y = x.long(), y.long()  # the cache holds int32 ids (lrnn.data.datamodule.TOKEN_DTYPE)
            yield x, torch.full_like(y, IGNORE_INDEX) if self.idle else y

    @property
    def num_tokens(self) -> int:
        """Number of target positions this dataset scores in one pass (``IGNORE_INDEX`` targets included)."""
        return 0 if self.idle else self.data.size(0) * (min(len(self) * self.seq_len, self._row_targets))
