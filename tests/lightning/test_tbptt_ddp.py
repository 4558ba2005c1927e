"""2-process CPU DDP (gloo) in ``tbptt`` mode through the CLI: it completes, every rank runs the same number of
updates, the ranks stay in sync, and together they see exactly the single-process batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from lrnn import SyntheticDataModule
from tests.conftest import REPO

CONFIG = """
model:
  core:
    class_path: lrnn.TiedLSTM
    init_args: {input_size: 8, hidden_size: 8, num_layers: 1}
  bptt: tbptt
  k1: 3
  k2: 5
  accuracy: true
  optimizer:
    class_path: torch.optim.Adam
    init_args: {lr: 0.01}
data:
  class_path: lrnn.SyntheticDataModule
  init_args: {task: delayed_recall, alphabet: 5, lag: 4, length: 1200, batch_size: 2, seq_len: 4}
trainer:
  max_epochs: 1
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 5
"""


class RecordRank(L.Callback):
    """Saves this rank's training batches, optimizer steps and final parameters to ``$LRNN_RECORD_DIR``."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        self.batches.append((batch[0].clone(), batch[1].clone()))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        record = {"batches": self.batches, "steps": trainer.global_step, "params": params}
        torch.save(record, Path(os.environ["LRNN_RECORD_DIR"]) / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_tbptt_matches_single_process_coverage(tmp_path: Path) -> None:
    config = tmp_path / "ddp_tbptt.yaml"
    config.write_text(CONFIG)
    record = tmp_path / "record"
    record.mkdir()
    args = [sys.executable, "-m", "lrnn", "fit", "--config", str(config), "--out_dir", str(tmp_path / "runs")]
    args += ["--wandb", "off", "--test_after_fit", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
    args += ["--trainer.strategy", "ddp", "--trainer.callbacks+=tests.lightning.test_tbptt_ddp.RecordRank"]
    env = {**os.environ, "LRNN_RECORD_DIR": str(record), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [torch.load(record / f"rank{r}.pt") for r in range(2)]
    # 1200 tokens / 4 streams = 300 steps per stream: 100 updates of k1 = 3 on every rank
    assert ranks[0]["steps"] == ranks[1]["steps"] == 100
    torch.testing.assert_close(ranks[0]["params"], ranks[1]["params"], rtol=0, atol=0)  # gradients all-reduced
    dm = SyntheticDataModule("delayed_recall", alphabet=5, lag=4, length=1200, seq_len=4)
    single = list(dm.split_data("train", 4))
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == len(single) == 75
    for (x0, y0), (x1, y1), (x, y) in zip(ranks[0]["batches"], ranks[1]["batches"], single, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # the CLI moved the defaults' trainer.gradient_clip_val (forbidden with manual optimization) to the model
    saved = yaml.safe_load(next((tmp_path / "runs").rglob("config.yaml")).read_text())
    assert saved["model"]["grad_clip"] == 5.0 and saved["trainer"]["gradient_clip_val"] is None
