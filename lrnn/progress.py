"""The training progress bar: Lightning's, plus the epoch's tokens/s and the perplexity of the last step."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class LMProgressBar(TQDMProgressBar):
    """Adds ``ppl`` (exp of the logged ``train/loss``) and ``tok/s`` (this epoch's training tokens per second, from
    ``LitLanguageModel``'s own count). Computed only when the bar refreshes, never in the training step.

    The bar refreshes at most every ``min_interval`` seconds (and at the end of each loop), tqdm's own redraw rate,
    instead of after every batch: a refresh reads the logged metrics, which on a GPU is a host sync, and formats the
    bar, and at PTB sizes on a GPU a step takes milliseconds. ``min_interval=0`` refreshes after every
    ``refresh_rate`` batches, as Lightning's bar does.
    """

    def __init__(
        self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False, min_interval: float = 0.1
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.min_interval = min_interval
        self._last_refresh = -math.inf

    def _should_update(self, current: int, total: int) -> bool:
        if not super()._should_update(current, total):
            return False
        now = time.perf_counter()
        if current != total and now - self._last_refresh < self.min_interval:
            return False
        self._last_refresh = now
        return True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # a run resumed mid-epoch gets no on_train_epoch_start: set the bar's total and "Epoch N" here (a fresh
        # epoch sets them again)
        self.on_train_epoch_start(trainer)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        total = self.train_progress_bar.total
        if done > 0 and (total is None or done < total):
            self.train_progress_bar.n = self.train_progress_bar.initial = done

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        loss = items.get("train/loss")
        if isinstance(loss, float | int) and trainer.training:
            items["ppl"] = f"{math.exp(loss):.2f}" if loss < 700 else "inf"
        start, tokens = getattr(pl_module, "_epoch_start", None), getattr(pl_module, "_tokens_seen", None)
        if trainer.training and start and tokens is not None:
            # the module's training time so far: finished batches, plus the running one (validation excluded)
            elapsed = getattr(pl_module, "_train_seconds", 0.0) + time.perf_counter() - start
            if elapsed > 0:
                done = float(tokens) - float(getattr(pl_module, "_tokens_base", 0))  # since a mid-epoch resume
                items["tok/s"] = f"{done * trainer.world_size / elapsed:.0f}"
        return items
