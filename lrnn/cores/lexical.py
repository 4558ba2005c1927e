"""LexicalLSTM: an LSTM whose recurrent weights are chosen at every step by the token it reads (untied by content)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from lrnn.cores._lstm_math import (
    StepWeightLSTMBase,
    ZeroDeltasInit,
    check_input,
    check_positive_int,
    lstm_cell,
    run_layers,
)
from lrnn.kernels import lexical_layer

State = tuple[Tensor, Tensor]


class LexicalLSTM(ZeroDeltasInit, StepWeightLSTMBase):
    """An LSTM whose recurrent weights at step t depend on the input token w_t (Salle & Villavicencio 2018's
    restricted recurrent tensor network, as low-rank deltas): W_hh(t) = W_hh + U_s V_sᵀ with s = set(w_t).

    Set s = 1..K-1 belongs to token `set_tokens[s - 1]`; every other token uses the base set s = 0, which is W_hh
    itself (K = num_sets). By default set_tokens = 0..K-2: lrnn's Vocabulary orders ids by train frequency, so these
    are the K-1 most frequent training tokens (`<eos>` and `<unk>` included when they are among them: they are
    tokens like any other). `set_tokens` is a buffer, saved with the weights. Every layer has its own deltas and
    uses the same per-step set. Only the recurrent weights get deltas: at layer 0 a per-token delta on W_ih (or on
    the bias) only adds a per-token vector to the gates, which the token's embedding already provides; the
    token-dependent recurrence is what the tensor network adds.

    The deltas start at zero (U zero, V uniform like W), so a fresh core computes what its nn.LSTM computes, and U
    gets a gradient from the first step. `regularization()` returns penalty * sum_s ||U_s V_sᵀ||² over layers;
    `LitLanguageModel` adds it to every update. rank=None stores full-rank deltas Δ_s [4H, H] instead of U_s V_sᵀ (a
    per-sample [4H, H] matrix per step: slow and memory hungry, for small models and tests).

    Calling it: the set of every step comes with the input, as token ids or as set ids, in the input's layout:
        out, (h_n, c_n) = core(x, state, tokens=ids)   # x [T, B, in], ids [T, B] ([B, T] if batch_first)
        out, (h_n, c_n) = core(x, state, sets=s)       # s [T, B] in 0..K-1 (0: base set)
    x may be unbatched ([T, in], ids [T]). state: (h0, c0) each [num_layers, B, H] or None (zeros). out [T, B, H];
    `offset` is accepted and ignored (the weights do not depend on the position). `RNNLM` passes its token ids
    (it checks the class attribute `reads_tokens`).

    Parameters, per layer k (in = input_size for k = 0 else H; K = num_sets; r = rank):
        weight_ih_l{k} [4H, in], weight_hh_l{k} [4H, H], bias_ih_l{k}, bias_hh_l{k} [4H]: the base set, named and
            shaped as in nn.LSTM (gate order i, f, g, o);
        rank r:    delta_hh_u_l{k} [K-1, r, 4H] and delta_hh_v_l{k} [K-1, r, H]: U_sᵀ and V_sᵀ, stored rank-index
                   first so that each step's products read them row by row (Δ_s = U_s V_sᵀ = u[s-1].mT @ v[s-1]);
        full rank: delta_hh_l{k} [K-1, 4H, H] (Δ_s itself).
    Total: the nn.LSTM's count + num_layers * (K-1) * r * 5H (full rank: num_layers * (K-1) * 4H²).

    The math of a layer is `reference_layer` (plain PyTorch, per-sample Δ_s h); the forward runs the fast path,
    `lrnn.kernels.lexical_layer`, which gathers the factors of its steps' sets (index_select on the whole [K-1, ...]
    tensor, so every parameter gets a gradient every step, zeros for sets not read: DDP needs no
    find_unused_parameters) and adds U_s (V_sᵀ h) with two small batched products, no per-sample weight matrix formed.
    ``use_kernels = False`` runs the reference instead.
    """

    reads_tokens = True  # RNNLM passes tokens=

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        num_sets: int,
        rank: int | None = None,
        penalty: float = 0.0,
        set_tokens: Sequence[int] | None = None,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout)
        check_positive_int("num_sets", num_sets, "weight sets: the K-1 tokens that own one, plus the base set")
        if rank is not None:
            check_positive_int("rank", rank, "rank of each set's delta, or None for full rank")
        if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not penalty >= 0:
            raise ValueError(f"penalty must be a number >= 0 (weight of sum_s ||delta_s||^2), got {penalty!r}")
        owners = list(range(num_sets - 1)) if set_tokens is None else [int(t) for t in set_tokens]
        if len(owners) != num_sets - 1 or len(set(owners)) != len(owners) or any(t < 0 for t in owners):
            raise ValueError(
                f"set_tokens must be num_sets - 1 = {num_sets - 1} distinct token ids >= 0 (the owners of sets "
                f"1..{num_sets - 1}), got {set_tokens!r}"
            )
        self.num_sets, self.rank, self.penalty = num_sets, rank, float(penalty)
        self.register_buffer("set_tokens", torch.tensor(owners, dtype=torch.long))
        n, H = num_sets - 1, hidden_size
        for k in range(num_layers):
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * H, self.layer_input_size(k))))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * H, H)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * H)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * H)))
            if n == 0:
                continue  # K = 1: a plain LSTM, no deltas
            if rank is None:
                self.register_parameter(f"delta_hh_l{k}", nn.Parameter(torch.empty(n, 4 * H, H)))
            else:
                self.register_parameter(f"delta_hh_u_l{k}", nn.Parameter(torch.empty(n, rank, 4 * H)))
                self.register_parameter(f"delta_hh_v_l{k}", nn.Parameter(torch.empty(n, rank, H)))
        self.reset_parameters()

    # ---- which set a step uses ----------------------------------------------------------------------------------
    def sets_of(self, tokens: Tensor) -> Tensor:
        """The weight set of every token: tokens [...] int -> [...] int64 in 0..K-1 (0: the base set)."""
        if self.num_sets == 1:
            return torch.zeros_like(tokens, dtype=torch.long)
        match = tokens.unsqueeze(-1) == self.set_tokens  # [..., K-1]; at most one True per token
        return torch.where(match.any(-1), match.long().argmax(-1) + 1, 0)

    def _step_sets(self, x: Tensor, tokens: Tensor | None, sets: Tensor | None) -> Tensor:
        if (tokens is None) == (sets is None):
            raise ValueError(
                f"{type(self).__name__} picks its recurrent weights by the input token: pass tokens= (token ids) or "
                "sets= (set ids in 0..num_sets-1), exactly one of them, shaped like the input's leading dims "
                "([T, B], [B, T] if batch_first); RNNLM passes tokens itself"
            )
        given = tokens if tokens is not None else sets
        if given.shape != x.shape[:-1]:
            raise ValueError(
                f"{'tokens' if tokens is not None else 'sets'} must have the input's leading shape "
                f"{tuple(x.shape[:-1])}, got {tuple(given.shape)}"
            )
        if tokens is not None:
            return self.sets_of(tokens)
        if sets.dtype.is_floating_point or sets.dtype == torch.bool:
            raise ValueError(f"sets must be an integer tensor, got {sets.dtype}")
        if sets.numel() and (int(sets.min()) < 0 or int(sets.max()) >= self.num_sets):
            raise ValueError(f"sets must lie in 0..{self.num_sets - 1}, got {int(sets.min())}..{int(sets.max())}")
        return sets.long()

    # ---- the LSTM -----------------------------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor,
        hx: State | None = None,
        *,
        offset: int = 0,
        tokens: Tensor | None = None,
        sets: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """input [T, B, in] ([B, T, in] if batch_first, [T, in] unbatched) and tokens or sets (see the class
        docstring) -> output [T, B, H] (input's layout), (h_n, c_n) each [num_layers, B, H]."""
        check_input(input, self.input_size)
        s = self._step_sets(input, tokens, sets)
        s = s.unsqueeze(1) if input.dim() == 2 else (s.t() if self.batch_first else s)  # [T, B], as the core's x

        def layer(k: int, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return (self._fast_layer if self.use_kernels else self.reference_layer)(k, x.contiguous(), h, c, s)

        return run_layers(
            input, hx, layer, num_layers=self.num_layers, hidden_size=self.hidden_size, input_size=self.input_size,
            batch_first=self.batch_first, dropout=self.dropout, training=self.training,
        )  # fmt: skip

    def reference_layer(self, k: int, x: Tensor, h: Tensor, c: Tensor, sets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layer k in plain PyTorch: x [T, B, in], h and c [B, H], sets [T, B] -> out [T, B, H], h_T, c_T. Step t of
        sample b is nn.LSTM's step with W_hh + Δ_s, s = sets[t, b] (Δ_0 = 0: the base set)."""
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        b_ih, b_hh = (getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")) if self.bias else (None, None)
        d = self.deltas(k)  # [K-1, 4H, H]
        deltas = torch.cat([d.new_zeros(1, *d.shape[1:]), d])  # row s: Δ_s, row 0 the base set's zero
        outs = []
        for t in range(x.shape[0]):
            delta_h = torch.bmm(deltas[sets[t]], h.unsqueeze(2)).squeeze(2)  # Δ_s h for every sample
            h, c = lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh, extra_gates=delta_h)
            outs.append(h)
        return torch.stack(outs), h, c

    def _fast_layer(self, k: int, x: Tensor, h: Tensor, c: Tensor, sets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layer k through `lrnn.kernels.lexical_layer` (the same math, no autograd graph per step)."""
        rows = (sets - 1).clamp_min(0)  # set s >= 1 is row s - 1 of the deltas; base steps read row 0 ...
        keep = (sets > 0).to(x.dtype)  # ... and are masked out
        b = getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}") if self.bias else None
        u = v = None
        if self.num_sets > 1:
            if self.rank is None:  # Δ_s = Δ_s I: the factors Δ_sᵀ and (implicitly) I
                u = getattr(self, f"delta_hh_l{k}").mT
            else:
                u, v = getattr(self, f"delta_hh_u_l{k}"), getattr(self, f"delta_hh_v_l{k}")
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        return lexical_layer(x, h, c, w_ih, w_hh, b, u, v, rows, keep)

    # ---- deltas, penalty, sizes -----------------------------------------------------------------------------------
    def deltas(self, k: int) -> Tensor:
        """Layer k's recurrent deltas of sets 1..K-1: [K-1, 4H, H] (set s is row s-1; the base set has none)."""
        if self.num_sets == 1:
            return self.weight_hh_l0.new_zeros(0, 4 * self.hidden_size, self.hidden_size)
        if self.rank is None:
            return getattr(self, f"delta_hh_l{k}")
        return torch.bmm(getattr(self, f"delta_hh_u_l{k}").mT, getattr(self, f"delta_hh_v_l{k}"))

    def regularization(self) -> Tensor:
        """penalty * sum over layers and sets of ||Δ_s||² (Frobenius): a 0-dim tensor."""
        total = self.weight_hh_l0.new_zeros(())
        if self.penalty == 0 or self.num_sets == 1:
            return total
        for k in range(self.num_layers):
            if self.rank is None:
                total = total + getattr(self, f"delta_hh_l{k}").square().sum()
            else:  # ||U Vᵀ||² = sum((UᵀU) * (VᵀV)), without forming the [4H, H] product (u, v hold Uᵀ, Vᵀ)
                u, v = getattr(self, f"delta_hh_u_l{k}"), getattr(self, f"delta_hh_v_l{k}")
                total = total + (u @ u.mT * (v @ v.mT)).sum()
        return self.penalty * total

    def parameter_counts(self) -> dict[str, int]:
        """Keys: num_sets, shared (= the nn.LSTM's count), per_set (one set's delta parameters over all layers),
        deltas (= (num_sets - 1) * per_set), total (= shared + deltas)."""
        H, r = self.hidden_size, self.rank
        per_set = self.num_layers * (4 * H * H if r is None else r * 5 * H)
        shared, n = self.parameters_per_set(), self.num_sets - 1
        return {"num_sets": self.num_sets, "shared": shared, "per_set": per_set, "deltas": n * per_set,
                "total": shared + n * per_set}  # fmt: skip

    @classmethod
    def from_lstm(
        cls,
        lstm: nn.LSTM,
        num_sets: int,
        rank: int | None = None,
        *,
        penalty: float = 0.0,
        set_tokens: Sequence[int] | None = None,
    ) -> LexicalLSTM:
        """A LexicalLSTM whose base set is a copy of `lstm`'s weights and whose deltas are zero (so both compute the
        same function). Copies num_layers, bias, batch_first and dropout; lstm's dtype and device."""
        core = cls._like_lstm(lstm, num_sets=num_sets, rank=rank, penalty=penalty, set_tokens=set_tokens)
        core._copy_base_from(lstm)
        return core

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, num_sets={self.num_sets}"
        s += f", rank={self.rank}" if self.rank is not None else ""
        return s + f", penalty={self.penalty}" + self._repr_flags()
