"""Synthetic dependency tasks with known answers, batched like text (stream or sentence mode).

``delayed_recall``: inputs are uniform random symbols from an alphabet of size A; the target at step t is the input
at step t - D (lag D); steps t < D have no target (``IGNORE_INDEX``). In stream mode the lag crosses window
boundaries, so the truncation length k and the lag D can be varied independently: with D >= k no gradient path
connects a target to the input it asks for, and the task can only be solved by state carried across windows.

``position_rule``: sequences of ``period`` (P) random symbols behind a marker ``A`` (a BOS, vocabulary A + 1); the
target of the symbol at position p (0-based, after the marker) is ``perm[p][symbol]``, where ``perm`` holds P fixed
random permutations of the alphabet (drawn from ``seed``, the same for every split). The right rule depends on the
absolute position: an untied core (one weight set per position, positions counted from the marker) can apply
``perm[p]`` at step p directly; a tied LSTM has to learn a clock. In stream mode the sequences are concatenated and
every stream starts at a sequence boundary.

Everything is deterministic given ``seed``: split ``train``/``validation``/``test`` draws from seed ``10 * seed + 1``,
``+ 2``, ``+ 3``; the permutations from ``10 * seed``. Accuracy is the natural metric (chance = 1 / A); configure the
model with ``accuracy: true``.
"""

from __future__ import annotations

from typing import Literal

import torch

from lrnn.data.base import SplitDataModule
from lrnn.data.batching import IGNORE_INDEX, StreamWindows
from lrnn.data.corpora import SPLITS
from lrnn.data.sentences import SentenceBatches

