"""Forward+backward speed and memory of the lrnn LSTM cores against nn.LSTM and a naive untied LSTM.

    python benchmarks/bench_cores.py --threads 1                 # CPU, small and medium shapes
    python benchmarks/bench_cores.py --device cuda --repeats 50  # GPU

Cores (all run on the same input; the untied ones with one weight set per step, max_len = T):
    nn.LSTM       tied weights, PyTorch's fused implementation (the speed of light)
    naive         untied: a Python loop over a ModuleList of nn.LSTMCell, one cell per step and layer
    UntiedLSTM    lrnn.cores.untied.UntiedLSTM(max_len=T)
    Untied-py     the same UntiedLSTM with its compiled CPU kernels off (the Python loops it falls back to where no
                  C++ compiler is found; LRNN_NATIVE=0)
    share5        UntiedLSTM(max_len=T, share_every=5): one cuDNN call per block of 5 steps on GPU; on CPU the compiled
                  kernels, one input product per block
    Untied+graphs UntiedLSTM(max_len=T, cuda_graphs=True): forward and backward replayed as CUDA graphs (GPU only)
    share5+graphs the same with share_every=5 (GPU only)
    TimeVarying   lrnn.cores.time_varying.TimeVaryingLSTM(num_bases=4)
    GEMMs only    not an LSTM: only the 6 matrix products per step and layer any untied LSTM must do (forward input
                  and recurrent products, input and state gradients, two weight gradients), each with the step's
                  own weights; a floor for an untied core built on the same products.
    GEMMs+pf      the same products done as UntiedLSTM does them on CPU: each weight set read once in order before
                  its product (`_prefetch`), small weight gradients zero-filled before they are accumulated into.

Allocator: the process runs with glibc's default malloc policy, as any Python process does. `--keep-freed-memory`
(explicit, opt-in) instead calls glibc's mallopt in every core's process alike (mmap threshold 32 MB, no trimming; the
same as `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647` in the environment).

Time: median over --repeats of one forward + backward (input requires grad, parameter grads reset to None), after
warm-up, the cores taking turns (round robin); tokens/s = B * T / time. Each core runs in its own Python process
(spawned; the same seeds, so the same input and weights), as it does in a user's process: in one shared process the
naive and time-varying cores' ~1 GB of fresh gradients per pass (page faults, glibc's moving mmap threshold) slowed
the cores next to them. The parent only says whose turn it is; each process times its own passes. Processes still
share the machine: the cores that take fresh memory every pass (naive's gradients, time-varying's mixed weights,
nn.LSTM's oneDNN workspace under glibc's defaults) page-fault, and they ran slower with all the other processes taking
turns than beside one other core (nn.LSTM, small, 1 thread: 32 against 24 ms). So each target ratio ("[target ...]"
lines) is measured again with only its two cores taking turns; the ratio with all cores taking turns is printed beside.

Memory: "saved" is measured: the bytes of the distinct tensors autograd keeps for backward (saved_tensors_hooks;
parameters excluded), on any device; "peak" is torch.cuda.max_memory_allocated during forward+backward minus the memory
before it (GPU only). "w/step" and "w/window" are analytic: weight bytes one step reads (every layer's 4H(in+H) +
biases) and distinct weight bytes a window of T steps reads (tied: 1 set; untied: T sets; time-varying: K bases + T
mixed sets).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import multiprocessing as mp
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lrnn.kernels.step_weight as lstm_math  # noqa: E402
from lrnn.cores.time_varying import TimeVaryingLSTM  # noqa: E402
from lrnn.cores.untied import UntiedLSTM  # noqa: E402
from lrnn.kernels.step_weight import _prefetch  # noqa: E402

SHAPES = {  # name: (batch, seq_len, hidden, layers, input)
    "small": (20, 20, 200, 2, 200),
    "small-1layer": (20, 20, 200, 1, 200),
    "medium": (20, 35, 650, 2, 650),
    "medium-1layer": (20, 35, 650, 1, 650),
}


class NaiveUntiedLSTM(nn.Module):
    """The baseline: one nn.LSTMCell per (layer, step), run in a Python loop. Same convention as the lrnn cores."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, max_len: int) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.cells = nn.ModuleList(
            nn.ModuleList(nn.LSTMCell(input_size if k == 0 else hidden_size, hidden_size) for _ in range(max_len))
            for k in range(num_layers)
        )

    def forward(self, x: torch.Tensor, hx=None, *, offset: int = 0):
        T, B, _ = x.shape
        zeros = x.new_zeros(B, self.hidden_size)
        h_n, c_n = [], []
        for k, cells in enumerate(self.cells):
            h, c = (zeros, zeros) if hx is None else (hx[0][k], hx[1][k])
            outs = []
            for t in range(T):
                h, c = cells[offset + t](x[t], (h, c))
                outs.append(h)
            x = torch.stack(outs)
            h_n.append(h)
            c_n.append(c)
        return x, (torch.stack(h_n), torch.stack(c_n))


