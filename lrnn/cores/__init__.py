"""Recurrent cores: pure-PyTorch modules with the ``nn.LSTM`` calling convention plus ``offset``."""

from lrnn.cores.lexical import LexicalLSTM
from lrnn.cores.mixture import MixtureLSTM
from lrnn.cores.soft_tied import SoftTiedLSTM
from lrnn.cores.tied import TiedLSTM
from lrnn.cores.time_varying import TimeVaryingLSTM
from lrnn.cores.untied import UntiedLSTM

__all__ = ["LexicalLSTM", "MixtureLSTM", "SoftTiedLSTM", "TiedLSTM", "TimeVaryingLSTM", "UntiedLSTM"]
