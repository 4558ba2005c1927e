"""Shared LSTM math for cores whose weights change with the time step.

The core of this module is `StepWeightLSTMLayer`, a custom autograd Function that runs one LSTM layer over a whole
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
more than its kernels gain). On CPU the weight gradients go into buffers reused across
backward passes (`GradBuffers`), so that no multi-MB gradient is freshly allocated (and page-faulted) every step, and
each cold L2-sized weight set is read once in order before its product (`_prefetch`).

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

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from lrnn.cores import _native

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
# accumulated into, one L2-sized block of rows at a time (outputs up to _PREFETCH_UP_TO in one block). Measured in
# `benchmarks/bench_cpu_paths.py`, 1 thread: a product with a cold [800, 200] set 164 -> 117 us, its gradient
# 140 -> 94 us; a [2600, 650] gradient from 20 rows 1.36 ms as 256 KB blocks of plain products -> 1.14 ms
# (2 threads: 1.40 -> 0.75 ms).
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


class GradBuffers:
    """Weight-gradient memory that a step-weight core reuses from one backward to the next (CPU).

    An untied core's weight gradients are as large as its weights (51 MB for PTB-small, 0.9 GB at H 650). Freshly
    allocated every backward, glibc hands them back to the OS when they are freed (optimizer.zero_grad sets them to
    None) and the next backward page-faults them in again, which cost more than the products themselves. Instead the
    backward writes the gradients of a layer into one [S, 4H, in] buffer kept here and returns views of it, which
    autograd's AccumulateGrad installs as ``.grad`` without a copy (gradients still flow through autograd, so hooks,
    DDP and accumulation work as usual). A buffer is reused only when nothing but this pool references its memory
    (storage use count): a ``.grad`` still set, a gradient a user or hook kept, or one ``torch.autograd.grad``
    returned is never overwritten; a second buffer is then allocated (and kept, at most `max_per_key` per key) and
    the busy one left alone. When grads are accumulated in place instead of set to None, the second buffer is the
    reused scratch space.
    """

    def __init__(self, max_per_key: int = 2) -> None:
        self.max_per_key = max_per_key
        self._pool: dict[object, list[tuple[Tensor, int]]] = {}

    @staticmethod
    def _use_count(t: Tensor) -> int:
        return torch._C._storage_Use_Count(t.untyped_storage()._cdata)

    def take(self, key: object, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A [shape] tensor of like's dtype and device that nothing else references (contents undefined)."""
        # inference tensors (made under torch.inference_mode) cannot be written outside it: a pool of their own
        entries = self._pool.setdefault((key, like.dtype, like.device, torch.is_inference_mode_enabled()), [])
        # The caller always gets a new view: every tensor that holds the memory (a .grad, a ctx attribute, a user's
        # variable) is then a tensor of its own and shows in the storage's use count.
        for buf, idle in entries:
            if buf.shape == shape and self._use_count(buf) == idle:
                return buf.view(shape)
        buf = like.new_empty(shape)
        if len(entries) < self.max_per_key:
            entries.append((buf, self._use_count(buf)))
        elif entries and all(b.shape != shape for b, _ in entries):  # the shape changed: replace a stale buffer
            entries[0] = (buf, self._use_count(buf))
        return buf.view(shape)

    def clear(self) -> None:
        self._pool.clear()

    def __deepcopy__(self, memo: dict) -> GradBuffers:  # a copied module gets its own, empty pool
        return GradBuffers(self.max_per_key)

    def __getstate__(self) -> dict:
        return {"max_per_key": self.max_per_key, "_pool": {}}


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
                g.addmm_(h, w_hh_t[s])
                g[:, : 2 * H].sigmoid_()
                g[:, 2 * H : 3 * H].tanh_()
                g[:, 3 * H :].sigmoid_()
                i, f, gg, o = g.chunk(4, 1)
                c = torch.mul(f, c, out=c_all[t]).addcmul_(i, gg)
                h = torch.mul(o, torch.tanh(c, out=tanh_c[t]), out=out[t])
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
                dh_t = grad_out[t] + dh
                dc = torch.addcmul(dc, dh_t, to_dc[t])
                torch.mul(factors4[t, :, :3], dc.unsqueeze(1), out=d_gates4[t, :, :3])
                torch.mul(factors4[t, :, 3], dh_t, out=d_gates4[t, :, 3])
                dc = dc * f[t]
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


LayerWeights = tuple[Sequence[Tensor], Sequence[Tensor], Sequence[Tensor] | None, Sequence[Tensor] | None]


# Run steps that share a weight set with torch's own LSTM kernel (cuDNN; oneDNN on CPU where lrnn's compiled kernels
# are not available), one call per run of steps (tests flip this to compare with StepWeightLSTMLayer).
FUSE_SHARED_RUNS = True
# CPU without lrnn's kernels: oneDNN reorders a layer's weights on every call (7 calls of 5 steps cost 1.6x one call of
# 35 at H 650, with the same weights or distinct ones), which outweighs its faster kernels once a layer's weight set is
# large: above this many bytes (w_ih + w_hh) the runs go through StepWeightLSTMLayer's Python loops instead.
# `benchmarks/bench_cpu_paths.py`, share5 time / nn.LSTM time, 2 layers, 1 thread: H 400 (4.9 MB) oneDNN 1.36x vs
# Python loops 1.47x; H 650 (12.9 MB) 1.84x vs 1.45x. With lrnn's kernels StepWeightLSTMLayer is always used on CPU.
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