class PythonLoops(nn.Module):
    """A core run with lrnn's compiled CPU kernels switched off (its forward decides; the backward follows)."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, x: torch.Tensor, hx=None, *, offset: int = 0):
        lstm_math.USE_NATIVE_CPU = False
        try:
            return self.core(x, hx, offset=offset)
        finally:
            lstm_math.USE_NATIVE_CPU = True


class GemmFloor(nn.Module):
    """Only the matrix products of an untied LSTM's forward and backward (no gates, no autograd graph, gradients
    written into memory allocated once): see the top of the file."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, max_len: int, prefetch: bool = False
    ) -> None:
        super().__init__()
        self.prefetch = prefetch
        self.touch = _prefetch if prefetch else lambda w: None
        H, sizes = hidden_size, [input_size] + [hidden_size] * (num_layers - 1)
        self.w_ih = [torch.empty(max_len, 4 * H, n).uniform_(-0.1, 0.1) for n in sizes]
        self.w_hh = [torch.empty(max_len, 4 * H, H).uniform_(-0.1, 0.1) for _ in sizes]
        self.grads = [torch.zeros_like(w) for w in self.w_ih + self.w_hh]
        self.anchor = nn.Parameter(torch.zeros(1))  # so that the benchmark's backward reaches this module

    def forward(self, x: torch.Tensor, hx=None, *, offset: int = 0):
        return _GemmFloor.apply(x, self.anchor, self), None


class _GemmFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, anchor, floor):  # noqa: D102
        ctx.floor, ctx.inputs, ctx.outs = floor, [], []
        T, B, _ = x.shape
        pf = floor.touch
        for w_ih, w_hh in zip(floor.w_ih, floor.w_hh, strict=True):
            H = w_hh.shape[2]
            h, out = x.new_zeros(B, H), x.new_empty(T, B, H)
            for t in range(T):
                pf(w_ih[t])
                g = torch.mm(x[t], w_ih[t].t())
                pf(w_hh[t])
                g = g.addmm_(h, w_hh[t].t())
                h = out[t] = g[:, :H]
            ctx.inputs.append(x)
            ctx.outs.append(out)
            x = out
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        floor, L = ctx.floor, len(ctx.inputs)
        pf = floor.touch
        for k in reversed(range(L)):
            w_ih, w_hh, inp, out = floor.w_ih[k], floor.w_hh[k], ctx.inputs[k], ctx.outs[k]
            T, B, _ = inp.shape
            d_gates = grad.new_empty(T, B, w_hh.shape[1]).fill_(1e-3)
            dx = grad.new_empty(T, B, w_ih.shape[2])
            for t in range(T - 1, -1, -1):
                pf(w_hh[t])
                torch.mm(d_gates[t], w_hh[t])
                pf(w_ih[t])
                torch.mm(d_gates[t], w_ih[t], out=dx[t])
            for t in range(T):
                for g, a in ((floor.grads[k][t], inp[t]), (floor.grads[L + k][t], out[t])):
                    if floor.prefetch:
                        g.zero_().addmm_(d_gates[t].t(), a)
                    else:
                        torch.mm(d_gates[t].t(), a, out=g)
            grad = dx
        return grad, torch.zeros(1), None


def build(name: str, B: int, T: int, H: int, L: int, D: int) -> nn.Module:
    if name == "nn.LSTM":
        return nn.LSTM(D, H, L)
    if name == "naive":
        return NaiveUntiedLSTM(D, H, L, max_len=T)
    if name == "UntiedLSTM":
        return UntiedLSTM(D, H, L, max_len=T)
    if name == "Untied-py":
        return PythonLoops(UntiedLSTM(D, H, L, max_len=T))
    if name == "share5":
        return UntiedLSTM(D, H, L, max_len=T, share_every=5)
    if name == "Untied+graphs":
        return UntiedLSTM(D, H, L, max_len=T, cuda_graphs=True)
    if name == "share5+graphs":
        return UntiedLSTM(D, H, L, max_len=T, share_every=5, cuda_graphs=True)
    if name == "GEMMs only":
        return GemmFloor(D, H, L, T)
    if name == "GEMMs+pf":
        return GemmFloor(D, H, L, T, prefetch=True)
    if name == "TimeVarying":
        return TimeVaryingLSTM(D, H, L, num_bases=4)
    raise ValueError(name)


