"""Truncated back-propagation through time for any LightningModule with a recurrent core (manual optimization).

Lightning 2.0 removed ``truncated_bptt_steps``. ``TBPTT`` brings it back as a small helper that a module calls from
``training_step`` under ``self.automatic_optimization = False``; it owns the carried state, the buffer of recent
steps and the optimizer steps. Data arrive batch by batch (e.g. window by window from a stream DataModule), so memory
is O(k2 + batch length), never O(sequence length).

Definitions (Williams & Peng 1990, "BPTT(h; h')"; here ``k1`` new steps per update, gradient through ``k2``):

- ``TBPTT(k1, k2)``, ``k2 >= k1``: after every ``k1`` new steps, ending at step E, one update whose objective is the
  sum of the losses of steps ``[E - k1, E)``; the forward pass runs over the last ``k2`` steps ``[E - k2, E)`` from
  the state at ``E - k2``, which is a constant (detached). Losses are not counted twice: each step is scored by
  exactly one update. Early in the data, ``E - k2 < 0`` and the segment starts at step 0 from the initial state.
- ``k1 == k2 == T`` with batches of T steps is the Zaremba "window" scheme (one update per window, state carried).
- ``TBPTT(None)``: "full" BPTT: every batch is one set of independent sequences from a zero state and one update
  over all of it (sentence-level batching).
- At the last batch of the epoch (``trainer.is_last_batch``) the ``r < k1`` unscored steps are flushed as a shorter
  update: it scores those r steps and back-propagates through ``k2 - k1 + r`` steps (the stored start state is the
  one the next full update would have used). With ``k1 == k2`` this is exactly the short last window.

Recompute, not keep the graph. Every update re-runs the forward pass over its ``k2`` steps from the stored state at
``E - k2``, so the extra compute is ``k2 / k1`` x the forward and backward of ``k1`` steps (the overlap ``k2 - k1`` is
computed ``ceil(k2 / k1)`` times). Keeping the previous update's graph for the overlap instead is not an option that
gives the definition above: its activations were computed with the weights before the last optimizer step (which
then modifies them in place, invalidating the saved graph), fused kernels such as cuDNN's LSTM cannot be
back-propagated from a step in the middle, and the graph of the overlap would be held across updates anyway. The
recompute is exact (all of the segment uses the current weights), holds one graph of ``k2`` steps at a time, and for
``k1 == k2`` costs nothing extra. The stored start state for the next update is taken from this forward pass.

The step function. ``step(module, batch, loss_fn, advance_fn=None, normalizer=None)``:

- ``batch``: a tuple of tensors with time on dim ``time_dim`` (default 1: ``[B, T, ...]``), e.g. (inputs, targets).
- ``loss_fn(chunk, state, offset) -> (loss, state)``: runs the model over ``chunk`` (the batch tensors sliced to a
  range of steps) from ``state`` and returns the summed loss of those steps and the final state. ``offset`` is the
  position of the chunk's first step in the gradient segment (0 at ``E - k2``; position-dependent cores use it).
  The state may be a tensor or any tuple/list/dict of tensors (``None`` = the initial state).
- ``advance_fn(chunk, state, offset) -> state``: the same forward without the loss, for the steps before
  ``E - k1`` (default: ``loss_fn`` with its loss dropped).
- ``normalizer(scored) -> Tensor | float``: the objective is ``sum of chunk losses / normalizer(scored)``, where
  ``scored`` is the batch tensors sliced to ``[E - k1, E)`` (e.g. the number of real targets for a per-token mean).
- ``regularizer() -> Tensor``: a parameter penalty added to every update's objective (after the normalizer).

Lightning behaviour kept under manual optimization: gradient clipping (``grad_clip_val``/``grad_clip_algorithm``:
Lightning forbids ``Trainer(gradient_clip_val)`` with manual optimization, so the value lives here), gradient
accumulation over ``accumulate_grad_batches`` updates (the objective is divided by it, like Lightning does),
``lr_scheduler`` configs with ``interval: step`` (after every optimizer step) and ``interval: epoch`` (call
``on_train_epoch_end``), ``frequency`` and ``ReduceLROnPlateau`` monitors, ``trainer.global_step`` = optimizer steps,
and ``train/grad_norm`` (before clipping) every ``log_every_n_steps`` steps. Under DDP every ``manual_backward``
all-reduces the gradients; the carried state stays on its rank, and every rank runs the same number of updates as
long as the ranks get batches of the same lengths (``StreamWindows`` and ``SentenceBatches`` guarantee it).
fp16 mixed precision with a GradScaler is not supported together with clipping (clipping would see scaled
gradients); use bf16-mixed or 32-bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lrnn.lightning.clipping import clip_gradients

State = Any  # None, a Tensor, or a (nested) tuple / list / dict of tensors such as (h, c)
Chunk = tuple[Tensor, ...]
LossFn = Callable[[Chunk, State, int], tuple[Tensor, State]]
AdvanceFn = Callable[[Chunk, State, int], State]
Normalizer = Callable[[Chunk], Tensor | float | int]


def detach_state(state: State) -> State:
    """The state with every tensor detached (the same nesting)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple | list):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


