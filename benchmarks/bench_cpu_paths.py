"""The CPU measurements behind the choices in lrnn/kernels/step_weight.py, each variant against the one it replaced.

    python benchmarks/bench_cpu_paths.py --threads 1

1. Cold weight sets (PTB-small, [800, 200] per set, 80 distinct sets so that they do not stay in cache): a product
   with a cold set, plain vs after `_prefetch`; a weight gradient written with `mm(out=)` vs zero-filled and
   accumulated into (what `_grad_product` does).
2. Weight gradients too large for one block ([2600, 650] from 20 or 100 rows, PTB-medium): 256 KB row blocks of plain
   products (before) vs 512 KB zero-filled blocks (now).
3. oneDNN's per-call cost: one `torch._VF.lstm` call over 35 steps vs 7 calls of 5 steps (same or distinct weights),
   forward + backward, one layer, H 650, B 20.
4. `UntiedLSTM(share_every=5)` with oneDNN per block vs StepWeightLSTMLayer (its Python loops, and lrnn's compiled
   kernels), as a ratio to `nn.LSTM`'s time, 2 layers, B 20: H 200 (T 20) and H 300 / 400 / 650 (T 35).
5. The decoder's summed cross-entropy as training runs it (`LinearNLL`, PTB-small: [400, 200] -> 10k classes),
   forward + backward: its softmax and gradient as torch ops vs lrnn's compiled kernel.
6. The kernels' own small products (csrc/small_gemm.h) vs torch's products as the kernels call them otherwise
   (cold sets read in order first, gradients zero-filled and accumulated into), cold [800, 200] sets as in 1.:
   a forward product, a recurrent product added into the gates, a weight gradient; a state/input gradient
   d_gates @ w with cold [2600, 650] sets (H 650; the nn kernel serves sets over 2 MB); then `UntiedLSTM` forward +
   backward (B 20, T 20, H 200 with 2 and 1 layers; T 35, H 650 with 1 layer) with and without them.
7. A whole untied PTB-small training step (`RNNLM.nll` on random tokens, state carried, norm clipping at 5, SGD)
   with and without the small products: 5 steps each way in turn, the first of each 5 not timed.
8. `UntiedLSTM(share_every=5)`, H 650, T 35, B 20, 2 layers, forward + backward: each run's input projection and
   input gradient as two single-threaded column halves on the threads (now, with several threads) vs one
   multi-threaded product per run. On one thread both are the same code; the row is skipped.
9. The AVX-512 versions of the nt and tn kernels (where the CPU has AVX-512) vs the AVX2 ones and torch's products,
   one product per cold weight set: nt from 20 rows (a step) and 100 rows (a share_every=5 block) at H 200 and 650,
   tn from 20 and 100 rows; the decoder's logits and weight gradient ([400, 200] x 10k, `LinearNLL`); then with and
   without them: `UntiedLSTM(share_every=5)` H 650 2 layers forward + backward, and tied and untied PTB-small
   training steps (as in 7.).

Times are medians of `--repeats` calls, the variants of one row interleaved call by call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lrnn.kernels.step_weight as M  # noqa: E402
from lrnn.cores.untied import UntiedLSTM  # noqa: E402
from lrnn.rnnlm import LinearNLL  # noqa: E402


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def med(ts: list[float], per: int = 1) -> float:
    return statistics.median(ts) / per


def report(title: str, times: dict[str, list[float]], unit: str, per: int = 1) -> None:
    """Print the median time of every variant, in `unit` (us or ms) per `per` operations."""
    scale = {"us": 1e6, "ms": 1e3}[unit]
    print(f"\n# {title}")
    for k, ts in times.items():
        print(f"{k:<40} {scale * med(ts, per):8.1f} {unit}")


def cold_sets(repeats: int) -> None:
    B, H, S = 20, 200, 40
    W = [torch.randn(4 * H, H) * 0.05 for _ in range(2 * S)][::2]  # every other set: 51 MB apart from the used ones
    G = [torch.empty(4 * H, H) for _ in range(2 * S)][::2]
    x, dg, out = torch.randn(B, H), torch.randn(B, 4 * H), torch.empty(B, 4 * H)

    def prefetched() -> None:
        for w in W:
            M._prefetch(w)
            torch.mm(x, w.t(), out=out)

    t = interleaved(
        {
            "product, cold set": lambda: [torch.mm(x, w.t(), out=out) for w in W],
            "product after _prefetch": prefetched,
            "weight gradient, mm(out=)": lambda: [torch.mm(dg.t(), x, out=g) for g in G],
            "weight gradient, zero-filled + addmm_": lambda: [g.zero_().addmm_(dg.t(), x) for g in G],
        },
        repeats,
    )
    report(f"1. cold [800, 200] weight sets, B 20 (us per set, median of {repeats} passes over {S} sets)", t, "us", S)


def big_gradients(repeats: int) -> None:
    print(f"\n# 2. [2600, 650] weight gradients (ms per gradient, median of {repeats} passes over 14)")
    for K in (20, 100):
        _big_gradient_row(K, repeats)


def _big_gradient_row(K: int, repeats: int, H: int = 650, S: int = 14) -> None:
    G = 4 * H
    bufs = [torch.empty(G, H) for _ in range(S)]
    g, inp = torch.randn(K, G), torch.randn(K, H)

    def before(out: torch.Tensor) -> None:
        rows = 256 * 1024 // (H * 4)
        for r0 in range(0, G, rows):
            torch.mm(g.t()[r0 : r0 + rows], inp, out=out[r0 : r0 + rows])

    t = interleaved(
        {
            "256 KB blocks, mm(out=)": lambda: [before(b) for b in bufs],
            "512 KB blocks, zero-filled (_grad_product)": lambda: [M._grad_product(g, inp, b) for b in bufs],
        },
        repeats,
    )
    for k, ts in t.items():
        print(f"from {K:>3} rows: {k:<44} {1e3 * med(ts, S):7.2f} ms")


def onednn_calls(repeats: int) -> None:
    H, T, B = 650, 35, 20
    x = torch.randn(T, B, H, requires_grad=True)
    gout = torch.randn(T, B, H)
    sets = [[torch.randn(4 * H, H) * 0.04, torch.randn(4 * H, H) * 0.04, torch.zeros(4 * H), torch.zeros(4 * H)]]
    sets += [[p.clone() for p in sets[0]] for _ in range(6)]
    sets = [[p.requires_grad_() for p in s] for s in sets]

    def run(blocks: int, distinct: bool) -> None:
        hx, outs, n = (torch.zeros(1, B, H), torch.zeros(1, B, H)), [], T // blocks
        for b in range(blocks):
            params = sets[b if distinct else 0]
            o, *hx = torch._VF.lstm(x[b * n : (b + 1) * n], hx, params, True, 1, 0.0, True, False, False)
            outs.append(o)
        for s in sets:
            for p in s:
                p.grad = None
        torch.cat(outs).backward(gout)

    t = interleaved(
        {
            "1 call of 35 steps": lambda: run(1, False),
            "7 calls of 5 steps, same weights": lambda: run(7, False),
            "7 calls of 5 steps, distinct weights": lambda: run(7, True),
        },
        repeats,
    )
    report(f"3. oneDNN LSTM calls, 1 layer, H 650, B 20, forward + backward (median of {repeats})", t, "ms")


def share5(repeats: int) -> None:
    print(f"\n# 4. UntiedLSTM(share_every=5) / nn.LSTM time, 2 layers, B 20 (median of {repeats} call ratios)")
    _share5_row(200, repeats, T=20)
    for H in (300, 400, 650):
        _share5_row(H, repeats)


def _share5_row(H: int, repeats: int, B: int = 20, T: int = 35, L: int = 2) -> None:
    torch.manual_seed(0)
    lstm, core = torch.nn.LSTM(H, H, L), UntiedLSTM(H, H, L, max_len=T, share_every=5)
    x, g = torch.randn(T, B, H, requires_grad=True), torch.randn(T, B, H)
    default = M._FUSE_RUNS_CPU_UP_TO

    def fwd_bwd(m: torch.nn.Module, limit: int, native: bool = True) -> None:
        M._FUSE_RUNS_CPU_UP_TO, M.USE_NATIVE_CPU = limit, native
        for p in m.parameters():
            p.grad = None
        m(x)[0].backward(g)

    t = interleaved(
        {
            "nn.LSTM": lambda: fwd_bwd(lstm, default),
            "oneDNN": lambda: fwd_bwd(core, 1 << 60, native=False),
            "Python loops": lambda: fwd_bwd(core, 0, native=False),
            "kernels": lambda: fwd_bwd(core, default),
        },
        repeats,
    )
    M._FUSE_RUNS_CPU_UP_TO, M.USE_NATIVE_CPU = default, True
    set_bytes = 4 * H * 2 * H * 4
    ratio = {k: statistics.median(a / b for a, b in zip(t[k], t["nn.LSTM"], strict=True)) for k in t}
    without = "oneDNN" if set_bytes <= default else "Python loops"
    print(
        f"H {H} ({set_bytes / 2**20:4.1f} MB per layer set): nn.LSTM {1e3 * med(t['nn.LSTM']):6.1f} ms; oneDNN per "
        f"block {ratio['oneDNN']:.2f}x, StepWeightLSTMLayer: Python loops {ratio['Python loops']:.2f}x, compiled "
        f"kernels {ratio['kernels']:.2f}x (lrnn uses the kernels; without them: {without})"
    )


def decoder_loss(repeats: int, N: int = 400, H: int = 200, V: int = 10_000) -> None:
    torch.manual_seed(0)
    h, w = torch.randn(N, H, requires_grad=True), (0.1 * torch.randn(V, H)).requires_grad_()
    b, y, buffers = torch.zeros(V, requires_grad=True), torch.randint(0, V, (N,)), M.GradBuffers()

    def fwd_bwd(native: bool) -> None:
        M.USE_NATIVE_CPU = native
        h.grad = w.grad = b.grad = None
        LinearNLL.apply(h, w, b, y, -100, buffers).backward()

    names = ("torch ops (5 + 2 passes over [N, V])", "compiled kernel (1 + 1 per row)")
    t = interleaved({names[0]: lambda: fwd_bwd(False), names[1]: lambda: fwd_bwd(True)}, repeats)
    M.USE_NATIVE_CPU = True
    report(f"5. LinearNLL, [{N}, {H}] -> {V} classes, forward + backward (ms, median of {repeats})", t, "ms")
    speedup = statistics.median(a / b for a, b in zip(t[names[0]], t[names[1]], strict=True))
    print(f"=> compiled kernel {speedup:.3f}x the torch ops (median of per-call ratios; the 3 products included)")


def small_products(repeats: int) -> None:
    from lrnn.kernels import _native

    ops = _native.ops()
    if ops is None or not ops.small_products_compiled():
        print("\n# 6. small products: not compiled on this machine (no kernels, or no AVX2/FMA)")
        return
    B, H, S = 20, 200, 40
    W = [torch.randn(4 * H, H) * 0.05 for _ in range(2 * S)][::2]
    G = [torch.empty(4 * H, H) for _ in range(2 * S)][::2]
    x, dg, out = torch.randn(B, H), torch.randn(B, 4 * H), torch.empty(B, 4 * H)
    up_to, block = M._PREFETCH_UP_TO, M._DW_BLOCK_BYTES

    def run(small: bool, fn: Callable[[], object]) -> Callable[[], object]:
        def go() -> object:
            ops.use_small_products(small)
            try:
                return fn()
            finally:
                ops.use_small_products(True)

        return go

    kinds = {
        "x @ w^T, cold set": lambda: [ops.product(x, w, out, "nt", False, up_to, block) for w in W],
        "gates += h @ w^T, cold set": lambda: [ops.product(x, w, out, "nt", True, up_to, block) for w in W],
        "weight gradient dg^T @ x": lambda: [ops.product(dg, x, g, "tn", False, up_to, block) for g in G],
    }

    def per_set(name: str, fn: Callable[[], object], sets: int) -> None:
        t = interleaved({"torch": run(False, fn), "small": run(True, fn)}, repeats)
        r = statistics.median(a / b for a, b in zip(t["torch"], t["small"], strict=True))
        us = {k: 1e6 * med(v, sets) for k, v in t.items()}
        print(f"{name:<28} torch {us['torch']:6.1f} us, small {us['small']:6.1f} us: {r:.2f}x")

    print(f"\n# 6. small products vs torch's, cold [800, 200] sets, B 20 (us per set, median of {repeats} passes)")
    for name, fn in kinds.items():
        per_set(name, fn, S)
    S6 = 20  # H 650: [2600, 650] sets of 6.8 MB, 135 MB in all
    W6 = [torch.randn(4 * 650, 650) * 0.05 for _ in range(S6)]
    dg6, dx6 = torch.randn(B, 4 * 650), torch.empty(B, 650)
    state_grads = lambda: [ops.product(dg6, w, dx6, "nn", False, up_to, block) for w in W6]  # noqa: E731
    per_set("dg @ w, cold [2600, 650] set", state_grads, S6)
    W6.clear()
    for hidden, T, layers in ((H, 20, 2), (H, 20, 1), (650, 35, 1)):
        torch.manual_seed(0)
        core = UntiedLSTM(hidden, hidden, layers, max_len=T)
        xs = torch.randn(T, B, hidden, requires_grad=True)

        def fwd_bwd(core: UntiedLSTM = core, xs: torch.Tensor = xs) -> None:
            core.zero_grad(set_to_none=True)
            core(xs)[0].sum().backward()

        t = interleaved({"torch": run(False, fwd_bwd), "small": run(True, fwd_bwd)}, 3 * repeats)
        r = statistics.median(a / b for a, b in zip(t["torch"], t["small"], strict=True))
        print(
            f"UntiedLSTM H {hidden}, {layers} layer(s), fwd+bwd  torch {1e3 * med(t['torch']):6.2f} ms, small "
            f"{1e3 * med(t['small']):6.2f} ms: {r:.2f}x (median of per-call ratios)"
        )


def training_step(rounds: int) -> None:
    from lrnn.kernels import _native
    from lrnn.rnnlm import RNNLM

    ops = _native.ops()
    if ops is None or not ops.small_products_compiled():
        return
    torch.manual_seed(0)
    V, B, T, H = 10_000, 20, 20, 200
    model = RNNLM(V, UntiedLSTM(H, H, 2, max_len=T), init_range=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    data = torch.randint(0, V, (B, 40 * T + 1))
    state: tuple[torch.Tensor, torch.Tensor] | None = None

    def step(i: int) -> None:
        nonlocal state
        t0 = (i % 40) * T
        nll, state = model.nll(data[:, t0 : t0 + T], data[:, t0 + 1 : t0 + T + 1], state)
        state = (state[0].detach(), state[1].detach())
        opt.zero_grad()
        (nll / B).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    times: dict[bool, list[float]] = {True: [], False: []}
    i = 0
    for r in range(rounds):
        for small in (True, False) if r % 2 else (False, True):
            ops.use_small_products(small)
            step(i)
            i += 1
            for _ in range(5):
                t0 = time.perf_counter()
                step(i)
                i += 1
                times[small].append(time.perf_counter() - t0)
    ops.use_small_products(True)
    a, b = med(times[False]), med(times[True])
    print(f"\n# 7. untied PTB-small training step (ms, median of {5 * rounds} steps each)")
    print(f"torch's products {1e3 * a:6.1f} ms, small products {1e3 * b:6.1f} ms: {a / b:.3f}x")


def run_products(repeats: int, H: int = 650, T: int = 35, B: int = 20) -> None:
    from lrnn.kernels import _native

    ops = _native.ops()
    if ops is None or torch.get_num_threads() < 2:
        return
    torch.manual_seed(0)
    core = UntiedLSTM(H, H, 2, max_len=T, share_every=5)
    x, g = torch.randn(T, B, H, requires_grad=True), torch.randn(T, B, H)

    def fwd_bwd(split: bool) -> Callable[[], object]:
        def go() -> None:
            was = ops.split_run_products(split)
            try:
                for p in core.parameters():
                    p.grad = None
                core(x)[0].backward(g)
            finally:
                ops.split_run_products(was)

        return go

    before, now = "one product per run", "two halves on the threads"
    times = interleaved({before: fwd_bwd(False), now: fwd_bwd(True)}, repeats)
    ratios = sorted(a / b for a, b in zip(times[before], times[now], strict=True))
    report(f"8. share5 run products, H {H}, 2 layers, fwd+bwd (ms, median of {repeats} interleaved calls)", times, "ms")
    print(f"speed-up {statistics.median(ratios):.3f}x (median of per-call ratios; {ratios[0]:.3f}..{ratios[-1]:.3f})")


def _modes(ops: object, fn: Callable[[], object], with_torch: bool) -> dict[str, Callable[[], object]]:
    """fn with the AVX-512 kernels, with the AVX2 ones, and (with_torch) with torch's products."""

    def mode(small: bool, wide: bool) -> Callable[[], object]:
        def go() -> object:
            was_small, was_wide = ops.use_small_products(small), ops.use_avx512(wide)
            try:
                return fn()
            finally:
                ops.use_small_products(was_small)
                ops.use_avx512(was_wide)

        return go

    return {
        "avx512": mode(True, True),
        "avx2": mode(True, False),
        **({"torch": mode(False, False)} if with_torch else {}),
    }


