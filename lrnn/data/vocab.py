"""Word- and character-level tokenization with a vocabulary built from the train split only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch

EOS = "<eos>"
UNK = "<unk>"


def split_row(row: str, level: str) -> list[str]:
    """Tokens of one row. Word level: whitespace split plus one ``<eos>`` (empty rows too). Char level: characters."""
    return row.split() + [EOS] if level == "word" else list(row)


def _chunks(rows: Iterable[str], size: int) -> Iterable[list[str]]:
    chunk: list[str] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_tokens(rows: Iterable[str], level: str) -> int:
    return sum(len(split_row(row, level)) for row in rows)


class Vocabulary:
    """Token <-> id map. Ids are ordered by train frequency (ties: first appearance); ``<unk>`` stands for tokens
    outside the train split and is added at the end when the train split has none."""

    def __init__(self, itos: Sequence[str]) -> None:
        self.itos = list(itos)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary has duplicate tokens")

    @classmethod
    def build(cls, rows: Iterable[str], level: str) -> Vocabulary:
        return cls.build_counted(rows, level)[0]

    @classmethod
    def build_counted(cls, rows: Iterable[str], level: str) -> tuple[Vocabulary, int]:
        """The vocabulary of ``rows`` and their number of tokens (one pass)."""
        counts: Counter[str] = Counter()
        for row in rows:
            counts.update(split_row(row, level))
        itos = [tok for tok, _ in counts.most_common()]  # most_common is stable: ties keep first-seen order
        if UNK not in counts:
            itos.append(UNK)
        return cls(itos), sum(counts.values())

    def __len__(self) -> int:
        return len(self.itos)

    def encode(
        self, rows: Iterable[str], level: str, num_tokens: int | None = None, dtype: torch.dtype = torch.int64
    ) -> torch.Tensor:
        """Concatenated ids of all rows as one flat tensor [N] of ``dtype``.

        With ``num_tokens`` (N, if known) the ids are written chunk by chunk into one preallocated array, so the peak
        memory is that array plus a chunk (WikiText-103's train split in int32: 0.4 GB) instead of a Python list of
        every id and a copy of it."""
        if len(self.itos) > torch.iinfo(dtype).max + 1:
            raise ValueError(f"a vocabulary of {len(self.itos)} tokens does not fit {dtype}")
        unk, stoi, np_dtype = self.stoi[UNK], self.stoi, torch.empty(0, dtype=dtype).numpy().dtype
        if num_tokens is None:
            ids = [stoi.get(tok, unk) for row in rows for tok in split_row(row, level)]
            return torch.from_numpy(np.asarray(ids, dtype=np_dtype))
        out, at = np.empty(num_tokens, dtype=np_dtype), 0
        for chunk in _chunks(rows, 10_000):
            ids = np.fromiter((stoi.get(tok, unk) for row in chunk for tok in split_row(row, level)), dtype=np_dtype)
            out[at : at + len(ids)] = ids
            at += len(ids)
        if at != num_tokens:
            raise ValueError(f"encode: {at} tokens, {num_tokens} announced")
        return torch.from_numpy(out)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def state_dict(self) -> dict[str, list[str]]:
        return {"itos": self.itos}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        return cls(state["itos"])
