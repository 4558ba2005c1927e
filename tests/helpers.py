"""Helpers the end-to-end tests load into ``lrnn fit`` subprocesses (importable as ``tests.helpers``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch


class RecordBatches(L.Callback):
    """Saves every training batch's inputs of this rank to ``$LRNN_RECORD_DIR/rank<k>.pt``."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.seen.append(batch[0].detach().cpu().clone())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = Path(os.environ["LRNN_RECORD_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.seen, folder / f"rank{trainer.global_rank}.pt")


class SignalAt(L.Callback):
    """Sends the signal ``$LRNN_SIGNAL_AT`` (``SIGINT:<step>`` or ``SIGTERM:<step>``) to this very process once
    ``global_step`` reaches the step: a real OS signal, delivered while the batch finishes."""

    def __init__(self) -> None:
        name, step = os.environ.get("LRNN_SIGNAL_AT", "SIGINT:-1").split(":")  # unset (a resumed run): no signal
        self.signum, self.step, self.sent = getattr(signal, name), int(step), False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if not self.sent and 0 <= self.step <= trainer.global_step:
            self.sent = True
            os.kill(os.getpid(), self.signum)
