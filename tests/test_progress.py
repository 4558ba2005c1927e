"""The progress bar's ``tok/s``: the epoch's training tokens over its training time so far (validation excluded)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from lrnn import LanguageModel, TextDataModule, TiedLSTM
from lrnn.progress import LMProgressBar


def test_progress_bar_tokens_per_s_is_the_epochs_rate(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrnn import progress
    from lrnn.lightning import lm as lm_module

    clock = {"t": 1000.0}
    fake = type("FakeTime", (), {"perf_counter": staticmethod(lambda: clock["t"])})
    monkeypatch.setattr(lm_module, "time", fake)
    monkeypatch.setattr(progress, "time", fake)

    class Timed(LanguageModel):
        def training_step(self, batch, batch_idx):
            clock["t"] += 1.0  # every training step takes 1 s
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            clock["t"] += 100.0  # every validation step 100 s
            super().validation_step(batch, batch_idx)

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
