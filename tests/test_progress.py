"""The progress bar's ``tok/s``: the epoch's training tokens over its training time so far (validation excluded)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from lrnn import TextDataModule, TiedLSTM
from lrnn.progress import LMProgressBar
from tests.helpers import FakeClock, timed_language_model


def test_progress_bar_tokens_per_s_is_the_epochs_rate(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrnn import progress
    from lrnn.lightning import lm as lm_module

    clock = FakeClock()
    monkeypatch.setattr(lm_module, "time", clock)
    monkeypatch.setattr(progress, "time", clock)
    Timed = timed_language_model(clock)  # training steps take 1 s, validation steps 100 s

    seen = []

    class Read(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            seen.append(bar.get_metrics(trainer, pl_module)["tok/s"])

    dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=5)
    dm.setup()
    bar = LMProgressBar()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, max_epochs=1, limit_train_batches=4, limit_val_batches=2, val_check_interval=2,
        callbacks=[bar, Read()],
    )  # fmt: skip
    trainer.fit(Timed(TiedLSTM(8, 8), vocab_size=dm.vocab_size), datamodule=dm)
    assert seen == ["20"] * 4  # 4 x 5 tokens per 1 s step, before and after the 200 s of validation
