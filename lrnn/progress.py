"""The training progress bar: Lightning's, plus the epoch's tokens/s and the perplexity of the last step."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class LMProgressBar(TQDMProgressBar):
    """Adds ``ppl`` (exp of the logged ``train/loss``) and ``tok/s`` (this epoch's training tokens per second, from
    ``LanguageModel``'s own count). Computed only when the bar refreshes, never in the training step."""

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
                items["tok/s"] = f"{float(tokens) * trainer.world_size / elapsed:.0f}"
        return items
