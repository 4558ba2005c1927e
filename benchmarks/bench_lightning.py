"""Training throughput: `lrnn fit` (LanguageModel + Lightning, as the CLI runs it) vs two plain PyTorch loops.

Model: Zaremba's small PTB configuration (2x200 LSTM, vocab 10k, B=20, T=20, SGD lr 1, clip 5, state carried),
tied (`lrnn/experiments/tied_ptb.yaml`) and untied (`untied_ptb.yaml`, 20 weight sets). Three ways to train
it on the same token stream, the same number of batches from a fresh model:

- ``lrnn fit``: ``python -m lrnn fit --config lrnn/experiments/<x>.yaml`` in a subprocess (progress bar, CSV logger,
  checkpointing, metrics: everything a user gets), one epoch of ``--batches`` batches; the number is its logged
  ``train/tokens_per_s`` (training time of the whole epoch, validation excluded).
- ``plain loop``: the loop one would write by hand around lrnn's ``RNNLM``: batches [B, T], Zaremba's objective,
  ``optimizer.zero_grad()``, ``clip_grad_norm_``, ``SGD.step()``.
- ``examples loop``: a loop with the settings of pytorch/examples' word_language_model (time-major [T, B] batches
  cut from one batchified tensor, ``log_softmax`` + ``nll_loss``, ``model.zero_grad()``, ``clip_grad_norm_``, the
  update ``p -= lr * grad`` by hand, ``loss.item()`` every step), written here for the comparison.

Each run is a fresh Python process (so every loop pays the same start-up costs: first-touch memory, oneDNN set-up)
and reports tokens/s over all its batches. The three take turns in rounds (the order rotates every round) so that
load from other processes hits them alike; the ratios are per round (lrnn / baseline of the same round) and their
median. PTB through ``$LRNN_DATA_MIRROR`` when set, else a random 10k-word corpus written to a temp folder.

``--tiny``: the same loops on a 2x8 LSTM and a random 100-word corpus, so that the model's arithmetic is negligible
and what is measured is each loop's per-step overhead (Python, Lightning's hooks and logging, small ops). That is
the regime of a GPU at PTB sizes, where the card waits for the CPU, measured here without one.

    python benchmarks/bench_lightning.py [--batches 60] [--rounds 3] [--threads 1] [--models tied,untied]
    python benchmarks/bench_lightning.py --device cuda   # untied also as "lrnn fit graphs" (cuda_graphs=True)
    python benchmarks/bench_lightning.py --tiny --batches 2000
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lrnn import TextDataModule, TiedLSTM, UntiedLSTM  # noqa: E402
from lrnn.data import StreamWindows  # noqa: E402
from lrnn.kernels import _native  # noqa: E402
from lrnn.rnnlm import RNNLM  # noqa: E402

B, T, H, V, LR, CLIP, INIT = 20, 20, 200, 10_000, 1.0, 5.0, 0.1
CORES: dict[str, Callable[[], nn.Module]] = {
    "tied": lambda: TiedLSTM(H, H, num_layers=2),
    "untied": lambda: UntiedLSTM(H, H, num_layers=2, max_len=T),
}


def corpus(tmp: Path, tiny: bool = False) -> str:
    """The dataset argument: PTB through the mirror, else (and with --tiny) a local folder of random words (V words,
    V = 10k, or 100 with --tiny)."""
    if os.environ.get("LRNN_DATA_MIRROR") and not tiny:
        return "ptb"
    rng = random.Random(0)
    words = [f"w{i}" for i in range(V - 2)]
    for split, n in (("train", 40_000 if tiny else 4000), ("valid", 50), ("test", 50)):
        (tmp / f"{split}.txt").write_text("\n".join(" ".join(rng.choices(words, k=25)) for _ in range(n)) + "\n")
    return str(tmp)


def run_loop(loop: str, kind: str, dataset: str, batches: int, threads: int, device: str, tiny: bool) -> float:
    """One plain loop in a fresh process (this script with --worker)."""
    cmd = [sys.executable, __file__, "--worker", loop, "--models", kind, "--dataset", dataset]
    cmd += ["--batches", str(batches), "--threads", str(threads), "--device", device] + (["--tiny"] if tiny else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{loop} loop failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return float(done.stdout.split()[-1])


def load_tokens(dataset: str) -> torch.Tensor:
    dm = TextDataModule(dataset, batch_size=B, seq_len=T)
    dm.setup()
    return dm.tokens["train"]


def run_lrnn_fit(
    kind: str, dataset: str, batches: int, threads: int, device: str, out: Path, extra: tuple[str, ...] = ()
) -> float:
    cmd = [
        sys.executable, "-m", "lrnn", "fit", "--config", str(ROOT / "lrnn" / "experiments" / f"{kind}_ptb.yaml"),
        "--wandb", "off", "--out_dir", str(out), "--test_after_fit", "false", "--data.init_args.dataset", dataset,
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(batches),
        "--trainer.limit_val_batches", "1", "--trainer.accelerator", "gpu" if device == "cuda" else "cpu", *extra,
        "--model.core.init_args.input_size", str(H), "--model.core.init_args.hidden_size", str(H),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"lrnn fit failed ({done.returncode}):\n{done.stderr[-3000:]}")
    newest = max((out / f"{kind}_ptb").glob("version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    rows = [r for r in csv.DictReader(newest.open()) if r.get("train/tokens_per_s")]
    return float(rows[-1]["train/tokens_per_s"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_plain(kind: str, tokens: torch.Tensor, batches: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = RNNLM(V, CORES[kind](), init_range=INIT).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    state, seen, start = None, 0, time.perf_counter()
    for i, (x, y) in enumerate(StreamWindows(tokens, B, T)):
        if i == batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits, state = model(x, state)
        state = (state[0].detach(), state[1].detach())
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="sum") / x.size(0)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        seen += y.numel()
    sync(device)
    return seen / (time.perf_counter() - start)


class TimeMajorLM(nn.Module):
    """Embedding -> core -> decoder on [T, B] batches (the examples' layout)."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.encoder, self.rnn, self.decoder = nn.Embedding(V, H), core, nn.Linear(H, V)
        for p in self.parameters():
            nn.init.uniform_(p, -INIT, INIT)

    def forward(self, data: torch.Tensor, hidden):
        output, hidden = self.rnn(self.encoder(data), hidden)
        return F.log_softmax(self.decoder(output).view(-1, V), dim=1), hidden


def run_examples(kind: str, tokens: torch.Tensor, batches: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = TimeMajorLM(CORES[kind]()).to(device)
    n = tokens.numel() // B
    data = tokens[: n * B].view(B, -1).t().contiguous().to(device)  # [steps, B]
    hidden, seen, start = None, 0, time.perf_counter()
    for i in range(batches):
        x, y = data[i * T : (i + 1) * T], data[i * T + 1 : (i + 1) * T + 1].reshape(-1)
        model.zero_grad()
        hidden = None if hidden is None else tuple(h.detach() for h in hidden)
        output, hidden = model(x, hidden)
        loss = F.nll_loss(output, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-LR)
        loss.item()
        seen += y.numel()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=60, help="training batches per run (one lrnn epoch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every loop")
    parser.add_argument("--models", default="tied,untied")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--tiny", action="store_true", help="2x8 LSTM, 100-word random corpus: what is left is the per-step overhead"
    )
    parser.add_argument("--worker", choices=["plain", "examples"], help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tiny:
        global H, V
        H, V = 8, 100
    if args.worker:  # one run in this fresh process; the parent reads the last word
        loop = run_plain if args.worker == "plain" else run_examples
        print(f"{loop(args.models, load_tokens(args.dataset), args.batches, torch.device(args.device)):.1f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset = corpus(Path(tmp), args.tiny)
        load_tokens(dataset)  # tokenize once (cached) before any timing
        if args.device == "cpu":
            _native.ops()  # and build lrnn's CPU kernels (first run on a machine) before any timing
        for kind in args.models.split(","):
            runs = {
                "plain loop": lambda k=kind: run_loop(
                    "plain", k, dataset, args.batches, args.threads, args.device, args.tiny
                ),
                "examples loop": lambda k=kind: run_loop(
                    "examples", k, dataset, args.batches, args.threads, args.device, args.tiny
                ),
                "lrnn fit": lambda k=kind: run_lrnn_fit(
                    k, dataset, args.batches, args.threads, args.device, Path(tmp) / "runs"
                ),
            }
            if args.device == "cuda" and kind == "untied":  # and with the core's CUDA-graphs option
                runs["lrnn fit graphs"] = lambda k=kind: run_lrnn_fit(
                    k, dataset, args.batches, args.threads, args.device, Path(tmp) / "runs",
                    ("--model.core.init_args.cuda_graphs", "true"),
                )  # fmt: skip
            results: dict[str, list[float]] = {name: [] for name in runs}
            names = list(runs)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
                    results[name].append(runs[name]())
            source = "PTB train" if dataset == "ptb" else f"random {V}-word corpus"
            size = "tiny" if args.tiny else "PTB-small"
            print(
                f"\n# training tokens/s, {kind} {size} (2x{H}, V={V}, B={B}, T={T}), {source}, {args.threads} "
                f"thread(s), {args.device}, {args.batches} batches per run x {args.rounds} rounds (order rotates)"
            )
            for name, values in results.items():
                med = statistics.median(values)
                print(f"{name:<15} {med:8.0f} tokens/s (median)   rounds: {[round(v) for v in values]}")
            for fit in [n for n in names if n.startswith("lrnn fit")]:
                for base in ("plain loop", "examples loop"):
                    ratios = [a / b for a, b in zip(results[fit], results[base], strict=True)]
                    print(
                        f"=> {kind}: {fit} / {base} = {statistics.median(ratios):.3f}x (median of per-round ratios "
                        f"{[round(x, 3) for x in ratios]}; target >= 1.0x)"
                    )


if __name__ == "__main__":
    main()
