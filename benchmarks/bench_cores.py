"""Forward+backward speed and memory of the lrnn LSTM cores against nn.LSTM and a naive untied LSTM.

    python benchmarks/bench_cores.py --threads 1                 # CPU, small and medium shapes
    python benchmarks/bench_cores.py --device cuda --repeats 50  # GPU

Cores (all 2-layer LSTMs run on the same input; the untied ones with one weight set per step, max_len = T):
    nn.LSTM       tied weights, PyTorch's fused implementation (the speed of light)
    naive         untied: a Python loop over a ModuleList of nn.LSTMCell, one cell per step and layer
    UntiedLSTM    lrnn.cores.untied.UntiedLSTM(max_len=T)
    TimeVarying   lrnn.cores.time_varying.TimeVaryingLSTM(num_bases=4)

Allocator: untied cores produce T times more gradient memory per backward than nn.LSTM (946 MB at the medium shape).
With glibc's default policy that memory goes back to the OS after every step and is page-faulted in again (on this
VM, 13 ms to fill a fresh 6.8 MB gradient); how much of it a core hits depends on its allocation order, which made
the naive/untied ratio swing 0.5x..1.6x between runs. By default the script therefore sets glibc's mallopt once,
for all cores alike (mmap threshold 32 MB, no trimming), like `MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=2147483647` would for a training run; `--default-malloc` measures glibc's defaults.

Time: median over --repeats of one forward + backward (input requires grad, parameter grads reset to None), after
warm-up, the cores taking turns (round robin); tokens/s = B * T / time. Memory: "saved" is measured: the bytes of
the distinct tensors autograd keeps for backward (saved_tensors_hooks; parameters excluded), on any device; "peak"
is torch.cuda.max_memory_allocated during forward+backward minus the memory before it (GPU only). "w/step" and
"w/window" are analytic: weight bytes one step reads (every layer's 4H(in+H) + biases) and distinct weight bytes a
window of T steps reads (tied: 1 set; untied: T sets; time-varying: K bases + T mixed sets).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lrnn.cores.time_varying import TimeVaryingLSTM  # noqa: E402
from lrnn.cores.untied import UntiedLSTM  # noqa: E402

SHAPES = {  # name: (batch, seq_len, hidden, layers, input)
    "small": (20, 20, 200, 2, 200),
    "medium": (20, 35, 650, 2, 650),
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


def build(name: str, B: int, T: int, H: int, L: int, D: int) -> nn.Module:
    if name == "nn.LSTM":
        return nn.LSTM(D, H, L)
    if name == "naive":
        return NaiveUntiedLSTM(D, H, L, max_len=T)
    if name == "UntiedLSTM":
        return UntiedLSTM(D, H, L, max_len=T)
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


def time_round_robin(fns: dict[str, Callable[[], None]], device: torch.device, warmup: int, repeats: int):
    """Median seconds per call of each fn. The fns take turns (one call each per round), so that load from other
    processes on a shared machine hits every core alike instead of whichever ran at the wrong moment."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


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
    sets = {"nn.LSTM": 1, "naive": T, "UntiedLSTM": T, "TimeVarying": 4 + T}[name]
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
    ap.add_argument("--cores", default="nn.LSTM,naive,UntiedLSTM,TimeVarying")
    ap.add_argument("--default-malloc", action="store_true", help="keep glibc's default malloc policy (see above)")
    args = ap.parse_args()
    malloc = "glibc default" if args.default_malloc else ("kept (mallopt)" if keep_freed_memory() else "default")

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; choose from {list(SHAPES)}")
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thr"
    print(
        f"torch {torch.__version__} | device {dev_name} | float32 | median of {args.repeats} fwd+bwd after warm-up"
        f" | malloc {malloc}"
    )

    for shape in shapes:
        B, T, H, L, D = SHAPES[shape]
        print(f"\n[{shape}] B={B} T={T} H={H} layers={L} input={D}")
        header = (
            f"{'core':<12} {'ms':>8} {'tok/s':>9} {'vs naive':>9} {'vs LSTM':>8} {'params':>9}"
            f" {'saved':>9} {'peak':>9} {'w/step':>9} {'w/window':>9}"
        )
        print(header)
        print("-" * len(header))
        torch.manual_seed(0)
        x = torch.randn(T, B, D, device=device, requires_grad=True)
        grad = torch.randn(T, B, H, device=device)
        models = {}
        for name in cores:
            torch.manual_seed(0)
            models[name] = build(name, B, T, H, L, D).to(device)
        fns = {name: (lambda m=m, x=x, g=grad: fwd_bwd(m, x, g)) for name, m in models.items()}
        results = {name: 1e3 * s for name, s in time_round_robin(fns, device, args.warmup, args.repeats).items()}
        for name, model in models.items():
            ms = results[name]
            n_params = sum(p.numel() for p in model.parameters())
            saved = saved_bytes(model, x)
            peak = peak_bytes(model, x, grad, device)
            w_step, w_window = weight_bytes(name, T, H, L, D, 4)
            vs_naive = f"{results['naive'] / ms:.2f}x" if "naive" in results else "-"
            vs_lstm = f"{ms / results['nn.LSTM']:.2f}x" if "nn.LSTM" in results else "-"
            print(
                f"{name:<12} {ms:8.2f} {B * T / ms * 1e3:9.0f} {vs_naive:>9} {vs_lstm:>8} {n_params / 1e6:8.2f}M"
                f" {fmt_bytes(saved):>9} {fmt_bytes(peak):>9} {fmt_bytes(w_step):>9} {fmt_bytes(w_window):>9}"
            )
            for p in model.parameters():
                p.grad = None
        del models, fns, x, grad
        if "UntiedLSTM" in results:
            u = results["UntiedLSTM"]
            parts = []
            if "naive" in results:
                parts.append(f"UntiedLSTM is {results['naive'] / u:.2f}x faster than naive")
            if "nn.LSTM" in results:
                parts.append(f"{u / results['nn.LSTM']:.2f}x slower than nn.LSTM")
            print("=> " + ", ".join(parts))
    print(
        "\nvs naive = naive ms / core ms (speedup); vs LSTM = core ms / nn.LSTM ms (slowdown). saved: measured bytes"
        " autograd keeps for backward (no params); peak: CUDA max allocated during fwd+bwd (GPU only);"
        " w/step, w/window: analytic weight bytes read per step / distinct per window."
    )


if __name__ == "__main__":
    main()
