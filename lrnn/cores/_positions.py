"""Which weight set a position uses: what UntiedLSTM, SoftTiedLSTM and MixtureLSTM share (max_len, share_every,
extrapolation past max_len)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from lrnn.cores._lstm_math import check_positive_int

Extrapolation = Literal["error", "clamp", "cycle"]
EXTRAPOLATIONS = ("error", "clamp", "cycle")


def first_use(idx: Sequence[int]) -> tuple[list[int], list[int]]:
    """The distinct sets of idx in order of first use, and each step's index into that list."""
    used = list(dict.fromkeys(idx))
    local = {s: u for u, s in enumerate(used)}
    return used, [local[s] for s in idx]


class PositionSets:
    """Mixin: position p = t + offset uses weight set p // share_every, S = ceil(max_len / share_every) sets.

    Positions >= max_len follow `extrapolation`: "error" raises a ValueError, "clamp" reuses the last set, "cycle"
    wraps the position modulo max_len. Call `_init_positions` from __init__.
    """

    max_len: int
    share_every: int
    extrapolation: Extrapolation

    def _init_positions(self, max_len: int, share_every: int, extrapolation: Extrapolation) -> None:
        check_positive_int("max_len", max_len, "the number of positions with weights")
        check_positive_int("share_every", share_every, "steps per weight set")
        if extrapolation not in EXTRAPOLATIONS:
            raise ValueError(f"extrapolation must be one of {EXTRAPOLATIONS}, got {extrapolation!r}")
        self.max_len = max_len
        self.share_every = share_every
        self.extrapolation = extrapolation

    @property
    def num_weight_sets(self) -> int:
        return math.ceil(self.max_len / self.share_every)

    def weight_set_index(self, position: int) -> int:
        """The weight set used at absolute position `position` (= step + offset)."""
        if position < 0:
            raise ValueError(f"positions must be >= 0, got {position}")
        if position >= self.max_len:
            if self.extrapolation == "error":
                raise ValueError(
                    f"position {position} is beyond max_len={self.max_len} of this {type(self).__name__} (it has "
                    f"weights for positions 0..{self.max_len - 1}); raise max_len, or pass extrapolation='clamp' "
                    "(reuse the last weight set) or extrapolation='cycle' (wrap positions modulo max_len)"
                )
            if self.extrapolation == "clamp":
                return self.num_weight_sets - 1
            position %= self.max_len
        return position // self.share_every

    def weight_set_indices(self, seq_len: int, offset: int = 0) -> list[int]:
        """The weight set of each step of a sequence of length seq_len starting at position offset."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        return [self.weight_set_index(offset + t) for t in range(seq_len)]

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None, *, offset: int = 0
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the LSTM; shapes as nn.LSTM (see UntiedLSTM.forward). offset: position of the first step.

        For step-weight cores that build their weight sets with `step_weights(idx) -> (layers, local_idx)`."""
        layers, idx = self.step_weights(self.weight_set_indices(self._seq_len(input), offset))
        return self._run(input, hx, layers, idx)

    def _positions_repr(self) -> str:
        s = f", max_len={self.max_len}"
        if self.share_every != 1:
            s += f", share_every={self.share_every}"
        return s
