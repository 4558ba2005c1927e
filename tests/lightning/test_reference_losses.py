"""Speed work must not move results: short training runs reproduce losses recorded from the code before it.

The reference values were recorded at f1cd64a (main after issues #8 and #10, before the throughput changes of
issue #9) with this very file's ``_train``. (Issue #8 gave the train loader its own random generator, for exact
resumes; that moved dropout's random stream, so values recorded before it, at b0d2dc0, differ by ~1e-3.) They are
float32 runs, so they are compared at float tolerance. The same seed twice must give bit-identical losses.
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

# train/loss of each step, then val/loss; recorded at f1cd64a (main with issues 8 and 10, before issue 9)
REFERENCE: dict[str, list[float]] = {
    "tied": [
        2.730548143386841,
        2.645054817199707,
        2.613288402557373,
        2.588447093963623,
        2.509546995162964,
        2.5764400959014893,
        2.542865514755249,
        2.5264077186584473,
        2.5455992221832275,
    ],
    "untied": [
        2.7198104858398438,
        2.635986089706421,
        2.6102702617645264,
        2.5883424282073975,
        2.5060036182403564,
        2.550084114074707,
        2.5188403129577637,
        2.490701675415039,
        2.50003719329834,
    ],
    "share3_dropout": [
        2.6947386264801025,
        2.6338798999786377,
        2.608459234237671,
        2.5903854370117188,
        2.5071372985839844,
        2.5599868297576904,
        2.5267281532287598,
        2.4952504634857178,
        2.497487783432007,
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
