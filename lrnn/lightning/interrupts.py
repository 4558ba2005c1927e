"""Mid-epoch checkpoints: on Ctrl-C / SIGTERM and every N minutes, so an interrupted run loses (almost) nothing.

``MidEpochCheckpoint`` writes ``<checkpoints>/last.ckpt`` between two training batches, where a checkpoint holds
everything an exact resume needs: weights, optimizer, lr schedule, the loops' progress, the train loader's position
in the epoch (:class:`lrnn.data.base.ResumableLoader`) and, from ``LitLanguageModel``, the carried hidden state, the
TBPTT buffer, the running train metrics and the random states. ``trainer.fit(..., ckpt_path=last.ckpt)`` then
continues with the next batch and gives the same numbers as a run that was never stopped.

On SIGINT or SIGTERM the callback lets the running batch finish, saves, and raises :class:`RunInterrupted` (the
``lrnn`` CLI turns it into ``"status": "interrupted"`` and exit status 130 / 143). A second Ctrl-C stops at once.
A checkpoint is only taken where the state is complete: not in the middle of gradient accumulation, and not after the
last batch of an epoch (validation and the epoch end come first; the signal is handled at the next batch, or when
training ends).

Under DDP every rank installs the handlers, and after every batch the ranks agree (one all-reduce of a flag: any
rank's signal, rank 0's clock) on whether to save now, so they all reach ``Trainer.save_checkpoint`` at the same
batch; ``LitLanguageModel`` then gathers every rank's carried state, TBPTT buffer, metrics and random states into the
checkpoint, and a resume with the same number of processes continues each rank exactly.

SLURM: with Lightning's ``SLURMEnvironment(auto_requeue=True)`` (its default under SLURM), the requeue signal
(SIGUSR1, e.g. ``sbatch --signal=SIGUSR1@120``) is handled here instead of in Lightning's signal handler, which would
save in the middle of a batch (and, under DDP, call collectives from inside a signal handler): the callback saves
``last.ckpt`` at the next batch end, rank 0 runs ``scontrol requeue $SLURM_JOB_ID`` as Lightning does, and the run
stops as interrupted. The requeued job runs the same command; the ``lrnn`` CLI finds the run folder of this job id
and resumes it (same folder, same W&B run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info


class RunInterrupted(Exception):
    """Training stopped by a signal after saving a checkpoint of the current step."""

    def __init__(self, signum: int, step: int, checkpoint: str | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (no checkpoint folder)"
        super().__init__(f"{name} received: stopped at step {step}, {where}")


class MidEpochCheckpoint(L.Callback):
    """Save ``last.ckpt`` mid-epoch every ``every_minutes`` minutes (``None`` or 0: never) and on SIGINT/SIGTERM.

    Args:
        every_minutes: minutes between timed checkpoints (wall clock, counted from the start of training).
        dirpath: checkpoint folder (default: the trainer's ``ModelCheckpoint`` folder).
        filename: file name in it.
    """

    def __init__(self, every_minutes: float | None = 30.0, dirpath: str | None = None, filename: str = "last.ckpt"):
        self.every_s = every_minutes * 60 if every_minutes else None
        self.dirpath, self.filename = dirpath, filename
        self.signum: int | None = None
        self._handlers: dict[int, Any] = {}
        self._last_save = time.monotonic()
        self._active = False

    # ---- signals ------------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        if self.signum is None:
            print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this batch ...", flush=True)
        self.signum = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._active = True
        self._last_save = time.monotonic()
        if threading.current_thread() is not threading.main_thread():
            return
        signals = [signal.SIGINT, signal.SIGTERM]
        requeue = slurm_requeue_signal(trainer)
        if requeue is not None:
            signals.append(requeue)
        for signum in signals:
            self._handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        if self.signum is not None:  # arrived after the last batch: the end-of-training checkpoints are written
            last = self._path(trainer)
            raise RunInterrupted(self.signum, trainer.global_step, str(last) if last and last.exists() else None)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_handlers()

    # ---- saving -------------------------------------------------------------------------------------------------
    def _path(self, trainer: L.Trainer) -> Path | None:
        folder = self.dirpath or getattr(trainer.checkpoint_callback, "dirpath", None)
        return Path(folder) / self.filename if folder else None

    def _safe_point(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        """Between two batches of an epoch, with no gradients waiting to be accumulated."""
        loop = trainer.fit_loop.epoch_loop
        if trainer.is_last_batch or loop.batch_progress.current.processed >= trainer.num_training_batches:
            return False
        if pl_module.automatic_optimization:
            return not loop._should_accumulate()
        tbptt = getattr(pl_module, "tbptt", None)
        return tbptt is None or tbptt.pending_updates == 0

    def save(self, trainer: L.Trainer) -> Path | None:
        """Write the checkpoint atomically (a second signal never leaves half a file); returns its path."""
        path = self._path(trainer)
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _claim_last(trainer, path)
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, path)
        self._last_save = time.monotonic()
        return path

    def _agree(self, trainer: L.Trainer) -> tuple[int | None, bool]:
        """(signal, due) as all ranks see it: any rank's signal, rank 0's clock (one all-reduce under DDP)."""
        due = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self.signum, due
        flags = torch.tensor(
            [self.signum or 0, int(due and trainer.is_global_zero)], device=trainer.strategy.root_device
        )
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        signum, due = (int(v) for v in flags.tolist())
        return signum or None, bool(due)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._active:
            return
        signum, due = self._agree(trainer)
        if (signum is None and not due) or not self._safe_point(trainer, pl_module):
            return
        # the batch counts as done once this hook returns; the checkpoint must say so
        path = self.save(trainer)
        if signum is not None:
            for logger in trainer.loggers:  # flush the rows logged since the last periodic write
                logger.save()
            if signum == slurm_requeue_signal(trainer) and trainer.is_global_zero:
                requeue_slurm_job()
            raise RunInterrupted(signum, trainer.global_step, str(path) if path else None)
        rank_zero_info(f"step {trainer.global_step}: mid-epoch checkpoint {path}")


def _claim_last(trainer: L.Trainer, path: Path) -> None:
    """Tell a ``ModelCheckpoint(save_last=True)`` writing the same file that ``path`` is its own last checkpoint.

    ModelCheckpoint only overwrites a ``last.ckpt`` it wrote itself (its ``last_model_path``, restored on resume);
    any other file of that name makes it write ``last-v1.ckpt`` instead. A run stopped before its first validation
    has only this callback's ``last.ckpt``, so after the resume the validations' checkpoints went to ``last-v1.ckpt``
    while ``--resume`` reads ``last.ckpt``."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
            theirs = cb.format_checkpoint_name({}, cb.CHECKPOINT_NAME_LAST)
            if Path(theirs) == path:
                cb.last_model_path = theirs


def slurm_requeue_signal(trainer: L.Trainer) -> int | None:
    """The signal SLURM sends before the time limit when Lightning's ``SLURMEnvironment`` has ``auto_requeue``."""
    env = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
    if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None:
        return int(env.requeue_signal)
    return None


def requeue_slurm_job() -> None:
    """``scontrol requeue <job>`` as Lightning's own SLURM handler does (array jobs: ``<array id>_<task id>``)."""
    array_id, task_id = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_id}_{task_id}" if array_id and task_id else os.environ.get("SLURM_JOB_ID", "")
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    print(f"requeued SLURM job {job}" if result.returncode == 0 else f"requeue failed: {result.stderr}", flush=True)
