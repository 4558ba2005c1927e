"""Lightning overhead: training tokens/s of lrnn's LanguageModel vs a plain PyTorch loop, same model, same run.

The model is Zaremba's small tied PTB configuration (2x200 LSTM, vocab 10k, B=20, T=20, SGD lr 1, clip 5, Zaremba's
objective, state carried). Both loops train on the same stream windows (PTB through ``$LRNN_DATA_MIRROR`` when set,
else random tokens over a 10k vocabulary) and alternate in rounds, each round swapping who goes first, so machine
noise hits both alike.

    python benchmarks/bench_lightning.py [--steps 150] [--rounds 4] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F

from lrnn import LanguageModel, TextDataModule, TiedLSTM
from lrnn.data import StreamWindows
from lrnn.rnnlm import RNNLM

WARMUP = 10


def make_model(seed: int) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(
        TiedLSTM(200, 200, num_layers=2), vocab_size=10_000, init_range=0.1, loss_reduction="sum_over_time"
    )


def stream() -> torch.Tensor:
    if os.environ.get("LRNN_DATA_MIRROR"):
        dm = TextDataModule("ptb")
        dm.setup()
        return dm.tokens["train"]
    return torch.randint(0, 10_000, (400_000,), generator=torch.Generator().manual_seed(0))


class Timer(L.Callback):
    """Wall time from the end of the warm-up steps to the end of the last step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == WARMUP - 1:
            self.start, self.tokens = time.perf_counter(), 0
        elif batch_idx >= WARMUP:
            self.tokens += batch[1].numel()
            self.end = time.perf_counter()


def run_lightning(tokens: torch.Tensor, steps: int) -> float:
    loader = torch.utils.data.DataLoader(StreamWindows(tokens, 20, 20), batch_size=None)
    timer = Timer()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps + WARMUP, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=5.0, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(make_model(0), train_dataloaders=loader)
    return timer.tokens / (timer.end - timer.start)


def run_plain(tokens: torch.Tensor, steps: int) -> float:
    model: RNNLM = make_model(0).model
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    state = None
    start, seen = 0.0, 0
    for i, (x, y) in enumerate(StreamWindows(tokens, 20, 20)):
        if i == WARMUP:
            start, seen = time.perf_counter(), 0
        logits, state = model(x, state)
        state = (state[0].detach(), state[1].detach())
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum") / x.size(0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        seen += y.numel()
        if i == steps + WARMUP - 1:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = stream()
    results: dict[str, list[float]] = {"plain PyTorch": [], "lrnn LanguageModel (Lightning)": []}
    runs = [("plain PyTorch", run_plain), ("lrnn LanguageModel (Lightning)", run_lightning)]
    for r in range(args.rounds):
        for name, run in runs if r % 2 == 0 else runs[::-1]:  # alternate who goes first: no order bias
            results[name].append(run(tokens, args.steps))
    source = "PTB train" if os.environ.get("LRNN_DATA_MIRROR") else "random tokens"
    print(f"\n# Lightning overhead: tied PTB-small (2x200, V=10k, B=20, T=20), {source}, {torch.get_num_threads()} "
          f"thread(s), {args.steps} timed steps x {args.rounds} rounds (median)")  # fmt: skip
    base = statistics.median(results["plain PyTorch"])
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:<32} {med:9.0f} tokens/s   {med / base:6.3f}x plain   rounds: {[round(v) for v in values]}")
    # each round runs both loops back to back: the per-round ratio cancels slow drifts of a shared machine
    pairs = zip(results["lrnn LanguageModel (Lightning)"], results["plain PyTorch"], strict=True)
    ratios = [lt / pl for lt, pl in pairs]
    print(f"per-round ratio Lightning/plain: {[round(r, 3) for r in ratios]}")
    print(
        f"=> Lightning costs {100 * (1 - statistics.median(ratios)):+.1f}% tokens/s vs the plain loop "
        "(median of rounds; target: <= 5%)"
    )


if __name__ == "__main__":
    main()
