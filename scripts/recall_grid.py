"""Delayed-recall accuracy of a tied LSTM over a grid of lag D x truncation k (TBPTT with k1 = k2 = k).

The target at step t is the input at t - D (alphabet A, chance 1/A); the stream is cut into windows of k steps and
the state is carried across them. For D >= k no gradient path links a target to the input it asks for: the question
is whether the carried state still learns to hold it ("RNNs can still learn temporal structure that extends beyond
the truncation length"). Every cell trains the same model on the same number of tokens and reports the test accuracy.

    python scripts/recall_grid.py                      # the README table (threads=1, a few minutes per row)
    python scripts/recall_grid.py --lags 2 5 --ks 5 10 --tokens 200000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
import warnings

import lightning as L
import torch

from lrnn import LanguageModel, SyntheticDataModule, TiedLSTM


def run_cell(lag: int, k: int, args: argparse.Namespace) -> dict[str, float]:
    """Train a fresh tied LSTM on lag-D recall with truncation k; returns test accuracy, loss and seconds."""
    L.seed_everything(args.seed, verbose=False)
    data = SyntheticDataModule(
        "delayed_recall",
        alphabet=args.alphabet,
        lag=lag,
        length=args.tokens // args.epochs,
        eval_length=args.eval_tokens,
        batch_size=args.batch_size,
        seq_len=k,
        seed=args.seed,
    )
    model = LanguageModel(
        TiedLSTM(args.embed, args.hidden),
        vocab_size=data.vocab_size,
        bptt="tbptt",
        k1=k,
        k2=k,
        grad_clip=1.0,
        accuracy=True,
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    return {
        "lag": lag,
        "k": k,
        "acc": metrics["test/acc"],
        "loss": metrics["test/loss"],
        "seconds": time.perf_counter() - start,
    }


def table(cells: list[dict[str, float]], lags: list[int], ks: list[int], alphabet: int) -> str:
    """Markdown: rows D, columns k; cells with D >= k (no gradient path to the recalled input) in italics."""
    acc = {(c["lag"], c["k"]): c["acc"] for c in cells}
    lines = ["| lag D \\ truncation k | " + " | ".join(f"k = {k}" for k in ks) + " |"]
    lines.append("|---|" + "---:|" * len(ks))
    for lag in lags:
        row = []
        for k in ks:
            value = f"{acc[(lag, k)]:.3f}" if (lag, k) in acc else "-"
            row.append(f"*{value}*" if lag >= k else value)
        lines.append(f"| D = {lag} | " + " | ".join(row) + " |")
    lines.append(f"\nTest accuracy on the recall targets; chance = 1/{alphabet} = {1 / alphabet:.3f}. "
                 "*Italics*: D >= k, no gradient path from a target to its input.")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lags", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--alphabet", type=int, default=8)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tokens", type=int, default=1_500_000, help="training tokens per cell (all epochs)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval_tokens", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=str, default=None, help="also write the cells to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no per-run banners and epoch lines
    command = "python scripts/recall_grid.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    cells = []
    total = time.perf_counter()
    for lag in args.lags:
        for k in args.ks:
            cell = run_cell(lag, k, args)
            cells.append(cell)
            print(f"D={lag:3d} k={k:3d}: acc {cell['acc']:.3f}  loss {cell['loss']:.3f}  {cell['seconds']:.0f} s",
                  flush=True)  # fmt: skip
    print()
    print(table(cells, args.lags, args.ks, args.alphabet))
    print(
        f"\nTied LSTM {args.embed}->{args.hidden}, A={args.alphabet}, batch {args.batch_size}, Adam lr {args.lr}, "
        f"clip 1.0, {args.tokens} training tokens per cell ({args.epochs} epochs), TBPTT k1 = k2 = k, seed {args.seed},"
        f" {args.threads} thread(s); {time.perf_counter() - total:.0f} s in all.\n`{command.strip()}`"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "cells": cells}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
