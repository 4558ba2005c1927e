"""The fast path of the step-weight cores: one LSTM layer whose step t uses weight set idx[t].

The math is `lrnn.cores._lstm_math.reference_layer` (nn.LSTMCell's step, one weight set per step); this module
computes the same thing fast, and tests/kernels compare the two (outputs and gradients).

The heart of this module is `StepWeightLSTMLayer`, a custom autograd Function that runs one LSTM layer over a whole
sequence where step t uses weight set `idx[t]`, each set a separate tensor (w_ih [4H, in], w_hh [4H, H], biases
[4H]). It avoids the two traps of a naive untied LSTM:

- no autograd graph per step: the forward loop runs without recording and the backward is one hand-written reverse
  loop, so there is one autograd node per layer instead of ~10 per step and layer;
- no per-step indexing of a stacked [S, ...] parameter under autograd (each index would back-propagate a full-size
  zero gradient: O(T^2) memory traffic), and no [S, ...] gradient buffer either: each set's gradient is produced
  once, by one product over the steps that use it;
- the work that does not depend on the recurrence (input projection, input and weight gradients, the elementwise
  derivative factors) is taken out of the sequential loops: one matmul per run of steps sharing a set, one bmm per
  group of consecutive sets on GPU. On CPU, per-step products are used for steps with distinct sets: a bmm there is
  a loop of the same GEMMs (measured equal) but needs a stacked copy of the weights.

Steps that share a set in runs (UntiedLSTM with share_every >= 2) instead run as one call of torch's own LSTM
kernel per run on GPU (`_lstm_runs`: cuDNN). On CPU they stay in StepWeightLSTMLayer (one product per run for the
input side) when lrnn's compiled kernels are available, which measured faster than oneDNN per run at every size;
without them, oneDNN runs them while a layer's weight set is at most 8 MB (above, its per-call weight reorder costs
more than its kernels gain). On CPU the weight gradients go into buffers reused across backward passes
(`lrnn.kernels.buffers.GradBuffers`), so that no multi-MB gradient is freshly allocated (and page-faulted) every
step, and each cold L2-sized weight set is read once in order before its product (`_prefetch`).

On CPU (float32/float64) the forward and backward loops run in lrnn's compiled kernels (`_native`,
csrc/step_weight_lstm.cpp, built on first use): the same products in the same order, with each step's gate
arithmetic one vectorised pass instead of ~8 tensor ops, and no Python per step. In float32 with AVX2, the forward
products of one step's rows, the fresh weight gradients up to 1 MB with 32-byte aligned rows and the state and input
gradients of weight sets over 2 MB are lrnn's own (csrc/small_gemm.h: the cold set is read in place or fetched ahead,
gradients are written with streaming stores) instead of MKL's. Where the CPU has AVX-512 (checked at run time),
AVX-512 versions of the forward product and the weight gradient take over and serve more: the forward projections of
whole `share_every` runs (k·B rows) and every weight gradient but one step's at H 200 (see small_gemm.h).
With several threads, the per-run products of `share_every` runs (k·B rows) over sets above 2 MB go to the threads
as single-threaded column halves instead of one multi-threaded product each (the input gradients, and the forward
projections where the AVX-512 kernel does not serve).
Where the kernels cannot be built, the Python loops below run instead (same results to float precision; tests
compare the two).

On CUDA the per-step elementwise work uses PyTorch's fused LSTM cell kernels (the ones nn.LSTMCell uses), which cuts
the launches per step from ~8 to 2 (forward) and ~7 to 3 (backward).

The Function is differentiable once (double backward raises): gradcheck passes, gradgradcheck does not apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lrnn.kernels import _native
from lrnn.kernels.buffers import GradBuffers

LayerWeights = tuple[Sequence[Tensor], Sequence[Tensor], Sequence[Tensor] | None, Sequence[Tensor] | None]

# (t0, t1, s0, diagonal): steps t0..t1-1 use sets s0, s0+1, ... (diagonal) or all use set s0 (a run).
Segment = tuple[int, int, int, bool]

# Use the fused CUDA LSTM cell kernels on GPU (tests flip this to compare with the generic path).
USE_FUSED_CUDA_CELL = True
# Use lrnn's compiled CPU kernels (`_native`, built on first use) for float32/float64 on CPU; tests flip this to
# compare with the Python loops, which stay the fallback where the kernels cannot be built.
USE_NATIVE_CPU = True


def step_segments(idx: Sequence[int]) -> list[Segment]:
    """Split per-step weight-set indices into pieces that can each be handled by one batched product.

    A "run" is a maximal group of consecutive steps that use the same set (one matmul over all its steps); a
    "diagonal" is a maximal group of single steps whose sets increase by one (one bmm over sliced, contiguous sets).
    E.g. idx [0, 1, 2, 3] -> [(0, 4, 0, True)]; idx [0, 0, 1, 1, 1] -> [(0, 2, 0, False), (2, 5, 1, False)].
    """
    runs: list[list[int]] = []  # [t0, t1, s]
    for t, s in enumerate(idx):
        if runs and runs[-1][2] == s:
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1, s])
    segs: list[Segment] = []
    for t0, t1, s in runs:
        if t1 - t0 == 1 and segs:
            p0, p1, ps, pdiag = segs[-1]
            if (pdiag or p1 - p0 == 1) and ps + (p1 - p0) == s:  # the set follows on: extend the diagonal
                segs[-1] = (p0, t1, ps, True)
                continue
        segs.append((t0, t1, s, False))
    return segs


def cell_update(g: Tensor, c: Tensor, c_out: Tensor, tanh_out: Tensor, h_out: Tensor) -> tuple[Tensor, Tensor]:
    """One step's gate arithmetic in place (gate order i, f, g, o): g [B, 4H] pre-activations become the activated
    gates; c' = f c + i g goes into c_out, tanh(c') into tanh_out, h' = o tanh(c') into h_out. Returns (h', c')."""
    H = g.shape[1] // 4
    g[:, : 2 * H].sigmoid_()
    g[:, 2 * H : 3 * H].tanh_()
    g[:, 3 * H :].sigmoid_()
    i, f, gg, o = g.chunk(4, 1)
    c = torch.mul(f, c, out=c_out).addcmul_(i, gg)
    return torch.mul(o, torch.tanh(c, out=tanh_out), out=h_out), c


def cell_backward(dh: Tensor, dc: Tensor, to_dc: Tensor, factors4: Tensor, f: Tensor, d_gates4: Tensor) -> Tensor:
    """One reverse step: dh, dc [B, H] reaching h_t and c_t; to_dc = o (1 - tanh(c_t)²); factors4 [B, 4, H] the
    gates' derivative factors (see StepWeightLSTMLayer.backward). Writes the gates' gradient into d_gates4 [B, 4, H]
    and returns the gradient reaching c_{t-1}."""
    dc = torch.addcmul(dc, dh, to_dc)
    torch.mul(factors4[:, :3], dc.unsqueeze(1), out=d_gates4[:, :3])
    torch.mul(factors4[:, 3], dh, out=d_gates4[:, 3])
    return dc * f


def _project(x: Tensor, w: Sequence[Tensor], bias: Tensor | None, segs: list[Segment], batched: bool) -> Tensor:
    """out[t] = x[t] @ w[idx[t]].T (+ bias[idx[t]]) for all steps; x [T, B, in], w: sets [G, in] -> [T, B, G]."""
    T, B, _ = x.shape
    G = w[0].shape[0]
    out = x.new_empty(T, B, G)
    for t0, t1, s0, diag in segs:
        n = t1 - t0
        if diag and batched:  # one bmm over the steps (GPU: one launch)
            w_t = torch.stack(w[s0 : s0 + n]).transpose(1, 2)
            if bias is None:
                torch.bmm(x[t0:t1], w_t, out=out[t0:t1])
            else:
                torch.baddbmm(bias[s0 : s0 + n].unsqueeze(1), x[t0:t1], w_t, out=out[t0:t1])
        elif diag:  # CPU: per-step products are as fast as a bmm and need no stacked copy of the weights
            for j in range(n):
                _prefetch(w[s0 + j])
                if bias is None:
                    torch.mm(x[t0 + j], w[s0 + j].t(), out=out[t0 + j])
                else:
                    torch.addmm(bias[s0 + j], x[t0 + j], w[s0 + j].t(), out=out[t0 + j])
        else:  # a run of steps sharing one set: one matmul over all of them
            xs, o = x[t0:t1].reshape(n * B, -1), out[t0:t1].view(n * B, G)
            if bias is None:
                torch.mm(xs, w[s0].t(), out=o)
            else:
                torch.addmm(bias[s0], xs, w[s0].t(), out=o)
    return out


# CPU: an untied core reads each weight set once per pass, long after it was last used, and MKL's product with a
# cold [4H, in] matrix that fits in L2 runs ~40% slower than with a cached one (its packing reads the matrix in
# strides the hardware prefetcher does not follow). Reading the set once in order first (`_prefetch`, a fast
# sequential read) brings it into L2. Weight gradients likewise: each output block is zero-filled in order, then
# accumulated into, one L2-sized block of rows at a time (outputs up to _PREFETCH_UP_TO in one block). Measured on
# the 2-core Zen 4 of docs/benchmarks.md ("cold weight sets"), 1 thread: a product with a cold [800, 200] set
# 164 -> 117 us, its gradient 140 -> 94 us; a [2600, 650] gradient from 20 rows 1.36 ms as 256 KB blocks of plain
# products -> 1.14 ms (2 threads: 1.40 -> 0.75 ms).
_PREFETCH_UP_TO = 1024 * 1024
_DW_BLOCK_BYTES = 512 * 1024


def _prefetch(w: Tensor) -> None:
    """Read `w` once, sequentially, so that the product that follows finds it in cache (CPU, L2-sized only)."""
    if w.device.type == "cpu" and w.numel() * w.element_size() <= _PREFETCH_UP_TO:
        w.sum()


def _grad_product(g: Tensor, inp: Tensor, out: Tensor | None = None) -> Tensor:
    """g.T @ inp: g [K, G], inp [K, in] -> contiguous [G, in] (a weight gradient, summed over K rows), written
    into `out` if given."""
    if g.device.type != "cpu":
        return torch.mm(g.t(), inp) if out is None else torch.mm(g.t(), inp, out=out)
    G, n_in, size = g.shape[1], inp.shape[1], g.element_size()
    out = g.new_empty(G, n_in) if out is None else out
    rows = G if G * n_in * size <= _PREFETCH_UP_TO else max(1, _DW_BLOCK_BYTES // (n_in * size))
    g_t = g.t()
    for r0 in range(0, G, rows):
        out[r0 : r0 + rows].zero_().addmm_(g_t[r0 : r0 + rows], inp)
    return out


def _weight_grads(
    d_gates: Tensor, inp: Tensor, segs: list[Segment], num_sets: int, batched: bool, out: Tensor | None = None
) -> list[Tensor]:
    """grad[s] = sum over the steps t using set s of d_gates[t].T @ inp[t]; d_gates [T, B, 4H], inp [T, B, in].

    Returns one [4H, in] gradient per set: `out[s]` if `out` [num_sets, 4H, in] is given (reused memory, see
    `GradBuffers`), else a new tensor per set. A run (steps sharing a set) is one matmul summing over its steps; a
    diagonal (one step per set) is one bmm on GPU, per-step matmuls on CPU. Every gradient is written by its product
    (no zero-fill, no read-modify-write) except for sets used by several segments (cycling past max_len).
    """
    grads: list[Tensor | None] = [None] * num_sets

    def put(s: int, g: Tensor) -> None:
        grads[s] = g if grads[s] is None else grads[s].add_(g)

    def target(s: int) -> Tensor | None:  # write the first contribution straight into the buffer
        return out[s] if out is not None and grads[s] is None else None

    for t0, t1, s0, diag in segs:
        n = t1 - t0
        if diag and batched:
            first = out is not None and all(grads[s0 + j] is None for j in range(n))
            prods = torch.bmm(d_gates[t0:t1].transpose(1, 2), inp[t0:t1], out=out[s0 : s0 + n] if first else None)
            for j, g in enumerate(prods.unbind(0)):
                put(s0 + j, g)
        elif diag:
            for j in range(n):
                put(s0 + j, _grad_product(d_gates[t0 + j], inp[t0 + j], target(s0 + j)))
        else:
            put(s0, _grad_product(d_gates[t0:t1].flatten(0, 1), inp[t0:t1].flatten(0, 1), target(s0)))
    return grads  # every set appears in idx, so none is None


def _input_grad(d_gates: Tensor, w_ih: Sequence[Tensor], segs: list[Segment], batched: bool) -> Tensor:
    """dx[t] = d_gates[t] @ w_ih[idx[t]]; d_gates [T, B, 4H], w_ih: sets [4H, in] -> [T, B, in]."""
    T, B, _ = d_gates.shape
    dx = d_gates.new_empty(T, B, w_ih[0].shape[1])
    for t0, t1, s0, diag in segs:
        n = t1 - t0
        if diag and batched:
            torch.bmm(d_gates[t0:t1], torch.stack(w_ih[s0 : s0 + n]), out=dx[t0:t1])
        elif diag:
            for j in range(n):
                _prefetch(w_ih[s0 + j])
                torch.mm(d_gates[t0 + j], w_ih[s0 + j], out=dx[t0 + j])
        else:
            torch.mm(d_gates[t0:t1].flatten(0, 1), w_ih[s0], out=dx[t0:t1].view(n * B, -1))
    return dx


class StepWeightLSTMLayer(torch.autograd.Function):
    """One LSTM layer over a sequence; step t uses weight set idx[t] (gate order i, f, g, o as in nn.LSTM).

    apply(x, h0, c0, idx, num_sets, has_bias, buffers, *w_ih, *w_hh, *b_ih, *b_hh): x [T, B, in], h0/c0 [B, H];
    idx: tuple of T ints in [0, num_sets); buffers: None or (GradBuffers, key) to write the weight gradients into
    reused memory (CPU); then num_sets tensors [4H, in], num_sets [4H, H] and, if has_bias, 2 * num_sets [4H].
    Every set must be used by some step. Returns out [T, B, H] (h of every step), h_n [B, H], c_n [B, H].
    """

    @staticmethod
    def forward(ctx, x, h0, c0, idx, num_sets, has_bias, buffers, *weights):  # noqa: D102
        U = num_sets
        w_ih, w_hh = weights[:U], weights[U : 2 * U]
        bias = torch.stack(weights[2 * U : 3 * U]) + torch.stack(weights[3 * U :]) if has_bias else None
        T, H = x.shape[0], w_hh[0].shape[1]
        segs = step_segments(idx)
        batched = x.is_cuda
        w_hh_t = [w.t() for w in w_hh]
        fused = USE_FUSED_CUDA_CELL and x.is_cuda
        native = _native_ops(x)
        h, c = h0, c0
        if native is not None:
            flat = [v for seg in segs for v in seg]
            gates, out, c_all, tanh_c = native.step_weight_lstm_forward(
                x, h0, c0, w_ih, w_hh, bias, idx, flat, _PREFETCH_UP_TO
            )
        elif fused:
            gates = _project(x, w_ih, bias, segs, batched)  # [T, B, 4H] pre-activations of the input part
            hs, cs, ws = [], [], []
            for t, s in enumerate(idx):
                h, c, w = torch.ops.aten._thnn_fused_lstm_cell(gates[t], torch.mm(h, w_hh_t[s]), c)
                hs.append(h)
                cs.append(c)
                ws.append(w)
            out, c_all, gates = torch.stack(hs), torch.stack(cs), torch.stack(ws)
            tanh_c = None
        else:
            gates = _project(x, w_ih, bias, segs, batched)
            out = x.new_empty(T, x.shape[1], H)
            c_all = torch.empty_like(out)
            tanh_c = torch.empty_like(out)
            for t, s in enumerate(idx):
                g = gates[t]
                if t == 0 or s != idx[t - 1]:
                    _prefetch(w_hh[s])
                h, c = cell_update(g.addmm_(h, w_hh_t[s]), c, c_all[t], tanh_c[t], out[t])
        ctx.segs, ctx.idx, ctx.fused, ctx.batched, ctx.num_sets, ctx.has_bias = segs, idx, fused, batched, U, has_bias
        ctx.native = native
        ctx.buffers = buffers if buffers is not None and not x.is_cuda else None
        # gates (activated), c_all and tanh_c are intermediates: saving them here (not on ctx) keeps
        # saved-tensor hooks (offloading, memory accounting) working.
        ctx.save_for_backward(x, h0, c0, out, gates, c_all, tanh_c, *w_ih, *w_hh)
        return out, out[-1].clone(), c_all[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hn, grad_cn):  # noqa: D102
        x, h0, c0, out, gates, c_all, tanh_c, *ws = ctx.saved_tensors
        U, segs, idx, batched = ctx.num_sets, ctx.segs, ctx.idx, ctx.batched
        w_ih, w_hh = ws[:U], ws[U:]
        need = ctx.needs_input_grad

        def grad_buffer(name: str, w: Tensor) -> Tensor | None:
            if ctx.buffers is None:
                return None
            pool, key = ctx.buffers
            return pool.take((key, name), (U, *w.shape), w)

        if ctx.native is not None:
            need_ih, need_hh = any(need[7 : 7 + U]), any(need[7 + U : 7 + 2 * U])
            dx, dh, dc, dw_ih, dw_hh, db = ctx.native.step_weight_lstm_backward(
                grad_out, grad_hn, grad_cn, x, h0, c0, out, gates, c_all, tanh_c, w_ih, w_hh, idx,
                [v for seg in segs for v in seg], U, need[0], need[1], need_ih, need_hh, ctx.has_bias,
                grad_buffer("ih", w_ih[0]) if need_ih else None, grad_buffer("hh", w_hh[0]) if need_hh else None,
                _PREFETCH_UP_TO, _DW_BLOCK_BYTES,
            )  # fmt: skip
            none = [None] * U
            db_ih, db_hh = (db.unbind(0), db.clone().unbind(0)) if ctx.has_bias else ([], [])  # equal, not shared
            return (
                dx if need[0] else None, dh if need[1] else None, dc, None, None, None, None,
                *(dw_ih.unbind(0) if need_ih else none), *(dw_hh.unbind(0) if need_hh else none), *db_ih, *db_hh,
            )  # fmt: skip
        T, B, H = out.shape
        c_prev = torch.cat([c0.unsqueeze(0), c_all[:-1]])
        dh, dc = grad_hn, grad_cn  # dh: gradient reaching h_t from step t+1 (and h_n); dc: reaching c_t likewise
        if ctx.fused:
            dgs = [None] * T
            for t in range(T - 1, -1, -1):
                dg, dc, _ = torch.ops.aten._thnn_fused_lstm_cell_backward_impl(
                    grad_out[t] + dh, dc, c_prev[t], c_all[t], gates[t], False
                )
                dh = torch.mm(dg, w_hh[idx[t]])
                dgs[t] = dg
            d_gates = torch.stack(dgs)
        else:
            # Everything that does not depend on the reverse recurrence is computed for all steps at once, so that
            # the sequential loop is 6 small ops per step. With y = tanh(c_t):
            #   dc_t = dc_{t+1} f_{t+1} + dh_t o (1 - y^2)
            #   d[i, f, g] = dc_t * [g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2)],  d[o] = dh_t * y o (1 - o)
            i, f, g, o = gates.chunk(4, 2)
            to_dc = o * (1 - tanh_c * tanh_c)
            factors = torch.empty_like(gates)
            fi, ff, fg, fo = factors.chunk(4, 2)
            torch.mul(g, i * (1 - i), out=fi)
            torch.mul(c_prev, f * (1 - f), out=ff)
            torch.mul(i, 1 - g * g, out=fg)
            torch.mul(tanh_c, o * (1 - o), out=fo)
            factors4 = factors.view(T, B, 4, H)
            d_gates = torch.empty_like(gates)
            d_gates4 = d_gates.view(T, B, 4, H)
            for t in range(T - 1, -1, -1):
                dc = cell_backward(grad_out[t] + dh, dc, to_dc[t], factors4[t], f[t], d_gates4[t])
                if t == T - 1 or idx[t] != idx[t + 1]:
                    _prefetch(w_hh[idx[t]])
                dh = torch.mm(d_gates[t], w_hh[idx[t]])

        dx = _input_grad(d_gates, w_ih, segs, batched) if need[0] else None
        none = [None] * U

        if any(need[7 : 7 + U]):
            dw_ih = _weight_grads(d_gates, x, segs, U, batched, grad_buffer("ih", w_ih[0]))
        else:
            dw_ih = none
        if any(need[7 + U : 7 + 2 * U]):
            h_prev = torch.cat([h0.unsqueeze(0), out[:-1]])
            dw_hh = _weight_grads(d_gates, h_prev, segs, U, batched, grad_buffer("hh", w_hh[0]))
        else:
            dw_hh = none
        db_ih = db_hh = []
        if ctx.has_bias:
            db_steps = d_gates.sum(1)  # [T, 4H]
            db_ih = [None] * U
            for t0, t1, s0, diag in segs:
                for j, db in enumerate(db_steps[t0:t1].unbind(0) if diag else [db_steps[t0:t1].sum(0)]):
                    db_ih[s0 + j] = db if db_ih[s0 + j] is None else db_ih[s0 + j] + db
            db_hh = [db.clone() for db in db_ih]  # b_ih and b_hh get equal but distinct gradient tensors
        return dx, dh, dc, None, None, None, None, *dw_ih, *dw_hh, *db_ih, *db_hh


def _native_ops(x: Tensor) -> object | None:
    """The compiled CPU kernels (torch.ops.lrnn) if they apply to `x` (CPU, float32/float64) and built, else None."""
    if USE_NATIVE_CPU and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return _native.ops()
    return None


# Run steps that share a weight set with torch's own LSTM kernel (cuDNN; oneDNN on CPU where lrnn's compiled kernels
# are not available), one call per run of steps (tests flip this to compare with StepWeightLSTMLayer).
FUSE_SHARED_RUNS = True
# CPU without lrnn's kernels: oneDNN reorders a layer's weights on every call (7 calls of 5 steps cost 1.6x one call of
# 35 at H 650, with the same weights or distinct ones), which outweighs its faster kernels once a layer's weight set is
# large: above this many bytes (w_ih + w_hh) the runs go through StepWeightLSTMLayer's Python loops instead.
# Measured as share_every=5 time / nn.LSTM time, 2 layers, 1 thread (docs/benchmarks.md, "oneDNN per block"): H 400
# (4.9 MB) oneDNN 1.36x vs Python loops 1.47x; H 650 (12.9 MB) 1.84x vs 1.45x. With lrnn's kernels
# StepWeightLSTMLayer is always used on CPU.
_FUSE_RUNS_CPU_UP_TO = 8 * 1024 * 1024


def _runs(idx: Sequence[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of consecutive steps using the same set: [(t0, t1, s)], e.g. [0, 0, 1, 1, 1] -> [(0, 2, 0),
    (2, 5, 1)]."""
    runs: list[tuple[int, int, int]] = []
    for t, s in enumerate(idx):
        if runs and runs[-1][2] == s:
            runs[-1] = (runs[-1][0], t + 1, s)
        else:
            runs.append((t, t + 1, int(s)))
    return runs


