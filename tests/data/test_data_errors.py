"""Bad data gives a one-line error that names the file (and split, byte offset); a single text file works."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lrnn.data import TextDataModule
from lrnn.data.corpora import CORPORA, MIRROR_ENV


def test_empty_split_file_names_file_and_split(tiny_corpus: Path) -> None:
    (tiny_corpus / "valid.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"valid\.txt: the validation split is empty"):
        TextDataModule(str(tiny_corpus)).setup()


def test_non_utf8_names_file_and_byte_offset(tiny_corpus: Path) -> None:
    data = (tiny_corpus / "train.txt").read_bytes()
    (tiny_corpus / "train.txt").write_bytes(data + b"caf\xe9\n")
    with pytest.raises(ValueError, match=rf"train\.txt: train split: not UTF-8 text at byte offset {len(data) + 3}"):
        TextDataModule(str(tiny_corpus)).setup()


def test_binary_file_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 4)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"weights\.bin: train split: a binary file"):
        TextDataModule(str(path)).setup()
    assert time.perf_counter() - start < 2  # no hub lookup


def test_single_text_file_is_split_90_5_5_in_order(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    lines = [f"line {i} word{i % 7}" for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    dm = TextDataModule(str(path), batch_size=2, seq_len=4)
    dm.setup()
    # word level: 3 tokens + <eos> per line; 180 / 10 / 10 lines
    assert {s: t.numel() for s, t in dm.tokens.items()} == {"train": 720, "validation": 40, "test": 40}
    assert dm.vocab.decode(dm.tokens["test"][:3].tolist()) == ["line", "<unk>", "word1"]  # line 190, in order
    again = TextDataModule(str(path), batch_size=2, seq_len=4)
    again.setup()
    assert again.cache_hit is True  # the file's content names the cache entry


@pytest.mark.parametrize("name", ["no_such_corpus", "./missing/folder", "someone/not-mirrored"])
def test_unknown_names_fail_fast_and_list_the_ways(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as info:
        TextDataModule(name).setup()
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert repr(name) in message and MIRROR_ENV in message and all(short in message for short in CORPORA)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "data.batch_size must be >= 1, got 0"),
        ({"seq_len": -3}, "data.seq_len must be >= 1, got -3"),
        ({"eval_batch_size": -1}, "data.eval_batch_size must be >= 1, got -1"),
        ({"test_batch_size": 0}, "data.test_batch_size must be >= 1, got 0"),
    ],
)
def test_bad_numbers_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextDataModule("ptb", **kwargs)
