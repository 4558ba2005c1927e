"""Shared fixtures: the corpus mirror (real data) and small corpora the tests write themselves."""

from __future__ import annotations

import os
import random
import shutil
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
def _no_smoke_corpus_left_in_runs():
    """Tests that build the smoke grid make its generated corpus (grid.tiny_corpus, in runs/paper-tiny-corpus: the
    grid names it relative to the checkout); a session that made it removes it at the end, so `make test` leaves
    nothing in runs/."""
    folder = REPO / "runs" / "paper-tiny-corpus"
    existed = folder.exists()
    yield
    if not existed:
        shutil.rmtree(folder, ignore_errors=True)


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
