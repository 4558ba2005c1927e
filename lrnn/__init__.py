"""lrnn: should an LSTM share its weights across time? Tied, untied and truncated-BPTT LSTMs."""

from lrnn.cores import *  # noqa: F403
from lrnn.cores import __all__ as _cores
from lrnn.data import SyntheticDataModule, TextDataModule
from lrnn.lightning import TBPTT, LanguageModel
from lrnn.loggers import quiet_known_noise
from lrnn.rnnlm import RNNLM

__all__ = [*_cores, "TBPTT", "LanguageModel", "RNNLM", "SyntheticDataModule", "TextDataModule"]
__version__ = "0.1.0"

quiet_known_noise()  # targeted: the litlogger/litmodels tips, our loaders' __len__ warning, Lightning's _pytree use
