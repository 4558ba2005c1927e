"""Recurrent cores: pure-PyTorch modules with the ``nn.LSTM`` calling convention plus ``offset``."""

from lrnn.cores.tied import TiedLSTM

__all__ = ["TiedLSTM"]

try:  # the untied cores land in their own modules
    from lrnn.cores.untied import UntiedLSTM  # noqa: F401

    __all__.append("UntiedLSTM")
except ImportError:
    pass
try:
    from lrnn.cores.time_varying import TimeVaryingLSTM  # noqa: F401

    __all__.append("TimeVaryingLSTM")
except ImportError:
    pass
