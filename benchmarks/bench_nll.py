"""The language model's training loss, `RNNLM.nll` forward + backward, on the two paths it can take.

    python benchmarks/bench_nll.py --device cuda
    python benchmarks/bench_nll.py --threads 1     # CPU

PTB-small (V 10k, 2x200 tied LSTM, B 20, T 20, state carried): the embedding and decoder loss as
    buffers: lrnn's `EmbeddingLookup` + `LinearNLL` (reused buffers; compiled kernels on CPU), what CPU training runs;
    torch:   `nn.Embedding` + `F.cross_entropy(decoder(h))`, what a plain loop writes and what runs off CPU.
The two are interleaved call by call after warm-up; times are medians of --repeats, the ratio the median of
per-call ratios. On CUDA each call ends with a synchronize.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lrnn import rnnlm  # noqa: E402
from lrnn.cores import TiedLSTM  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    V, B, T = 10_000, 20, 20
    model = rnnlm.RNNLM(V, TiedLSTM(200, 200, num_layers=2)).to(device)
    tokens, targets = torch.randint(0, V, (2, B, T), device=device)
    state = None

    def step(buffers: bool) -> float:
        nonlocal state
        rnnlm.reuses_buffers = lambda t: buffers
        model.zero_grad(set_to_none=True)
        sync()
        t0 = time.perf_counter()
        nll, state = model.nll(tokens, targets, state)
        nll.backward()
        sync()
        state = tuple(s.detach() for s in state)
        return time.perf_counter() - t0

    names = {True: "buffers (EmbeddingLookup + LinearNLL)", False: "torch (nn.Embedding + F.cross_entropy)"}
    for _ in range(10):
        step(True), step(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for k in times:
            times[k].append(step(k))
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__} | {where} | RNNLM.nll fwd+bwd, PTB-small (V {V}, 2x200, B {B}, T {T})")
    for k, name in names.items():
        print(f"{name:<42} {1e3 * statistics.median(times[k]):8.3f} ms (median of {args.repeats})")
    ratio = statistics.median(a / b for a, b in zip(times[True], times[False], strict=True))
    print(f"=> torch path {ratio:.3f}x the speed of the buffers path (median of per-call ratios)")


if __name__ == "__main__":
    main()
