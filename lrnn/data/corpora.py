"""Where text comes from: built-in corpora by short name, any hub id, or a local folder/file.

A corpus is resolved to a :class:`CorpusSpec` (what to pass to ``datasets.load_dataset`` and which column holds
the text). With ``LRNN_DATA_MIRROR=<folder>`` set and ``<folder>/<hub id>`` present, the mirror is read with the
same ``load_dataset`` call (same splits, same columns) instead of the hub.

Local text files are checked before they are read: an empty split, bytes that are not UTF-8 (the error gives the
byte offset) or a binary file is a one-line error naming the file. A single local text file is split by lines,
in order: the first 90% of its lines are ``train``, the next 5% ``validation``, the last 5% ``test``.
A name that is neither a short name, an existing path, nor in the mirror fails at once when the hub cannot be asked
(mirror set, ``HF_HUB_OFFLINE=1``, or no answer from the hub within 3 s) instead of retrying for half a minute.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets

Level = Literal["word", "char"]
MIRROR_ENV = "LRNN_DATA_MIRROR"


@dataclass(frozen=True)
class CorpusSpec:
    path: str  # hub id, local folder or file(s) for ``datasets.load_dataset``
    config: str | None = None
    text_column: str = "text"
    level: Level = "word"


CORPORA: dict[str, CorpusSpec] = {
    "ptb": CorpusSpec("ptb-text-only/ptb_text_only", "penn_treebank", "sentence"),
    "wikitext2": CorpusSpec("Salesforce/wikitext", "wikitext-2-v1", "text"),
    "wikitext103": CorpusSpec("Salesforce/wikitext", "wikitext-103-v1", "text"),
    "tiny_shakespeare": CorpusSpec("karpathy/tiny_shakespeare", None, "text", "char"),
}

SPLITS = ("train", "validation", "test")
SINGLE_FILE_SPLIT = (0.90, 0.05, 0.05)  # a single local text file: train / validation / test fractions of its lines
_SPLIT_ALIASES = {"validation": ("validation", "valid", "val", "dev")}


def resolve(
    dataset: str, config: str | None = None, text_column: str | None = None, level: Level | None = None
) -> CorpusSpec:
    """Turn a short name, hub id or local path into a spec; explicit arguments override the built-in ones."""
    spec = CORPORA.get(dataset, CorpusSpec(dataset))
    return CorpusSpec(
        path=spec.path,
        config=config if config is not None else spec.config,
        text_column=text_column if text_column is not None else spec.text_column,
        level=level if level is not None else spec.level,
    )


def mirror_path(spec: CorpusSpec, mirror: str | None = None) -> Path | None:
    """``<mirror>/<hub id>`` when the mirror (argument or ``$LRNN_DATA_MIRROR``) holds this dataset."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if not mirror or Path(spec.path).is_absolute():
        return None
    candidate = Path(mirror).expanduser() / spec.path
    return candidate if candidate.exists() else None


def load_splits(spec: CorpusSpec, mirror: str | None = None) -> dict[str, datasets.Dataset]:
    """Load train/validation/test of a corpus as Hugging Face datasets.

    Order of sources: a local folder/file path, the mirror, the hub. Raises ``FileNotFoundError`` with a message
    naming the dataset and how to provide it when none works.
    """
    local = Path(spec.path).expanduser()
    mirrored = mirror_path(spec, mirror)
    if local.is_file():
        return _pick_splits(_split_single_file(local), spec)
    if not local.exists() and mirrored is None:
        _fail_fast_if_unreachable(spec)
    try:
        if local.is_dir():
            raw = _load_local_dir(local, spec.config)
        elif mirrored is not None:
            raw = datasets.load_dataset(str(mirrored), spec.config)
        else:
            raw = datasets.load_dataset(spec.path, spec.config)
    except (ConnectionError, FileNotFoundError, OSError, ValueError) as err:
        if local.exists() or mirrored is not None:
            raise
        mirror_hint = os.environ.get(MIRROR_ENV) or "<unset>"
        raise FileNotFoundError(
            f"Could not load dataset {spec.path!r} (config {spec.config!r}): not a local path, not in the mirror "
            f"({MIRROR_ENV}={mirror_hint}), and the Hugging Face Hub did not answer ({type(err).__name__}: {err}).\n"
            f"Provide it by: setting {MIRROR_ENV} to a folder holding '{spec.path}' laid out like the hub repo, "
            f"passing a local folder with train/valid/test text files as --data.dataset, or going online."
        ) from err
    return _pick_splits(raw, spec)


def _short_names() -> str:
    return ", ".join(CORPORA)


