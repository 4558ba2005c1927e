"""Peak activation memory of TBPTT updates vs the total sequence length (flat) and vs k2 (grows).

What is measured: the bytes of the tensors autograd keeps for backward (``torch.autograd.graph.saved_tensors_hooks``),
live at the same time, at their peak during training; a tensor saved several times is counted once (by its address
and size; a view by its own size, not its storage's), parameters not at all. This is exactly the memory that
truncation bounds, measured the same way on every machine (no allocator caching or fragmentation in the number).
A LanguageModel (tied LSTM) trains on a random token stream of T steps per row that arrives in windows of 50 steps,
through the TBPTT engine; "full" is one update over the whole stream (k1 = k2 = T).

    python benchmarks/bench_tbptt_memory.py [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader

from lrnn import LanguageModel, TiedLSTM
from lrnn.data import StreamWindows

BATCH, HIDDEN, VOCAB, WINDOW = 8, 64, 100, 50


class SavedTensorMeter:
    """Live bytes of the tensors saved for backward (each tensor once), and their peak."""

    def __init__(self, exclude: set[tuple[int, int]]) -> None:
        self.exclude, self.live, self.bytes, self.peak = exclude, {}, 0, 0

    def pack(self, tensor: torch.Tensor) -> object:
        nbytes = tensor.numel() * tensor.element_size()
        key = (tensor.data_ptr(), nbytes)
        if key not in self.exclude:
            count, nbytes = self.live.get(key, (0, nbytes))
            if count == 0:
                self.bytes += nbytes
                self.peak = max(self.peak, self.bytes)
            self.live[key] = (count + 1, nbytes)
        return _Saved(tensor, key, self)

    def release(self, key: tuple[int, int]) -> None:
        if key in self.exclude:
            return
        count, nbytes = self.live[key]
        if count == 1:
            del self.live[key]
            self.bytes -= nbytes
        else:
            self.live[key] = (count - 1, nbytes)

    @staticmethod
    def unpack(saved: _Saved) -> torch.Tensor:
        return saved.tensor


class _Saved:
    """Holds one saved tensor; tells the meter when autograd frees it (after the backward of its update)."""

    def __init__(self, tensor: torch.Tensor, key: tuple[int, int], meter: SavedTensorMeter) -> None:
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self) -> None:
        self.meter.release(self.key)


def measure(length: int, k1: int, k2: int) -> tuple[float, int, float]:
    """Peak saved MB, optimizer steps and seconds for one epoch over B streams of ``length`` steps."""
    torch.manual_seed(0)
    tokens = torch.randint(VOCAB, (BATCH * (length + 1),))
    data = DataLoader(StreamWindows(tokens, BATCH, WINDOW), batch_size=None)
    model = LanguageModel(TiedLSTM(HIDDEN, HIDDEN), vocab_size=VOCAB, bptt="tbptt", k1=k1, k2=k2, grad_clip=1.0)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    meter = SavedTensorMeter({(p.data_ptr(), p.numel() * p.element_size()) for p in model.parameters()})
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        trainer.fit(model, train_dataloaders=data)
    return meter.peak / 2**20, trainer.global_step, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no per-run banners and epoch lines
    print(f"# TBPTT peak saved-activation memory: tied LSTM {HIDDEN}x{HIDDEN}, V={VOCAB}, B={BATCH}, "
          f"windows of {WINDOW}")  # fmt: skip
    print(f"{'case':<24} {'T':>6} {'k1':>5} {'k2':>5} {'peak MB':>9} {'updates':>8} {'s':>6}")
    rows = [("flat in T: tbptt(20,20)", t, 20, 20) for t in (500, 1000, 2000, 4000)]
    rows += [("flat in T: tbptt(10,40)", t, 10, 40) for t in (500, 1000, 2000, 4000)]
    rows += [("grows with k2: k1=10", 2000, 10, k2) for k2 in (10, 20, 40, 80, 160)]
    rows += [("full BPTT: k1=k2=T", t, t, t) for t in (500, 1000, 2000, 4000)]
    for case, length, k1, k2 in rows:
        peak, steps, seconds = measure(length, k1, k2)
        print(f"{case:<24} {length:>6} {k1:>5} {k2:>5} {peak:>9.2f} {steps:>8} {seconds:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
