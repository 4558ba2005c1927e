"""LanguageModel: carried state equals one long forward pass; training lowers validation perplexity."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lrnn import LanguageModel, TextDataModule, TiedLSTM
from lrnn.kernels import GradBuffers, _native, step_weight
from lrnn.rnnlm import IGNORE_INDEX, RNNLM, EmbeddingLookup, LinearNLL
from tests.helpers import FakeClock, timed_language_model


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


def test_carried_state_equals_concatenated_window() -> None:
    torch.manual_seed(0)
    model = RNNLM(50, TiedLSTM(8, 16, num_layers=2)).eval()
    tokens = torch.randint(0, 50, (3, 12))
    full, full_state = model(tokens)
    first, state = model(tokens[:, :5])
    second, state = model(tokens[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, rtol=0, atol=1e-6)
    torch.testing.assert_close(state, full_state, rtol=0, atol=1e-6)


def test_validation_carries_state_across_batches(tiny_corpus: Path) -> None:
    """The logged validation loss equals one untruncated forward pass over each validation stream."""
    torch.manual_seed(0)
    dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=7, eval_batch_size=3)
    dm.setup()
    lm = LanguageModel(TiedLSTM(16, 16, num_layers=2), vocab_size=dm.vocab_size)
    metrics = _trainer().validate(lm, datamodule=dm, verbose=False)[0]
    streams = dm.windows("validation", 3).data.long()  # [3, L] (the cache holds int32 ids)
    with torch.no_grad():
        logits, _ = lm.model.eval()(streams[:, :-1])
    expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), streams[:, 1:].reshape(-1))
    assert metrics["val/loss"] == pytest.approx(expected.item(), abs=1e-5)
    assert metrics["val/ppl"] == pytest.approx(expected.exp().item(), rel=1e-5)


def test_short_training_lowers_validation_perplexity(tiny_corpus: Path) -> None:
    torch.manual_seed(0)
    dm = TextDataModule(str(tiny_corpus), batch_size=8, seq_len=10)
    dm.setup()
    lm = LanguageModel(
        TiedLSTM(32, 32),
        vocab_size=dm.vocab_size,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
    )
    before = _trainer().validate(lm, datamodule=dm, verbose=False)[0]["val/ppl"]
    trainer = _trainer(max_epochs=3, gradient_clip_val=5.0)
    trainer.fit(lm, datamodule=dm)
    after = trainer.callback_metrics["val/ppl"].item()
    assert after < 0.5 * before, (before, after)
    assert after < 8.0  # the grammar has ~3-4 choices per position
    assert trainer.callback_metrics["train/tokens_per_s"] > 0


def test_zaremba_objective_scales_gradient_by_window_length() -> None:
    """loss_reduction='sum_over_time' is seq_len x the per-token mean: same direction, T times the norm."""
    torch.manual_seed(0)
    batch = (torch.randint(0, 20, (4, 6)), torch.randint(0, 20, (4, 6)))
    grads = {}
    for reduction in ("mean", "sum_over_time"):
        torch.manual_seed(1)
        lm = LanguageModel(TiedLSTM(8, 8), vocab_size=20, loss_reduction=reduction)
        logits, _ = lm(batch[0])
        nll = F.cross_entropy(logits.reshape(-1, 20), batch[1].reshape(-1), reduction="sum")
        loss = nll / batch[1].numel() if reduction == "mean" else nll / batch[1].size(0)
        loss.backward()
        grads[reduction] = torch.cat([p.grad.flatten() for p in lm.parameters()])
    torch.testing.assert_close(grads["sum_over_time"], 6 * grads["mean"])


def test_tie_embeddings_shares_the_softmax_weights() -> None:
    model = RNNLM(30, TiedLSTM(16, 16), tie_embeddings=True)
    assert model.decoder.weight is model.embedding.weight
    with pytest.raises(ValueError, match="tie_embeddings needs core.input_size"):
        RNNLM(30, TiedLSTM(8, 16), tie_embeddings=True)


def test_parameter_counts() -> None:
    counts = RNNLM(100, TiedLSTM(10, 20, num_layers=2)).num_parameters()
    lstm = 4 * 20 * (10 + 20 + 2) + 4 * 20 * (20 + 20 + 2)
    assert counts == {"total": 100 * 10 + lstm + 20 * 100 + 100, "recurrent": lstm, "non_recurrent": 3100}


def test_zaremba_lr_schedule() -> None:
    lm = LanguageModel(TiedLSTM(4, 4), vocab_size=5, lr_decay=0.5, lr_decay_after=4)
    config = lm.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]


@pytest.mark.parametrize("native", [True, False], ids=["kernels", "torch-ops"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("tie", [False, True])
def test_fused_nll_matches_cross_entropy_of_the_logits(
    batch_first: bool, tie: bool, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RNNLM.nll (the training hot path, logits in a reused buffer) = cross_entropy(forward), values and gradients,
    with ignored targets, on repeated calls (buffer reuse) and when the previous gradients are still held; with
    lrnn's compiled softmax pass (CPU) and with the torch ops it falls back to."""
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", native)
    torch.manual_seed(0)
    model = RNNLM(40, TiedLSTM(8, 8, batch_first=batch_first), tie_embeddings=tie, dropout=0.0).double()
    tokens, targets = torch.randint(0, 40, (3, 6)), torch.randint(0, 40, (3, 6))
    targets[0, 2] = targets[2, 0] = -100
    logits, state = model(tokens)
    expected = F.cross_entropy(logits.reshape(-1, 40), targets.reshape(-1), reduction="sum")
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    held = []
    for _ in range(3):
        nll, nll_state = model.nll(tokens, targets)
        grads = torch.autograd.grad(nll, list(model.parameters()))
        held.append(grads)
        torch.testing.assert_close(nll, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(nll_state, state, rtol=0, atol=0)
        for g, e in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-12)
    for g, e in zip(held[0], expected_grads, strict=True):  # earlier gradients were not overwritten
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


