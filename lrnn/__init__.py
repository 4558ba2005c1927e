"""lrnn: should an LSTM share its weights across time? Tied, untied and truncated-BPTT LSTMs.

Cores (``TiedLSTM``, ``UntiedLSTM``, ...) are plain ``nn.Module``s with ``nn.LSTM``'s calling convention; ``RNNLM`` is
the language-model network around a core (plain PyTorch); ``LitLanguageModel`` (earlier name ``LanguageModel``) is
the LightningModule that trains it.
"""

from lrnn.cores import *  # noqa: F403
from lrnn.cores import __all__ as _cores
from lrnn.data import SyntheticDataModule, TextDataModule
from lrnn.lightning import TBPTT, LanguageModel, LitLanguageModel
from lrnn.rnnlm import RNNLM

__all__ = [*_cores, "TBPTT", "LanguageModel", "LitLanguageModel", "RNNLM", "SyntheticDataModule", "TextDataModule"]
__version__ = "0.1.0"
