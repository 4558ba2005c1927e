"""The LSTM math lrnn's cores share, in plain PyTorch, and the base class of the step-weight cores.

`lstm_cell` is nn.LSTM's step (gate order i, f, g, o); `reference_layer` runs it over a sequence with weight set
idx[t] at step t, autograd recording every op: the reference that the fast path (`lrnn.kernels.step_weight_layer`)
must match, outputs and gradients (tests/cores/test_fast_vs_reference.py). `run_layers` stacks layers with nn.LSTM's
calling convention (layouts, initial state, dropout between layers) for either.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrnn.kernels import GradBuffers, step_weight_layer
from lrnn.kernels.step_weight import LayerWeights

State = tuple[Tensor, Tensor]
# layer(k, x [T, B, in], h0 [B, H], c0 [B, H]) -> (out [T, B, H], h_T, c_T): layer k over a whole sequence
Layer = Callable[[int, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    extra_gates: Tensor | None = None,
) -> State:
    """One LSTM step: x [B, in], h and c [B, H], w_ih [4H, in], w_hh [4H, H], biases [4H] -> (h', c').
    extra_gates [B, 4H]: added to the gates' pre-activations (e.g. LexicalLSTM's per-token recurrent term)."""
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    if extra_gates is not None:
        gates = gates + extra_gates
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def reference_layer(x: Tensor, h: Tensor, c: Tensor, weights: LayerWeights, idx: Sequence[int]):
    """One layer, step t with weight set idx[t] (weights: w_ih, w_hh, b_ih, b_hh, each a sequence of sets; biases may
    be None): x [T, B, in], h and c [B, H] -> out [T, B, H], h_T, c_T."""
    w_ih, w_hh, b_ih, b_hh = weights
    outs = []
    for t, s in enumerate(idx):
        b = (None, None) if b_ih is None or b_hh is None else (b_ih[s], b_hh[s])
        h, c = lstm_cell(x[t], h, c, w_ih[s], w_hh[s], *b)
        outs.append(h)
    return torch.stack(outs), h, c


def check_input(input: Tensor, input_size: int) -> None:
    if input.dim() not in (2, 3):
        raise ValueError(f"expected input of 2 (unbatched) or 3 dimensions, got shape {tuple(input.shape)}")
    if input.shape[-1] != input_size:
        raise ValueError(f"input.size(-1) must be equal to input_size. Expected {input_size}, got {input.shape[-1]}")


def run_layers(
    input: Tensor,
    hx: State | None,
    layer: Layer,
    *,
    num_layers: int,
    hidden_size: int,
    input_size: int,
    batch_first: bool,
    dropout: float,
    training: bool,
    num_steps: int | None = None,
) -> tuple[Tensor, State]:
    """A stack of `num_layers` layers with nn.LSTM's calling convention.

    input: [T, B, in] ([B, T, in] if batch_first, or unbatched [T, in]); hx: (h0, c0) each [L, B, H] ([L, H] if
    unbatched) or None for zeros. Returns output [T, B, H] (batch_first / unbatched as the input) and (h_n, c_n) each
    [L, B, H]. Dropout is applied to the outputs of every layer but the last, in training. num_steps: the T the
    caller built its per-step weights for (checked).
    """
    L, H = num_layers, hidden_size
    check_input(input, input_size)
    unbatched = input.dim() == 2
    x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if batch_first else input)
    if num_steps is not None and x.shape[0] != num_steps:
        raise ValueError(f"got {num_steps} weight-set indices for a sequence of length {x.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("expected a sequence of at least one step, got length 0")
    B = x.shape[1]
    if hx is None:
        h0 = c0 = x.new_zeros(L, B, H)
    else:
        h0, c0 = hx
        if unbatched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        for name, st in (("h0", h0), ("c0", c0)):
            if st.shape != (L, B, H):
                raise ValueError(f"expected {name} of shape {(L, B, H)}, got {tuple(st.shape)}")
    h_n, c_n = [], []
    for k in range(L):
        x, h, c = layer(k, x, h0[k], c0[k])
        h_n.append(h)
        c_n.append(c)
        if dropout > 0 and training and k < L - 1:
            x = F.dropout(x, dropout, training=True)
    output = x.squeeze(1) if unbatched else (x.transpose(0, 1) if batch_first else x)
    h_n, c_n = torch.stack(h_n), torch.stack(c_n)
    if unbatched:
        h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
    return output, (h_n, c_n)


def step_weight_lstm(
    input: Tensor,
    hx: State | None,
    layers: Sequence[LayerWeights],
    idx: Sequence[int],
    *,
    batch_first: bool,
    dropout: float,
    training: bool,
    grad_buffers: GradBuffers | None = None,
    fast: bool = True,
) -> tuple[Tensor, State]:
    """Multi-layer LSTM with per-step weight sets and nn.LSTM's calling convention (see `run_layers`).

    layers: per layer the weight sets (w_ih: S x [4H, in], w_hh: S x [4H, H], b_ih: S x [4H] or None, b_hh likewise);
    idx: the weight set of each of the T steps. fast: `lrnn.kernels.step_weight_layer` (only the sets some step uses
    take part, the others get no gradient; weight gradients written into `grad_buffers` on CPU, None: fresh), else
    `reference_layer`.
    """

    def layer(k: int, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not fast:
            return reference_layer(x, h, c, layers[k], idx)
        buffers = None if grad_buffers is None else (grad_buffers, k)
        return step_weight_layer(x, h, c, layers[k], idx, training=training, buffers=buffers)

    w_ih, w_hh = layers[0][0], layers[0][1]
    return run_layers(
        input, hx, layer, num_layers=len(layers), hidden_size=w_hh[0].shape[1], input_size=w_ih[0].shape[1],
        batch_first=batch_first, dropout=dropout, training=training, num_steps=len(idx),
    )  # fmt: skip


def check_positive_int(name: str, value: object, meaning: str = "") -> None:
    """Raise a ValueError naming `name` unless `value` is an int > 0 (bools are refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int{f' ({meaning})' if meaning else ''}, got {value!r}")


def check_lstm_args(input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
    """Validate the constructor arguments every lrnn LSTM core shares (clear ValueErrors, like nn.LSTM)."""
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        check_positive_int(name, v)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            f"dropout={dropout} has no effect with num_layers=1 (it is applied between layers)",
            UserWarning,
            stacklevel=3,
        )


def lstm_init_(tensors: Sequence[Tensor], hidden_size: int) -> None:
    """nn.LSTM's initialisation: every weight and bias uniform in [-1/sqrt(H), 1/sqrt(H)]."""
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for w in tensors:
            w.uniform_(-bound, bound)


class StepWeightLSTMBase(nn.Module):
    """What lrnn's step-weight cores share: nn.LSTM's constructor arguments and attributes, its initialisation, the
    size of one weight set, and running `step_weight_lstm` with nn.LSTM's calling convention.

    A subclass registers its parameters in __init__ (then calls reset_parameters) and implements forward by building
    per-layer weight sets and step indices for `_run`. ``use_kernels = False`` (on an instance) runs the plain
    PyTorch reference instead of the fast path (tests compare the two).
    """

    use_kernels = True

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, *, bias: bool, batch_first: bool, dropout: float
    ) -> None:
        super().__init__()
        check_lstm_args(input_size, hidden_size, num_layers, dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self._grad_buffers = GradBuffers()  # weight-gradient memory reused across backward passes (CPU, fast path)

    def reset_parameters(self) -> None:
        """nn.LSTM's initialisation, independently for every tensor: uniform in [-1/sqrt(H), 1/sqrt(H)]."""
        lstm_init_(list(self.parameters()), self.hidden_size)

    def layer_input_size(self, k: int) -> int:
        return self.input_size if k == 0 else self.hidden_size

    def parameters_per_set(self) -> int:
        """Parameters of one weight set over all layers, i.e. of the equivalent tied nn.LSTM."""
        H, bias = self.hidden_size, 8 * self.hidden_size if self.bias else 0
        return sum(4 * H * (self.layer_input_size(k) + H) + bias for k in range(self.num_layers))

    def _seq_len(self, input: Tensor) -> int:
        return input.shape[1] if self.batch_first and input.dim() == 3 else input.shape[0]

    def _run(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None, layers: Sequence[LayerWeights], idx: Sequence[int]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return step_weight_lstm(
            input, hx, layers, idx, batch_first=self.batch_first, dropout=self.dropout, training=self.training,
            grad_buffers=self._grad_buffers, fast=self.use_kernels,
        )  # fmt: skip

    @classmethod
    def _like_lstm(cls, lstm: nn.LSTM, **kwargs):
        """A new core with `lstm`'s sizes, bias, batch_first and dropout (plus kwargs), on its device and dtype."""
        check_plain_lstm(lstm)
        ref = lstm.weight_ih_l0
        core = cls(
            lstm.input_size,
            lstm.hidden_size,
            lstm.num_layers,
            bias=lstm.bias,
            batch_first=lstm.batch_first,
            dropout=lstm.dropout,
            **kwargs,
        )
        return core.to(device=ref.device, dtype=ref.dtype)

    def _copy_base_from(self, lstm: nn.LSTM) -> None:
        """Copy `lstm`'s weights into the parameters named like nn.LSTM's (the base set); `delta_*` ones stay."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if not name.startswith("delta_"):
                    p.copy_(getattr(lstm, name))

    def _repr_flags(self) -> str:
        """The non-default nn.LSTM flags for extra_repr."""
        s = "" if self.bias else ", bias=False"
        s += ", batch_first=True" if self.batch_first else ""
        return s + (f", dropout={self.dropout}" if self.dropout else "")


class ZeroDeltasInit:
    """Mixin for cores whose own parameters are a shared (base) set plus `delta_*` ones (SoftTiedLSTM, LexicalLSTM):
    the deltas start at zero, so a fresh core computes what its nn.LSTM computes. Low-rank deltas U Vᵀ start with U
    zero and V drawn like the weights (U then gets a gradient from the first step)."""

    def reset_parameters(self) -> None:
        """The shared set as nn.LSTM (uniform in ±1/sqrt(H)); deltas zero (low rank: U zero, V as the shared set)."""
        self.init_uniform_(1.0 / math.sqrt(self.hidden_size))

    def init_uniform_(self, bound: float) -> None:
        """Shared weights and V factors uniform in [-bound, bound], deltas (and U factors) zero. RNNLM's
        `init_range` calls this instead of drawing every parameter, which would make the deltas non-zero."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("delta_") and "_v_" not in name:
                    p.zero_()
                else:
                    p.uniform_(-bound, bound)


def check_plain_lstm(lstm: nn.LSTM) -> None:
    """``from_lstm`` takes a unidirectional ``nn.LSTM`` (or subclass) without projections."""
    if not isinstance(lstm, nn.LSTM):
        raise TypeError(f"from_lstm expects an nn.LSTM (or subclass), got {type(lstm).__name__}")
    if lstm.bidirectional:
        raise ValueError("from_lstm does not support bidirectional LSTMs (these cores run forward in time)")
    if lstm.proj_size:
        raise ValueError(f"from_lstm does not support LSTMs with projections (proj_size={lstm.proj_size})")
