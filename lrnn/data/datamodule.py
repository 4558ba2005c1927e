"""``TextDataModule``: one LightningDataModule over Hugging Face text datasets, stream- or sentence-batched."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from filelock import FileLock

from lrnn.data.base import SplitDataModule
from lrnn.data.batching import StreamWindows
from lrnn.data.corpora import SPLITS, CorpusSpec, Level, load_splits, resolve
from lrnn.data.sentences import SentenceBatches, sentence_sequences
from lrnn.data.vocab import EOS, Vocabulary, count_tokens

Batching = Literal["stream", "sentence"]

CACHE_ENV = "LRNN_CACHE"
# token ids in the cache: half of int64's memory and disk (WikiText-103: 0.4 GB, not 0.8); batches are int64
TOKEN_DTYPE = torch.int32


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "lrnn"))


class TextDataModule(SplitDataModule):
    """Language-modelling data: a corpus tokenized once (cached), batched as contiguous streams or as sentences.

    ``batching="stream"`` (default): batch i is window i of B contiguous streams (:mod:`lrnn.data.batching`); the
    model carries its state from batch to batch. ``batching="sentence"``: every row (sentence) is its own sequence
    from a zero state, ``<eos>`` as BOS, padded with target ``-100`` and bucketed by length
    (:mod:`lrnn.data.sentences`); word level only. ``seq_len`` is not used in sentence mode.

    Args:
        dataset: ``ptb``, ``wikitext2``, ``wikitext103``, ``tiny_shakespeare``, any hub id, or a local folder/file
            (a single text file is split by lines, in order: 90% train, 5% validation, 5% test).
        config: hub config name (built-in corpora know theirs).
        text_column: column holding the text (built-in corpora know theirs; default ``text``).
        level: ``word`` (whitespace split + ``<eos>`` per row) or ``char``.
        batch_size: training streams (stream mode) or sentences (sentence mode) per device (B); with N devices
            the global batch is N x B.
        seq_len: window length (T); inputs [B, T], targets the inputs shifted by one.
        eval_batch_size: validation streams (default: ``batch_size``) in all, split over the devices, so that the
            validation loss does not depend on the number of devices (sentence mode: sentences per batch).
        test_batch_size: test streams in all (default: ``eval_batch_size``), split like ``eval_batch_size``.
            Zaremba et al. use 1 (with several devices, one of them scores it and the others wait).
        drop_last: drop the last, shorter window of each split instead of scoring it (stream mode).
        batching: ``stream`` or ``sentence``.
        seed: sentence mode: fixes the batch composition and the per-epoch order of the training batches.
        mirror: folder mirroring the hub (default: ``$LRNN_DATA_MIRROR``).
        cache_dir: where token ids are cached (default: ``$LRNN_CACHE`` or ``~/.cache/lrnn``).
    """

    def __init__(
        self,
        dataset: str = "ptb",
        config: str | None = None,
        text_column: str | None = None,
        level: Level | None = None,
        batch_size: int = 20,
        seq_len: int = 35,
        eval_batch_size: int | None = None,
        test_batch_size: int | None = None,
        drop_last: bool = False,
        mirror: str | None = None,
        cache_dir: str | None = None,
        batching: Batching = "stream",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("seq_len", seq_len),
            ("eval_batch_size", eval_batch_size),
            ("test_batch_size", test_batch_size),
        ):
            if value is not None and value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        if batching not in ("stream", "sentence"):
            raise ValueError(f"batching must be 'stream' or 'sentence', got {batching!r}")
        self.save_hyperparameters()
        self.spec: CorpusSpec = resolve(dataset, config, text_column, level)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.eval_batch_size = eval_batch_size or batch_size
        self.test_batch_size = test_batch_size or self.eval_batch_size
        self.drop_last = drop_last
        self.batching = batching
        self.seed = seed
        self.mirror = mirror
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.vocab: Vocabulary | None = None
        self.tokens: dict[str, torch.Tensor] = {}
        self.cache_hit: bool | None = None
        self._sequences: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # ---- loading and tokenization ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the train-split vocabulary (loads and tokenizes the corpus on first use)."""
        self._load()
        assert self.vocab is not None
        return len(self.vocab)

    def prepare_data(self) -> None:
        self._load()

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _load(self) -> None:
        """Tokenize once per cache folder (per machine): the first process to take the lock builds the cache, every
        other one (DDP ranks, however they were started) waits for it and reads it. The token ids are memory-mapped
        from the cache file, so the ranks of a machine share one copy in the page cache instead of one each."""
        if self.vocab is not None:
            return
        splits = load_splits(self.spec, self.mirror)
        key = self._cache_key(splits)
        path = self.cache_dir / f"{key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_hit = path.exists()
        if not self.cache_hit:
            with FileLock(str(path.with_suffix(".lock"))):
                self.cache_hit = path.exists()  # another process built it while this one waited
                if not self.cache_hit:
                    self._tokenize(splits, path)
        cached = torch.load(path, weights_only=True, mmap=True)
        self.vocab = Vocabulary(cached["itos"])
        self.tokens = {s: cached[s] for s in splits}

    def _tokenize(self, splits: dict[str, Any], path: Path) -> None:
        """Build the vocabulary from the train split and write every split's ids to ``path``, reading the text in
        batches of rows (never a whole column as one Python list)."""
        column, level = self.spec.text_column, self.spec.level

        def rows(ds: Any) -> Any:
            for batch in ds.iter(batch_size=10_000):
                yield from batch[column]

        vocab, n_train = Vocabulary.build_counted(rows(splits["train"]), level)
        tokens = {}
        for split, ds in splits.items():
            n = n_train if split == "train" else count_tokens(rows(ds), level)
            tokens[split] = vocab.encode(rows(ds), level, num_tokens=n, dtype=TOKEN_DTYPE)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"itos": vocab.itos, **tokens}, tmp)
        os.replace(tmp, path)  # atomic: a reader never sees a half-written file

    def _cache_key(self, splits: dict[str, Any]) -> str:
        fingerprints = {s: getattr(ds, "_fingerprint", None) or len(ds) for s, ds in splits.items()}
        # v2: int32 ids. A new name, so that an older lrnn sharing this cache folder never reads int32 targets
        blob = json.dumps([self.spec.__dict__, fingerprints, "v2"], sort_keys=True, default=str)
        return f"{Path(self.spec.path).name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    # ---- loaders ----------------------------------------------------------------------------------------------
    def _split_tokens(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self._load()
        if split not in self.tokens:
            raise ValueError(f"dataset {self.spec.path!r} has no {split!r} split (has: {list(self.tokens)})")
        return self.tokens[split]

    def windows(self, split: str, batch_size: int) -> StreamWindows:
        """This rank's stream windows of ``split`` ('train', 'validation' or 'test')."""
        tokens = self._split_tokens(split)
        rank, world = self._rank_world()
        return StreamWindows(
            tokens, batch_size, self.seq_len, rank=rank, world_size=world, drop_last=self.drop_last,
            split_streams=split != "train",
        )  # fmt: skip

    def sentences(self, split: str, batch_size: int) -> SentenceBatches:
        """This rank's padded sentence batches of ``split``: shuffled every epoch for 'train', in length order else."""
        tokens = self._split_tokens(split)
        if self.spec.level != "word":
            raise ValueError("sentence batching needs a word-level corpus (sentences end with <eos>)")
        if split not in self._sequences:  # cut once; the token ids themselves come from the cache
            assert self.vocab is not None
            self._sequences[split] = sentence_sequences(tokens, self.vocab.stoi[EOS])
        return self._sentence_batches(split, *self._sequences[split], batch_size)

    def split_data(self, split: str, batch_size: int) -> StreamWindows | SentenceBatches:
        """The batches of a split: stream windows, or padded sentences under batching="sentence"."""
        return self.sentences(split, batch_size) if self.batching == "sentence" else self.windows(split, batch_size)

    # ---- the vocabulary travels with the checkpoint -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab.state_dict()} if self.vocab is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "vocab" not in state_dict:
            return
        saved = Vocabulary.from_state_dict(state_dict["vocab"])
        if self.vocab is not None and saved.itos != self.vocab.itos:
            raise ValueError(
                "the checkpoint's vocabulary differs from the one built from this dataset's train split; "
                "evaluate with the dataset the model was trained on"
            )
        self.vocab = saved
