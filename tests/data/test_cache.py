"""The token cache: built once per cache folder even when several processes (DDP ranks) start together, read back
memory-mapped (one copy in the page cache for all ranks), and the chunked encoder gives the ids of the plain one."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from lrnn.data import TextDataModule, Vocabulary
from tests.conftest import pattern_rows, write_corpus


def _load(corpus: str, cache: str, barrier, results) -> None:  # noqa: ANN001 (multiprocessing proxies)
    dm = TextDataModule(corpus, cache_dir=cache)
    barrier.wait()  # both processes look for the cache at the same moment
    dm.setup("fit")
    results.put((dm.cache_hit, dm.tokens["train"].sum().item()))


def test_concurrent_processes_tokenize_once(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c", {"train": pattern_rows(3000, 0), "valid": pattern_rows(50, 1)})
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_load, args=(str(corpus), str(tmp_path / "cache"), barrier, results)) for _ in "ab"]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(hit for hit, _ in got) == [False, True]  # one built the cache, the other waited and read it
    assert got[0][1] == got[1][1]


def test_token_ids_are_memory_mapped_from_the_cache(tiny_corpus: Path, tmp_path: Path) -> None:
    first = TextDataModule(str(tiny_corpus), cache_dir=str(tmp_path))
    first.setup("fit")
    (cache,) = tmp_path.glob("*.pt")
    for dm in (first, TextDataModule(str(tiny_corpus), cache_dir=str(tmp_path))):
        dm.setup("fit")
        # file-backed pages (shared by every process that maps the file), not a private copy per process
        assert mapped_file(dm.tokens["train"].data_ptr()) == str(cache)


def mapped_file(address: int) -> str | None:
    """The file whose mapping holds ``address`` in this process (Linux /proc/self/maps), None if anonymous."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    for line in maps.read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return parts[5] if len(parts) == 6 and parts[5].startswith("/") else None
    return None


def test_chunked_encode_equals_the_plain_one() -> None:
    rows = pattern_rows(25_000, 3) + ["", "an unseen word"]
    vocab, n = Vocabulary.build_counted(rows[:1000], "word")
    plain = vocab.encode(rows, "word")
    assert torch.equal(vocab.encode(rows, "word", num_tokens=len(plain)), plain) and n < len(plain)


def test_cache_holds_int32_ids_and_batches_are_int64(tiny_corpus: Path, tmp_path: Path) -> None:
    """Half of int64's memory for the ids (WikiText-103: 0.4 GB); the model and the loss still get int64 batches."""
    dm = TextDataModule(str(tiny_corpus), cache_dir=str(tmp_path), batch_size=3, seq_len=5)
    dm.setup("fit")
    (cache,) = tmp_path.glob("*.pt")
    assert all(t.dtype == torch.int32 for t in dm.tokens.values())
    assert cache.stat().st_size < 8 * sum(t.numel() for t in dm.tokens.values())  # int64 ids alone would be more
    x, y = next(iter(dm.windows("train", 3)))
    assert x.dtype == y.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
    sentences = TextDataModule(str(tiny_corpus), cache_dir=str(tmp_path), batching="sentence", batch_size=3)
    x, y = next(iter(sentences.split_data("train", 3)))
    assert x.dtype == y.dtype == torch.int64


def test_a_large_text_file_is_checked_without_reading_it_whole(tmp_path: Path) -> None:
    """The UTF-8 check of a local split streams the file (a 540 MB train file held as bytes and str took 3 GB);
    a bad byte's offset is found across chunk borders."""
    from lrnn.data.corpora import check_text_file

    path = tmp_path / "train.txt"
    path.write_bytes("wörd ".encode() * 1000 + b"\xf6 tail")
    for chunk in (1, 2, 3, 4096):  # 'ö' is 2 bytes: some chunk sizes cut it
        with pytest.raises(ValueError, match="byte offset 6000 \\(byte 0xf6\\)"):
            check_text_file(path, "train", chunk_bytes=chunk)
    path.write_bytes("wörd ".encode() * 1000)
    check_text_file(path, "train", chunk_bytes=3)
    path.write_bytes(b" \n\n")
    with pytest.raises(ValueError, match="empty"):
        check_text_file(path, "train", chunk_bytes=1)
