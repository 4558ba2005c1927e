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


@pytest.mark.parametrize("min_interval, refreshed", [(0.0, [1, 2, 3, 4, 5, 6]), (2.5, [1, 4, 6])])
def test_progress_bar_refreshes_at_most_every_min_interval(min_interval: float, refreshed: list[int]) -> None:
    from lrnn import progress

    clock = FakeClock()
    bar = LMProgressBar(min_interval=min_interval)
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(progress, "time", clock)
        mp.setattr(type(bar), "is_enabled", property(lambda self: True))
        for n in range(1, 7):  # 6 batches, 1 s apart: refreshed when 2.5 s have passed, and at the last one
            if bar._should_update(n, 6):
                seen.append(n)
            clock.t += 1.0
    assert seen == refreshed
