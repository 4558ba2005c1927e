"""Test helpers (importable as ``tests.helpers``): callbacks the end-to-end tests load into ``lrnn fit`` subprocesses,
and a fake clock with a LanguageModel whose steps take known times."""

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
    """Sends the signal ``$LRNN_SIGNAL_AT`` (``SIGINT:<step>``, ``SIGTERM:<step>``, ``SIGUSR1:<step>``) to this very
    process once ``global_step`` reaches the step: a real OS signal, delivered while the batch finishes. Under DDP
    only rank ``$LRNN_SIGNAL_RANK`` signals itself when that is set."""

    def __init__(self) -> None:
        name, step = os.environ.get("LRNN_SIGNAL_AT", "SIGINT:-1").split(":")  # unset (a resumed run): no signal
        self.signum, self.step, self.sent = getattr(signal, name), int(step), False
        self.rank = int(os.environ.get("LRNN_SIGNAL_RANK", "-1"))

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.rank >= 0 and trainer.global_rank != self.rank:
            return
        if not self.sent and 0 <= self.step <= trainer.global_step:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class FakeClock:
    """A ``time`` stand-in whose ``perf_counter`` only moves when a test moves it (patch it into a module)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def perf_counter(self) -> float:
        return self.t


def timed_language_model(clock: FakeClock, train_s: float = 1.0, val_s: float = 100.0) -> type:
    """A LanguageModel subclass whose training steps take `train_s` and validation steps `val_s` on `clock`."""
    from lrnn import LanguageModel

    class Timed(LanguageModel):
        def training_step(self, batch, batch_idx):
            clock.t += train_s
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            clock.t += val_s
            super().validation_step(batch, batch_idx)

    return Timed


class CtrlCAtStart(L.Callback):
    """Raises KeyboardInterrupt as a Ctrl-C during start-up would (before the first training batch)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise KeyboardInterrupt