def _fail_fast_if_unreachable(spec: CorpusSpec) -> None:
    """Raise at once for a name that cannot be on the hub, or when the hub cannot be asked."""
    name = spec.path
    hint = (
        f"Use a short name ({_short_names()}), an existing local folder/file, a dataset under {MIRROR_ENV} "
        f"(now {os.environ.get(MIRROR_ENV) or '<unset>'}), or a hub id (owner/name) with network access."
    )
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    if looks_like_path or "/" not in name:
        what = "no such file or folder" if looks_like_path else "not a known short name"
        raise FileNotFoundError(f"unknown dataset {name!r}: {what}. {hint}")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise FileNotFoundError(f"dataset {name!r}: not in the mirror, and HF_HUB_OFFLINE is set. {hint}")
    host = "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        raise FileNotFoundError(f"dataset {name!r}: the Hugging Face Hub does not answer ({err}). {hint}") from None


def check_text_file(path: Path, split: str, chunk_bytes: int = 1 << 24) -> None:
    """Check that ``path`` is non-empty UTF-8 text (one-line errors naming the file), reading it in chunks of
    ``chunk_bytes`` with an incremental decoder: memory stays one chunk whatever the file's size."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    blank, offset = True, 0
    with path.open("rb") as f:
        while True:
            data = f.read(chunk_bytes)
            if offset < 8192 and b"\0" in data[: 8192 - offset]:
                raise ValueError(f"{path}: {split} split: a binary file (NUL bytes), not text")
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous chunk
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:  # err.object: the pending bytes + this chunk
                at, bad = offset - pending + err.start, err.object[err.start]
                what = f"not UTF-8 text at byte offset {at} (byte 0x{bad:02x})"
                raise ValueError(f"{path}: {split} split: {what}") from None
            blank = blank and not text.strip()
            if not data:
                break
            offset += len(data)
    if blank:
        raise ValueError(f"{path}: the {split} split is empty")


def _split_single_file(path: Path) -> datasets.DatasetDict:
    """One local text file: its lines in order, 90% train, 5% validation, 5% test (``SINGLE_FILE_SPLIT``)."""
    check_text_file(path, "train")
    data = path.read_bytes()
    lines = data.decode("utf-8").splitlines()
    n = len(lines)
    n_val, n_test = max(1, round(n * SINGLE_FILE_SPLIT[1])), max(1, round(n * SINGLE_FILE_SPLIT[2]))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{path}: {n} lines are too few to split 90/5/5 into train/validation/test")
    parts = {"train": lines[:n_train], "validation": lines[n_train : n - n_test], "test": lines[n - n_test :]}
    digest = hashlib.sha256(data).hexdigest()[:16]
    out = {}
    for split, rows in parts.items():
        ds = datasets.Dataset.from_dict({"text": rows})
        ds._fingerprint = f"{digest}-{split}"  # the content decides the token cache, not a random id
        out[split] = ds
    return datasets.DatasetDict(out)


def _load_local_dir(folder: Path, config: str | None) -> datasets.DatasetDict:
    """A folder laid out like a hub repo (README configs / parquet) or holding train/valid/test text files."""
    if any(folder.glob("*.md")) or any(folder.rglob("*.parquet")):
        return datasets.load_dataset(str(folder), config)
    files: dict[str, str] = {}
    for split in SPLITS:
        for alias in _SPLIT_ALIASES.get(split, (split,)):
            hits = sorted(p for p in folder.iterdir() if p.is_file() and alias in p.name.split(".") + [p.stem])
            if hits:
                files[split] = str(hits[0])
                break
    if "train" not in files:
        raise FileNotFoundError(f"{folder}: no file named like 'train' (e.g. train.txt, ptb.train.txt)")
    for split, file in files.items():
        check_text_file(Path(file), split)
    return datasets.load_dataset("text", data_files=files)


def _pick_splits(raw: datasets.DatasetDict, spec: CorpusSpec) -> dict[str, datasets.Dataset]:
    out: dict[str, datasets.Dataset] = {}
    for split in SPLITS:
        name = next((a for a in _SPLIT_ALIASES.get(split, (split,)) if a in raw), None)
        if name is not None:
            out[split] = raw[name]
    if "train" not in out:
        raise ValueError(f"dataset {spec.path!r} has no train split (splits: {list(raw)})")
    column = spec.text_column
    if column not in out["train"].column_names:
        raise ValueError(
            f"dataset {spec.path!r} has no column {column!r} (columns: {out['train'].column_names}); "
            "set --data.text_column"
        )
    return out
