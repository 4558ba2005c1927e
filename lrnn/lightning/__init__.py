"""Lightning wrappers around the pure-PyTorch cores."""

from lrnn.lightning.lm import LanguageModel

__all__ = ["LanguageModel"]
