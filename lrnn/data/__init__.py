"""Data: corpora, vocabulary, stream batching and the shared ``TextDataModule``."""

from lrnn.data.batching import StreamWindows, batchify
from lrnn.data.corpora import CORPORA, CorpusSpec, load_splits, resolve
from lrnn.data.datamodule import TextDataModule
from lrnn.data.vocab import EOS, UNK, Vocabulary

__all__ = [
    "CORPORA",
    "EOS",
    "UNK",
    "CorpusSpec",
    "StreamWindows",
    "TextDataModule",
    "Vocabulary",
    "batchify",
    "load_splits",
    "resolve",
]
