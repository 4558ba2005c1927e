"""Synthetic tasks: deterministic generators, targets as defined, stream rows and DDP shares, and a tied LSTM that
learns delayed recall with D < k in a short CPU run."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lrnn import LanguageModel, SyntheticDataModule, TiedLSTM
from lrnn.data import IGNORE_INDEX, StreamWindows
from lrnn.data.synthetic import delayed_recall

pytestmark = pytest.mark.usefixtures("one_thread")


def _all(ds) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(ds)
    return torch.cat([x for x, _ in batches], dim=1), torch.cat([y for _, y in batches], dim=1)


def test_delayed_recall_generator() -> None:
    x, y = delayed_recall(50, alphabet=5, lag=3, generator=torch.Generator().manual_seed(0))
    x2, y2 = delayed_recall(50, alphabet=5, lag=3, generator=torch.Generator().manual_seed(0))
    x3, _ = delayed_recall(50, alphabet=5, lag=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)
    assert (y[:3] == IGNORE_INDEX).all() and torch.equal(y[3:], x[:-3]) and int(x.max()) < 5


@pytest.mark.parametrize(("lag", "seq_len"), [(2, 5), (7, 3)])  # lag below and above the window length
def test_recall_streams_cross_window_boundaries(lag: int, seq_len: int) -> None:
    dm = SyntheticDataModule("delayed_recall", alphabet=6, lag=lag, length=400, batch_size=4, seq_len=seq_len)
    ds = dm.split_data("train", 4)
    assert isinstance(ds, StreamWindows) and len(ds) == -(-100 // seq_len)
    x, y = _all(ds)  # [4, 100]: the rows of the stream
    assert (y[:, :lag] == IGNORE_INDEX).all()  # their inputs are in another row
    assert torch.equal(y[:, lag:], x[:, :-lag])  # the target at t is the input at t - D, across windows
    x2, y2 = _all(
        SyntheticDataModule("delayed_recall", alphabet=6, lag=lag, length=400, seq_len=seq_len).split_data("train", 4)
    )
    assert torch.equal(x, x2) and torch.equal(y, y2)  # deterministic
    assert not torch.equal(x, _all(dm.split_data("validation", 4))[0][:, : x.size(1)])  # splits differ


def test_position_rule() -> None:
    dm = SyntheticDataModule("position_rule", alphabet=5, period=4, length=600, batch_size=3, seq_len=5)
    assert dm.vocab_size == 6 and dm.perms.shape == (4, 5)
    assert all(sorted(p.tolist()) == list(range(5)) for p in dm.perms)  # permutations
    x, y = dm.sequences("train")
    assert (x[:, 0] == 5).all() and (y[:, 0] == IGNORE_INDEX).all()  # the marker, no target
    for p in range(4):
        assert torch.equal(y[:, p + 1], dm.perms[p][x[:, p + 1]])
    again = SyntheticDataModule("position_rule", alphabet=5, period=4, length=600, batching="sentence")
    assert torch.equal(again.perms, dm.perms)  # the rule depends on the seed only
    sx, _ = _all(dm.split_data("train", 3))  # stream rows start at a sequence boundary
    assert (sx[:, ::5] == 5).all() and (sx[:, 1::5] != 5).all()
    batch = next(iter(again.split_data("validation", 8)))
    assert batch[0].shape == (8, 5)


def test_sentence_mode_recall_stays_inside_each_sequence() -> None:
    dm = SyntheticDataModule("delayed_recall", alphabet=6, lag=2, length=300, batching="sentence", sentence_len=6)
    x, y = dm.sequences("train")
    assert x.shape == (50, 6) and (y[:, :2] == IGNORE_INDEX).all() and torch.equal(y[:, 2:], x[:, :4])
    with pytest.raises(ValueError, match="must exceed the lag"):
        SyntheticDataModule("delayed_recall", lag=6, batching="sentence", sentence_len=6)


def test_ddp_ranks_split_the_single_process_streams() -> None:
    dm = SyntheticDataModule("delayed_recall", alphabet=6, lag=3, length=1000, seq_len=7)
    single = _all(dm.split_data("train", 4))
    x, y = (t.flatten() for t in dm.sequences("train"))
    ranks = [_all(StreamWindows(x, 2, 7, rank=r, world_size=2, targets=y, mask_first=3)) for r in range(2)]
    assert torch.equal(torch.cat([ranks[0][0], ranks[1][0]]), single[0])
    assert torch.equal(torch.cat([ranks[0][1], ranks[1][1]]), single[1])


def test_tied_lstm_learns_recall_within_the_truncation() -> None:
    """D = 3 < k = 8: the gradient reaches the input a target asks for; a small LSTM gets it right."""
    torch.manual_seed(0)
    dm = SyntheticDataModule("delayed_recall", alphabet=4, lag=3, length=16_000, batch_size=32, seq_len=8)
    lm = LanguageModel(
        TiedLSTM(8, 32),
        vocab_size=dm.vocab_size,
        bptt="tbptt",
        k1=8,
        accuracy=True,
        grad_clip=1.0,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
    )
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(lm, datamodule=dm)
    assert trainer.callback_metrics["val/acc"] > 0.95
    assert trainer.callback_metrics["val/loss"] < 0.2
