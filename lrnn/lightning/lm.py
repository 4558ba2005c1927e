"""``LitLanguageModel``: the LightningModule that trains any recurrent core as a language model (window, TBPTT or
sentence-level BPTT).

Two classes, two jobs: ``lrnn.RNNLM`` is the network (a plain ``nn.Module``: embedding -> core -> decoder) and
``LitLanguageModel`` (Lightning's ``Lit*`` naming) trains and evaluates one. ``LanguageModel`` is the earlier name of
``LitLanguageModel``, kept importable.
"""

from __future__ import annotations

import importlib
import inspect
import random
import time
from collections.abc import Mapping
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from lightning_utilities.core.apply_func import apply_to_collection
from torch import nn
from torchmetrics import MeanMetric

from lrnn.cores._lstm_math import StepWeightLSTMBase
from lrnn.data.batching import IGNORE_INDEX
from lrnn.kernels import native_ops
from lrnn.lightning.clipping import clip_gradients
from lrnn.lightning.ddp import configure_unused_parameters
from lrnn.lightning.tbptt import TBPTT, detach_state
from lrnn.rnnlm import RNNLM, State

LossReduction = Literal["mean", "sum_over_time"]
Bptt = Literal["window", "tbptt", "full"]
Batch = tuple[torch.Tensor, torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; ``step``, ``loss`` and ``lr`` say where."""

    def __init__(self, step: int | str, loss: float, lr: float) -> None:
        self.step, self.loss, self.lr = step, loss, lr
        super().__init__(
            f"training diverged: loss {loss:.4g} at step {step} (lr {lr:.4g}). Checkpoints written before it are kept; "
            "lower the learning rate (--model.optimizer.init_args.lr) or clip gradients (--trainer.gradient_clip_val)"
        )


def rng_states() -> dict[str, Any]:
    """The global random states (torch CPU, CUDA if initialised, Python); dropout draws from torch's."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TokenMean(MeanMetric):
    """``MeanMetric`` without its per-update ``isnan().any()`` check, a host sync per step on GPU. The sums are the
    same as ``MeanMetric``'s (a NaN loss shows as a NaN metric instead of a warning)."""

    def _cast_and_nan_check_input(
        self, x: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(self.dtype), (torch.ones_like(x) if weight is None else weight).to(self.dtype)


def core_config(core: nn.Module) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` that rebuild ``core`` (untrained): its constructor's arguments read back from
    the attributes of the same names (lrnn's cores keep all of them). None when one is missing or the constructor
    takes ``*args`` / ``**kwargs``: then ``load_from_checkpoint(path, core=...)`` needs the core given."""
    cls = type(core)
    init_args = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return None
        if name == "self":
            continue
        if hasattr(core, name):
            value = getattr(core, name)
            if value is None or isinstance(value, bool | int | float | str):
                init_args[name] = value
                continue
        if param.default is inspect.Parameter.empty:
            return None
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def instantiate_core(config: Mapping[str, Any]) -> nn.Module:
    """The core a ``core_config`` dict describes (the class must be an ``nn.Module``)."""
    module, _, name = str(config["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"core class_path {config['class_path']!r} is not an nn.Module")
    return cls(**(config.get("init_args") or {}))


class LitLanguageModel(L.LightningModule):
    """Trains an ``RNNLM`` (embedding -> recurrent core -> decoder; ``self.model``) window by window, by TBPTT(k1, k2)
    or per sentence.

    Training modes (``bptt``):

    - ``window`` (default; Zaremba et al.): one update per batch (a window of ``seq_len`` steps of B streams),
      gradient through that window only, state carried (detached) into the next window. Automatic optimization:
      ``Trainer(gradient_clip_val, accumulate_grad_batches)`` apply as usual.
    - ``tbptt``: every ``k1`` new steps one update whose objective is the loss of those k1 steps, with gradients
      through the last ``k2`` steps (see :mod:`lrnn.lightning.tbptt`; recomputes the k2-step segment). Needs stream
      batches of any ``seq_len``; ``k1 = k2 = seq_len`` reproduces ``window`` exactly. The core's ``offset`` is the
      step's position in the k2-step gradient segment.
    - ``full``: sentence-level BPTT over sentence batches (``batching: sentence``): each sequence from a zero state,
      gradient through all of it, ``offset`` = position from the sentence start.

    ``tbptt`` and ``full`` use manual optimization, so clipping and accumulation are this module's ``grad_clip``,
    ``grad_clip_algorithm`` and ``accumulate_grad_batches`` (the ``lrnn`` CLI moves ``trainer.gradient_clip_val`` and
    ``trainer.accumulate_grad_batches`` there), and the epoch lr schedule is stepped at the end of every epoch.

    Evaluation never truncates: with stream data the state is carried across all windows of a split (one long
    forward pass); with sentence data every sequence starts from a zero state.

    The state is carried (detached) from batch to batch within an epoch, reset at the start of every epoch and of
    every evaluation split. ``reset_state_every_window=True`` zeroes it at every batch instead, in training and in
    evaluation (stream data): a control that measures what the carried state adds (the delayed-recall study, C6).
    Targets equal to -100 (padding, steps without a target) are ignored by the loss and all metrics, and not counted
    as tokens. Logged: ``{train,val,test}/loss`` (mean NLL per real target, nats),
    ``{...}/ppl``, ``{...}/acc`` (with ``accuracy=True``), ``train/tokens_per_s``, ``train/lr``, ``train/grad_norm``
    (before clipping); parameter counts as hyper-parameters. A core with a ``regularization()`` method (a 0-dim
    tensor, e.g. SoftTiedLSTM's ``penalty * sum_t ||Δ_t||²``) has it added to every update's objective (after the
    ``loss_reduction`` normalisation) in all three modes, logged as ``train/reg``.

    Args:
        core: the recurrent core (``lrnn.TiedLSTM``, ``lrnn.UntiedLSTM``, ... or any ``nn.LSTM``-like module).
        vocab_size: V (linked from the DataModule by the CLI).
        dropout, tie_embeddings, init_range, output_size: see :class:`lrnn.rnnlm.RNNLM`.
        optimizer: optimizer factory (``params -> Optimizer``); default SGD with lr 1 (Zaremba et al.).
        lr_decay, lr_decay_after: keep the lr constant for ``lr_decay_after`` epochs, then multiply it by
            ``lr_decay`` after every further epoch (Zaremba et al.: 4 and 0.5 for the small model).
        loss_reduction: the objective of one update. ``mean``: the summed NLL of its targets / their number (the
            per-token mean). ``sum_over_time``: Zaremba's objective, the summed NLL / B, i.e. the sum over the
            update's steps of the batch-mean NLL (``seq_len`` x the per-token mean for a window; ``k1`` x for a
            TBPTT update; for padded sentences the per-sentence summed NLL averaged over the batch). With SGD at
            lr 1 and norm clipping at 5 this is what makes the published schedule work.
        bptt: ``window``, ``tbptt`` or ``full`` (see above).
        k1, k2: ``tbptt`` only: new steps per update and steps of gradient (``k2 >= k1``, default ``k2 = k1``).
        grad_clip, grad_clip_algorithm: ``tbptt``/``full`` only: clip gradients (``norm`` or ``value``).
        accumulate_grad_batches: ``tbptt``/``full`` only: updates accumulated into one optimizer step.
        accuracy: also log ``{split}/acc``, the fraction of real targets whose argmax is right (synthetic tasks).
        reset_state_every_window: start every batch (window of ``seq_len`` steps) from a zero state in training,
            validation and test, instead of carrying it over. With ``tbptt`` each window's steps are all scored
            within the window (the last, shorter update is flushed), so nothing crosses a window boundary.
    """

    def __init__(
        self,
        core: nn.Module,
        vocab_size: int,
        dropout: float = 0.0,
        tie_embeddings: bool = False,
        init_range: float | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_decay: float = 1.0,
        lr_decay_after: int = 0,
        loss_reduction: LossReduction = "mean",
        bptt: Bptt = "window",
        k1: int | None = None,
        k2: int | None = None,
        grad_clip: float | None = None,
        grad_clip_algorithm: Literal["norm", "value"] = "norm",
        accumulate_grad_batches: int = 1,
        accuracy: bool = False,
        output_size: int | None = None,
        reset_state_every_window: bool = False,
    ) -> None:
        super().__init__()
        if loss_reduction not in ("mean", "sum_over_time"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum_over_time', got {loss_reduction!r}")
        if bptt not in ("window", "tbptt", "full"):
            raise ValueError(f"bptt must be 'window', 'tbptt' or 'full', got {bptt!r}")
        if bptt == "tbptt" and k1 is None:
            raise ValueError("bptt='tbptt' needs k1 (and optionally k2 >= k1)")
        if bptt != "tbptt" and (k1 is not None or k2 is not None):
            raise ValueError(f"k1/k2 apply to bptt='tbptt' only (bptt={bptt!r}: window = data.seq_len)")
        if bptt == "window" and (grad_clip is not None or accumulate_grad_batches != 1):
            raise ValueError(
                "bptt='window' uses automatic optimization: set trainer.gradient_clip_val and "
                "trainer.accumulate_grad_batches instead of grad_clip / accumulate_grad_batches"
            )
        if isinstance(core, Mapping):  # {"class_path", "init_args"}: a checkpoint's hyper-parameters
            core = instantiate_core(core)
        self.save_hyperparameters(ignore=["core", "optimizer"])
        self.hparams["core"] = core_config(core)  # load_from_checkpoint rebuilds the core from it
        self.model = RNNLM(
            vocab_size,
            core,
            dropout=dropout,
            tie_embeddings=tie_embeddings,
            init_range=init_range,
            output_size=output_size,
        )
        self.optimizer_factory = optimizer
        self.loss_reduction = loss_reduction
        self.bptt = bptt
        self.accuracy = accuracy
        self.reset_state_every_window = reset_state_every_window
        self.automatic_optimization = bptt == "window"
        self.tbptt: TBPTT | None = None
        if bptt != "window":
            self.tbptt = TBPTT(
                k1 if bptt == "tbptt" else None,
                k2,
                grad_clip_val=grad_clip,
                grad_clip_algorithm=grad_clip_algorithm,
                accumulate_grad_batches=accumulate_grad_batches,
            )
        splits = ("train", "val", "test")
        self.metrics = nn.ModuleDict({f"{s}_nll": TokenMean() for s in splits})
        if accuracy:
            self.metrics.update({f"{s}_acc": TokenMean() for s in splits})
        self._state: dict[str, State | None] = {}
        self._carry_eval_state = bptt != "full"
        self._tokens_seen: torch.Tensor | int = 0
        self._tokens_base: torch.Tensor | int = 0  # tokens of this epoch trained before a resume (not timed here)
        self._step_nll: torch.Tensor | float = 0.0
        self._step_tokens: torch.Tensor | int = 0
        self._epoch_start = 0.0
        self._train_seconds = 0.0  # training time of this epoch, validation excluded (for tokens/s)
        self._epoch_lr: float | None = None  # the lr of the running epoch (logged and printed at its end)
        self._loss_check: torch.Tensor | float = 0.0  # losses since the last finiteness check (accelerators)
        self._pending_rng: dict[str, Any] | None = None  # restored at the first training batch after a resume
        self._tested_epoch: int | None = None  # epoch of the checkpoint the test loaded
        self.last_val_step: int | None = None  # global_step of the last validation during fit

    @property
    def core(self) -> nn.Module:
        return self.model.core

    def forward(self, tokens: torch.Tensor, state: State | None = None, offset: int = 0) -> tuple[torch.Tensor, State]:
        """tokens [B, T] -> logits [B, T, V], state."""
        return self.model(tokens, state, offset)

    def setup(self, stage: str) -> None:
        """Match the data: evaluation carries the state over stream batches, not over sentence batches. Under DDP,
        let the reducer find unused parameters where this model's core can leave some out of a step (see
        :mod:`lrnn.lightning.ddp`)."""
        if stage == "fit" and self._trainer is not None:
            configure_unused_parameters(self.trainer.strategy, self.model, self.hparams.vocab_size)
        batching = getattr(getattr(self.trainer, "datamodule", None), "batching", None)
        if batching is None:
            return
        self._carry_eval_state = batching != "sentence"
        if stage == "fit" and (batching == "sentence") != (self.bptt == "full"):
            raise ValueError(
                f"bptt={self.bptt!r} does not fit batching={batching!r}: use bptt='full' with sentence batches and "
                "'window' or 'tbptt' with stream batches"
            )

    # ---- scoring ----------------------------------------------------------------------------------------------
    def _score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed NLL of the real targets (-100 ignored) and their number, both 0-dim tensors (no host sync)."""
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        return nll, (targets != IGNORE_INDEX).sum()

    def _record(
        self, split: str, nll: torch.Tensor, n: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor
    ):
        """Update the split's metrics with a (detached) NLL sum over n real targets."""
        weight = n.clamp_min(1)
        self.metrics[f"{split}_nll"].update(nll / weight, n)
        if self.accuracy:
            correct = ((logits.detach().argmax(-1) == targets) & (targets != IGNORE_INDEX)).sum()
            self.metrics[f"{split}_acc"].update(correct / weight, n)

    def _nll_sum(self, split: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run one batch (with the carried state where state is carried); returns the summed NLL, the number of real
        targets and the logits."""
        inputs, targets = batch
        carry = self._carry_eval_state if split != "train" else self.bptt != "full"
        carry = carry and not self.reset_state_every_window
        nll, n, logits, state = self._run(inputs, targets, self._state.get(split) if carry else None)
        self._state[split] = detach_state(state) if carry else None
        return nll, n, logits

    def _run(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None, offset: int = 0):
        """Summed NLL, number of real targets, logits (None unless accuracy is logged) and the final state."""
        if self.accuracy:
            logits, state = self(inputs, state, offset)
            return *self._score(logits, targets), logits, state
        nll, state = self.model.nll(inputs, targets, state, offset)  # no [B, T, V] logits tensors: faster
        return nll, (targets != IGNORE_INDEX).sum(), None, state

    # ---- steps ------------------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        if not self.automatic_optimization:
            return self._manual_training_step(batch)
        nll, n, logits = self._nll_sum("train", batch)
        mean = nll / n.clamp_min(1)
        self._check_finite(mean.detach())
        self._record("train", nll.detach(), n, logits, batch[1])
        self.log("train/loss", mean.detach(), on_step=True, on_epoch=False, prog_bar=True)
        self._tokens_seen += n
        # sum_over_time: the sum over steps of the batch-mean NLL
        objective = nll / batch[1].size(0) if self.loss_reduction == "sum_over_time" else mean
        reg = self._regularization()
        return objective if reg is None else objective + reg

    def _regularization(self) -> torch.Tensor | None:
        """The core's ``regularization()`` (e.g. SoftTiedLSTM's penalty on its deltas), logged as ``train/reg``;
        None for cores without one. It is added to the objective of every update in every bptt mode."""
        fn = getattr(self.model.core, "regularization", None)
        if fn is None:
            return None
        reg = fn()
        self.log("train/reg", reg.detach(), on_step=True, on_epoch=False)
        return reg

    def _manual_training_step(self, batch: Batch) -> None:
        assert self.tbptt is not None
        self._step_nll, self._step_tokens = 0.0, 0
        has_reg = hasattr(self.model.core, "regularization")
        reset = self.reset_state_every_window and self.bptt == "tbptt"
        if reset:  # a fresh segment at every window, its last steps flushed within it
            self.tbptt.reset()
        updates = self.tbptt.step(
            self, batch, self._train_chunk, self._advance, self._normalizer,
            regularizer=self._regularization if has_reg else None, last=True if reset else None,
        )  # fmt: skip
        if updates:
            loss = self._step_nll / self._step_tokens.clamp_min(1)
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)

    def _train_chunk(self, chunk: tuple[torch.Tensor, ...], state: State | None, offset: int):
        """TBPTT loss_fn: the summed NLL of a chunk of steps [B, t] from ``state``, and the state after it."""
        inputs, targets = chunk
        nll, n, logits, state = self._run(inputs, targets, state, offset)
        self._check_finite(nll.detach() / n.clamp_min(1))
        self._record("train", nll.detach(), n, logits, targets)
        self._step_nll = self._step_nll + nll.detach()
        self._step_tokens = self._step_tokens + n
        self._tokens_seen += n
        return nll, state

    # Stop at the first diverged training loss (per token, nats), before its backward pass: NaN, inf, or so large
    # that the perplexity overflows (exp(88.7) is float32's max; a uniform guess over V words scores log V).
    # On the CPU one check per step is free; on an accelerator it would be a host sync per step, so the running
    # maximum stays on the device (torch.maximum keeps NaN) and is checked every `finite_check_every` steps and at
    # the end of each epoch: the run then stops within that many steps.
    finite_check_every = 50
    diverged_loss = 88.0

    def _check_finite(self, loss: torch.Tensor) -> None:
        if loss.device.type == "cpu":
            value = loss.item()
            if not value <= self.diverged_loss:
                raise TrainingDiverged(self.global_step, value, self._lr())
            return
        self._loss_check = loss if isinstance(self._loss_check, float) else torch.maximum(self._loss_check, loss)
        if (self.global_step + 1) % self.finite_check_every == 0:
            self._check_pending_losses()

    def _check_pending_losses(self) -> None:
        """Check the largest loss seen on the device since the last check (one host sync)."""
        worst, self._loss_check = self._loss_check, 0.0
        if isinstance(worst, torch.Tensor) and not worst.item() <= self.diverged_loss:
            steps = f"{max(0, self.global_step + 1 - self.finite_check_every)}..{self.global_step}"
            raise TrainingDiverged(steps, worst.item(), self._lr())

    def _lr(self) -> float:
        return float(self.trainer.optimizers[0].param_groups[0]["lr"]) if self.trainer.optimizers else float("nan")

    def _advance(self, chunk: tuple[torch.Tensor, ...], state: State | None, offset: int) -> State:
        """TBPTT advance_fn: the state after steps that are not scored (no decoder, see ``RNNLM.advance``)."""
        return self.model.advance(chunk[0], state, offset)

    def _normalizer(self, scored: tuple[torch.Tensor, ...]) -> torch.Tensor | int:
        """The update's objective = summed NLL / this (see ``loss_reduction``)."""
        targets = scored[1]
        if self.loss_reduction == "sum_over_time":
            return targets.size(0)
        return (targets != IGNORE_INDEX).sum().clamp_min(1)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        nll, n, logits = self._nll_sum("val", batch)
        self._record("val", nll, n, logits, batch[1])

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        nll, n, logits = self._nll_sum("test", batch)
        self._record("test", nll, n, logits, batch[1])

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if self._pending_rng is not None:  # resumed mid-epoch: the random state of the interrupted run
            set_rng_states(self._pending_rng)
            self._pending_rng = None

    # ---- state resets and epoch-level logging -------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._state["train"] = None
        if self.tbptt is not None:
            self.tbptt.reset()
        self._tokens_seen = 0
        self._tokens_base = 0
        self._train_seconds = 0.0
        self._epoch_start = time.perf_counter()
        self._epoch_lr = self._lr()

    def _reset_metrics(self, split: str) -> None:
        # fresh tensors: a previous trainer.validate() left inference tensors
        for name in (f"{split}_nll", f"{split}_acc"):
            if name in self.metrics:
                self.metrics[name].reset()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # tokens/s counts training only: Lightning runs validation inside the training epoch
        now = time.perf_counter()
        self._train_seconds += now - self._epoch_start
        self._epoch_start = now

    def on_validation_end(self) -> None:
        self._epoch_start = time.perf_counter()  # validation inside a training epoch is not training time

    def on_validation_epoch_start(self) -> None:
        self._state["val"] = None
        self._reset_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._state["test"] = None
        self._reset_metrics("test")

    def _log_split(self, split: str, prog_bar: bool = False) -> torch.Tensor:
        loss = self.metrics[f"{split}_nll"].compute()  # synced over ranks
        self.metrics[f"{split}_nll"].reset()
        self.log(f"{split}/loss", loss, prog_bar=prog_bar, sync_dist=False)
        self.log(f"{split}/ppl", torch.exp(loss), prog_bar=prog_bar, sync_dist=False)
        if self.accuracy:
            self.log(f"{split}/acc", self.metrics[f"{split}_acc"].compute(), prog_bar=prog_bar, sync_dist=False)
            self.metrics[f"{split}_acc"].reset()
        return loss

    def on_train_epoch_end(self) -> None:
        if not isinstance(self._loss_check, float):
            self._check_pending_losses()
        elapsed = self._train_seconds
        loss = self._log_split("train")
        # after a mid-epoch resume: the tokens trained since the resume over the time since the resume
        tokens_per_s = float(self._tokens_seen - self._tokens_base) * self.trainer.world_size / max(elapsed, 1e-9)
        self.log("train/tokens_per_s", tokens_per_s, sync_dist=False)
        lr = self._epoch_lr if self._epoch_lr is not None else self._lr()  # the lr this epoch trained with
        self.log("train/lr", lr, sync_dist=False)
        val = self.trainer.callback_metrics.get("val/ppl")  # validation runs before this hook
        rank_zero_info(
            f"epoch {self.current_epoch}: train ppl {loss.exp():.2f}"
            + (f", val ppl {val:.2f}" if val is not None else "")
            + f", lr {lr:.4g}, {tokens_per_s:.0f} tokens/s, {elapsed:.0f} s"
            + (" (since the resume)" if float(self._tokens_base) else "")
        )
        if self.tbptt is not None:  # manual optimization: Lightning leaves the epoch lr schedule to us
            self.tbptt.on_train_epoch_end(self)

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", prog_bar=True)
        if self.trainer.state.fn == "fit":
            self.last_val_step = self.global_step
        else:
            self._log_evaluated_epoch()

    def on_test_epoch_end(self) -> None:
        self._log_split("test", prog_bar=True)
        self._log_evaluated_epoch()

    def _log_evaluated_epoch(self) -> None:
        """Label a validate/test row with the epoch that trained the evaluated weights (the loaded checkpoint's, or
        the last finished epoch), not with the epoch counter, which points past the end of fit."""
        epoch = self._tested_epoch if self._tested_epoch is not None else max(self.current_epoch - 1, 0)
        self.log("epoch", float(epoch), sync_dist=False)

    def on_fit_end(self) -> None:
        self._tested_epoch = None  # evaluations after fit use the final weights unless they load a checkpoint

    # ---- checkpoints: everything an exact mid-epoch resume needs (all keys optional on load) --------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the epoch that trained these weights (a save after fit ended sees the epoch counter already advanced)
        checkpoint["lrnn_weights_epoch"] = self.current_epoch - (self.trainer.state.fn != "fit")
        metric = self.metrics["train_nll"]
        state = {
            "carried": self._state.get("train"),
            "tbptt": self.tbptt.state_dict() if self.tbptt is not None else None,
            "train_nll": {name: getattr(metric, name) for name in metric._defaults},
            "train_acc": (
                {name: getattr(self.metrics["train_acc"], name) for name in self.metrics["train_acc"]._defaults}
                if "train_acc" in self.metrics
                else None
            ),
            "tokens_seen": self._tokens_seen,
            "epoch_lr": self._epoch_lr,
            "epoch_elapsed": time.perf_counter() - self._epoch_start,
            "rng": rng_states(),
        }
        loop = self.trainer.fit_loop.epoch_loop.batch_progress.current
        mid_epoch = self.trainer.state.fn == "fit" and 0 < loop.processed < self.trainer.num_training_batches
        world = self.trainer.world_size
        if world == 1 or not torch.distributed.is_initialized():
            checkpoint["lrnn_train_state"] = {**state, "mid_epoch": mid_epoch}
            return
        # DDP: every rank carries its own state, stream block and random state; rank 0 writes them all
        # (every rank runs this hook: Trainer.save_checkpoint is called on all of them)
        state = apply_to_collection(state, torch.Tensor, lambda t: t.detach().cpu())
        states: list[Any] = [None] * world
        torch.distributed.all_gather_object(states, state)
        checkpoint["lrnn_rank_train_states"] = {"states": states, "mid_epoch": mid_epoch}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._tested_epoch = checkpoint.get("lrnn_weights_epoch", checkpoint.get("epoch"))
        saved = checkpoint.get("lrnn_train_state")
        ranks = checkpoint.get("lrnn_rank_train_states")
        if self._trainer is not None and self.trainer.state.fn == "fit":
            if ranks is not None:
                saved = self._rank_state(ranks["states"], bool(ranks["mid_epoch"]))
            elif saved is not None and self.trainer.world_size > 1:  # written by one process
                saved = self._rank_state([saved], bool(saved.get("mid_epoch", True)))
        if saved is None:  # a checkpoint from before mid-epoch resume: weights and loops only
            return
        self._resume_state = saved

    def _rank_state(self, states: list[Any], mid_epoch: bool) -> dict[str, Any] | None:
        """This rank's share of a checkpoint written by several ranks. A mid-epoch one needs the same number of
        ranks (each carries the hidden state of its own block of streams); at an epoch's end the state starts over."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if len(states) == world:
            return states[rank]
        if mid_epoch:
            raise ValueError(
                f"this checkpoint was written in the middle of an epoch by {len(states)} processes, each carrying "
                f"the hidden state of its own streams; resume it with {len(states)} processes (--trainer.devices x "
                f"--trainer.num_nodes), not {world}"
            )
        return None  # an epoch boundary: nothing carried over (the random states start from this run's seed)

    def on_train_start(self) -> None:
        """After a resume: put back the carried state, TBPTT buffer, running train metrics and random state."""
        saved, self._resume_state = getattr(self, "_resume_state", None), None
        if saved is None:
            return
        move = lambda t: t.to(self.device)  # noqa: E731
        self._state["train"] = apply_to_collection(saved["carried"], torch.Tensor, move)
        if self.tbptt is not None and saved["tbptt"] is not None:
            self.tbptt.load_state_dict(apply_to_collection(saved["tbptt"], torch.Tensor, move))
        for key in ("train_nll", "train_acc"):
            if saved.get(key) is not None and key in self.metrics:
                for name, value in saved[key].items():
                    setattr(self.metrics[key], name, move(value))
        tokens = saved["tokens_seen"]
        self._tokens_seen = move(tokens) if isinstance(tokens, torch.Tensor) else tokens
        self._tokens_base = float(tokens)  # tokens/s of this epoch counts from here, over time from here
        self._train_seconds = 0.0
        self._epoch_lr = saved["epoch_lr"]
        self._epoch_start = time.perf_counter()
        self._pending_rng = saved["rng"]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.automatic_optimization:
            return  # TBPTT logs the norm itself, before it clips
        if self.trainer.global_step % self.trainer.log_every_n_steps == 0:
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=False)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)  # Lightning's, minus a pass

    def on_fit_start(self) -> None:
        counts = {f"params/{k}": v for k, v in self.model.num_parameters().items()}
        for logger in self.loggers:
            logger.log_hyperparams(counts)
        if self.device.type == "cpu" and isinstance(self.model.core, StepWeightLSTMBase):
            native_ops()  # build (first run on a machine: ~15 s) or load the CPU kernels now, not in the timed epoch

    # ---- optimisation -----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        factory = self.optimizer_factory or (lambda params: torch.optim.SGD(params, lr=1.0))
        optimizer = factory(self.parameters())
        decay, after = self.hparams.lr_decay, self.hparams.lr_decay_after
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: decay ** max(0, epoch + 1 - after))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


LanguageModel = LitLanguageModel  # the name before issue 26 (class paths and imports keep working)
