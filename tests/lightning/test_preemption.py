"""Pre-emption under DDP and SLURM: a signal to one rank stops every rank at the same batch with a checkpoint that
carries every rank's state; resuming it with as many ranks ends with the numbers of a run never stopped, resuming it
with another number of ranks is refused; a requeued SLURM job continues its own run folder."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.test_cli import run

CONFIG = """
model:
  core:
    class_path: lrnn.UntiedLSTM
    init_args: {{input_size: 8, hidden_size: 8, num_layers: 1, max_len: 5}}
  dropout: 0.2
  bptt: tbptt
  k1: 3
  k2: 5
data:
  init_args: {{dataset: {dataset}, batch_size: 2, seq_len: 5, test_batch_size: 1}}
trainer:
  max_epochs: 2
  limit_train_batches: 30
  enable_progress_bar: false
  enable_model_summary: false
"""


def _fit(config: Path, out: Path, *extra: str, env: dict[str, str] | None = None):
    args = ["-m", "lrnn", "fit", "--config", str(config), "--out_dir", str(out), "--wandb", "off", *extra]
    return run(args, cwd=out.parent, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})})


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_ddp_interrupt_then_resume_matches_an_uninterrupted_run(tiny_corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(dataset=tiny_corpus))
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    plain = _fit(config, tmp_path / "plain", *ddp)
    assert plain.returncode == 0, plain.stderr[-3000:]
    expected = _results(tmp_path / "plain" / "tiny" / "version_0")

    out = tmp_path / "runs"
    helper = ["--trainer.callbacks+=tests.helpers.SignalAt"]  # SIGTERM to rank 1 only, mid-epoch 1
    stopped = _fit(config, out, *ddp, *helper, env={"LRNN_SIGNAL_AT": "SIGTERM:75", "LRNN_SIGNAL_RANK": "1"})
    assert stopped.returncode != 0, stopped.stderr[-3000:]
    run_dir = out / "tiny" / "version_0"
    first = _results(run_dir)
    assert first["status"] == "interrupted" and "SIGTERM" in first["error"], first
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    ranks = ckpt["lrnn_rank_train_states"]
    assert ranks["mid_epoch"] and len(ranks["states"]) == 2 and ckpt["epoch"] == 1
    h0, h1 = (s["tbptt"]["state"][0] for s in ranks["states"])
    assert h0.shape == h1.shape and not torch.equal(h0, h1)  # each rank's own streams

    refused = run(["-m", "lrnn", "fit", "--resume", str(run_dir), "--trainer.devices", "1", "--trainer.strategy",
                   "auto"], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.startswith("error")]
    assert "by 2 processes" in line and "not 1" in line
    assert _results(run_dir) == first  # refused before anything was touched: still "interrupted"
    resumed = run(["-m", "lrnn", "fit", "--resume", str(run_dir)], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _results(run_dir)
    assert final["status"] == "completed" and not (out / "tiny" / "version_1").exists()
    assert final["best_val_loss"] == pytest.approx(expected["best_val_loss"], rel=1e-6)
    assert final["test"]["test/loss"] == pytest.approx(expected["test"]["test/loss"], rel=1e-6)
    assert final["fit"]["train/loss"] == pytest.approx(expected["fit"]["train/loss"], rel=1e-6)


@pytest.mark.slow
def test_requeued_slurm_job_resumes_its_own_run(tiny_corpus: Path, tmp_path: Path) -> None:
    """Lightning's SLURMEnvironment (auto_requeue) under a fake SLURM: SIGUSR1 saves, requeues, and the job's
    second start continues the same folder and W&B run."""
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(dataset=tiny_corpus).replace("  bptt: tbptt\n  k1: 3\n  k2: 5\n", ""))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # records the requeue instead of talking to a SLURM controller
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "lrnn", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    out = tmp_path / "runs"
    args = ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    first = _fit(config, out, *args, "--trainer.callbacks+=tests.helpers.SignalAt", "--wandb", "offline",
                 env={**slurm, "LRNN_SIGNAL_AT": "SIGUSR1:40"})  # fmt: skip
    assert first.returncode == 128 + signal.SIGUSR1, first.stderr[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    run_dir = out / "tiny" / "version_0"
    stopped = _results(run_dir)
    assert stopped["status"] == "interrupted" and stopped["slurm_job_id"] == "4242"

    again = _fit(config, out, *args, "--wandb", "offline", env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr and not (out / "tiny" / "version_1").exists()
    final = _results(run_dir)
    assert final["status"] == "completed" and final["resumed_from"]["step"] == stopped["global_step"]
    assert final["wandb"]["id"] == stopped["wandb"]["id"]