@pytest.mark.parametrize("classes", [1000, 998])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("native", ["kernels", "kernels-avx2", "torch-ops"])
def test_fused_nll_float32_many_rows_scaled_gradient(
    native: str, with_bias: bool, classes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """float32, rows split over threads (64 rows of 1,000 classes), logits far apart (exp's clamped range), a loss
    scaled by 0.37 (the gradient reaching LinearNLL is not 1): cross_entropy's values and gradients. With lrnn's
    kernels: on an AVX-512 CPU its product kernels write the logits (the bias added in the softmax pass) and the
    weight gradient (classes a multiple of 4), switched off ("kernels-avx2") torch's products do; 998 classes go to
    torch's products either way."""
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", native != "torch-ops")
    torch.manual_seed(1)
    h, weight, bias = torch.randn(64, 16), torch.randn(classes, 16) * 3, torch.randn(classes) * 30
    targets = torch.randint(0, classes, (64,))
    targets[5] = IGNORE_INDEX
    params = [h.requires_grad_(), weight.requires_grad_()] + ([bias.requires_grad_()] if with_bias else [])
    logits = torch.addmm(bias, h, weight.t()) if with_bias else h @ weight.t()
    expected = 0.37 * F.cross_entropy(logits, targets, reduction="sum")
    expected_grads = torch.autograd.grad(expected, params)
    ops = _native.ops() if native != "torch-ops" else None
    was = ops.use_avx512(native == "kernels") if ops is not None else None
    try:
        got = 0.37 * LinearNLL.apply(h, weight, bias if with_bias else None, targets, IGNORE_INDEX, GradBuffers())
        grads = torch.autograd.grad(got, params)
    finally:
        if ops is not None:
            ops.use_avx512(was)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_fused_nll_rejects_out_of_range_targets() -> None:
    h, weight = torch.randn(3, 4), torch.randn(10, 4)
    with pytest.raises((IndexError, RuntimeError), match="out of bounds"):
        LinearNLL.apply(h, weight, None, torch.tensor([1, 10, 2]), IGNORE_INDEX, GradBuffers())


def test_tokens_per_s_counts_training_time_only(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation inside the epoch (here twice) is not training time; a fake clock makes the expectation exact."""
    from lrnn.lightning import lm as lm_module

    clock = FakeClock()
    monkeypatch.setattr(lm_module, "time", clock)
    Timed = timed_language_model(clock)  # training steps take 1 s, validation steps 100 s

    dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=5)
    dm.setup()
    lm = Timed(TiedLSTM(8, 8), vocab_size=dm.vocab_size)
    trainer = _trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=2, val_check_interval=2)
    trainer.fit(lm, datamodule=dm)
    assert trainer.callback_metrics["train/tokens_per_s"].item() == pytest.approx(4 * 4 * 5 / 4.0)


def test_tokens_per_s_after_a_mid_epoch_resume_counts_from_the_resume(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after 6 of 8 batches (a checkpoint, as on Ctrl-C), resumed: the epoch's tokens/s is the 2 batches'
    tokens over their 2 s, and the bar shows the epoch and its 8 batches, not ``Training: 7/?``."""
    import signal

    from lrnn import progress
    from lrnn.lightning import lm as lm_module
    from lrnn.lightning.interrupts import MidEpochCheckpoint, RunInterrupted
    from lrnn.progress import LMProgressBar

    clock = FakeClock()
    monkeypatch.setattr(lm_module, "time", clock)
    monkeypatch.setattr(progress, "time", clock)
    Timed = timed_language_model(clock)  # training steps take 1 s
    saver = MidEpochCheckpoint(every_minutes=None, dirpath=str(tmp_path))

    class CtrlC(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 6:
                saver.signum = signal.SIGINT  # what the SIGINT handler sets; the saver runs next

    def attempt(*callbacks: L.Callback, **fit_kwargs) -> L.Trainer:
        dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=5)
        dm.setup()
        trainer = _trainer(
            max_epochs=1, limit_train_batches=8, limit_val_batches=0, callbacks=list(callbacks),
            enable_progress_bar=any(isinstance(c, LMProgressBar) for c in callbacks),
        )  # fmt: skip
        trainer.fit(Timed(TiedLSTM(8, 8), vocab_size=dm.vocab_size), datamodule=dm, **fit_kwargs)
        return trainer

    with pytest.raises(RunInterrupted):
        attempt(CtrlC(), saver)
    bar, seen = LMProgressBar(), []

    class Read(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            seen.append(
                (bar.train_progress_bar.desc, bar.train_progress_bar.total, bar.get_metrics(trainer, pl_module))
            )

    trainer = attempt(bar, Read(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert trainer.callback_metrics["train/tokens_per_s"].item() == pytest.approx(2 * 4 * 5 / 2.0)
    assert [(desc, total, m["tok/s"]) for desc, total, m in seen] == [("Epoch 0: ", 8, "20")] * 2


def test_embedding_gradient_equals_torchs_and_reuses_memory() -> None:
    """The embedding lookup of the training path: torch's embedding gradient (repeated tokens summed), written into
    memory reused once the previous .grad is set to None, never into a gradient still held."""
    torch.manual_seed(0)
    model = RNNLM(30, TiedLSTM(6, 6), dropout=0.0).double()
    weight = model.embedding.weight
    tokens = torch.tensor([[1, 2, 2, 7], [7, 7, 0, 29]])
    r = torch.randn(2, 4, 6, dtype=torch.float64)
    (expected,) = torch.autograd.grad((F.embedding(tokens, weight) * r).sum(), [weight])
    out = EmbeddingLookup.apply(tokens, weight, model.loss_buffers)
    torch.testing.assert_close(out, F.embedding(tokens, weight), rtol=0, atol=0)
    ptrs, held = [], None
    for step in range(3):
        weight.grad = None
        (EmbeddingLookup.apply(tokens, weight, model.loss_buffers) * r).sum().backward()
        torch.testing.assert_close(weight.grad, expected, rtol=0, atol=1e-12)
        ptrs.append(weight.grad.data_ptr())
        if step == 1:
            held = weight.grad  # someone keeps this gradient: the next step must not write into it
    assert ptrs[1] == ptrs[0] and ptrs[2] != ptrs[1]
    torch.testing.assert_close(held, expected, rtol=0, atol=1e-12)


def test_training_path_uses_the_embedding_lookup_only_with_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = EmbeddingLookup.apply
    monkeypatch.setattr(EmbeddingLookup, "apply", lambda *a: calls.append(1) or real(*a))
    model = RNNLM(30, TiedLSTM(6, 6)).double()
    tokens = torch.randint(0, 30, (2, 5))
    model.nll(tokens, tokens)[0].backward()
    assert calls == [1]
    with torch.no_grad():
        logits, _ = model(tokens)  # evaluation: plain nn.Embedding
    model.embedding.weight.requires_grad_(False)
    model(tokens)  # frozen embedding: plain nn.Embedding
    assert calls == [1] and logits.grad_fn is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_train_like_eager(tiny_corpus: Path) -> None:
    """On GPU, LanguageModel with UntiedLSTM(cuda_graphs=True) trains to the eager run's losses and parameters."""
    from lrnn import UntiedLSTM

    dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=6)
    dm.setup()
    runs = []
    for graphs in (False, True):
        torch.manual_seed(0)
        core = UntiedLSTM(16, 16, num_layers=2, max_len=6, cuda_graphs=graphs)
        lm = LanguageModel(core, vocab_size=dm.vocab_size)
        trainer = _trainer(accelerator="gpu", devices=1, max_epochs=2, gradient_clip_val=5.0, limit_val_batches=2)
        trainer.fit(lm, datamodule=dm)
        runs.append((trainer.callback_metrics["val/loss"].item(), [p.detach().cpu() for p in lm.parameters()]))
        assert (len(core._graphs) > 0) == graphs  # the graphed run replayed captured graphs
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-4)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_off_cpu_nll_is_torchs_cross_entropy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off CPU (here: forced) the training path is torch's embedding and cross_entropy: same loss and gradients."""
    from lrnn import rnnlm

    torch.manual_seed(0)
    model = RNNLM(30, TiedLSTM(6, 8, num_layers=2), tie_embeddings=False).double()
    tokens, targets = torch.randint(0, 30, (3, 5)), torch.randint(0, 30, (3, 5))
    targets[0, 2] = IGNORE_INDEX
    results = []
    for cpu_path in (True, False):
        monkeypatch.setattr(rnnlm, "reuses_buffers", lambda t, cpu_path=cpu_path: cpu_path)
        calls = []
        for fn in (EmbeddingLookup, LinearNLL):
            monkeypatch.setattr(fn, "apply", lambda *a, real=fn.apply, c=calls: c.append(1) or real(*a))
        model.zero_grad(set_to_none=True)
        nll, state = model.nll(tokens, targets)
        nll.backward()
        assert len(calls) == (2 if cpu_path else 0)
        results.append([nll.detach(), *state, *(p.grad.clone() for p in model.parameters())])
        monkeypatch.undo()
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bptt,k1", [("window", None), ("tbptt", 3)])
def test_reset_state_every_window(tiny_corpus: Path, bptt: str, k1: int | None) -> None:
    """The C6 control: every window starts from a zero state in training and evaluation (the carried default does
    not), and with tbptt every step of a window is still scored within it."""
    torch.manual_seed(0)
    dm = TextDataModule(str(tiny_corpus), batch_size=4, seq_len=7, eval_batch_size=3)
    dm.setup()
    seen: dict[bool, list] = {True: [], False: []}
    for reset in (True, False):
        lm = LanguageModel(TiedLSTM(16, 16), vocab_size=dm.vocab_size, bptt=bptt, k1=k1, reset_state_every_window=reset)
        run = lm._run

        def spy(inputs, targets, state, offset=0, run=run, reset=reset):
            seen[reset].append((state is None, offset, inputs.size(1)))
            return run(inputs, targets, state, offset)

        lm._run = spy
        windows = 3
        _trainer(max_steps=windows if bptt == "window" else 3 * windows, limit_val_batches=0).fit(lm, datamodule=dm)
        zero_starts = sum(none for none, _, _ in seen[reset])
        if reset:  # every window from a zero state; tbptt: chunks of 3 + 3 + 1 steps, each window scored whole
            assert zero_starts == windows
            assert sum(n for _, _, n in seen[reset]) == 7 * windows
        else:
            assert zero_starts == 1
    # evaluation: the loss equals scoring each validation window from a zero state
    lm = LanguageModel(TiedLSTM(16, 16), vocab_size=dm.vocab_size, reset_state_every_window=True)
    val = _trainer().validate(lm, datamodule=dm, verbose=False)[0]["val/loss"]
    nll, n = 0.0, 0
    with torch.no_grad():
        for x, y in dm.split_data("validation", 3):
            logits, _ = lm.model.eval()(x)
            nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            n += y.numel()
    assert val == pytest.approx(nll / n, abs=1e-5)
    carried = _trainer().validate(LanguageModel(TiedLSTM(16, 16), vocab_size=dm.vocab_size), datamodule=dm)
    assert carried[0]["val/loss"] != pytest.approx(val, abs=1e-4)
