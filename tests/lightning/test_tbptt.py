"""TBPTT engine: gradients equal the definition (float64 brute force), window == tbptt(T, T), carried state equals
one untruncated forward pass, sentence-level (full) BPTT ignores padding, and the engine works in any module."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lrnn import TBPTT, LanguageModel, TiedLSTM
from lrnn.data import IGNORE_INDEX, SentenceBatches, StreamWindows

V = 7  # vocabulary of the tiny models


pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, max_epochs=1, limit_val_batches=0,
    )  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


class GradRecorder(L.Callback):
    """The flattened gradient at every optimizer step (after TBPTT's clipping; before automatic clipping)."""

    def __init__(self) -> None:
        self.grads: list[torch.Tensor] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append(torch.cat([p.grad.flatten() for p in pl_module.parameters()]).clone())


def _stream(batch: int = 2, length: int = 25, seq_len: int = 4, seed: int = 0) -> StreamWindows:
    tokens = torch.randint(V, (batch * length,), generator=torch.Generator().manual_seed(seed))
    return StreamWindows(tokens, batch, seq_len)


def _lm(seed: int = 0, **kwargs) -> LanguageModel:
    torch.manual_seed(seed)
    kwargs.setdefault("optimizer", lambda params: torch.optim.SGD(params, lr=0.0))
    return LanguageModel(TiedLSTM(3, 4, num_layers=2), vocab_size=V, **kwargs)


def _fit(lm: LanguageModel, ds, **trainer_kwargs) -> GradRecorder:
    recorder = GradRecorder()
    trainer_kwargs.setdefault("precision", "64-true")
    _trainer(callbacks=[recorder], **trainer_kwargs).fit(lm, train_dataloaders=DataLoader(ds, batch_size=None))
    return recorder


def _updates(n: int, k1: int, k2: int) -> list[tuple[int, int, int]]:
    """(segment start, first scored step, end) of every update over n steps, straight from the definition."""
    out, scored = [], 0
    while scored + k1 <= n:
        out.append((max(0, scored + k1 - k2), scored, scored + k1))
        scored += k1
    if scored < n:  # the shorter final update starts where the next full one would have
        out.append((max(0, scored + k1 - k2), scored, n))
    return out


def _objective(nll: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    return nll / targets.size(0) if reduction == "sum_over_time" else nll / targets.numel()


@pytest.mark.parametrize(("k1", "k2"), [(1, 1), (3, 3), (2, 5), (3, 4), (4, 7), (5, 10)])
@pytest.mark.parametrize("reduction", ["mean", "sum_over_time"])
def test_update_gradients_equal_the_definition(k1: int, k2: int, reduction: str) -> None:
    """Every update's gradient == d/dθ [sum of the losses of its k1 steps], forward over the last k2 steps from the
    state k2 steps back taken from one untruncated forward pass and held constant (lr 0: θ fixed)."""
    ds = _stream(seq_len=4)  # windows of 4: updates straddle batches
    lm = _lm(bptt="tbptt", k1=k1, k2=k2, loss_reduction=reduction)
    grads = _fit(lm, ds).grads
    model = lm.model
    x, y = ds.data[:, :-1], ds.data[:, 1:]
    updates = _updates(x.size(1), k1, k2)
    assert len(grads) == len(updates)
    params = list(model.parameters())
    for (start, scored, end), grad in zip(updates, grads, strict=True):
        with torch.no_grad():
            state = model(x[:, :start])[1] if start > 0 else None
        logits, _ = model(x[:, start:end], state)
        targets = y[:, scored:end]
        nll = F.cross_entropy(logits[:, scored - start :].reshape(-1, V), targets.reshape(-1), reduction="sum")
        expected = torch.cat([g.flatten() for g in torch.autograd.grad(_objective(nll, targets, reduction), params)])
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("k1", "k2"), [(2, 2), (2, 5), (3, 4)])
def test_training_equals_a_stepwise_reference(k1: int, k2: int) -> None:
    """With lr > 0: the state at a segment start is the latest value computed for that step (by the previous
    update, with the weights of that time). Reference: one step at a time, every state remembered."""
    ds = _stream(seq_len=5)
    lm = _lm(bptt="tbptt", k1=k1, k2=k2, optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    reference = copy.deepcopy(lm.model).double()
    _fit(lm, ds)
    x, y = ds.data[:, :-1], ds.data[:, 1:]
    states: dict[int, object] = {0: None}
    for start, scored, end in _updates(x.size(1), k1, k2):
        state, nll = states[start], 0.0
        for t in range(start, end):
            logits, state = reference(x[:, t : t + 1], state)
            states[t + 1] = tuple(s.detach() for s in state)
            if t >= scored:
                nll = nll + F.cross_entropy(logits.reshape(-1, V), y[:, t], reduction="sum")
        loss = nll / (x.size(0) * (end - scored))
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads, strict=True):
                p -= 0.5 * g
    for p, q in zip(lm.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum_over_time"])
@pytest.mark.parametrize("precision", ["64-true", "32-true"])
def test_window_equals_tbptt_T_T(reduction: str, precision: str) -> None:
    """``window`` (automatic optimization, Trainer clipping) and ``tbptt(T, T)`` (manual, module clipping) take the
    same steps, bit for bit, including the short last window, active norm clipping and the epoch lr schedule."""
    ds = _stream(batch=3, length=23, seq_len=5)  # 22 targets per row: 4 windows of 5 and one of 2
    sgd = lambda params: torch.optim.SGD(params, lr=0.5)  # noqa: E731
    schedule = dict(optimizer=sgd, loss_reduction=reduction, lr_decay=0.5, lr_decay_after=1)
    window = _lm(**schedule)
    tbptt = _lm(**schedule, bptt="tbptt", k1=5, k2=5, grad_clip=0.05)
    g_window = _fit(window, ds, gradient_clip_val=0.05, precision=precision, max_epochs=3).grads
    g_tbptt = _fit(tbptt, ds, precision=precision, max_epochs=3).grads
    assert len(g_window) == len(g_tbptt) == 15
    assert window.trainer.optimizers[0].param_groups[0]["lr"] == tbptt.trainer.optimizers[0].param_groups[0]["lr"]
    for p, q in zip(window.parameters(), tbptt.parameters(), strict=True):
        assert torch.equal(p, q)
    # without clipping the recorded gradients are the same too (automatic mode records them before clipping)
    window, tbptt = _lm(optimizer=sgd), _lm(optimizer=sgd, bptt="tbptt", k1=5, k2=5)
    for a, b in zip(_fit(window, ds).grads, _fit(tbptt, ds).grads, strict=True):
        assert torch.equal(a, b)


def test_carried_state_equals_one_untruncated_forward_pass() -> None:
    """The decoder inputs of every scored step (k1 < k2, windows of 4) are those of one forward pass over the whole
    stream (the decoder reads nothing else)."""
    ds = _stream(seq_len=4)
    lm = _lm(bptt="tbptt", k1=3, k2=5)
    seen: list[torch.Tensor] = []
    features = lm.model._features  # [T, B, H]: the time-major core's output, what the decoder reads
    lm.model._features = lambda *args: (out := features(*args), seen.append(out[0].detach()))[0]
    _fit(lm, ds)
    x = ds.data[:, :-1]
    with torch.no_grad():
        full, _ = features(x, None, 0)
    torch.testing.assert_close(torch.cat(seen, dim=0), full, rtol=1e-12, atol=1e-12)


def test_full_mode_gradient_ignores_padding() -> None:
    """A padded, masked sentence batch gives the gradient of the per-sentence losses (no padding, zero states),
    whatever the pad id; offsets start at 0 for every sentence."""
    torch.manual_seed(0)
    lengths = torch.tensor([3, 5, 2, 5])
    x = torch.randint(V, (int(lengths.sum()),))
    y = torch.randint(V, (int(lengths.sum()),))
    y[4] = IGNORE_INDEX  # a step without a target
    grads = []
    for pad_id in (0, 6):
        ds = SentenceBatches(x, y, lengths, batch_size=4, pad_id=pad_id)
        lm = _lm(bptt="full", loss_reduction="sum_over_time")
        grads.append(_fit(lm, ds).grads[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    model, nll = lm.model, 0.0
    for start, n in zip((torch.cumsum(lengths, 0) - lengths).tolist(), lengths.tolist(), strict=True):
        logits, _ = model(x[None, start : start + n])
        nll = nll + F.cross_entropy(logits[0], y[start : start + n], reduction="sum")
    expected = torch.autograd.grad(nll / 4, list(model.parameters()))
    torch.testing.assert_close(grads[0], torch.cat([g.flatten() for g in expected]), rtol=1e-10, atol=1e-12)


def test_mode_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="needs k1"):
        _lm(bptt="tbptt")
    with pytest.raises(ValueError, match="k1 <= k2"):
        _lm(bptt="tbptt", k1=5, k2=3)
    with pytest.raises(ValueError, match="apply to bptt='tbptt' only"):
        _lm(bptt="window", k1=5)
    with pytest.raises(ValueError, match="trainer.gradient_clip_val"):
        _lm(grad_clip=1.0)


class Forecaster(L.LightningModule):
    """A module that is not a LanguageModel: GRU state (one tensor), float targets, step-interval scheduler."""

    def __init__(self, k1: int, k2: int, accumulate: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.rnn, self.head = nn.GRU(2, 8, batch_first=True), nn.Linear(8, 1)
        self.tbptt = TBPTT(k1, k2, grad_clip_val=0.01, accumulate_grad_batches=accumulate)
        self.offsets: list[int] = []

    def chunk_loss(self, chunk, state, offset):
        x, y = chunk
        self.offsets.append(offset)
        out, state = self.rnn(x, state)
        return F.mse_loss(self.head(out), y, reduction="sum"), state

    def training_step(self, batch, batch_idx):
        self.tbptt.step(self, batch, self.chunk_loss)

    def on_train_epoch_start(self) -> None:
        self.tbptt.reset()

    def on_train_epoch_end(self) -> None:
        self.tbptt.on_train_epoch_end(self)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=1.0)
        step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        epoch = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
        return [opt], [{"scheduler": step, "interval": "step"}, {"scheduler": epoch, "interval": "epoch"}]


class NormRecorder(L.Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in pl_module.parameters()])))


def test_engine_in_any_module_with_clipping_accumulation_and_schedulers() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(4, 30, 2), torch.randn(4, 30, 1)
    batches = [(x[:, i : i + 6], y[:, i : i + 6]) for i in range(0, 30, 6)]  # 5 batches of 6 steps
    module, norms = Forecaster(k1=4, k2=6, accumulate=2), NormRecorder()
    trainer = _trainer(max_epochs=2, callbacks=[norms])
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    # 30 steps / k1 = 4 -> 7 full updates + 1 flushed (2 steps) per epoch; accumulate 2 -> 4 optimizer steps per epoch
    assert trainer.global_step == 8
    assert max(norms.norms) <= 0.01 + 1e-6  # clipped before every step
    # the lr halves after every optimizer step and drops 10x after every epoch
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.5**8 * 0.1**2)
    # chunk offsets in each segment, cut at the next start and the scored steps: [0, 2) [2, 4) | [2, 4) [4, 6) [6, 8)
    assert module.offsets[:5] == [0, 2, 0, 2, 4]
