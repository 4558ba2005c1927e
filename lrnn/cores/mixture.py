"""MixtureLSTM (mixLSTM, Oh et al. 2019): K shared weight sets, mixed at every position by learned convex weights."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from lrnn.cores._lstm_math import LayerWeights, StepWeightLSTMBase, check_positive_int, lstm_init_
from lrnn.cores._positions import Extrapolation, PositionSets, first_use


def mix_sets(coefficients: Tensor, sets: Tensor) -> tuple[Tensor, ...]:
    """Mixed weight sets in one matmul: coefficients [N, K], sets [K, *shape] -> N tensors of `shape`."""
    return (coefficients @ sets.flatten(1)).view(coefficients.shape[0], *sets.shape[1:]).unbind(0)


class MixtureLSTM(PositionSets, StepWeightLSTMBase):
    """An LSTM whose weights at position p are a learned convex combination of K = num_sets shared weight sets:
    W_p = sum_k a_k(s) W_k with a(s) = softmax(mix_logits[s]) and s = p // share_every the position's slot.

    Positions map to slots like UntiedLSTM's weight sets (S = num_weight_sets = ceil(max_len / share_every) slots,
    `extrapolation` past max_len). Every layer has its own mixing logits; every weight and bias of a layer is mixed
    with the same coefficients. num_sets=1 is an nn.LSTM (a single set, coefficient 1 everywhere); unlike
    TimeVaryingLSTM, whose coefficients are fixed functions of the position, the coefficients here are learned.

    Parameters, per layer k (in = input_size for k = 0 else H; K = num_sets; S = num_weight_sets):
        weight_ih_l{k} [K, 4H, in], weight_hh_l{k} [K, 4H, H], bias_ih_l{k}, bias_hh_l{k} [K, 4H] (if bias): the
            shared sets, nn.LSTM's names with a leading set dimension (gate order i, f, g, o);
        mix_logits_l{k} [S, K]: the mixing logits of every slot.
    Initialisation: every set uniform in ±1/sqrt(H) like nn.LSTM, logits zero (an even mix at every position).
    Differentiable once (double backward is not supported).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        num_sets: int,
        max_len: int,
        share_every: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        extrapolation: Extrapolation = "error",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout)
        self._init_positions(max_len, share_every, extrapolation)
        check_positive_int("num_sets", num_sets, "shared weight sets to mix")
        self.num_sets = num_sets
        K, S, H = num_sets, self.num_weight_sets, hidden_size
        for k in range(num_layers):
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(K, 4 * H, self.layer_input_size(k))))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(K, 4 * H, H)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(K, 4 * H)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(K, 4 * H)))
            self.register_parameter(f"mix_logits_l{k}", nn.Parameter(torch.empty(S, K)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every set as nn.LSTM (uniform in ±1/sqrt(H)), mixing logits zero."""
        lstm_init_([p for n, p in self.named_parameters() if not n.startswith("mix_")], self.hidden_size)
        self._zero_logits()

    def init_uniform_(self, bound: float) -> None:
        """Sets uniform in [-bound, bound], logits zero (RNNLM's `init_range` calls this)."""
        with torch.no_grad():
            for n, p in self.named_parameters():
                if not n.startswith("mix_"):
                    p.uniform_(-bound, bound)
        self._zero_logits()

    def _zero_logits(self) -> None:
        with torch.no_grad():
            for k in range(self.num_layers):
                getattr(self, f"mix_logits_l{k}").zero_()

    def parameter_counts(self) -> dict[str, int]:
        """Keys: num_sets, num_weight_sets (position slots), per_set (= the tied nn.LSTM's count), mixing
        (= num_layers * num_weight_sets * num_sets logits), total (= num_sets * per_set + mixing)."""
        per, mixing = self.parameters_per_set(), self.num_layers * self.num_weight_sets * self.num_sets
        return {"num_sets": self.num_sets, "num_weight_sets": self.num_weight_sets, "per_set": per,
                "mixing": mixing, "total": self.num_sets * per + mixing}  # fmt: skip

    def mixing_coefficients(self, k: int = 0) -> Tensor:
        """Layer k's convex mixing weights of every slot: [num_weight_sets, num_sets], rows sum to 1."""
        return torch.softmax(getattr(self, f"mix_logits_l{k}"), dim=1)

    def step_weights(self, idx: list[int]) -> tuple[list[LayerWeights], list[int]]:
        """The mixed weight sets the steps use (one per distinct slot in idx, in order of first use) and each step's
        index into them. With num_sets=1 the single set is used as is."""
        if self.num_sets == 1:
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            layers = [
                tuple(getattr(self, f"{n}_l{k}") if self.bias or n[0] == "w" else None for n in names)
                for k in range(self.num_layers)
            ]
            return layers, [0] * len(idx)
        used, local_idx = first_use(idx)
        rows = torch.tensor(used, device=self.weight_hh_l0.device)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        layers = []
        for k in range(self.num_layers):
            a = self.mixing_coefficients(k)[rows]  # [U, K]
            layers.append(
                tuple(mix_sets(a, getattr(self, f"{n}_l{k}")) if self.bias or n[0] == "w" else None for n in names)
            )
        return layers, local_idx

    @classmethod
    def from_lstm(
        cls,
        lstm: nn.LSTM,
        max_len: int,
        num_sets: int = 1,
        share_every: int = 1,
        *,
        extrapolation: Extrapolation = "error",
    ) -> MixtureLSTM:
        """A MixtureLSTM whose every set is a copy of `lstm`'s weights (any convex mix is then lstm), logits zero.
        Copies num_layers, bias, batch_first and dropout; lstm's dtype and device."""
        core = cls._like_lstm(
            lstm, num_sets=num_sets, max_len=max_len, share_every=share_every, extrapolation=extrapolation
        )
        with torch.no_grad():
            for name, p in core.named_parameters():
                if not name.startswith("mix_"):
                    p.copy_(getattr(lstm, name).unsqueeze(0).expand_as(p))
        return core

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, num_sets={self.num_sets}"
        s += self._positions_repr() + self._repr_flags()
        return s + (f", extrapolation={self.extrapolation!r}" if self.extrapolation != "error" else "")
