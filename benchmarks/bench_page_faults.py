"""Page faults and CPU time per training step: lrnn's LanguageModel (Lightning) vs the plain loop, tied and untied.

Minor page faults (getrusage) count the fresh memory a step touches: memory glibc handed back to the OS and the next
step faults in again. Unlike wall time they barely depend on what else runs on the machine, and CPU time (of this
process) less than wall time. PTB-small model (2x200, V=10k, B=20, T=20, SGD lr 1, clip 5) on random tokens; each
(model, loop) runs in a fresh process, 10 warm-up steps, then the counts over --steps steps.

    python benchmarks/bench_page_faults.py [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrnn import LanguageModel, TiedLSTM, UntiedLSTM  # noqa: E402
from lrnn.data import StreamWindows  # noqa: E402
from lrnn.rnnlm import RNNLM  # noqa: E402

WARMUP = 10


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(kind: str, loop: str, steps: int) -> tuple[float, float]:
    """(minor faults per step, CPU ms per step) after the warm-up."""
    tokens = torch.randint(0, 10_000, (200_000,), generator=torch.Generator().manual_seed(0))
    core = TiedLSTM(200, 200, 2) if kind == "tied" else UntiedLSTM(200, 200, 2, max_len=20)
    mark: dict[str, float] = {}

    def start() -> None:
        mark.update(faults=faults(), cpu=time.process_time())

    if loop == "plain":
        model = RNNLM(10_000, core, init_range=0.1)
        opt, state = torch.optim.SGD(model.parameters(), lr=1.0), None
        for i, (x, y) in enumerate(StreamWindows(tokens, 20, 20)):
            if i == WARMUP:
                start()
            if i == WARMUP + steps:
                break
            logits, state = model(x, state)
            state = (state[0].detach(), state[1].detach())
            loss = F.cross_entropy(logits.reshape(-1, 10_000), y.reshape(-1), reduction="sum") / x.size(0)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    else:

        class Start(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if batch_idx == WARMUP:
                    start()

        lm = LanguageModel(core, vocab_size=10_000, init_range=0.1, loss_reduction="sum_over_time")
        trainer = L.Trainer(
            accelerator="cpu", max_steps=WARMUP + steps, logger=False, enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=False, gradient_clip_val=5.0, callbacks=[Start()],
        )  # fmt: skip
        loader = torch.utils.data.DataLoader(StreamWindows(tokens, 20, 20), batch_size=None)
        trainer.fit(lm, train_dataloaders=loader)
    return (faults() - mark["faults"]) / steps, 1e3 * (time.process_time() - mark["cpu"]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(*worker(*args.worker, args.steps))
        return
    print(f"\n# page faults and CPU time per training step, PTB-small, {args.threads} thread(s), {args.steps} steps")
    for kind in ("tied", "untied"):
        for loop in ("plain", "lightning"):
            cmd = [sys.executable, __file__, "--worker", kind, loop, "--steps", str(args.steps)]
            cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            name = "plain loop" if loop == "plain" else "lrnn LanguageModel"
            print(f"{kind:<7} {name:<19} {float(out[-2]):7.0f} minor faults/step   {float(out[-1]):7.1f} CPU ms/step")


if __name__ == "__main__":
    main()