def _avx512_row(
    ops: object, name: str, fn: Callable[[], object], n: int, repeats: int, with_torch: bool = True
) -> None:
    """Median time per call / n of each mode, and each one's median per-call ratio to the AVX-512 kernels' time."""
    t = interleaved(_modes(ops, fn, with_torch), repeats)
    ratio = {k: statistics.median(a / b for a, b in zip(t[k], t["avx512"], strict=True)) for k in t}
    times = ", ".join(f"{k} {1e3 * med(v, n):7.3f}" for k, v in t.items())
    print(f"{name:<38} {times} ms: " + ", ".join(f"{k}/avx512 {ratio[k]:.2f}x" for k in t if k != "avx512"))


def _product_rows(ops: object, H: int, rows: int, repeats: int) -> None:
    """nt and tn from `rows` batch rows against cold [4H, H] sets (and fresh [4H, H] gradients)."""
    up_to, block = M._PREFETCH_UP_TO, M._DW_BLOCK_BYTES
    S = 40 if H == 200 else 12
    W, G = [torch.randn(4 * H, H) * 0.05 for _ in range(S)], [torch.empty(4 * H, H) for _ in range(S)]
    a, c, dg = torch.randn(rows, H), torch.empty(rows, 4 * H), torch.randn(rows, 4 * H)
    nt = lambda: [ops.product(a, w, c, "nt", False, up_to, block) for w in W]  # noqa: E731
    tn = lambda: [ops.product(dg, a, g, "tn", False, up_to, block) for g in G]  # noqa: E731
    _avx512_row(ops, f"nt {rows} x {H} @ [{4 * H}, {H}]^T, cold set", nt, S, repeats)
    _avx512_row(ops, f"tn [{rows}, {4 * H}]^T @ [{rows}, {H}]", tn, S, repeats)


