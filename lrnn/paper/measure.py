"""C1 / C5 without training: parameters, memory and tokens/s of every core as the window length T grows.

For each core and T: the core's parameter count and the whole PTB model's (``RNNLM``, V = 10,000); the weight bytes;
the bytes autograd saves for one forward+backward of a [T, B, H] batch (saved-tensor hooks); and forward+backward
tokens/s (median of ``repeats`` after a warm-up, one thread unless told otherwise).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from lrnn.paper.grid import PTB_VOCAB
from lrnn.rnnlm import RNNLM

MEASURE_CORES = ("tied", "share5", "soft_tied", "mixture", "time_varying", "untied")


def build_core(core: str, hidden: int, seq_len: int, layers: int = 2) -> torch.nn.Module:
    """A core of width ``hidden`` whose position-dependent weights cover ``seq_len`` steps."""
    import lrnn

    base = {"input_size": hidden, "hidden_size": hidden, "num_layers": layers}
    if core == "tied":
        return lrnn.TiedLSTM(**base)
    if core == "untied":
        return lrnn.UntiedLSTM(**base, max_len=seq_len)
    if core == "share5":
        return lrnn.UntiedLSTM(**base, max_len=seq_len, share_every=5)
    if core == "soft_tied":
        return lrnn.SoftTiedLSTM(**base, max_len=seq_len)
    if core == "mixture":
        return lrnn.MixtureLSTM(**base, max_len=seq_len, num_sets=4)
    if core == "time_varying":
        return lrnn.TimeVaryingLSTM(**base, num_bases=4, period=float(seq_len))
    raise ValueError(f"unknown core {core!r}")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure_core(core: str, hidden: int, seq_len: int, batch: int = 20, repeats: int = 3) -> dict[str, Any]:
    """One row: parameters, weight / saved-activation bytes and fwd+bwd tokens/s of ``core`` at window ``seq_len``."""
    with torch.device("meta"):
        model_params = RNNLM(PTB_VOCAB, build_core(core, hidden, seq_len)).num_parameters()["total"]
    module = build_core(core, hidden, seq_len)
    x = torch.randn(seq_len, batch, hidden)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = module(x)
    out.sum().backward()
    times = []
    for _ in range(repeats):
        module.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out, _ = module(x)
        out.sum().backward()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    params = _count(module)
    return {
        "core": core,
        "T": seq_len,
        "hidden": hidden,
        "batch": batch,
        "core_params": params,
        "model_params": model_params,
        "weight_mb": params * 4 / 2**20,
        "saved_mb": saved[0] / 2**20,
        "tokens_per_s": seq_len * batch / seconds,
        "threads": torch.get_num_threads(),
    }


def measure(
    ts: tuple[int, ...], hidden: int, repeats: int, cores: tuple[str, ...] = MEASURE_CORES, threads: int = 1
) -> list[dict]:
    """Every core at every T, ``threads`` torch threads (one, like each run of the cpu profile)."""
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [measure_core(c, hidden, t, repeats=repeats) for c in cores for t in ts]
    finally:
        torch.set_num_threads(before)
