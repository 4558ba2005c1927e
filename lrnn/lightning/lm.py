"""``LanguageModel``: the LightningModule that trains any recurrent core as a stream-batched language model."""

from __future__ import annotations

import time
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric

from lrnn.rnnlm import RNNLM, State

LossReduction = Literal["mean", "sum_over_time"]


def detach_state(state: State | None) -> State | None:
    return None if state is None else (state[0].detach(), state[1].detach())


class LanguageModel(L.LightningModule):
    """Embedding -> recurrent core -> decoder, trained window by window with the hidden state carried.

    The state is carried (detached) from batch to batch within an epoch, reset at the start of every epoch and of
    every evaluation split. Logged: ``{train,val,test}/loss`` (mean NLL per token, nats), ``{...}/ppl``,
    ``train/tokens_per_s``, ``train/lr``, ``train/grad_norm`` (before clipping); parameter counts as hyper-parameters.

    Args:
        core: the recurrent core (``lrnn.TiedLSTM``, ``lrnn.UntiedLSTM``, ... or any ``nn.LSTM``-like module).
        vocab_size: V (linked from the DataModule by the CLI).
        dropout, tie_embeddings, init_range: see :class:`lrnn.rnnlm.RNNLM`.
        optimizer: optimizer factory (``params -> Optimizer``); default SGD with lr 1 (Zaremba et al.).
        lr_decay, lr_decay_after: keep the lr constant for ``lr_decay_after`` epochs, then multiply it by
            ``lr_decay`` after every further epoch (Zaremba et al.: 4 and 0.5 for the small model).
        loss_reduction: ``mean`` minimises the mean NLL per token. ``sum_over_time`` minimises Zaremba's objective,
            the sum over the window's steps of the batch-mean NLL, i.e. ``seq_len`` x the per-token mean. With SGD
            at lr 1 and norm clipping at 5 this is what makes the published schedule work.
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
    ) -> None:
        super().__init__()
        if loss_reduction not in ("mean", "sum_over_time"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum_over_time', got {loss_reduction!r}")
        self.save_hyperparameters(ignore=["core", "optimizer"])
        self.model = RNNLM(vocab_size, core, dropout=dropout, tie_embeddings=tie_embeddings, init_range=init_range)
        self.optimizer_factory = optimizer
        self.loss_reduction = loss_reduction
        self.metrics = nn.ModuleDict({f"{split}_nll": MeanMetric() for split in ("train", "val", "test")})
        self._state: dict[str, State | None] = {}
        self._tokens_seen = 0
        self._epoch_start = 0.0

    @property
    def core(self) -> nn.Module:
        return self.model.core

    def forward(self, tokens: torch.Tensor, state: State | None = None, offset: int = 0) -> tuple[torch.Tensor, State]:
        """tokens [B, T] -> logits [B, T, V], state."""
        return self.model(tokens, state, offset)

    # ---- steps ------------------------------------------------------------------------------------------------
    def _nll_sum(self, split: str, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Run one window with the carried state; returns the summed NLL over the window and its token count."""
        inputs, targets = batch
        logits, state = self(inputs, self._state.get(split))
        self._state[split] = detach_state(state)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        return nll, targets.numel()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        nll, n = self._nll_sum("train", batch)
        mean = nll / n
        self.metrics["train_nll"].update(mean.detach(), n)
        self.log("train/loss", mean.detach(), on_step=True, on_epoch=False, prog_bar=True)
        self._tokens_seen += n
        if self.loss_reduction == "sum_over_time":
            return nll / batch[1].size(0)  # sum over steps of the batch-mean NLL
        return mean

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        nll, n = self._nll_sum("val", batch)
        self.metrics["val_nll"].update(nll / n, n)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        nll, n = self._nll_sum("test", batch)
        self.metrics["test_nll"].update(nll / n, n)

    # ---- state resets and epoch-level logging -------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._state["train"] = None
        self._tokens_seen = 0
        self._epoch_start = time.perf_counter()
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self._state["val"] = None

    def on_test_epoch_start(self) -> None:
        self._state["test"] = None

    def _log_split(self, split: str, prog_bar: bool = False) -> torch.Tensor:
        loss = self.metrics[f"{split}_nll"].compute()  # synced over ranks
        self.metrics[f"{split}_nll"].reset()
        self.log(f"{split}/loss", loss, prog_bar=prog_bar, sync_dist=False)
        self.log(f"{split}/ppl", torch.exp(loss), prog_bar=prog_bar, sync_dist=False)
        return loss

    def on_train_epoch_end(self) -> None:
        elapsed = time.perf_counter() - self._epoch_start
        loss = self._log_split("train")
        tokens_per_s = self._tokens_seen * self.trainer.world_size / max(elapsed, 1e-9)
        self.log("train/tokens_per_s", tokens_per_s, sync_dist=False)
        val = self.trainer.callback_metrics.get("val/ppl")  # validation runs before this hook
        rank_zero_info(
            f"epoch {self.current_epoch}: train ppl {loss.exp():.2f}"
            + (f", val ppl {val:.2f}" if val is not None else "")
            + f", lr {self.trainer.optimizers[0].param_groups[0]['lr']:.4g}, {tokens_per_s:.0f} tokens/s,"
            f" {elapsed:.0f} s"
        )

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_split("test", prog_bar=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.trainer.global_step % self.trainer.log_every_n_steps == 0:
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=False)

    def on_fit_start(self) -> None:
        counts = {f"params/{k}": v for k, v in self.model.num_parameters().items()}
        for logger in self.loggers:
            logger.log_hyperparams(counts)

    # ---- optimisation -----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        factory = self.optimizer_factory or (lambda params: torch.optim.SGD(params, lr=1.0))
        optimizer = factory(self.parameters())
        decay, after = self.hparams.lr_decay, self.hparams.lr_decay_after
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: decay ** max(0, epoch + 1 - after))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