def _lstm_runs(
    x: Tensor, h: Tensor, c: Tensor, runs: list[tuple[int, int, int]], weights: LayerWeights, training: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer as one torch LSTM call per run of steps sharing a set, the state carried from run to run;
    gradients through autograd. x [T, B, in], h/c [B, H] -> out [T, B, H], h_n [B, H], c_n [B, H]."""
    w_ih, w_hh, b_ih, b_hh = weights
    has_bias = b_ih is not None and b_hh is not None
    hx, outs = (h.unsqueeze(0), c.unsqueeze(0)), []
    for t0, t1, s in runs:
        params = [w_ih[s], w_hh[s], b_ih[s], b_hh[s]] if has_bias else [w_ih[s], w_hh[s]]
        out, *hx = torch._VF.lstm(x[t0:t1], hx, params, has_bias, 1, 0.0, training, False, False)
        outs.append(out)
    return (torch.cat(outs) if len(outs) > 1 else outs[0]), hx[0][0], hx[1][0]


def step_weight_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights: LayerWeights,
    idx: Sequence[int],
    *,
    training: bool,
    buffers: tuple[GradBuffers, object] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer, step t with weight set idx[t]: x [T, B, in], h0/c0 [B, H] -> out [T, B, H], h_T, c_T.

    weights: (w_ih: S x [4H, in], w_hh: S x [4H, H], b_ih: S x [4H] or None, b_hh likewise); only the sets some step
    uses take part (the others get no gradient). buffers: (pool, key) to write the weight gradients into reused
    memory on CPU (see `GradBuffers`), or None for fresh ones. Runs of steps sharing a set go to torch's LSTM
    (cuDNN) on GPU, and on CPU without lrnn's kernels for sets up to _FUSE_RUNS_CPU_UP_TO; everything else is
    `StepWeightLSTMLayer`.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    runs = _runs(idx) if FUSE_SHARED_RUNS and 2 * len(_runs(idx)) <= len(idx) else None
    set_bytes = (w_ih[0].numel() + w_hh[0].numel()) * w_hh[0].element_size()
    # torch's fused LSTM per run: on GPU (cuDNN); on CPU only without lrnn's kernels (which beat oneDNN per block
    # at every size measured), and then only for weight sets up to _FUSE_RUNS_CPU_UP_TO
    cpu = x.device.type == "cpu"
    if runs is not None and (not cpu or (_native_ops(x) is None and set_bytes <= _FUSE_RUNS_CPU_UP_TO)):
        return _lstm_runs(x, h0, c0, runs, weights, training)
    used = list(dict.fromkeys(int(s) for s in idx))  # the sets in order of first use
    local = {s: u for u, s in enumerate(used)}
    local_idx = tuple(local[int(s)] for s in idx)
    flat = [w_ih[s] for s in used] + [w_hh[s] for s in used]
    if b_ih is not None and b_hh is not None:
        flat += [b_ih[s] for s in used] + [b_hh[s] for s in used]
    return StepWeightLSTMLayer.apply(x, h0, c0, local_idx, len(used), b_ih is not None, buffers, *flat)
