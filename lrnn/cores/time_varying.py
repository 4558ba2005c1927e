"""TimeVaryingLSTM: LSTM weights that are a smooth function of the position, with a fixed parameter budget."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
from torch import Tensor

from lrnn.cores._lstm_math import LayerWeights, StepWeightLSTMBase, check_positive_int
from lrnn.cores.mixture import mix_sets

Basis = Literal["fourier", "gaussian", "legendre"]
BASES = ("fourier", "gaussian", "legendre")


def basis_functions(positions: Tensor, num_bases: int, period: float, basis: Basis) -> Tensor:
    """Mixture coefficients a_k(p) of each position: positions [T] (float) -> [T, num_bases].

    fourier:  [1, cos(w p), sin(w p), cos(2 w p), sin(2 w p), ...][:num_bases] with w = 2 pi / period. Periodic in p
              with period `period`; a_0 = 1 is a constant basis.
    gaussian: softmax over k of -(p - c_k)^2 / (2 s^2), centres c_k spread evenly over [0, period], width s = their
              spacing. A partition of unity (sums to 1); beyond `period` it saturates to the last centre (a smooth
              clamp).
    legendre: [P_0(x), P_1(x), ..., P_{K-1}(x)], the Legendre polynomials of x = 2 p / period - 1, which maps
              [0, period] onto [-1, 1] (every |P_k| <= 1 there). Not periodic: no two positions share their
              coefficients unless K = 1, so windows of different lengths are different computations. `period` is
              the position scale T_max; set it >= the longest position evaluated (past it the polynomials grow).
    """
    p = positions.unsqueeze(1)
    if basis == "legendre":
        x = 2 * p / period - 1
        feats = [torch.ones_like(x), x][:num_bases]
        for n in range(1, num_bases - 1):  # (n + 1) P_{n+1} = (2n + 1) x P_n - n P_{n-1}
            feats.append(((2 * n + 1) * x * feats[n] - n * feats[n - 1]) / (n + 1))
        return torch.cat(feats, dim=1)
    if basis == "fourier":
        k = torch.arange(1, num_bases, device=positions.device)
        freq = torch.div(k + 1, 2, rounding_mode="floor").to(positions.dtype) * (2 * math.pi / period)
        angle = p * freq
        feats = torch.where(k % 2 == 1, torch.cos(angle), torch.sin(angle))
        return torch.cat([torch.ones_like(p), feats], dim=1)
    if num_bases == 1:
        return torch.ones_like(p)
    centres = torch.linspace(0, period, num_bases, dtype=positions.dtype, device=positions.device)
    width = period / (num_bases - 1)
    return torch.softmax(-((p - centres) ** 2) / (2 * width**2), dim=1)


class TimeVaryingLSTM(StepWeightLSTMBase):
    """An LSTM whose weights vary smoothly with the position, W(p) = sum_k a_k(p) W_k, from K = num_bases sets.

    The absolute position of step t is p = t + offset (see UntiedLSTM for what position means under stream vs
    sentence batching). The coefficients a_k(p) are fixed functions (`basis_functions`): "fourier" features with
    period `period`, normalised "gaussian" bumps spread over [0, period], or "legendre" polynomials of the position
    scaled by `period` (not periodic: the weights differ at every position; the paper's C8 runs use it with
    `period` >= the longest evaluated length, so that no evaluated window repeats the weights of a shorter one).
    Every weight and bias of every layer is mixed the same way, so the parameter count is num_bases times an
    nn.LSTM's whatever the sequence length: it runs on any length and interpolates between positions. Every basis
    can represent a tied LSTM exactly (fourier, legendre: W_0 = W, other W_k = 0; gaussian: all W_k = W), which is
    what `from_lstm` builds.

    Parameters, per layer k (in = input_size for k = 0, else hidden_size; H = hidden_size; K = num_bases):
        weight_ih_l{k}: [K, 4H, in]   weight_hh_l{k}: [K, 4H, H]   bias_ih_l{k}, bias_hh_l{k}: [K, 4H] (if bias)
    gate order i, f, g, o. Initialisation: every basis uniform in [-1/sqrt(H), 1/sqrt(H)] like nn.LSTM.

    Each forward mixes one weight set per step of the window ([T, 4H, in + H] per layer, one matmul) and runs the
    UntiedLSTM machinery on them; that memory is T weight sets per layer, like an UntiedLSTM with max_len=T.
    Differentiable once (double backward is not supported).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        num_bases: int = 4,
        period: float = 128.0,
        basis: Basis = "fourier",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout)
        check_positive_int("num_bases", num_bases)
        if not isinstance(period, (int, float)) or isinstance(period, bool) or not period > 0:
            raise ValueError(f"period must be a positive number (the position scale), got {period!r}")
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        self.num_bases = num_bases
        self.period = float(period)
        self.basis = basis
        K, H = num_bases, hidden_size
        for k in range(num_layers):
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(K, 4 * H, self.layer_input_size(k))))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(K, 4 * H, H)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(K, 4 * H)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(K, 4 * H)))
        self.reset_parameters()

    def parameter_counts(self) -> dict[str, int]:
        """Keys: num_bases, per_basis (= the tied nn.LSTM's count), total (= num_bases * per_basis)."""
        per = self.parameters_per_set()
        return {"num_bases": self.num_bases, "per_basis": per, "total": self.num_bases * per}

    def mixing_coefficients(self, seq_len: int, offset: int = 0) -> Tensor:
        """a_k(p) for the positions offset .. offset + seq_len - 1: [seq_len, num_bases]."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        w = self.weight_hh_l0
        positions = torch.arange(offset, offset + seq_len, dtype=w.dtype, device=w.device)
        return basis_functions(positions, self.num_bases, self.period, self.basis)

    def step_weights(self, seq_len: int, offset: int = 0) -> list[LayerWeights]:
        """Per layer, the weights of each step: (weight_ih, weight_hh, bias_ih, bias_hh), each seq_len tensors of
        nn.LSTM's shapes ([4H, in], [4H, H], [4H], [4H]; biases None if bias=False), mixed in one matmul per name."""
        a = self.mixing_coefficients(seq_len, offset)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [
            tuple(mix_sets(a, getattr(self, f"{n}_l{k}")) if self.bias or n[0] == "w" else None for n in names)
            for k in range(self.num_layers)
        ]

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None, *, offset: int = 0
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the LSTM; shapes as nn.LSTM (see UntiedLSTM.forward). offset: position of the first step."""
        T = self._seq_len(input)
        return self._run(input, hx, self.step_weights(T, offset), range(T))

    @classmethod
    def from_lstm(
        cls, lstm: nn.LSTM, *, num_bases: int = 4, period: float = 128.0, basis: Basis = "fourier"
    ) -> TimeVaryingLSTM:
        """A TimeVaryingLSTM that computes exactly what `lstm` computes (at every position).

        fourier, legendre: the constant basis gets lstm's weights, the others zero; gaussian: every basis gets lstm's
        weights.
        """
        core = cls._like_lstm(lstm, num_bases=num_bases, period=period, basis=basis)
        with torch.no_grad():
            for name, p in core.named_parameters():
                w = getattr(lstm, name)
                if basis in ("fourier", "legendre"):
                    p.zero_()
                    p[0].copy_(w)
                else:
                    p.copy_(w.unsqueeze(0).expand_as(p))
        return core

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, num_bases={self.num_bases}"
        return s + f", period={self.period}, basis={self.basis!r}" + self._repr_flags()
