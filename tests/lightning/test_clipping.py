"""lrnn.lightning.clipping: Lightning's norm clipping, bit for bit, without multiplying by 1."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from lrnn import LanguageModel, TextDataModule, TiedLSTM


def _fit(
    corpus: Path,
    clip: float,
    lightning_clipping: bool,
    monkeypatch: pytest.MonkeyPatch,
    algorithm: str = "norm",
    **lm_kwargs,
) -> dict:
    """Parameters after 6 training steps, with lrnn's clipping or Lightning's own (the hook and TBPTT's call)."""
    if lightning_clipping:
        monkeypatch.setattr(LanguageModel, "configure_gradient_clipping", L.LightningModule.configure_gradient_clipping)
        monkeypatch.setattr(
            "lrnn.lightning.tbptt.clip_gradients",
            lambda module, opt, val, algo: module.clip_gradients(
                opt, gradient_clip_val=val, gradient_clip_algorithm=algo
            ),
        )
    torch.manual_seed(0)
    dm = TextDataModule(str(corpus), batch_size=4, seq_len=5)
    dm.setup()
    tbptt = lm_kwargs.get("bptt") == "tbptt"
    if tbptt:
        lm_kwargs |= dict(grad_clip=clip, grad_clip_algorithm=algorithm)
    lm = LanguageModel(TiedLSTM(8, 8), vocab_size=dm.vocab_size, **lm_kwargs)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, max_epochs=1, limit_train_batches=6, limit_val_batches=0,
        gradient_clip_val=None if tbptt else clip, gradient_clip_algorithm=None if tbptt else algorithm,
    )  # fmt: skip
    trainer.fit(lm, datamodule=dm)
    return {k: v.clone() for k, v in lm.state_dict().items()}


@pytest.mark.parametrize("algorithm", ["norm", "value"])
@pytest.mark.parametrize("bptt", ["window", "tbptt"])
@pytest.mark.parametrize("clip", [1e-3, 0.5, 1e6], ids=["always-clipped", "sometimes", "never-clipped"])
def test_training_is_bit_identical_to_lightnings_clipping(tiny_corpus, clip, bptt, algorithm, monkeypatch) -> None:
    """Parameters after 6 steps equal those trained with Lightning's clipping, bit for bit (value clipping is
    Lightning's own call)."""
    kwargs = dict(bptt="tbptt", k1=5) if bptt == "tbptt" else {}
    ours = _fit(tiny_corpus, clip, False, monkeypatch, algorithm, **kwargs)
    with monkeypatch.context() as m:
        theirs = _fit(tiny_corpus, clip, True, m, algorithm, **kwargs)
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_gradients_within_the_norm_are_not_touched(tiny_corpus, monkeypatch) -> None:
    """The multiply runs only on steps whose norm exceeds the clip value."""
    calls: list[int] = []
    real = torch.nn.utils.clip_grads_with_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_", lambda *a, **k: calls.append(1) or real(*a, **k))
    _fit(tiny_corpus, 1e6, False, monkeypatch)
    assert calls == []
    _fit(tiny_corpus, 1e-3, False, monkeypatch)
    assert len(calls) == 6
