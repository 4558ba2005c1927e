"""Data: corpora, vocabulary, stream and sentence batching, ``TextDataModule`` and ``SyntheticDataModule``."""

from lrnn.data.batching import IGNORE_INDEX, StreamWindows, batchify
from lrnn.data.corpora import CORPORA, CorpusSpec, load_splits, resolve
from lrnn.data.datamodule import TextDataModule
from lrnn.data.sentences import SentenceBatches, sentence_sequences
from lrnn.data.synthetic import SyntheticDataModule
from lrnn.data.vocab import EOS, UNK, Vocabulary

__all__ = [
    "CORPORA",
    "EOS",
    "IGNORE_INDEX",
    "UNK",
    "CorpusSpec",
    "SentenceBatches",
    "StreamWindows",
    "SyntheticDataModule",
    "TextDataModule",
    "Vocabulary",
    "batchify",
    "load_splits",
    "resolve",
    "sentence_sequences",
]