class TBPTT:
    """Window, TBPTT(k1, k2) and full-sequence BPTT for a LightningModule under manual optimization.

    Example (a GRU regressor; batches (x [B, T, F], y [B, T, 1]) from a stream DataModule)::

        class Forecaster(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
                self.rnn, self.head = nn.GRU(8, 64, batch_first=True), nn.Linear(64, 1)
                self.tbptt = TBPTT(k1=10, k2=50, grad_clip_val=1.0)

            def chunk_loss(self, chunk, state, offset):
                x, y = chunk
                out, state = self.rnn(x, state)
                return F.mse_loss(self.head(out), y, reduction="sum"), state

            def training_step(self, batch, batch_idx):
                self.tbptt.step(self, batch, self.chunk_loss)

            def on_train_epoch_start(self):
                self.tbptt.reset()

            def on_train_epoch_end(self):
                self.tbptt.on_train_epoch_end(self)  # epoch-interval lr schedulers

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=1e-3)

    Args:
        k1: new steps per update; ``None`` for full BPTT over each batch (no state carried between batches).
        k2: steps the gradient flows back through (default ``k1``); ``k2 >= k1``.
        grad_clip_val, grad_clip_algorithm: clip the gradients before every optimizer step (``norm`` or ``value``).
        accumulate_grad_batches: updates whose gradients are accumulated into one optimizer step.
        time_dim: the time dimension of the batch tensors.
        log_grad_norm: log ``train/grad_norm`` (before clipping) every ``trainer.log_every_n_steps`` steps.
    """

    def __init__(
        self,
        k1: int | None,
        k2: int | None = None,
        *,
        grad_clip_val: float | None = None,
        grad_clip_algorithm: Literal["norm", "value"] = "norm",
        accumulate_grad_batches: int = 1,
        time_dim: int = 1,
        log_grad_norm: bool = True,
    ) -> None:
        if k1 is None:
            if k2 is not None:
                raise ValueError("full BPTT (k1=None) takes no k2")
        elif k1 < 1 or (k2 is not None and k2 < k1):
            raise ValueError(f"need 1 <= k1 <= k2, got k1={k1}, k2={k2}")
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        if grad_clip_algorithm not in ("norm", "value"):
            raise ValueError(f"grad_clip_algorithm must be 'norm' or 'value', got {grad_clip_algorithm!r}")
        self.k1 = k1
        self.k2 = k2 if k2 is not None else k1
        self.grad_clip_val = grad_clip_val
        self.grad_clip_algorithm = grad_clip_algorithm
        self.accumulate_grad_batches = accumulate_grad_batches
        self.time_dim = time_dim
        self.log_grad_norm = log_grad_norm
        self._accumulated = 0  # updates whose gradients wait for the next optimizer step
        self._regularizer: Callable[[], Tensor] | None = None  # set by step()
        self.reset()

    def __repr__(self) -> str:
        mode = "full" if self.k1 is None else f"k1={self.k1}, k2={self.k2}"
        return f"TBPTT({mode}, grad_clip_val={self.grad_clip_val}, accumulate={self.accumulate_grad_batches})"

    # ---- carried state ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the carried state and the buffered steps (start of an epoch or of new sequences)."""
        self._buffer: Chunk = ()  # batch tensors over steps [self._start, self._end)
        self._state: State = None  # detached state at step self._start
        self._start = 0  # first buffered step: the start of the next update's gradient segment
        self._scored = 0  # steps [0, self._scored) have been scored by an update
        self._end = 0  # steps received

    @property
    def state(self) -> State:
        """The carried (detached) state at the start of the next update's segment."""
        return self._state

    @property
    def pending_updates(self) -> int:
        """Updates whose gradients wait for the next optimizer step (accumulation); 0 right after a step."""
        return self._accumulated

    def state_dict(self) -> dict[str, Any]:
        """The carried state, the buffered steps and the step counters: what a mid-epoch checkpoint needs to go on
        exactly. Gradients waiting for an accumulated optimizer step are not included (checkpoint when
        ``pending_updates == 0``)."""
        return {
            "buffer": self._buffer,
            "state": self._state,
            "start": self._start,
            "scored": self._scored,
            "end": self._end,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._buffer = tuple(state_dict["buffer"])
        self._state = state_dict["state"]
        self._start, self._scored, self._end = state_dict["start"], state_dict["scored"], state_dict["end"]
        self._accumulated = 0

    def _slice(self, a: int, b: int) -> Chunk:
        return tuple(t.narrow(self.time_dim, a - self._start, b - a) for t in self._buffer)

    def _append(self, batch: Chunk) -> None:
        if not self._buffer or self._buffer[0].size(self.time_dim) == 0:
            self._buffer = batch  # the common k1 == k2 == T case: nothing buffered, no copy
        else:
            self._buffer = tuple(torch.cat([a, b], dim=self.time_dim) for a, b in zip(self._buffer, batch, strict=True))
        self._end += batch[0].size(self.time_dim)

    # ---- one training step ------------------------------------------------------------------------------------
    def step(
        self,
        module: LightningModule,
        batch: Sequence[Tensor],
        loss_fn: LossFn,
        advance_fn: AdvanceFn | None = None,
        normalizer: Normalizer | None = None,
        *,
        last: bool | None = None,
        regularizer: Callable[[], Tensor] | None = None,
    ) -> int:
        """Feed one batch of new steps and run every update it completes; returns the number of updates run (0, 1
        or more). ``last`` (default ``module.trainer.is_last_batch``) flushes the remaining steps. ``regularizer``:
        a penalty on the parameters (e.g. a core's ``regularization()``) added to every update's objective."""
        self._regularizer = regularizer
        batch = tuple(batch)
        if not batch or any(t.size(self.time_dim) != batch[0].size(self.time_dim) for t in batch):
            raise ValueError("the batch tensors must share their length on time_dim")
        if last is None:
            last = bool(getattr(module.trainer, "is_last_batch", False))
        if self.k1 is None:  # full BPTT: this batch alone, from the initial state
            self.reset()
            self._append(batch)
            self._update(module, self._end, self._end, loss_fn, advance_fn, normalizer)
            self._maybe_step(module, force=last)
            return 1
        self._append(batch)
        updates = 0
        while self._end - self._scored >= self.k1:
            end = self._scored + self.k1
            self._update(module, end, max(0, end + self.k1 - self.k2), loss_fn, advance_fn, normalizer)
            self._maybe_step(module)
            updates += 1
        if last and self._end > self._scored:  # the shorter final update
            end = self._end
            self._update(module, end, max(0, end + self.k1 - self.k2), loss_fn, advance_fn, normalizer)
            updates += 1
        if last:
            self._maybe_step(module, force=True)
        return updates

    def _update(
        self,
        module: LightningModule,
        end: int,
        next_start: int,
        loss_fn: LossFn,
        advance_fn: AdvanceFn | None,
        normalizer: Normalizer | None,
    ) -> None:
        """One update: forward over [start, end) from the stored state, backward the losses of [scored, end)."""
        start, score_from = self._start, self._scored
        cuts = sorted({start, end, score_from, next_start})
        state, next_state, losses = self._state, self._state if next_start == start else None, []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            chunk = self._slice(a, b)
            if a >= score_from:
                loss, state = loss_fn(chunk, state, a - start)
                losses.append(loss)
            elif advance_fn is not None:
                state = advance_fn(chunk, state, a - start)
            else:
                state = loss_fn(chunk, state, a - start)[1]
            if b == next_start:
                next_state = state
        objective = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        if normalizer is not None:
            objective = objective / normalizer(self._slice(score_from, end))
        if self._regularizer is not None:
            objective = objective + self._regularizer()
        if self.accumulate_grad_batches > 1:
            objective = objective / self.accumulate_grad_batches
        module.manual_backward(objective)
        self._accumulated += 1
        # keep the state and the steps the next update starts from
        self._state = detach_state(next_state)
        self._buffer = self._slice(next_start, self._end)
        self._start, self._scored = next_start, end

    def _maybe_step(self, module: LightningModule, force: bool = False) -> None:
        if self._accumulated == 0 or (self._accumulated < self.accumulate_grad_batches and not force):
            return
        optimizer = module.optimizers()
        if isinstance(optimizer, list):
            raise ValueError("TBPTT drives a single optimizer; configure_optimizers returned several")
        trainer = module.trainer
        if self.log_grad_norm and trainer.global_step % trainer.log_every_n_steps == 0:
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if grads:
                module.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=False)
        if self.grad_clip_val:
            if getattr(trainer.precision_plugin, "scaler", None) is not None:
                raise RuntimeError("TBPTT gradient clipping does not support fp16 GradScaler; use bf16-mixed or 32")
            clip_gradients(module, optimizer, self.grad_clip_val, self.grad_clip_algorithm)
        optimizer.step()
        optimizer.zero_grad()
        self._accumulated = 0
        step_lr_schedulers(module, "step")

    def on_train_epoch_end(self, module: LightningModule) -> None:
        """Step the epoch-interval lr schedulers (Lightning does not under manual optimization)."""
        step_lr_schedulers(module, "epoch")


def step_lr_schedulers(module: LightningModule, interval: Literal["step", "epoch"]) -> None:
    """Step the module's lr schedulers of ``interval`` as Lightning's automatic optimization would (frequency,
    ``ReduceLROnPlateau`` monitor, the module's ``lr_scheduler_step`` hook). ``step`` counts optimizer steps."""
    trainer = module.trainer
    for config in trainer.lr_scheduler_configs:
        if config.interval != interval:
            continue
        index = trainer.global_step if interval == "step" else trainer.current_epoch + 1
        if index % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            metric = trainer.callback_metrics.get(config.monitor) if config.monitor else None
            if metric is None:
                if config.strict:
                    raise RuntimeError(f"ReduceLROnPlateau monitors {config.monitor!r}, which is not logged")
                rank_zero_warn(f"ReduceLROnPlateau monitors {config.monitor!r}, which is not logged; skipped")
                continue
        module.lr_scheduler_step(config.scheduler, metric)
