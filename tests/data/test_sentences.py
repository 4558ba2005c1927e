"""Sentence batching: <eos> as BOS, padding never scored, bucketing, seeded epoch orders, DDP shares, and
evaluation independent of the batch composition."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lrnn import LanguageModel, TextDataModule, TiedLSTM
from lrnn.data import EOS, IGNORE_INDEX, SentenceBatches, sentence_sequences
from tests.conftest import write_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_sequences(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (n,), generator=g)
    x = torch.arange(int(lengths.sum()))  # every step has a distinct id: easy to track
    return x, x + 1000, lengths


def _unpad(batches) -> list[tuple[int, ...]]:
    """Every real sequence of the batches (inputs), and a check that targets are padded exactly where inputs are."""
    seqs = []
    for x, y in batches:
        for row_x, row_y in zip(x, y, strict=True):
            real = row_y != IGNORE_INDEX
            n = int(real.sum())
            assert real[:n].all() and not real[n:].any()  # right-padded
            assert torch.equal(row_y[:n], row_x[:n] + 1000)
            if n:
                seqs.append(tuple(row_x[:n].tolist()))
    return seqs


def test_sentences_start_with_eos_and_cover_every_token() -> None:
    eos = 1
    tokens = torch.tensor([5, 6, eos, 7, eos, eos])
    inputs, targets, lengths = sentence_sequences(tokens, eos)
    assert lengths.tolist() == [3, 2, 1]
    assert inputs.tolist() == [eos, 5, 6, eos, 7, eos]
    assert torch.equal(targets, tokens)


def test_padding_bucketing_and_full_coverage() -> None:
    x, y, lengths = _random_sequences()
    ds = SentenceBatches(x, y, lengths, batch_size=6, pad_id=-7)
    batches = list(ds)
    assert len(batches) == len(ds) == 7
    seqs = _unpad(batches)
    starts = (torch.cumsum(lengths, 0) - lengths).tolist()
    assert sorted(seqs) == sorted(tuple(range(s, s + n)) for s, n in zip(starts, lengths.tolist(), strict=True))
    for bx, by in batches:
        assert (bx[by == IGNORE_INDEX] == -7).all()
    # bucketed: in length order, so batches do not overlap in length
    spans = [((by != IGNORE_INDEX).sum(1).min().item(), (by != IGNORE_INDEX).sum(1).max().item()) for _, by in batches]
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:], strict=False))
    assert ds.num_tokens == int(lengths.sum())


def test_seeded_composition_and_epoch_orders() -> None:
    x, y, lengths = _random_sequences()

    def make(seed: int) -> SentenceBatches:
        return SentenceBatches(x, y, lengths, batch_size=5, shuffle=True, seed=seed, epoch_fn=lambda: epoch)

    epoch = 0
    a, b, c = list(make(0)), list(make(0)), list(make(1))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))  # deterministic
    assert _unpad(a) != _unpad(c)  # the seed changes the composition (ties) or the order
    epoch = 1
    a1 = list(make(0))
    assert sorted(_unpad(a1)) == sorted(_unpad(a)) and _unpad(a1) != _unpad(a)  # same batches, new order


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_batches_of_equal_count(world: int) -> None:
    x, y, lengths = _random_sequences(n=41)  # 9 batches of 5 (the last of 1)
    single = _unpad(SentenceBatches(x, y, lengths, batch_size=5))
    for train in (False, True):
        ranks = [
            SentenceBatches(x, y, lengths, batch_size=5, rank=r, world_size=world, shuffle=train, drop_uneven=train)
            for r in range(world)
        ]
        counts = {len(list(r)) for r in ranks}
        assert len(counts) == 1 and counts == {len(ranks[0])}
        seen = [s for r in ranks for s in _unpad(r)]
        assert len(seen) == len(set(seen))  # disjoint
        if not train:  # evaluation: every sequence exactly once (short ranks get an empty batch)
            assert sorted(seen) == sorted(single)


def _validate(dm: TextDataModule, lm: LanguageModel) -> float:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.validate(lm, datamodule=dm, verbose=False)[0]["val/loss"]


def test_sentence_mode_loss_is_per_real_token_and_independent_of_batching(tmp_path: Path) -> None:
    rows = ["a b c", "b", "c a a b d", "d d", "a c", "b a d c", "c"]
    folder = write_corpus(tmp_path / "c", {"train": rows * 3, "valid": rows, "test": rows})
    torch.manual_seed(0)
    lm = LanguageModel(TiedLSTM(8, 8), vocab_size=TextDataModule(str(folder)).vocab_size, bptt="full")
    losses = [
        _validate(TextDataModule(str(folder), batching="sentence", eval_batch_size=bs, seed=seed), lm)
        for bs, seed in ((1, 0), (3, 0), (3, 5), (16, 0))
    ]
    assert max(losses) - min(losses) < 1e-6, losses
    # reference: every sentence alone from a zero state, <eos> first, the mean over all real targets
    dm = TextDataModule(str(folder))
    dm.setup()
    eos = dm.vocab.stoi[EOS]
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([eos] + [dm.vocab.stoi[w] for w in row.split()] + [eos])
            logits, _ = lm.model.eval()(ids[None, :-1])
            nll += F.cross_entropy(logits[0], ids[1:], reduction="sum").item()
            count += len(ids) - 1
    assert losses[0] == pytest.approx(nll / count, abs=1e-5)


def test_sentence_mode_needs_word_level_and_full_bptt(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c", {"train": ["a b"] * 4, "valid": ["a"], "test": ["b"]})
    with pytest.raises(ValueError, match="word-level"):
        TextDataModule(str(folder), level="char", batching="sentence").sentences("train", 2)
    dm = TextDataModule(str(folder), batching="sentence", batch_size=2)
    lm = LanguageModel(TiedLSTM(4, 4), vocab_size=dm.vocab_size)  # window mode on sentence batches
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, max_epochs=1)
    with pytest.raises(ValueError, match="use bptt='full' with sentence batches"):
        trainer.fit(lm, datamodule=dm)
