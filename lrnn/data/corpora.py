"""Where text comes from: built-in corpora by short name, any hub id, or a local folder/file.

A corpus is resolved to a :class:`CorpusSpec` (what to pass to ``datasets.load_dataset`` and which column holds
the text). With ``LRNN_DATA_MIRROR=<folder>`` set and ``<folder>/<hub id>`` present, the mirror is read with the
same ``load_dataset`` call (same splits, same columns) instead of the hub.
"""

from __future__ import annotations

import os
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
_SPLIT_ALIASES = {"validation": ("validation", "valid", "val", "dev")}
_TEXT_SUFFIXES = {".txt": "text", ".tokens": "text", ".raw": "text"}


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
    try:
        if local.is_file():
            builder = _TEXT_SUFFIXES.get(local.suffix, local.suffix.lstrip("."))
            raw = datasets.load_dataset(builder, data_files={"train": str(local)})
        elif local.is_dir():
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
