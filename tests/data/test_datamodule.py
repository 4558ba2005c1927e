"""TextDataModule on small corpora the tests write: local folders, vocabulary, errors, checkpoint state."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrnn.data import EOS, UNK, TextDataModule, Vocabulary
from tests.conftest import write_corpus


def test_vocab_from_train_only_and_unk(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "c", {"train": ["a b a", ""], "valid": ["a z"], "test": ["b"]})
    dm = TextDataModule(str(folder))
    dm.setup()
    assert dm.vocab.itos == ["a", EOS, "b", UNK]  # by frequency; the empty row still yields <eos>
    assert dm.vocab.decode(dm.tokens["train"].tolist()) == ["a", "b", "a", EOS, EOS]
    assert dm.vocab.decode(dm.tokens["validation"].tolist()) == ["a", UNK, EOS]


def test_single_text_file_and_char_level(tmp_path: Path) -> None:
    """A single file is split by lines in order (90/5/5): 18 train lines, then 1 validation and 1 test line."""
    path = tmp_path / "one.txt"
    path.write_text("abcab\n" * 18 + "ba\ncc\n")
    dm = TextDataModule(str(path), level="char")
    dm.setup()
    assert dm.vocab.decode(dm.tokens["train"][:5].tolist()) == list("abcab")
    assert dm.vocab.decode(dm.tokens["validation"].tolist()) == list("ba")
    assert dm.vocab.decode(dm.tokens["test"].tolist()) == list("cc")


def test_vocabulary_roundtrip() -> None:
    vocab = Vocabulary.build(["x y", "y"], "word")
    assert Vocabulary.from_state_dict(vocab.state_dict()).itos == vocab.itos


def test_vocab_saved_with_datamodule_state(tiny_corpus: Path) -> None:
    dm = TextDataModule(str(tiny_corpus))
    dm.setup("fit")
    state = dm.state_dict()
    other = TextDataModule(str(tiny_corpus))
    other.load_state_dict(state)
    assert other.vocab.itos == dm.vocab.itos
    bad = {"vocab": {"itos": list(reversed(dm.vocab.itos))}}
    other.setup("fit")
    with pytest.raises(ValueError, match="vocabulary differs"):
        other.load_state_dict(bad)


def test_missing_dataset_offline_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("LRNN_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    dm = TextDataModule("no-such-user/no_such_dataset")
    with pytest.raises(FileNotFoundError, match="no-such-user/no_such_dataset.*LRNN_DATA_MIRROR"):
        dm.prepare_data()


def test_bad_arguments(tiny_corpus: Path) -> None:
    with pytest.raises(ValueError, match="seq_len"):
        TextDataModule(str(tiny_corpus), seq_len=0)
    with pytest.raises(ValueError, match="no column 'body'"):
        TextDataModule(str(tiny_corpus), text_column="body").prepare_data()
    with pytest.raises(ValueError, match="unknown split"):
        TextDataModule(str(tiny_corpus)).windows("dev", 2)
