"""Every core family trains under 2-process CPU DDP (gloo) for 2 epochs with a short last window, in window, TBPTT and
sentence (full BPTT) modes: the ranks stay in sync, and in stream modes 2 ranks x B streams end with the parameters
of one process with 2B streams (SGD with momentum and weight decay, so a weight set no rank used must keep
``grad = None`` under DDP, exactly as in one process). Validation and test losses of the same weights are those of one
process (evaluation batch sizes count streams in all, split over the ranks).

One ``torchrun`` launch runs all families one after the other (this file is its worker script), so the test pays the
process start-up once."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

import lrnn.cores
from lrnn import LanguageModel, SyntheticDataModule, TextDataModule
from lrnn.lightning.ddp import parameters_left_out
from lrnn.rnnlm import RNNLM
from tests.conftest import REPO, pattern_rows, write_corpus

SEQ_LEN = 7  # 1200 tokens / 4 streams = 300 targets per stream: 42 windows of 7 and a short last one of 6
CORES = {  # family -> (core class, init args, bptt, batching)
    "tied": ("TiedLSTM", {}, "window", "stream"),
    "untied": ("UntiedLSTM", {"max_len": SEQ_LEN}, "window", "stream"),
    "share_every": ("UntiedLSTM", {"max_len": 8, "share_every": 2}, "tbptt", "stream"),
    "soft_tied": ("SoftTiedLSTM", {"max_len": 8, "penalty": 0.01}, "full", "sentence"),
    "mixture": ("MixtureLSTM", {"num_sets": 2, "max_len": SEQ_LEN}, "window", "stream"),
    "time_varying": ("TimeVaryingLSTM", {"num_bases": 2, "period": 16.0}, "full", "sentence"),
    "lexical": ("LexicalLSTM", {"num_sets": 3, "rank": 2}, "window", "stream"),
}


def build(family: str, corpus: Path, world: int) -> tuple[LanguageModel, L.LightningDataModule]:
    """The family's model and data; ``world`` ranks get ``4 // world`` streams (or sentences) each."""
    name, kwargs, bptt, batching = CORES[family]
    L.seed_everything(0, verbose=False)
    if batching == "sentence":  # word-level sentences of different lengths: ranks use different weight sets
        data = TextDataModule(str(corpus), batch_size=4 // world, batching="sentence", eval_batch_size=4)
    else:
        data = SyntheticDataModule(lag=2, alphabet=5, length=1200, batch_size=4 // world, seq_len=SEQ_LEN)
    core = getattr(lrnn.cores, name)(8, 8, 1, **kwargs)
    tbptt = {"k1": 3, "k2": 5} if bptt == "tbptt" else {}
    optimizer = partial(torch.optim.SGD, lr=0.2, momentum=0.5, weight_decay=1e-3)
    model = LanguageModel(core, data.vocab_size, optimizer=optimizer, bptt=bptt, **tbptt)
    return model, data


def fit(family: str, corpus: Path, devices: int) -> torch.Tensor:
    model, data = build(family, corpus, devices)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=2,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.current_epoch == 2
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def evaluate(corpus: Path, devices: int) -> dict[str, float]:
    """Validation and test loss of fixed (untrained) weights: 3 validation streams and Zaremba's single test stream,
    in all, whatever the number of devices."""
    L.seed_everything(0, verbose=False)
    data = TextDataModule(str(corpus), batch_size=2, seq_len=5, eval_batch_size=3, test_batch_size=1)
    model = LanguageModel(lrnn.cores.UntiedLSTM(8, 8, 1, max_len=5), data.vocab_size, init_range=0.5)
    strategy = "ddp" if devices > 1 else "auto"
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False, enable_progress_bar=False)
    val = trainer.validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    test = trainer.test(model, datamodule=data, verbose=False)[0]["test/loss"]
    return {"val": val, "test": test}


def test_every_core_family_is_covered() -> None:
    """A core added to lrnn.cores needs a row in CORES (and so a DDP run in make test)."""
    covered = {name for name, *_ in CORES.values()}
    assert set(lrnn.cores.__all__) <= covered, f"add a DDP test row for {set(lrnn.cores.__all__) - covered}"


@pytest.mark.parametrize("family", ["tied", "mixture", "untied", "share_every", "soft_tied"])
def test_probe_finds_the_parameters_a_step_can_leave_out(family: str) -> None:
    name, kwargs, *_ = CORES[family]
    core = getattr(lrnn.cores, name)(4, 4, 1, **kwargs)
    left_out = parameters_left_out(RNNLM(5, core), 5)
    if family in ("tied", "mixture", "soft_tied"):  # per-position weights as one stacked tensor are always used
        assert left_out == []  # DDP's fast path (no graph traversal per step)
    else:  # the weight sets of positions >= 1
        sets = {int(n.rsplit(".", 1)[1]) for n in left_out}
        assert left_out and all(n.startswith("core.") for n in left_out) and 0 not in sets and 1 in sets


@pytest.mark.slow
def test_every_core_trains_under_ddp(tmp_path: Path) -> None:
    corpus = write_corpus(
        tmp_path / "tiny", {"train": pattern_rows(60, 0), "valid": pattern_rows(10, 1), "test": pattern_rows(10, 2)}
    )
    out = tmp_path / "out"
    args = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2"]
    args += ["--standalone", str(Path(__file__)), str(corpus), str(out), "eval", *CORES]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    evaluated, single = torch.load(out / "eval-rank0.pt"), evaluate(corpus, devices=1)
    assert evaluated == pytest.approx(single, rel=1e-6), "validation/test loss depend on the number of devices"
    for family, (_, _, _, batching) in CORES.items():
        ranks = [torch.load(out / f"{family}-rank{r}.pt") for r in range(2)]
        torch.testing.assert_close(ranks[0], ranks[1], rtol=0, atol=0, msg=f"{family}: ranks out of sync")
        if batching == "stream":  # the same global batches in one process: the same training
            torch.set_num_threads(1)
            single = fit(family, corpus, devices=1)
            torch.testing.assert_close(ranks[0], single, rtol=0, atol=1e-5, msg=f"{family}: DDP != 1 process")


if __name__ == "__main__":  # the torchrun worker: fit every family named on the command line, save the parameters
    corpus_dir, out_dir, *families = sys.argv[1:]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name in families:
        if name == "eval":
            torch.save(evaluate(Path(corpus_dir), devices=2), Path(out_dir) / f"eval-rank{os.environ['RANK']}.pt")
            continue
        params = fit(name, Path(corpus_dir), devices=2)
        torch.save(params, Path(out_dir) / f"{name}-rank{int(os.environ['RANK'])}.pt")
