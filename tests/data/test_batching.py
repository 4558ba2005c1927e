"""Stream batching: windows line up with the flat stream, targets are shifted inputs, the last window, DDP blocks."""

from __future__ import annotations

import pytest
import torch

from lrnn.data import StreamWindows, batchify


def test_batchify_rows_are_contiguous_streams() -> None:
    tokens = torch.arange(23)
    rows = batchify(tokens, 4)
    assert rows.shape == (4, 5)  # 3 tokens of tail dropped
    assert rows[1].tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize(("seq_len", "drop_last"), [(3, False), (3, True), (4, False), (10, False)])
def test_windows_cover_each_stream_in_order(seq_len: int, drop_last: bool) -> None:
    tokens = torch.arange(2 * 13)  # 2 streams of 13 tokens -> 12 targets per stream
    ds = StreamWindows(tokens, batch_size=2, seq_len=seq_len, drop_last=drop_last)
    batches = list(ds)
    assert len(batches) == len(ds) == (12 // seq_len if drop_last else -(-12 // seq_len))
    inputs = torch.cat([x for x, _ in batches], dim=1)
    targets = torch.cat([y for _, y in batches], dim=1)
    assert torch.equal(targets[:, :-1], inputs[:, 1:])  # targets are the inputs shifted by one
    assert torch.equal(inputs[0], torch.arange(inputs.size(1)))  # batch i holds window i of every stream
    assert torch.equal(inputs[1], 13 + torch.arange(inputs.size(1)))
    if not drop_last:  # every target scored exactly once; the last window is the remainder
        assert torch.equal(targets[0], torch.arange(1, 13))
        assert batches[-1][0].size(1) == 12 - (len(batches) - 1) * seq_len
    assert ds.num_tokens == targets.numel()


def test_ranks_own_disjoint_stream_blocks_with_equal_batch_counts() -> None:
    tokens = torch.arange(101)
    single = StreamWindows(tokens, batch_size=4, seq_len=5)
    ranks = [StreamWindows(tokens, batch_size=2, seq_len=5, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for (x0, y0), (x1, y1), (x, y) in zip(*ranks, single, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_too_few_tokens_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(5), 4)
