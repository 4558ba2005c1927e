"""Shared fixtures: the corpus mirror (real data) and small corpora the tests write themselves."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
# Default to the workplace mirror beside the checkout when the variable is unset (CI sets it explicitly).
_SIBLING_MIRROR = REPO.parent / "shared" / "data" / "hub"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Token caches of the tests live in one session-wide temp folder, never in the user's cache."""
    monkeypatch.setenv("LRNN_CACHE", str(tmp_path_factory.getbasetemp() / "lrnn-cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True, scope="session")
def _paper_corpus_in_temp(tmp_path_factory: pytest.TempPathFactory):
    """The smoke grid's generated corpus is written by whoever builds that grid (grid.tiny_corpus, by default into
    the checkout's runs/): in tests, into the session's temp folder, so `make test` leaves nothing in runs/."""
    from lrnn.paper import grid

    original = grid.tiny_corpus
    folder = tmp_path_factory.getbasetemp() / "paper-tiny-corpus"
    grid.tiny_corpus = lambda path=None, **kwargs: original(path or folder, **kwargs)
    yield
    grid.tiny_corpus = original


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mirror() -> str:
    """The hub mirror (``$LRNN_DATA_MIRROR``); tests that read the real corpora skip with a reason without it."""
    path = os.environ.get("LRNN_DATA_MIRROR") or (str(_SIBLING_MIRROR) if _SIBLING_MIRROR.exists() else "")
    if not path or not Path(path).exists():
        pytest.skip("real corpora unavailable: set LRNN_DATA_MIRROR to a hub mirror (CI does) or go online")
    os.environ["LRNN_DATA_MIRROR"] = path
    return path


def write_corpus(folder: Path, rows: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def pattern_rows(n: int, seed: int) -> list[str]:
    """Sentences from a tiny grammar: learnable, so a short training run must lower perplexity."""
    rng = random.Random(seed)
    subjects, verbs, objects = ["the cat", "a dog", "my bird", "the fish"], ["sees", "likes", "eats"], ["food", "me"]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} ." for _ in range(n)]


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A local folder with train/valid/test text files (~6k tokens of a tiny grammar)."""
    return write_corpus(
        tmp_path / "tiny",
        {"train": pattern_rows(1000, 0), "valid": pattern_rows(100, 1), "test": pattern_rows(100, 2)},
    )
