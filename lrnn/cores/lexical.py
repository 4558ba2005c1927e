"""LexicalLSTM: an LSTM whose recurrent weights are chosen at every step by the token it reads (untied by content)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from lrnn.cores._lstm_math import StepWeightLSTMBase, check_positive_int

State = tuple[Tensor, Tensor]


class LexicalLSTM(StepWeightLSTMBase):
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

    A window gathers the factors of its steps' sets once (index_select on the whole [K-1, ...] tensor, so every
    parameter gets a gradient every step, zeros for sets not read: DDP needs no find_unused_parameters) and adds
    U_s (V_sᵀ h) to each step's gates with two small batched products; no per-sample weight matrix is formed.
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

    def reset_parameters(self) -> None:
        """The base set as nn.LSTM (uniform in ±1/sqrt(H)); deltas zero (low rank: U zero, V as the base set)."""
        self.init_uniform_(1.0 / math.sqrt(self.hidden_size))

    def init_uniform_(self, bound: float) -> None:
        """Base weights and V factors uniform in [-bound, bound], deltas (and U factors) zero. RNNLM's `init_range`
        calls this instead of drawing every parameter, which would make the deltas non-zero."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("delta_") and "_v_" not in name:
                    p.zero_()
                else:
                    p.uniform_(-bound, bound)

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
        if input.dim() not in (2, 3):
            raise ValueError(f"expected input of 2 (unbatched) or 3 dimensions, got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must be {self.input_size}, got {input.shape[-1]}")
        s = self._step_sets(input, tokens, sets)
        unbatched = input.dim() == 2
        x = (input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)).contiguous()
        s = s.unsqueeze(1) if unbatched else (s.t() if self.batch_first else s)
        T, B, H, L = x.shape[0], x.shape[1], self.hidden_size, self.num_layers
        if T == 0:
            raise ValueError("expected a sequence of at least one step, got length 0")
        if hx is None:
            h0 = c0 = x.new_zeros(L, B, H)
        else:
            h0, c0 = (st.unsqueeze(1) for st in hx) if unbatched else hx
            for name, st in (("h0", h0), ("c0", c0)):
                if st.shape != (L, B, H):
                    raise ValueError(f"expected {name} of shape {(L, B, H)}, got {tuple(st.shape)}")
        rows = (s - 1).clamp_min(0)  # set s >= 1 is row s - 1 of the deltas; base steps read row 0 ...
        keep = (s > 0).to(x.dtype)  # ... and are masked out
        h_n, c_n = [], []
        for k in range(L):
            x, h, c = self._layer(x, h0[k], c0[k], k, rows, keep)
            h_n.append(h)
            c_n.append(c)
            if self.dropout > 0 and self.training and k < L - 1:
                x = F.dropout(x, self.dropout, training=True)
        out = x.squeeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        return out, ((h_n.squeeze(1), c_n.squeeze(1)) if unbatched else (h_n, c_n))

    def _layer(self, x: Tensor, h: Tensor, c: Tensor, k: int, rows: Tensor, keep: Tensor) -> tuple[Tensor, ...]:
        """Layer k over x [T, B, in] from (h, c) [B, H]: out [T, B, H], h_T, c_T."""
        b = getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}") if self.bias else None
        u = v = None
        if self.num_sets > 1:
            if self.rank is None:  # Δ_s = Δ_s I: the factors Δ_sᵀ and (implicitly) I
                u = getattr(self, f"delta_hh_l{k}").mT
            else:
                u, v = getattr(self, f"delta_hh_u_l{k}"), getattr(self, f"delta_hh_v_l{k}")
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        return LexicalLSTMLayer.apply(x, h, c, w_ih, w_hh, b, u, v, rows, keep)

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


