"""The fast path of LexicalLSTM (lrnn/cores/lexical.py): one layer as a custom autograd Function.

The math is `LexicalLSTM`'s reference step (`lexical_step`): gates = W_ih x + b + W_hh h + U_s (V_sᵀ h), s the set
of the step's token; tests/cores/test_lexical.py compares the two (outputs and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from lrnn.kernels.step_weight import cell_backward, cell_update


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
            g = gates[t].addmm_(h, w_hh.t())
            if u is not None:
                if v is None:
                    z = torch.mul(h, keep[t, :, None], out=z_all[t])
                else:
                    z = torch.mul((v.index_select(0, rows[t]) * h.unsqueeze(1)).sum(2), keep[t, :, None], out=z_all[t])
                g.unsqueeze(1).baddbmm_(z.unsqueeze(1), u.index_select(0, rows[t]))  # + U_s z
            h, c = cell_update(g, c, c_all[t], tanh_c[t], out[t])
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
            dc = cell_backward(grad_out[t] + dh, dc, to_dc[t], factors4[t], f[t], d_gates4[t])
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
