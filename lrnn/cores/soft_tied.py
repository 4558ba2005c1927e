"""SoftTiedLSTM: per-step weights W_t = W + Δ_t, a shared set plus a penalised (optionally low-rank) per-step delta."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from lrnn.cores._lstm_math import LayerWeights, StepWeightLSTMBase, ZeroDeltasInit, check_positive_int
from lrnn.cores._positions import Extrapolation, PositionSets, first_use


class SoftTiedLSTM(PositionSets, ZeroDeltasInit, StepWeightLSTMBase):
    """An LSTM whose weights at position p are a shared set plus the delta of p's weight set: W_p = W + Δ_s(p).

    Positions map to weight sets like UntiedLSTM (s = p // share_every, S = ceil(max_len / share_every) sets,
    `extrapolation` past max_len). Every weight matrix and the bias of every layer get a per-set delta; the deltas
    start at zero, so a fresh core computes what its shared nn.LSTM computes. `regularization()` returns
    penalty * sum_s ||Δ_s||² (all layers, weights and biases): penalty 0 leaves an untied LSTM (a reparametrised
    UntiedLSTM), a huge penalty pins it to a tied one. The objective in `LitLanguageModel` adds it to every update.

    rank=r makes each weight delta low-rank, Δ_s = U_s V_sᵀ with U_s [4H, r], V_s [in, r]: r * (4H + in) parameters
    per matrix and set instead of 4H * in (bias deltas stay full, 4H per set). U starts at zero and V random, so Δ
    starts at exactly zero and U gets a gradient from the first step (V's gradient is zero until U moves).

    Parameters, per layer k (in = input_size for k = 0 else H; S = num_weight_sets):
        weight_ih_l{k} [4H, in], weight_hh_l{k} [4H, H], bias_ih_l{k}, bias_hh_l{k} [4H]: the shared set, named and
            shaped as in nn.LSTM (gate order i, f, g, o).
        delta_bias_l{k} [S, 4H] (if bias): per-set bias delta (added to b_ih + b_hh).
        full rank: delta_ih_l{k} [S, 4H, in], delta_hh_l{k} [S, 4H, H].
        rank r:    delta_ih_u_l{k} [S, 4H, r], delta_ih_v_l{k} [S, in, r], delta_hh_u_l{k} [S, 4H, r],
                   delta_hh_v_l{k} [S, H, r].
    A forward builds the weight sets its steps use (W + Δ_s) and runs the step-weight kernel of UntiedLSTM on them.
    Differentiable once (double backward is not supported).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        max_len: int,
        share_every: int = 1,
        rank: int | None = None,
        penalty: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        extrapolation: Extrapolation = "error",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout)
        self._init_positions(max_len, share_every, extrapolation)
        if rank is not None:
            check_positive_int("rank", rank, "rank of each per-step delta, or None for full rank")
        if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not penalty >= 0:
            raise ValueError(f"penalty must be a number >= 0 (weight of sum_t ||delta_t||^2), got {penalty!r}")
        self.rank = rank
        self.penalty = float(penalty)
        S, H = self.num_weight_sets, hidden_size
        for k in range(num_layers):
            n_in = self.layer_input_size(k)
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * H, n_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * H, H)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * H)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * H)))
                self.register_parameter(f"delta_bias_l{k}", nn.Parameter(torch.empty(S, 4 * H)))
            for part, cols in (("ih", n_in), ("hh", H)):
                if rank is None:
                    self.register_parameter(f"delta_{part}_l{k}", nn.Parameter(torch.empty(S, 4 * H, cols)))
                else:
                    self.register_parameter(f"delta_{part}_u_l{k}", nn.Parameter(torch.empty(S, 4 * H, rank)))
                    self.register_parameter(f"delta_{part}_v_l{k}", nn.Parameter(torch.empty(S, cols, rank)))
        self.reset_parameters()

    def _shared(self) -> list[Tensor]:
        return [p for name, p in self.named_parameters() if not name.startswith("delta_")]

    def deltas(self, k: int, sets: list[int] | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Layer k's deltas of `sets` (default all): (Δ_ih [n, 4H, in], Δ_hh [n, 4H, H], Δ_bias [n, 4H] or None)."""
        every = sets is None or sets == list(range(self.num_weight_sets))
        index = slice(None) if every else torch.tensor(sets, device=self.weight_hh_l0.device)

        def delta(part: str) -> Tensor:
            if self.rank is None:
                return getattr(self, f"delta_{part}_l{k}")[index]
            u, v = getattr(self, f"delta_{part}_u_l{k}")[index], getattr(self, f"delta_{part}_v_l{k}")[index]
            return torch.bmm(u, v.transpose(1, 2))

        db = getattr(self, f"delta_bias_l{k}")[index] if self.bias else None
        return delta("ih"), delta("hh"), db

    def regularization(self) -> Tensor:
        """penalty * sum over layers and sets of ||Δ_s||² (weights and bias; Frobenius): a 0-dim tensor."""
        total = self.weight_hh_l0.new_zeros(())
        if self.penalty == 0:
            return total
        for k in range(self.num_layers):
            if self.bias:
                total = total + getattr(self, f"delta_bias_l{k}").square().sum()
            for part in ("ih", "hh"):
                if self.rank is None:
                    total = total + getattr(self, f"delta_{part}_l{k}").square().sum()
                else:  # ||U Vᵀ||² = sum((UᵀU) * (VᵀV)), without forming the [4H, in] product
                    u, v = getattr(self, f"delta_{part}_u_l{k}"), getattr(self, f"delta_{part}_v_l{k}")
                    total = total + (u.transpose(1, 2) @ u * (v.transpose(1, 2) @ v)).sum()
        return self.penalty * total

    def parameter_counts(self) -> dict[str, int]:
        """Keys: num_weight_sets, shared (= the tied nn.LSTM's count), per_set (one set's delta parameters),
        deltas (= num_weight_sets * per_set), total (= shared + deltas)."""
        H, r = self.hidden_size, self.rank
        per_set = 0
        for k in range(self.num_layers):
            for cols in (self.layer_input_size(k), H):
                per_set += 4 * H * cols if r is None else r * (4 * H + cols)
            per_set += 4 * H if self.bias else 0
        shared, S = self.parameters_per_set(), self.num_weight_sets
        return {"num_weight_sets": S, "shared": shared, "per_set": per_set, "deltas": S * per_set,
                "total": shared + S * per_set}  # fmt: skip

    def step_weights(self, idx: list[int]) -> tuple[list[LayerWeights], list[int]]:
        """The weight sets the steps use (W + Δ_s for each distinct s in idx, in order of first use) and each step's
        index into them."""
        used, local_idx = first_use(idx)
        layers = []
        for k in range(self.num_layers):
            d_ih, d_hh, d_b = self.deltas(k, used)
            w_ih = (getattr(self, f"weight_ih_l{k}") + d_ih).unbind(0)
            w_hh = (getattr(self, f"weight_hh_l{k}") + d_hh).unbind(0)
            if self.bias:  # b_ih + b_hh + Δ_b as one bias (the kernel adds b_ih and b_hh; b_hh is zero here)
                b = (getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}") + d_b).unbind(0)
                layers.append((w_ih, w_hh, b, [torch.zeros_like(b[0])] * len(used)))
            else:
                layers.append((w_ih, w_hh, None, None))
        return layers, local_idx

    @classmethod
    def from_lstm(
        cls,
        lstm: nn.LSTM,
        max_len: int,
        share_every: int = 1,
        *,
        rank: int | None = None,
        penalty: float = 0.0,
        extrapolation: Extrapolation = "error",
    ) -> SoftTiedLSTM:
        """A SoftTiedLSTM whose shared set is a copy of `lstm`'s weights and whose deltas are zero (so both compute
        the same function). Copies num_layers, bias, batch_first and dropout; lstm's dtype and device."""
        core = cls._like_lstm(
            lstm, max_len=max_len, share_every=share_every, rank=rank, penalty=penalty, extrapolation=extrapolation
        )
        core._copy_base_from(lstm)
        return core

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}" + self._positions_repr()
        s += f", num_weight_sets={self.num_weight_sets}"
        s += f", rank={self.rank}" if self.rank is not None else ""
        s += f", penalty={self.penalty}" + self._repr_flags()
        return s + (f", extrapolation={self.extrapolation!r}" if self.extrapolation != "error" else "")