class LexicalLSTMLayer(torch.autograd.Function):
    """One LSTM layer whose step t adds U_s V_sᵀ h to sample b's gates, s its set (gate order i, f, g, o as nn.LSTM).

    apply(x, h0, c0, w_ih, w_hh, bias, u, v, rows, keep): x [T, B, in], h0/c0 [B, H], w_ih [4H, in], w_hh [4H, H],
    bias [4H] or None; u [K-1, r, 4H] and v [K-1, r, H] hold U_sᵀ and V_sᵀ (v None: full rank, u [K-1, H, 4H] holds
    Δ_sᵀ and V = I; u None: no deltas, a plain LSTM); rows [T, B] the delta row of every step and sample, keep [T, B]
    1 where it has a set of its own, 0 on the base set. Returns out [T, B, H] (h of every step), h_T, c_T.

    The forward loop records no graph (one autograd node per layer, not ~15 per step); each step gathers its B rows
    of u and v (small, still in cache for the products) and adds U_s (V_sᵀ h) with one batched product. The backward
    is one reverse loop for the state gradients and the deltas' (their rows summed with index_add_, so every row gets
    a gradient, zero where no step read it), then one product per shared matrix. Differentiable once.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, bias, u, v, rows, keep):  # noqa: D102
        T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
        gates = F.linear(x, w_ih, bias)  # [T, B, 4H]: the input side of every step at once
        z_all = None if u is None else x.new_empty(T, B, u.shape[1])  # z = V_sᵀ h of every step (full rank: h)
        out, c_all, tanh_c = x.new_empty(T, B, H), x.new_empty(T, B, H), x.new_empty(T, B, H)
        h, c = h0, c0
        for t in range(T):
            g = gates[t]
            g.addmm_(h, w_hh.t())
            if u is not None:
                if v is None:
                    z = torch.mul(h, keep[t, :, None], out=z_all[t])
                else:
                    z = torch.mul((v.index_select(0, rows[t]) * h.unsqueeze(1)).sum(2), keep[t, :, None], out=z_all[t])
                g.unsqueeze(1).baddbmm_(z.unsqueeze(1), u.index_select(0, rows[t]))  # + U_s z
            g[:, : 2 * H].sigmoid_()
            g[:, 2 * H : 3 * H].tanh_()
            g[:, 3 * H :].sigmoid_()
            i, f, gg, o = g.chunk(4, 1)
            c = torch.mul(f, c, out=c_all[t]).addcmul_(i, gg)
            h = torch.mul(o, torch.tanh(c, out=tanh_c[t]), out=out[t])
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, u, v, out, gates, c_all, tanh_c, z_all, rows, keep)
        return out, out[-1].clone(), c_all[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hn, grad_cn):  # noqa: D102
        x, h0, c0, w_ih, w_hh, u, v, out, gates, c_all, tanh_c, z_all, rows, keep = ctx.saved_tensors
        T, B, H = out.shape
        c_prev = torch.cat([c0.unsqueeze(0), c_all[:-1]])
        h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
        # With y = tanh(c_t): dc_t = dc_{t+1} f_{t+1} + dh_t o (1 - y²),
        # d[i, f, g] = dc_t * [g i (1 - i), c_{t-1} f (1 - f), i (1 - g²)], d[o] = dh_t * y o (1 - o).
        i, f, g, o = gates.chunk(4, 2)
        to_dc = o * (1 - tanh_c * tanh_c)
        factors4 = torch.cat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], 2)
        factors4 = factors4.view(T, B, 4, H)
        d_gates = torch.empty_like(gates)
        d_gates4 = d_gates.view(T, B, 4, H)
        du = None if u is None else torch.zeros_like(u)
        dv = None if v is None else torch.zeros_like(v)
        dh, dc = grad_hn, grad_cn  # the gradient reaching h_t, c_t from step t+1 (and from h_n, c_n)
        for t in range(T - 1, -1, -1):
            dh_t = grad_out[t] + dh
            dc = torch.addcmul(dc, dh_t, to_dc[t])
            torch.mul(factors4[t, :, :3], dc.unsqueeze(1), out=d_gates4[t, :, :3])
            torch.mul(factors4[t, :, 3], dh_t, out=d_gates4[t, :, 3])
            dc = dc * f[t]
            dg = d_gates[t]
            dh = torch.mm(dg, w_hh)
            if u is not None:  # through U_s z: dU_s += dg zᵀ, dz = U_sᵀ dg; through z = V_sᵀ h: dV_s += h dzᵀ
                du.index_add_(0, rows[t], z_all[t].unsqueeze(2) * dg.unsqueeze(1))
                dz = torch.bmm(dg.unsqueeze(1), u.index_select(0, rows[t]).mT).squeeze(1) * keep[t, :, None]
                if v is None:
                    dh += dz
                else:
                    dh.unsqueeze(1).baddbmm_(dz.unsqueeze(1), v.index_select(0, rows[t]))
                    dv.index_add_(0, rows[t], dz.unsqueeze(2) * h_prev[t].unsqueeze(1))
        need = ctx.needs_input_grad
        N = T * B
        dg = d_gates.view(N, -1)
        dx = torch.mm(dg, w_ih).view(T, B, -1) if need[0] else None
        dw_ih = torch.mm(dg.t(), x.reshape(N, -1)) if need[3] else None
        dw_hh = torch.mm(dg.t(), h_prev.view(N, H)) if need[4] else None
        db = dg.sum(0) if ctx.has_bias and need[5] else None
        return (
            dx, dh if need[1] else None, dc if need[2] else None, dw_ih, dw_hh, db,
            du if need[6] else None, dv if need[7] else None, None, None,
        )  # fmt: skip