def keep_freed_memory() -> bool:
    """glibc: serve allocations up to 32 MB from the heap and never give freed heap memory back to the OS."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd(model: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    for p in model.parameters():
        p.grad = None
    x.grad = None
    out, _ = model(x)
    out.backward(grad)


class CoreProcess:
    """One core in its own Python process (spawned), as it runs in a user's process: no other core's memory, allocator
    state or page faults next to it. The parent sends commands through a pipe; the process holds one shape's model and
    input at a time and times its own fwd+bwd passes."""

    def __init__(self, name: str, device: str, threads: int | None, keep_freed: bool) -> None:
        self.name = name
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_core_process, args=(child, name, device, threads, keep_freed), daemon=True)
        self.proc.start()
        child.close()

    def ask(self, *cmd: object):
        self.conn.send(cmd)
        try:
            kind, value = self.conn.recv()
        except EOFError:
            code = self.proc.exitcode
            raise SystemExit(f"bench_cores: the process of {self.name!r} died (exit code {code})") from None
        if kind == "error":
            raise SystemExit(f"bench_cores: {self.name!r} failed:\n{value}")
        return value

    def close(self) -> None:
        self.conn.send(("exit",))
        self.proc.join(timeout=30)


def _core_process(conn, name: str, device_name: str, threads: int | None, keep_freed: bool) -> None:
    if keep_freed:
        keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = x = grad = None
    while True:
        try:
            cmd, *args = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            if cmd == "exit":
                return
            if cmd == "shape":  # the same seeds as every other core's process: the same input and weights
                model = x = grad = None
                B, T, H, L, D = SHAPES[args[0]]
                torch.manual_seed(0)
                x = torch.randn(T, B, D, device=device, requires_grad=True)
                grad = torch.randn(T, B, H, device=device)
                torch.manual_seed(0)
                model = build(name, B, T, H, L, D).to(device)
                reply = None
            elif cmd == "run":
                sync(device)
                t0 = time.perf_counter()
                fwd_bwd(model, x, grad)
                sync(device)
                reply = time.perf_counter() - t0
            elif cmd == "stats":
                graphs = name.endswith("+graphs")  # activations live in the graph's own memory pool: not measured
                n_params = sum(p.numel() for p in model.parameters())
                saved = None if graphs else saved_bytes(model, x)
                peak = None if graphs else peak_bytes(model, x, grad, device)
                reply = (n_params, saved, peak)
            else:
                raise ValueError(cmd)
        except Exception:  # noqa: BLE001 - reported to the parent, which stops with it
            conn.send(("error", traceback.format_exc()))
            continue
        conn.send(("ok", reply))


def time_round_robin(fns: dict[str, Callable[[], float]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of every call of each fn (each fn times one fwd+bwd and returns it). The fns take turns (one call each
    per round), so that load from other processes on a shared machine hits every core alike instead of whichever ran
    at the wrong moment."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    return times


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves for backward during one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model(x)
    del out
    return sum(storages.values())


def peak_bytes(model: nn.Module, x: torch.Tensor, grad: torch.Tensor, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    for p in model.parameters():
        p.grad = None
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fwd_bwd(model, x, grad)
    sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def weight_bytes(name: str, T: int, H: int, L: int, D: int, elt: int) -> tuple[int, int]:
    """(bytes one step reads, distinct bytes a window of T steps reads) of weights, analytic."""
    per_set = sum(4 * H * ((D if k == 0 else H) + H) + 8 * H for k in range(L)) * elt
    sets = {"nn.LSTM": 1, "share5": -(-T // 5), "TimeVarying": 4 + T}.get(name, T)  # untied ones: T
    return per_set, per_set * sets


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU); default: torch's")
    ap.add_argument("--repeats", type=int, default=10, help="timed fwd+bwd passes per core and shape")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--shapes", default="small,medium", help=f"comma-separated subset of {list(SHAPES)}")
    ap.add_argument(
        "--cores",
        default="nn.LSTM,naive,UntiedLSTM,Untied-py,share5,Untied+graphs,share5+graphs,TimeVarying,GEMMs only,GEMMs+pf",
        help="comma-separated; the +graphs rows run on GPU only, Untied-py and the GEMMs rows on CPU only",
    )
    ap.add_argument("--keep-freed-memory", action="store_true", help="opt in: glibc mallopt (see above)")
    args = ap.parse_args()
    env = [k for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ]
    malloc = "mallopt: keep freed memory" if args.keep_freed_memory and keep_freed_memory() else "no mallopt"
    malloc += f", env {' '.join(f'{k}={os.environ[k]}' for k in env)}" if env else ", no MALLOC_* env"

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    cpu_only, gpu_only = ("GEMMs only", "GEMMs+pf", "Untied-py"), ("Untied+graphs", "share5+graphs")
    cores = [c for c in cores if c not in (cpu_only if device.type != "cpu" else gpu_only)]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; choose from {list(SHAPES)}")
    known = ap.get_default("cores").split(",")
    for c in cores:
        if c not in known:
            ap.error(f"unknown core {c!r}; choose from {known}")
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thr"
    print(
        f"torch {torch.__version__} | device {dev_name} | float32 | median of {args.repeats} fwd+bwd after warm-up"
        f" | malloc {malloc}"
    )

    if device.type == "cpu":
        lstm_math._native_ops(torch.zeros(1))  # build lrnn's kernels once, before the processes load them
    procs = {name: CoreProcess(name, args.device, args.threads, args.keep_freed_memory) for name in cores}
    for shape in shapes:
        B, T, H, L, D = SHAPES[shape]
        print(f"\n[{shape}] B={B} T={T} H={H} layers={L} input={D}")
        header = (
            f"{'core':<13} {'ms':>8} {'tok/s':>9} {'vs naive':>9} {'vs LSTM':>8} {'params':>9}"
            f" {'saved':>9} {'peak':>9} {'w/step':>9} {'w/window':>9}"
        )
        print(header)
        print("-" * len(header))
        for proc in procs.values():
            proc.ask("shape", shape)
        fns = {name: (lambda proc=proc: proc.ask("run")) for name, proc in procs.items()}
        rounds = time_round_robin(fns, args.warmup, args.repeats)
        results = {name: 1e3 * statistics.median(ts) for name, ts in rounds.items()}

        def ratio(num: str, den: str, rounds: dict = rounds) -> str:  # median of per-round ratios, spread
            r = sorted(a / b for a, b in zip(rounds[num], rounds[den], strict=True))
            return f"{statistics.median(r):.2f}x (rounds {r[0]:.2f}..{r[-1]:.2f})"

        for name, proc in procs.items():
            ms = results[name]
            n_params, saved, peak = proc.ask("stats")
            w_step, w_window = weight_bytes(name, T, H, L, D, 4)
            vs_naive = f"{results['naive'] / ms:.2f}x" if "naive" in results else "-"
            vs_lstm = f"{ms / results['nn.LSTM']:.2f}x" if "nn.LSTM" in results else "-"
            print(
                f"{name:<13} {ms:8.2f} {B * T / ms * 1e3:9.0f} {vs_naive:>9} {vs_lstm:>8} {n_params / 1e6:8.2f}M"
                f" {fmt_bytes(saved):>9} {fmt_bytes(peak):>9} {fmt_bytes(w_step):>9} {fmt_bytes(w_window):>9}"
            )
        target = "3x" if device.type == "cuda" else "1.5x"
        summary = [  # (numerator, denominator, line): a ratio of per-round times, printed where both cores ran
            ("naive", "UntiedLSTM", "UntiedLSTM speed-up over naive {r} [target >= {target}]"),
            ("naive", "Untied+graphs", "UntiedLSTM with CUDA graphs over naive {r} [target >= 3x]"),
            ("UntiedLSTM", "Untied+graphs", "CUDA graphs' speed-up of UntiedLSTM {r}"),
            ("Untied+graphs", "nn.LSTM", "UntiedLSTM with CUDA graphs time / nn.LSTM time {r}"),
            ("naive", "Untied-py", "UntiedLSTM without its compiled kernels over naive {r}"),
            ("naive", "GEMMs only", "the products alone over naive {r}"),
            ("naive", "GEMMs+pf", "the products alone, prefetched, over naive {r}"),
            ("share5", "nn.LSTM", "share5 time / nn.LSTM time {r} [target <= 1.3x]"),
            ("share5+graphs", "nn.LSTM", "share5 with CUDA graphs / nn.LSTM {r} [target <= 1.3x]"),
        ]
        for num, den, line in summary:
            if num not in results or den not in results:
                continue
            if "[target" in line and len(procs) > 2:  # measured again with only these two processes taking turns
                pair = time_round_robin({n: fns[n] for n in (num, den)}, args.warmup, args.repeats)
                line += f"; with all {len(procs)} cores taking turns {ratio(num, den)}"
                print("=> " + line.format(r=ratio(num, den, pair), target=target))
            else:
                print("=> " + line.format(r=ratio(num, den), target=target))
    for proc in procs.values():
        proc.close()
    print(
        "\nvs naive = naive ms / core ms (speedup); vs LSTM = core ms / nn.LSTM ms (slowdown). saved: measured bytes"
        " autograd keeps for backward (no params); peak: CUDA max allocated during fwd+bwd (GPU only; not for +graphs,"
        " whose activations sit in the graphs' memory pool);"
        " w/step, w/window: analytic weight bytes read per step / distinct per window."
    )


if __name__ == "__main__":
    main()
