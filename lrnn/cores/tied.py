"""The standard (tied) LSTM: one set of weights shared by every time step."""

from __future__ import annotations

import torch
from torch import nn


class TiedLSTM(nn.LSTM):
    """``torch.nn.LSTM`` (cuDNN / oneDNN kernels) with the lrnn core signature.

    ``output, (h_n, c_n) = core(x, state=None, *, offset=0)`` with x [T, B, input_size] ([B, T, ...] if
    ``batch_first``), state and h_n/c_n [num_layers, B, hidden_size]. ``offset`` (absolute position of x's first
    step) is accepted for a uniform interface and ignored: the weights are the same at every position.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout)

    def forward(
        self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None, *, offset: int = 0
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return super().forward(input, hx)