Task = Literal["delayed_recall", "position_rule"]
Batching = Literal["stream", "sentence"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def delayed_recall(n: int, alphabet: int, lag: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random symbols and their lag-``lag`` recall targets: ``(x [n], y [n])``, ``y[t] = x[t - lag]``."""
    x = torch.randint(alphabet, (n,), generator=generator)
    y = torch.full_like(x, IGNORE_INDEX)
    y[lag:] = x[: n - lag]
    return x, y


def position_permutations(period: int, alphabet: int, generator: torch.Generator) -> torch.Tensor:
    """``period`` random permutations of the alphabet: [P, A], row p is the rule at position p."""
    return torch.stack([torch.randperm(alphabet, generator=generator) for _ in range(period)])


def position_rule(
    num_sequences: int, perms: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_sequences`` sequences [marker, s_0 .. s_{P-1}] with targets [ignored, perm[p][s_p]], each [S, P + 1]."""
    period, alphabet = perms.shape
    symbols = torch.randint(alphabet, (num_sequences, period), generator=generator)
    x = torch.cat([torch.full((num_sequences, 1), alphabet), symbols], dim=1)
    rules = perms[torch.arange(period).expand(num_sequences, period), symbols]
    y = torch.cat([torch.full((num_sequences, 1), IGNORE_INDEX), rules], dim=1)
    return x, y


class SyntheticDataModule(SplitDataModule):
    """Delayed recall or position-dependent rules, stream- or sentence-batched like ``TextDataModule``.

    Args:
        task: ``delayed_recall`` or ``position_rule`` (see the module docstring).
        alphabet: A, the number of symbols (chance accuracy 1 / A).
        lag: D for ``delayed_recall``.
        period: P, the sequence length of ``position_rule``.
        length: tokens of the training split (streams: the flat stream; sentences: sequences x their length).
        eval_length: tokens of the validation and test splits (default ``length // 5``).
        batch_size: training streams or sequences per device (B).
        seq_len: stream mode window length (T).
        eval_batch_size, test_batch_size: as in ``TextDataModule`` (streams in all, split over the devices).
        batching: ``stream`` (one long stream cut into B rows, windows of ``seq_len``) or ``sentence`` (independent
            sequences from a zero state).
        sentence_len: ``delayed_recall`` sequence length in sentence mode (default ``seq_len``).
        seed: fixes every split (and the permutations).
        drop_last: drop the last, shorter window (stream mode).
    """

    def __init__(
        self,
        task: Task = "delayed_recall",
        alphabet: int = 8,
        lag: int = 5,
        period: int = 10,
        length: int = 100_000,
        eval_length: int | None = None,
        batch_size: int = 32,
        seq_len: int = 20,
        eval_batch_size: int | None = None,
        test_batch_size: int | None = None,
        batching: Batching = "stream",
        sentence_len: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if task not in ("delayed_recall", "position_rule"):
            raise ValueError(f"task must be 'delayed_recall' or 'position_rule', got {task!r}")
        if batching not in ("stream", "sentence"):
            raise ValueError(f"batching must be 'stream' or 'sentence', got {batching!r}")
        for name, value in (("alphabet", alphabet), ("batch_size", batch_size), ("seq_len", seq_len)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if lag < 0 or period < 1:
            raise ValueError(f"lag must be >= 0 and period >= 1, got lag={lag}, period={period}")
        self.save_hyperparameters()
        self.task, self.alphabet, self.lag, self.period = task, alphabet, lag, period
        self.length, self.eval_length = length, eval_length or length // 5
        self.batch_size, self.seq_len = batch_size, seq_len
        self.eval_batch_size = eval_batch_size or batch_size
        self.test_batch_size = test_batch_size or self.eval_batch_size
        self.batching, self.seed, self.drop_last = batching, seed, drop_last
        self.sentence_len = sentence_len or seq_len
        if task == "delayed_recall" and batching == "sentence" and self.sentence_len <= lag:
            raise ValueError(f"sentence_len ({self.sentence_len}) must exceed the lag ({lag}) to leave targets")
        self.perms = position_permutations(period, alphabet, _generator(10 * seed)) if task == "position_rule" else None

    @property
    def vocab_size(self) -> int:
        """Input/output vocabulary: the alphabet (plus the marker for ``position_rule``)."""
        return self.alphabet + (1 if self.task == "position_rule" else 0)

    @property
    def chance(self) -> float:
        return 1.0 / self.alphabet

    # ---- data -------------------------------------------------------------------------------------------------
    def sequences(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's data as rows ``(x, y)`` [S, L]: one row (the flat stream) for ``delayed_recall`` in stream mode,
        else one row per sequence."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        n = self.length if split == "train" else self.eval_length
        g = _generator(10 * self.seed + 1 + SPLITS.index(split))
        if self.task == "position_rule":
            assert self.perms is not None
            return position_rule(max(n // (self.period + 1), 1), self.perms, g)
        if self.batching == "stream":
            x, y = delayed_recall(n, self.alphabet, self.lag, g)
            return x[None], y[None]
        count = max(n // self.sentence_len, 1)
        x, y = delayed_recall(count * self.sentence_len, self.alphabet, self.lag, g)
        x, y = x.view(count, self.sentence_len), y.view(count, self.sentence_len).clone()
        y[:, self.lag :] = x[:, : self.sentence_len - self.lag]  # recall within each sequence only
        y[:, : self.lag] = IGNORE_INDEX
        return x, y

    def split_data(self, split: str, batch_size: int) -> StreamWindows | SentenceBatches:
        """This rank's batches of ``split``."""
        x, y = self.sequences(split)
        rank, world = self._rank_world()
        if self.batching == "sentence":
            lengths = torch.full((x.size(0),), x.size(1))
            return self._sentence_batches(split, x.flatten(), y.flatten(), lengths, batch_size)
        train = split == "train"
        streams = batch_size * world if train else batch_size  # evaluation: batch_size streams split over the ranks
        if self.task == "position_rule":  # whole sequences per stream: every stream starts with a marker
            keep = x.size(0) // streams * streams
            if keep == 0:
                raise ValueError(f"{x.size(0)} sequences are too few for {streams} streams; raise length")
            x, y = x[:keep], y[:keep]
        mask_first = self.lag if self.task == "delayed_recall" else 0
        return StreamWindows(
            x.flatten(),
            batch_size,
            self.seq_len,
            rank=rank,
            world_size=world,
            drop_last=self.drop_last,
            targets=y.flatten(),
            mask_first=mask_first,
            split_streams=not train,
        )