def step_weight_lstm(
    input: Tensor,
    hx: tuple[Tensor, Tensor] | None,
    layers: Sequence[LayerWeights],
    idx: Sequence[int],
    *,
    batch_first: bool,
    dropout: float,
    training: bool,
    grad_buffers: GradBuffers | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Multi-layer LSTM with per-step weight sets and nn.LSTM's calling convention.

    input: [T, B, in] ([B, T, in] if batch_first, or unbatched [T, in]); hx: (h0, c0) each [L, B, H] ([L, H] if
    unbatched) or None for zeros; layers: per layer the weight sets (w_ih: S x [4H, in], w_hh: S x [4H, H],
    b_ih: S x [4H] or None, b_hh: S x [4H] or None); idx: the weight set of each of the T steps. Only the sets that
    some step uses take part (the others get no gradient). Returns output [T, B, H] (batch_first / unbatched as the
    input) and (h_n, c_n) each [L, B, H]. Dropout is applied to the outputs of every layer but the last, in training.
    grad_buffers: where the weight gradients are written on CPU (reused memory, see `GradBuffers`); None: fresh.
    """
    L = len(layers)
    H = layers[0][1][0].shape[1]
    in_size = layers[0][0][0].shape[1]
    if input.dim() not in (2, 3):
        raise ValueError(f"expected input of 2 (unbatched) or 3 dimensions, got shape {tuple(input.shape)}")
    unbatched = input.dim() == 2
    x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if batch_first else input)
    if x.shape[2] != in_size:
        raise ValueError(f"input.size(-1) must be equal to input_size. Expected {in_size}, got {x.shape[2]}")
    if x.shape[0] != len(idx):
        raise ValueError(f"got {len(idx)} weight-set indices for a sequence of length {x.shape[0]}")
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
    used = list(dict.fromkeys(int(s) for s in idx))  # the sets in order of first use
    local = {s: u for u, s in enumerate(used)}
    local_idx = tuple(local[int(s)] for s in idx)
    runs = _runs(idx) if FUSE_SHARED_RUNS and 2 * len(_runs(idx)) <= len(idx) else None
    h_n, c_n = [], []
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        set_bytes = (w_ih[0].numel() + w_hh[0].numel()) * w_hh[0].element_size()
        # torch's fused LSTM per run: on GPU (cuDNN); on CPU only without lrnn's kernels (which beat oneDNN per block
        # at every size measured), and then only for weight sets up to _FUSE_RUNS_CPU_UP_TO
        cpu = x.device.type == "cpu"
        if runs is not None and (not cpu or (_native_ops(x) is None and set_bytes <= _FUSE_RUNS_CPU_UP_TO)):
            x, h, c = _lstm_runs(x, h0[k], c0[k], runs, (w_ih, w_hh, b_ih, b_hh), training)
            h_n.append(h)
            c_n.append(c)
            if dropout > 0 and training and k < L - 1:
                x = F.dropout(x, dropout, training=True)
            continue
        weights = [w_ih[s] for s in used] + [w_hh[s] for s in used]
        if b_ih is not None and b_hh is not None:
            weights += [b_ih[s] for s in used] + [b_hh[s] for s in used]
        buffers = None if grad_buffers is None else (grad_buffers, k)
        x, h, c = StepWeightLSTMLayer.apply(x, h0[k], c0[k], local_idx, len(used), b_ih is not None, buffers, *weights)
        h_n.append(h)
        c_n.append(c)
        if dropout > 0 and training and k < L - 1:
            x = F.dropout(x, dropout, training=True)
    output = x.squeeze(1) if unbatched else (x.transpose(0, 1) if batch_first else x)
    h_n, c_n = torch.stack(h_n), torch.stack(c_n)
    if unbatched:
        h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
    return output, (h_n, c_n)


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
    per-layer weight sets and step indices for `_run`.
    """

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
        self._grad_buffers = GradBuffers()  # weight-gradient memory reused across backward passes (CPU)

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
            grad_buffers=self._grad_buffers,
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


def check_plain_lstm(lstm: nn.LSTM) -> None:
    """``from_lstm`` takes a unidirectional ``nn.LSTM`` (or subclass) without projections."""
    if not isinstance(lstm, nn.LSTM):
        raise TypeError(f"from_lstm expects an nn.LSTM (or subclass), got {type(lstm).__name__}")
    if lstm.bidirectional:
        raise ValueError("from_lstm does not support bidirectional LSTMs (these cores run forward in time)")
    if lstm.proj_size:
        raise ValueError(f"from_lstm does not support LSTMs with projections (proj_size={lstm.proj_size})")
