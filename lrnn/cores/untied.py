"""UntiedLSTM: an LSTM whose weights are not shared across time steps (or shared only within blocks of steps)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from lrnn.cores._lstm_math import LayerWeights, StepWeightLSTMBase
from lrnn.cores._positions import EXTRAPOLATIONS, Extrapolation, PositionSets
from lrnn.kernels import CUDAGraphs

__all__ = ["EXTRAPOLATIONS", "Extrapolation", "UntiedLSTM"]


class UntiedLSTM(PositionSets, StepWeightLSTMBase):
    """An LSTM with a separate weight set per time step (or per block of `share_every` steps).

    Step t of the input (0-based) is at position p = t + offset and uses weight set p // share_every, so there are
    S = num_weight_sets = ceil(max_len / share_every) sets. share_every=1 is fully untied; share_every >= max_len is a
    single set, i.e. an ordinary tied LSTM. Equations, gate order (i, f, g, o), shapes and the calling convention are
    those of nn.LSTM; only the weights depend on the position.

    What "position" means is up to the caller through `offset`: under stream batching (truncated BPTT over a
    continuous token stream) the caller passes offset=0 for every window, so the weights repeat every window and the
    position is the step inside the training window; under sentence-level batching offset counts from the sentence
    start, so the position is the token's place in its sentence.

    Positions >= max_len are handled by `extrapolation`: "error" raises a ValueError, "clamp" reuses the last weight
    set, "cycle" wraps the position modulo max_len (then // share_every).

    Parameters, per layer k (in = input_size for k = 0, else hidden_size; H = hidden_size; S = num_weight_sets):
        weight_ih_l{k}: ParameterList of S tensors [4H, in]      weight_hh_l{k}: ParameterList of S [4H, H]
        bias_ih_l{k}, bias_hh_l{k}: ParameterList of S [4H] (if bias)
    i.e. nn.LSTM's parameters, one copy per weight set: `weight_ih_l0[s]` is set s's nn.LSTM `weight_ih_l0` (rows
    are gates i, f, g, o); state_dict keys are `weight_ih_l0.{s}`. `stacked("weight_ih_l0")` gives the [S, 4H, in]
    view of a name. The parameter count is S times that of the same nn.LSTM (see `parameter_counts`).

    The math of a step is nn.LSTM's with set idx[t]'s weights (`lrnn.cores._lstm_math.lstm_cell`); the forward runs
    it through `lrnn.kernels.step_weight_layer` (one hand-written backward per layer, compiled CPU kernels, cuDNN
    per block of shared steps on GPU; differentiable once), or as plain PyTorch with `use_kernels = False`. Sets no
    step used get no gradient (.grad stays None), like a naive ModuleList of LSTMCells. cuda_graphs=True (GPU
    training) replays the forward and backward as CUDA graphs captured once per input shape (`lrnn.kernels.CUDAGraphs`;
    same results; on CPU the flag does nothing).

    Example:
        >>> core = UntiedLSTM(8, 16, num_layers=2, max_len=35)
        >>> out, (h, c) = core(torch.randn(35, 4, 8))  # out [35, 4, 16], h and c [2, 4, 16]
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        max_len: int,
        share_every: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        extrapolation: Extrapolation = "error",
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout)
        self._init_positions(max_len, share_every, extrapolation)
        self.cuda_graphs = cuda_graphs
        self._graphs = CUDAGraphs()
        S, H = self.num_weight_sets, hidden_size
        for k in range(num_layers):
            shapes = {f"weight_ih_l{k}": (4 * H, self.layer_input_size(k)), f"weight_hh_l{k}": (4 * H, H)}
            if bias:
                shapes |= {f"bias_ih_l{k}": (4 * H,), f"bias_hh_l{k}": (4 * H,)}
            for name, shape in shapes.items():
                setattr(self, name, nn.ParameterList(nn.Parameter(torch.empty(shape)) for _ in range(S)))
        self.reset_parameters()

    def parameter_counts(self) -> dict[str, int]:
        """Parameter counts that show the growth with the number of weight sets.

        Keys: num_weight_sets, per_set (= the tied nn.LSTM's count), total (= num_weight_sets * per_set),
        recurrent (weight_hh only, all sets), input (weight_ih only, all sets), bias (all sets).
        """
        S, H = self.num_weight_sets, self.hidden_size
        recurrent = S * self.num_layers * 4 * H * H
        bias = S * self.num_layers * 8 * H if self.bias else 0
        total = S * self.parameters_per_set()
        return {"num_weight_sets": S, "per_set": self.parameters_per_set(), "total": total, "recurrent": recurrent,
                "input": total - recurrent - bias, "bias": bias}  # fmt: skip

    @property
    def num_recurrent_parameters(self) -> int:
        """Number of recurrent (weight_hh) parameters over all layers and weight sets."""
        return self.parameter_counts()["recurrent"]

    def stacked(self, name: str) -> Tensor:
        """All weight sets of parameter `name` (e.g. "weight_hh_l0") stacked: [S, *nn.LSTM's shape of name]."""
        return torch.stack(list(getattr(self, name)))

    def layer_weights(self, k: int) -> LayerWeights:
        """The weight sets of layer k: (weight_ih, weight_hh, bias_ih, bias_hh), each S tensors (biases None if
        bias=False)."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        w_ih, w_hh, b_ih, b_hh = (list(getattr(self, f"{n}_l{k}")) if self.bias or n[0] == "w" else None for n in names)
        return w_ih, w_hh, b_ih, b_hh

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None, *, offset: int = 0
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the LSTM; shapes as nn.LSTM.

        input: [T, B, input_size] ([B, T, input_size] if batch_first; [T, input_size] unbatched);
        hx: (h0, c0) each [num_layers, B, hidden_size], or None for zeros; offset: position of the first step.
        Returns output [T, B, hidden_size] (batch_first as the input) and (h_n, c_n) each [num_layers, B, hidden_size].
        """
        if self.cuda_graphs and input.is_cuda:
            self.weight_set_indices(self._seq_len(input), offset)  # out-of-range positions raise here, not in a capture
            return self._graphs(self, self._eager_forward, input, hx, offset)
        return self._eager_forward(input, hx, offset)

    def _eager_forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None, offset: int):
        """The forward without CUDA graphs: step t uses weight set idx[t] of every layer."""
        idx = self.weight_set_indices(self._seq_len(input), offset)
        return self._run(input, hx, [self.layer_weights(k) for k in range(self.num_layers)], idx)

    @classmethod
    def from_lstm(
        cls,
        lstm: nn.LSTM,
        max_len: int,
        share_every: int = 1,
        extrapolation: Extrapolation = "error",
        cuda_graphs: bool = False,
    ) -> UntiedLSTM:
        """An UntiedLSTM whose every weight set is a copy of `lstm`'s weights (so both compute the same function).

        Copies num_layers, bias, batch_first and dropout; the result has lstm's dtype and device.
        """
        core = cls._like_lstm(
            lstm, max_len=max_len, share_every=share_every, extrapolation=extrapolation, cuda_graphs=cuda_graphs
        )
        with torch.no_grad():
            for name, p in core.named_parameters():
                p.copy_(getattr(lstm, name.split(".")[0]))
        return core

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, max_len={self.max_len}"
        if self.share_every != 1:
            s += f", share_every={self.share_every}"
        s += f", num_weight_sets={self.num_weight_sets}" + self._repr_flags()
        if self.extrapolation != "error":
            s += f", extrapolation={self.extrapolation!r}"
        return s + (", cuda_graphs=True" if self.cuda_graphs else "")
