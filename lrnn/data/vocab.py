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
        counts: Counter[str] = Counter()
        for row in rows:
            counts.update(split_row(row, level))
        itos = [tok for tok, _ in counts.most_common()]  # most_common is stable: ties keep first-seen order
        if UNK not in counts:
            itos.append(UNK)
        return cls(itos)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, rows: Iterable[str], level: str) -> torch.Tensor:
        """Concatenated ids of all rows as one flat int64 tensor [N]."""
        unk, stoi = self.stoi[UNK], self.stoi
        ids = [stoi.get(tok, unk) for row in rows for tok in split_row(row, level)]
        return torch.from_numpy(np.asarray(ids, dtype=np.int64))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def state_dict(self) -> dict[str, list[str]]:
        return {"itos": self.itos}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        return cls(state["itos"])
