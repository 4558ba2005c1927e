"""Recurrent cores: pure-PyTorch modules with the ``nn.LSTM`` calling convention plus ``offset``."""

from lrnn.cores.tied import TiedLSTM
from lrnn.cores.time_varying import TimeVaryingLSTM
from lrnn.cores.untied import UntiedLSTM

__all__ = ["TiedLSTM", "TimeVaryingLSTM", "UntiedLSTM"]
