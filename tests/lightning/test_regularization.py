"""LanguageModel adds the core's regularization() to every update's objective, in all three bptt modes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lrnn import LanguageModel, SoftTiedLSTM, TextDataModule, TiedLSTM


def _one_update(corpus: Path, bptt: str, penalty: float) -> tuple[dict, dict, dict]:
    """One SGD(lr=1) update of a SoftTiedLSTM LM with non-zero deltas: (parameters before, after, logged metrics)."""
    torch.manual_seed(0)
    sentence = bptt == "full"
    dm = TextDataModule(str(corpus), batch_size=4, seq_len=6, batching="sentence" if sentence else "stream")
    dm.setup()
    core = SoftTiedLSTM(8, 8, 2, max_len=30 if sentence else 12, penalty=penalty)
    with torch.no_grad():
        for name, p in core.named_parameters():
            if name.startswith("delta_"):
                p.normal_(std=0.1)
    kwargs = {"k1": 6, "k2": 12} if bptt == "tbptt" else {}  # the first window is exactly one update
    lm = LanguageModel(core, vocab_size=dm.vocab_size, bptt=bptt, loss_reduction="sum_over_time", **kwargs)
    before = {n: p.detach().clone() for n, p in core.named_parameters()}
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=1, limit_val_batches=0, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(lm, datamodule=dm)
    after = {n: p.detach().clone() for n, p in core.named_parameters()}
    return before, after, {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize("bptt", ["window", "tbptt", "full"])
def test_penalty_gradient_reaches_every_update(tiny_corpus: Path, bptt: str, one_thread) -> None:
    """SGD lr 1: after one update the deltas differ from the penalty-free update by exactly -2 p Δ (the gradient of
    p ||Δ||²); the shared set does not feel the penalty."""
    penalty = 0.25
    start, plain, _ = _one_update(tiny_corpus, bptt, 0.0)
    _, reg, metrics = _one_update(tiny_corpus, bptt, penalty)
    expected_reg = penalty * sum(p.square().sum() for n, p in start.items() if n.startswith("delta_"))
    assert metrics["train/reg"] == pytest.approx(float(expected_reg), rel=1e-5)
    for name, delta0 in start.items():
        if name.startswith("delta_"):
            torch.testing.assert_close(reg[name] - plain[name], -2 * penalty * delta0, atol=1e-6, rtol=1e-4)
        else:
            torch.testing.assert_close(reg[name], plain[name], atol=1e-6, rtol=0)


def test_cores_without_regularization_log_no_reg(tiny_corpus: Path, one_thread) -> None:
    dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=6)
    lm = LanguageModel(TiedLSTM(8, 8), vocab_size=dm.vocab_size)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=2, limit_val_batches=0, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(lm, datamodule=dm)
    assert "train/reg" not in trainer.callback_metrics
