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

from lrnn.paper.cores import CORES, MEASURE_CORES
from lrnn.paper.grid import PTB_VOCAB
from lrnn.rnnlm import RNNLM


def build_core(core: str, hidden: int, seq_len: int, layers: int = 2) -> torch.nn.Module:
    """A core of width ``hidden`` whose position-dependent weights cover ``seq_len`` steps."""
    import importlib

    entry = CORES.get(core)
    if entry is None or entry.measure is None:
        raise ValueError(f"unknown core {core!r}")
    module, name = entry.class_path.rsplit(".", 1)
    base = {"input_size": hidden, "hidden_size": hidden, "num_layers": layers}
    return getattr(importlib.import_module(module), name)(**base, **entry.measure(seq_len))


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
