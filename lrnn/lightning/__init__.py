"""Lightning wrappers around the pure-PyTorch cores, and the reusable truncated-BPTT engine."""

from lrnn.lightning.interrupts import MidEpochCheckpoint, RunInterrupted
from lrnn.lightning.lm import LanguageModel, LitLanguageModel, TrainingDiverged
from lrnn.lightning.tbptt import TBPTT, detach_state, step_lr_schedulers

__all__ = [
    "TBPTT",
    "LanguageModel",
    "LitLanguageModel",
    "MidEpochCheckpoint",
    "RunInterrupted",
    "TrainingDiverged",
    "detach_state",
    "step_lr_schedulers",
]