def _training_steps(kind: str) -> Callable[[], None]:
    """Five PTB-small training steps (as in 7.) of a tied or untied model, state carried."""
    from lrnn import TiedLSTM
    from lrnn.rnnlm import RNNLM

    torch.manual_seed(0)
    core = TiedLSTM(200, 200, 2) if kind == "tied" else UntiedLSTM(200, 200, 2, max_len=20)
    model = RNNLM(10_000, core, init_range=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    data = torch.randint(0, 10_000, (20, 40 * 20 + 1))
    carried: dict[str, object] = {"state": None, "i": 0}

    def five() -> None:
        for _ in range(5):
            t0 = (carried["i"] % 40) * 20
            carried["i"] += 1
            nll, state = model.nll(data[:, t0 : t0 + 20], data[:, t0 + 1 : t0 + 21], carried["state"])
            carried["state"] = (state[0].detach(), state[1].detach())
            opt.zero_grad()
            (nll / 20).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()

    return five


def avx512_kernels(repeats: int, rounds: int) -> None:
    from lrnn.kernels import _native

    ops = _native.ops()
    if ops is None or not ops.small_products_compiled() or not ops.avx512_available():
        print("\n# 9. AVX-512 kernels: not on this machine (no AVX-512 CPU, or not a GCC build)")
        return
    print(f"\n# 9. AVX-512 kernels vs AVX2 kernels and torch's products (ms per product, median of {repeats})")
    for H in (200, 650):
        for rows in (20, 100):
            _product_rows(ops, H, rows, repeats)
    torch.manual_seed(0)
    h, w = torch.randn(400, 200, requires_grad=True), (0.1 * torch.randn(10_000, 200)).requires_grad_()
    b, y, buffers = torch.zeros(10_000, requires_grad=True), torch.randint(0, 10_000, (400,)), M.GradBuffers()

    def decoder() -> None:
        h.grad = w.grad = b.grad = None
        LinearNLL.apply(h, w, b, y, -100, buffers).backward()

    _avx512_row(ops, "LinearNLL [400, 200] -> 10k, fwd+bwd", decoder, 1, repeats, with_torch=False)
    torch.manual_seed(0)
    core = UntiedLSTM(650, 650, 2, max_len=35, share_every=5)
    x, g = torch.randn(35, 20, 650, requires_grad=True), torch.randn(35, 20, 650)

    def share5_pass() -> None:
        for p in core.parameters():
            p.grad = None
        core(x)[0].backward(g)

    _avx512_row(ops, "share5 H 650, 2 layers, fwd+bwd", share5_pass, 1, repeats, with_torch=False)
    for kind in ("tied", "untied"):
        _avx512_row(ops, f"{kind} PTB-small training step", _training_steps(kind), 5, rounds, with_torch=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} | cpu, {torch.get_num_threads()} thread(s) | float32")
    cold_sets(args.repeats)
    big_gradients(args.repeats)
    onednn_calls(max(3, args.repeats // 2))
    share5(max(3, args.repeats // 2))
    decoder_loss(3 * args.repeats)
    small_products(args.repeats)
    training_step(args.repeats)
    run_products(3 * args.repeats)
    avx512_kernels(args.repeats, 2 * args.repeats)


if __name__ == "__main__":
    main()
