"""Lightning wrappers around the pure-PyTorch cores, and the reusable truncated-BPTT engine."""

from lrnn.lightning.lm import LanguageModel
from lrnn.lightning.tbptt import TBPTT, detach_state, step_lr_schedulers

__all__ = ["TBPTT", "LanguageModel", "detach_state", "step_lr_schedulers"]
