"""Speed work must not move results: short training runs reproduce losses recorded from the code before it.

The reference values were recorded from main at b0d2dc0 (before the throughput changes of issue #9) with this very
file's ``_train``; they are float32 runs, so they are compared at float tolerance. The same seed twice must give
bit-identical losses.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lrnn import LanguageModel, TextDataModule, TiedLSTM, UntiedLSTM
from tests.conftest import pattern_rows, write_corpus

CORES = {
    "tied": lambda: TiedLSTM(16, 16, num_layers=2),
    "untied": lambda: UntiedLSTM(16, 16, num_layers=2, max_len=6),
    "share3_dropout": lambda: UntiedLSTM(16, 16, num_layers=2, max_len=6, share_every=3, dropout=0.3),
}

# train/loss of each step, then val/loss; recorded from main at b0d2dc0
REFERENCE: dict[str, list[float]] = {
    "tied": [
        2.7294299602508545,
        2.644658088684082,
        2.6155800819396973,
        2.5881781578063965,
        2.5105607509613037,
        2.576477289199829,
        2.543259382247925,
        2.5260519981384277,
        2.5456931591033936,
    ],
    "untied": [
        2.7198145389556885,
        2.6350090503692627,
        2.6098265647888184,
        2.5874431133270264,
        2.5038938522338867,
        2.549769163131714,
        2.520332098007202,
        2.4843413829803467,
        2.4977495670318604,
    ],
    "share3_dropout": [
        2.6942222118377686,
        2.633328914642334,
        2.6073498725891113,
        2.5899367332458496,
        2.5042026042938232,
        2.5533645153045654,
        2.5207197666168213,
        2.4907031059265137,
        2.4895081520080566,
    ],
}


class _Losses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(trainer.callback_metrics["train/loss"].item())


def _train(folder: Path, kind: str) -> list[float]:
    corpus = write_corpus(folder, {"train": pattern_rows(300, 0), "valid": pattern_rows(40, 1), "test": ["a ."]})
    L.seed_everything(7, verbose=False)
    dm = TextDataModule(str(corpus), batch_size=4, seq_len=6)
    dm.setup()
    lm = LanguageModel(
        CORES[kind](), vocab_size=dm.vocab_size, dropout=0.2, init_range=0.1, loss_reduction="sum_over_time"
    )
    record = _Losses()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=8, limit_val_batches=4, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=0.5, callbacks=[record], deterministic=True,
    )  # fmt: skip
    trainer.fit(lm, datamodule=dm)
    return record.losses + [trainer.callback_metrics["val/loss"].item()]


@pytest.mark.parametrize("kind", list(CORES))
def test_losses_match_the_pre_change_code(tmp_path: Path, kind: str, one_thread) -> None:
    torch.testing.assert_close(_train(tmp_path, kind), REFERENCE[kind], rtol=2e-5, atol=2e-5)


def test_same_seed_is_bit_identical(tmp_path: Path, one_thread) -> None:
    assert _train(tmp_path / "a", "untied") == _train(tmp_path / "b", "untied")
