"""Real corpora through the mirror: the published token counts and vocabulary sizes."""

from __future__ import annotations

import time

import pytest

from lrnn.data import EOS, UNK, TextDataModule, resolve
from lrnn.data.corpora import load_splits


@pytest.mark.parametrize(
    ("name", "vocab", "counts"),
    [
        ("ptb", 10_000, {"train": 929_589, "validation": 73_760, "test": 82_430}),
        ("wikitext2", 33_278, {"train": 2_088_628, "validation": 217_646, "test": 245_569}),
    ],
)
def test_word_level_counts(mirror: str, name: str, vocab: int, counts: dict[str, int]) -> None:
    dm = TextDataModule(name)
    assert dm.vocab_size == vocab
    assert {split: ids.numel() for split, ids in dm.tokens.items()} == counts
    assert dm.vocab.stoi[EOS] < vocab and dm.vocab.stoi[UNK] < vocab


def test_raw_folder_matches_hub(mirror: str) -> None:
    """The classic ptb.{train,valid,test}.txt files give the same ids as the hub layout."""
    raw = mirror.replace("/hub", "/raw") + "/ptb"
    hub, local = TextDataModule("ptb"), TextDataModule(raw)
    hub.setup(), local.setup()
    assert hub.vocab.itos == local.vocab.itos
    for split in ("train", "validation", "test"):
        assert hub.tokens[split].equal(local.tokens[split])


def test_char_level_tiny_shakespeare(mirror: str) -> None:
    dm = TextDataModule("tiny_shakespeare")
    dm.setup()
    text = load_splits(resolve("tiny_shakespeare"))["train"][0]["text"]
    assert dm.spec.level == "char"
    assert dm.tokens["train"].numel() == len(text)
    assert dm.vocab_size == len(set(text)) + 1  # + <unk> for characters unseen in train
    assert "".join(dm.vocab.decode(dm.tokens["train"][:200].tolist())) == text[:200]
    total = sum(t.numel() for t in dm.tokens.values())
    assert total == 1_115_394


def test_second_load_uses_token_cache(mirror: str) -> None:
    first = TextDataModule("ptb")
    first.prepare_data()
    start = time.perf_counter()
    second = TextDataModule("ptb")
    second.prepare_data()
    assert second.cache_hit is True
    assert second.tokens["train"].equal(first.tokens["train"])
    assert time.perf_counter() - start < 5.0
