"""Training speed of LexicalLSTM against TiedLSTM (nn.LSTM) in an RNNLM at PTB-small, as one ratio.

    python benchmarks/bench_lexical.py --threads 1                      # K 128, rank 8
    python benchmarks/bench_lexical.py --threads 1 --num-sets 256 --rank 16

One training step is what `LanguageModel` does in `bptt: window` mode: RNNLM.nll of a [B, T] window from the carried
state, the sum_over_time objective (+ the core's regularization()), backward, norm clipping at 5, SGD, grads to None.
The model is Zaremba small with tied_ptb_dropout's dropout (2 x 200, V 10k, B 20, T 20, dropout 0.3). Tokens are drawn
from a Zipf law over the vocabulary (ids ordered by frequency, as lrnn's Vocabulary orders them), so the share of
steps on a token's own set is PTB-like; the speed does not depend on it (every step gathers its factors alike).
Both models live in this one process and take turns, step by step (after a warm-up), so that whatever else runs
on the machine slows both alike; the ratio of the median step times is printed (tied tokens/s / lexical tokens/s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lrnn import LexicalLSTM, TiedLSTM  # noqa: E402
from lrnn.rnnlm import RNNLM  # noqa: E402


def zipf_tokens(n: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


class Trainer:
    """One model, its optimizer and its carried state; `step()` runs one training step and returns its seconds."""

    def __init__(self, core: torch.nn.Module, vocab: int, batch: int, seq_len: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = RNNLM(vocab, core, dropout=0.3, init_range=0.1).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1.0)
        self.stream = zipf_tokens(batch * (seq_len * 200 + 1), vocab, torch.Generator().manual_seed(seed))
        self.stream = self.stream.view(batch, -1)
        self.seq_len, self.pos, self.state = seq_len, 0, None

    def step(self) -> float:
        T = self.seq_len
        if self.pos + T + 1 > self.stream.shape[1]:
            self.pos, self.state = 0, None
        x, y = self.stream[:, self.pos : self.pos + T], self.stream[:, self.pos + 1 : self.pos + T + 1]
        self.pos += T
        start = time.perf_counter()
        nll, state = self.model.nll(x, y, self.state)
        loss = nll / x.shape[0]
        reg = getattr(self.model.core, "regularization", None)
        if reg is not None:
            loss = loss + reg()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.state = (state[0].detach(), state[1].detach())
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--num-sets", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8, help="0: full rank")
    ap.add_argument("--penalty", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=60, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--seq-len", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--vocab", type=int, default=10000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    H = args.hidden
    rank = args.rank or None
    lexical = LexicalLSTM(H, H, 2, num_sets=args.num_sets, rank=rank, penalty=args.penalty, dropout=0.3)
    trainers = {
        "TiedLSTM": Trainer(TiedLSTM(H, H, 2, dropout=0.3), args.vocab, args.batch, args.seq_len, 0),
        "LexicalLSTM": Trainer(lexical, args.vocab, args.batch, args.seq_len, 0),
    }
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for i in range(args.warmup + args.steps):
        for name, trainer in trainers.items():  # alternate, step by step
            t = trainer.step()
            if i >= args.warmup:
                times[name].append(t)
    tokens = args.batch * args.seq_len
    print(f"PTB-small training steps: B {args.batch}, T {args.seq_len}, 2 x {H}, V {args.vocab}, "
          f"{args.threads} thread(s), {args.steps} steps each, alternating")  # fmt: skip
    print(f"LexicalLSTM: num_sets {args.num_sets}, rank {rank}, penalty {args.penalty}")
    med = {}
    for name, ts in times.items():
        med[name] = statistics.median(ts)
        print(f"  {name:12s} median {med[name] * 1e3:7.2f} ms/step  {tokens / med[name]:8.0f} tokens/s")
    print(f"ratio tied tokens/s / lexical tokens/s: {med['LexicalLSTM'] / med['TiedLSTM']:.2f}x")


if __name__ == "__main__":
    main()
