"""``make evaluate RUN=runs/<name>/version_<k>`` / ``lrnn evaluate RUN``: what a trained run does off its training
condition. Loads the run's checkpoint (any core; the vocabulary saved in it is checked against the data) and its
``config.yaml`` (data settings), and writes CSV + PNG into ``<run>/evaluation/`` (or ``--out``). An earlier
evaluation is never overwritten: the default folder becomes ``evaluation_1``, ``evaluation_2``, ... and an ``--out``
that holds one is refused, unless ``--overwrite``. The files:

- ``length.csv`` / ``length.png``, length generalization. Stream runs: perplexity on windows of length T/2, T, 2T,
  4T, 8T (T = the training ``seq_len``), state carried from window to window as in training, positions restarting
  at every window; at T this is the run's own validation loop. Sentence runs: perplexity by sentence-length bin.
  Positions past a core's ``max_len`` are marked (``past_max_len``); a core built with ``extrapolation="error"`` is
  run with ``"clamp"`` there (the last weight set reused), shown as ``error->clamp`` in the ``extrapolation`` column.
- ``position.csv`` / ``position.png``: mean NLL at each position of the training window (stream, length T, state
  carried) or of the sentence (sentence runs): does the weight set of position t learn worse than set 0?
- ``state_reset.csv`` / ``state_reset.png``: perplexity with the state carried across windows vs zeroed at every
  window (stream runs, every length), or carried from the previous sentence vs zero at each sentence (sentence
  runs; ``length`` empty): how much the carried state is worth.
- ``sentence_length.csv`` / ``sentence_length.png`` (word-level text corpora; C2/C8 on real variable-length data):
  perplexity by sentence-length bin, every sentence scored as its own sequence from a zero state with positions
  counted from its first token (the sentence's ``<eos>``-BOS is position 0), whatever the run was trained on. Bins
  of 10 tokens (incl. ``<eos>``) with ``max_len`` as an extra edge; a bin is ``past_max_len`` when its longest
  sentence reaches past ``max_len``. The extrapolation rule past ``max_len`` is the same as for windows: the core's
  own mode, and ``clamp`` (position p >= max_len uses the last weight set, that of position max_len - 1) where the
  core was built with ``error``. Time-varying cores have no max_len: their weights are the basis at position p.
  Off for synthetic data and ``--no-sentence-length``.
- ``recurrence.csv`` / ``recurrence.png`` (stream runs; C9, is the core still recurrent?): perplexity on windows of
  T (state carried across windows as in training) with the state carried from step to step (``carried``), with
  the cell state c zeroed before every step (``cell_zeroed``: the cell no longer carries anything across time,
  the hidden state h still does) and with both h and c zeroed before every step (``state_zeroed``: no recurrence
  at all, each step sees only its own input). Off with ``--no-recurrence``.
- ``train.csv`` (``--train``; C4's generalization gap): perplexity on the training stream in eval mode (no dropout),
  windows of T and the training batch size, state carried as in training, over the windows one training epoch of the
  run used (``trainer.limit_train_batches``: a data fraction trains on the first part of the stream).
- ``meta.json``: the checkpoint, core, T, max_len, and the validation loss the run logged for this checkpoint next
  to the loss of the training condition (``checkpoint_val_loss``, ``val_loss``: stream at T, or all sentences).
  The two agree unless the run validated on part of the split (``trainer.limit_val_batches``, kept in meta.json as
  ``run_limit_val_batches``; the command says so).

Python: ``lrnn.evaluate.evaluate_run(run_dir, ckpt="best", lengths=None, splits=("val", "test"), out_dir=None,
plots=True, device=None, overwrite=False, sentence_length=True, recurrence=True, train=False) -> {"length": rows,
"position": rows, "state_reset": rows, "sentence_length": rows, "recurrence": rows, "train": rows}`` (the CSV rows).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import itertools
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from lrnn.argerrors import ArgumentParser
from lrnn.data.batching import IGNORE_INDEX
from lrnn.loggers import portable
from lrnn.rnnlm import RNNLM

SPLIT_NAMES = {"val": "validation", "test": "test"}
FIELDS = {
    "length": ["split", "mode", "length", "bin_lo", "past_max_len", "loss", "ppl", "tokens", "extrapolation"],
    "position": ["split", "position", "loss", "tokens"],
    "state_reset": ["split", "state", "length", "loss", "ppl", "tokens"],
    "sentence_length": [
        "split", "length", "bin_lo", "past_max_len", "loss", "ppl", "tokens", "sentences", "extrapolation",
    ],
    "recurrence": ["split", "state", "length", "loss", "ppl", "tokens"],
    "train": ["split", "length", "windows", "of_windows", "loss", "ppl", "tokens"],
}  # fmt: skip
BASE_TABLES = ("length", "position", "state_reset")  # always written; the others where the run allows them
RECURRENCE_STATES = ("carried", "cell_zeroed", "state_zeroed")
Rows = list[dict[str, Any]]


class EvaluationError(ValueError):
    """A bad run folder, checkpoint or option: the CLI prints it as one line and exits with status 2."""


# ---- loading a run ---------------------------------------------------------------------------------------------
def _instantiate(spec: dict[str, Any], what: str) -> Any:
    try:
        module, name = spec["class_path"].rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
    except (KeyError, ValueError, ImportError, AttributeError) as e:
        raise EvaluationError(f"cannot build the {what} from config.yaml ({spec.get('class_path')!r}): {e}") from e
    return cls(**(spec.get("init_args") or {}))


def resolve_checkpoint(run_dir: Path, ckpt: str) -> Path:
    """``best`` / ``last`` -> ``<run>/checkpoints/{best,last}.ckpt``; anything else is a path."""
    path = run_dir / "checkpoints" / f"{ckpt}.ckpt" if ckpt in ("best", "last") else Path(ckpt)
    if not path.is_file():
        raise EvaluationError(f"no checkpoint {path} (--ckpt best | last | a .ckpt path)")
    return path


def load_run(
    run_dir: str | Path, ckpt: str = "best", device: str | torch.device | None = None
) -> tuple[RNNLM, Any, dict[str, Any], dict[str, Any], Path]:
    """(model in eval mode, set-up DataModule, config.yaml, checkpoint dict, checkpoint path) of a run folder."""
    run_dir = Path(run_dir)
    if not str(run_dir) or not run_dir.is_dir():
        raise EvaluationError(f"run folder {str(run_dir)!r} does not exist (RUN=runs/<name>/version_<k>)")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise EvaluationError(f"{run_dir} has no config.yaml: not a run folder (RUN=runs/<name>/version_<k>)")
    config = yaml.safe_load(config_path.read_text()) or {}
    if "model" not in config or "data" not in config:
        raise EvaluationError(f"{config_path} has no model/data section: not an `lrnn fit` config")
    path = resolve_checkpoint(run_dir, ckpt)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise EvaluationError(f"cannot read checkpoint {path}: {e}") from e
    if "state_dict" not in checkpoint:
        raise EvaluationError(f"{path} is not a Lightning checkpoint (no state_dict)")

    dm = _instantiate(config["data"], "data module")
    dm.setup("validate")
    state = checkpoint.get(type(dm).__qualname__)
    if state:
        dm.load_state_dict(state)  # raises if the saved vocabulary differs from the data's

    model_cfg, hparams = config["model"], checkpoint.get("hyper_parameters", {})
    core = _instantiate(model_cfg["core"], "core")
    vocab_size = hparams.get("vocab_size") or dm.vocab_size
    model = RNNLM(
        vocab_size,
        core,
        tie_embeddings=bool(model_cfg.get("tie_embeddings", False)),
        output_size=model_cfg.get("output_size"),
    )
    weights = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise EvaluationError(f"checkpoint {path} does not match the model in config.yaml: {e}") from e
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model.to(device).eval(), dm, config, checkpoint, path


OUTPUTS = ("meta.json", *(f"{name}.csv" for name in FIELDS))


def output_folder(run_dir: str | Path, out_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Where an evaluation goes: ``out_dir`` (refused if it holds an earlier evaluation, unless ``overwrite``), else
    ``<run>/evaluation``, or the first of ``evaluation_1``, ``evaluation_2``, ... that holds none."""
    taken = lambda folder: any((folder / name).exists() for name in OUTPUTS)  # noqa: E731
    if out_dir is not None:
        out = Path(out_dir)
        if taken(out) and not overwrite:
            raise EvaluationError(
                f"{out} holds an earlier evaluation: pass --overwrite to replace it, or another --out"
            )
        return out
    out, k = Path(run_dir) / "evaluation", 0
    while taken(out) and not overwrite:
        k += 1
        out = Path(run_dir) / f"evaluation_{k}"
    return out


# ---- scoring ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _evaluation_extrapolation(core: Any, needed: bool) -> Iterator[str]:
    """Yields the extrapolation used past max_len ("none" for cores without one); an "error" core runs "clamp"."""
    mode = getattr(core, "extrapolation", None)
    if mode is None or not hasattr(core, "max_len"):
        yield "none"
        return
    if mode != "error" or not needed:
        yield mode
        return
    core.extrapolation = "clamp"
    try:
        yield "error->clamp"
    finally:
        core.extrapolation = mode


@contextlib.contextmanager
def _seq_len(dm: Any, seq_len: int) -> Iterator[None]:
    saved = dm.seq_len
    dm.seq_len = seq_len
    try:
        yield
    finally:
        dm.seq_len = saved


def token_nll(model: RNNLM, inputs: torch.Tensor, targets: torch.Tensor, state=None):
    """Per-token NLL [B, T] (0 where the target is ignored), the mask of real targets, and the final state."""
    logits, state = model(inputs, state)
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX)
    return nll, targets != IGNORE_INDEX, state


class Tally:
    """Summed NLL and token counts overall and per position (float64)."""

    def __init__(self) -> None:
        self.nll, self.tokens = 0.0, 0
        self.pos_nll = torch.zeros(0, dtype=torch.float64)
        self.pos_n = torch.zeros(0, dtype=torch.long)

    def add(self, nll: torch.Tensor, mask: torch.Tensor) -> None:
        nll, mask = nll.double().cpu(), mask.cpu()
        self.nll += float(nll.sum())
        self.tokens += int(mask.sum())
        T = nll.shape[1]
        if T > self.pos_nll.numel():
            grow = T - self.pos_nll.numel()
            self.pos_nll = torch.cat([self.pos_nll, torch.zeros(grow, dtype=torch.float64)])
            self.pos_n = torch.cat([self.pos_n, torch.zeros(grow, dtype=torch.long)])
        self.pos_nll[:T] += nll.sum(0)
        self.pos_n[:T] += mask.sum(0)

    @property
    def loss(self) -> float:
        return self.nll / self.tokens if self.tokens else math.nan


@torch.no_grad()
def stream_pass(model: RNNLM, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], carry: bool) -> Tally:
    """Score stream windows in order, carrying the state from window to window (or zero at every window)."""
    device = next(model.parameters()).device
    tally, state = Tally(), None
    for inputs, targets in batches:
        nll, mask, new_state = token_nll(model, inputs.to(device), targets.to(device), state if carry else None)
        state = new_state if carry else None
        tally.add(nll, mask)
    return tally


@torch.no_grad()
def sentence_pass(model: RNNLM, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Tally, list]:
    """Score padded sentence batches, each sentence from a zero state; also (length, nll sum) of every sentence."""
    device = next(model.parameters()).device
    tally, per_sentence = Tally(), []
    for inputs, targets in batches:
        nll, mask, _ = token_nll(model, inputs.to(device), targets.to(device))
        tally.add(nll, mask)
        per_sentence += zip(mask.sum(1).tolist(), nll.double().sum(1).tolist(), strict=True)
    return tally, [(n, s) for n, s in per_sentence if n > 0]


@torch.no_grad()
def sentence_carried_pass(model: RNNLM, dm: Any, split: str) -> Tally:
    """Every sentence of the split in corpus order, one at a time, starting from the previous sentence's final state
    (positions still restart at each sentence)."""
    from lrnn.data.sentences import sentence_sequences
    from lrnn.data.vocab import EOS

    inputs, targets, lengths = sentence_sequences(dm.tokens[split], dm.vocab.stoi[EOS])
    device = next(model.parameters()).device
    tally, state, start = Tally(), None, 0
    for n in lengths.tolist():  # inputs start with the previous sentence's <eos>: the BOS of training
        x, y = inputs[start : start + n].view(1, n).long(), targets[start : start + n].view(1, n).long()
        nll, mask, state = token_nll(model, x.to(device), y.to(device), state)
        tally.add(nll, mask)
        start += n
    return tally


@torch.no_grad()
def zeroed_pass(model: RNNLM, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], zero: str) -> Tally:
    """Stream windows in order, one step at a time (offset = the step's position in its window, as in a whole
    window), with ``zero`` = ``cell`` (c) or ``state`` (h and c) set to zero before every step; ``none`` keeps both
    (the same numbers as ``stream_pass(carry=True)``, a step at a time)."""
    device = next(model.parameters()).device
    tally, state = Tally(), None
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        nll = torch.zeros(inputs.shape, dtype=torch.float64, device=device)
        for t in range(inputs.size(1)):
            if state is not None and zero != "none":
                h, c = state
                state = (torch.zeros_like(h) if zero == "state" else h, torch.zeros_like(c))
            step_nll, _, state = _step_nll(model, inputs[:, t : t + 1], targets[:, t : t + 1], state, t)
            nll[:, t] = step_nll[:, 0]
        tally.add(nll, targets != IGNORE_INDEX)
    return tally


def _step_nll(model: RNNLM, inputs: torch.Tensor, targets: torch.Tensor, state, offset: int):
    logits, state = model(inputs, state, offset)
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX)
    return nll, targets != IGNORE_INDEX, state


# ---- the evaluations -------------------------------------------------------------------------------------
def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def default_lengths(seq_len: int) -> list[int]:
    """T/2, T, 2T, 4T, 8T (T/2 rounded, at least 1)."""
    return sorted({max(1, round(seq_len / 2)), seq_len, 2 * seq_len, 4 * seq_len, 8 * seq_len})


def sentence_bins(max_length: int, max_len: int | None, width: int = 10) -> list[tuple[int, int]]:
    """Inclusive length bins (lo, hi) of `width` covering 1..max_length, with max_len as a bin edge if given."""
    edges = set(range(0, max_length + width, width))
    if max_len is not None and max_len < max_length:
        edges.add(max_len)
    edges = sorted(e for e in edges if e < max_length) + [max_length]
    return [(lo + 1, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def evaluate_run(
    run_dir: str | Path,
    *,
    ckpt: str = "best",
    lengths: Sequence[int] | None = None,
    splits: Sequence[str] = ("val", "test"),
    out_dir: str | Path | None = None,
    plots: bool = True,
    device: str | torch.device | None = None,
    progress: bool = False,
    overwrite: bool = False,
    sentence_length: bool = True,
    recurrence: bool = True,
    train: bool = False,
) -> dict[str, Rows]:
    """Evaluate a run folder's checkpoint (see the module docstring); writes the CSVs (+ PNGs) and returns the rows.
    ``progress``: print a line to stderr before each pass. ``overwrite``: replace an earlier evaluation in the output
    folder (else the default folder moves on to ``evaluation_<k>`` and an ``out_dir`` holding one is refused).
    ``sentence_length``, ``recurrence``: also those two evaluations (where the data allow them). ``train``: also
    ``train.csv`` (stream runs; ``splits`` may then be empty)."""
    if not splits and not train:
        raise EvaluationError("nothing to evaluate: give --splits val and/or test, or --train")
    for s in splits:
        if s not in SPLIT_NAMES:
            raise EvaluationError(f"unknown split {s!r}; expected any of {list(SPLIT_NAMES)}")
    if lengths is not None and (not lengths or any(int(n) < 1 for n in lengths)):
        raise EvaluationError(f"window lengths must be positive integers, got {list(lengths)}")
    run_dir = Path(run_dir)
    out = output_folder(run_dir, out_dir, overwrite)  # before the work: a refused folder costs nothing
    model, dm, config, checkpoint, ckpt_path = load_run(run_dir, ckpt, device)
    core = model.core
    max_len = getattr(core, "max_len", None)
    sentence = getattr(dm, "batching", "stream") == "sentence"
    seq_len = int(dm.seq_len)
    rows: dict[str, Rows] = {name: [] for name in FIELDS}
    meta: dict[str, Any] = {
        "run_dir": str(run_dir), "checkpoint": str(ckpt_path), "core": type(core).__name__, "mode":
        "sentence" if sentence else "stream", "seq_len": None if sentence else seq_len, "max_len": max_len,
        "extrapolation": getattr(core, "extrapolation", None), "checkpoint_val_loss": _checkpoint_val_loss(checkpoint),
        "run_limit_val_batches": (config.get("trainer") or {}).get("limit_val_batches"),
    }  # fmt: skip
    batch_sizes = {"val": dm.eval_batch_size, "test": dm.test_batch_size}
    say = (lambda msg: print(f"lrnn evaluate: {msg}", file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    if sentence:
        for split in splits:
            say(f"{split}: sentences (batches of {batch_sizes[split]}, then one by one with the state carried)")
            _sentence_split(model, dm, split, batch_sizes[split], max_len, rows, meta)
            if sentence_length:
                rows["sentence_length"] += _sentence_length_rows(model, dm, split, batch_sizes[split], max_len)
    else:
        lengths = sorted({int(n) for n in lengths}) if lengths else default_lengths(seq_len)
        meta["lengths"] = lengths
        for split in splits:
            say(f"{split}: {batch_sizes[split]} streams, windows of {lengths}, state carried and reset")
            _stream_split(model, dm, split, batch_sizes[split], lengths, seq_len, max_len, rows, meta, say)
            if sentence_length and _has_sentences(dm):
                say(f"{split}: every sentence from a zero state, perplexity by sentence length")
                rows["sentence_length"] += _sentence_length_rows(model, dm, split, batch_sizes[split], max_len)
            if recurrence:
                say(f"{split}: recurrence at T={seq_len}, a step at a time, c (then h and c) zeroed each step")
                rows["recurrence"] += _recurrence_rows(model, dm, split, batch_sizes[split], seq_len, max_len)
    if train:
        if sentence:
            raise EvaluationError("--train needs a stream run (sentence batching shuffles the training split)")
        say(f"train: windows of {seq_len}, {dm.batch_size} streams, state carried, eval mode")
        rows["train"] = _train_rows(model, dm, seq_len, (config.get("trainer") or {}).get("limit_train_batches"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvaluationError(f"cannot write the evaluation to {out} ({e.strerror}); pass --out DIR") from e
    for name, table in rows.items():
        if not table and (name not in BASE_TABLES or not splits):
            continue
        with open(out / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS[name])
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in r.items()} for r in table)
    (out / "meta.json").write_text(json.dumps(portable(meta), indent=2) + "\n")
    if plots and splits:  # the figures show the val/test tables; train.csv is one number
        from lrnn.evaluate_plots import plot_all

        plot_all(rows, meta, out, title=_title(run_dir, config))
    return rows


def _stream_split(model, dm, split, batch_size, lengths, seq_len, max_len, rows, meta, say=lambda m: None) -> None:
    name = SPLIT_NAMES[split]
    for i, length in enumerate(lengths, 1):
        say(f"{split}: windows of {length} ({i} of {len(lengths)}), state carried, then reset")
        past = max_len is not None and length > max_len
        with _evaluation_extrapolation(model.core, past) as extrapolation, _seq_len(dm, length):
            carried = stream_pass(model, dm.split_data(name, batch_size), carry=True)
            reset = stream_pass(model, dm.split_data(name, batch_size), carry=False)
        rows["length"].append(
            {"split": split, "mode": "stream", "length": length, "bin_lo": None, "past_max_len": past,
             "loss": carried.loss, "ppl": _ppl(carried.loss), "tokens": carried.tokens,
             "extrapolation": extrapolation}
        )  # fmt: skip
        for state, tally in (("carried", carried), ("reset", reset)):
            rows["state_reset"].append(
                {"split": split, "state": state, "length": length, "loss": tally.loss, "ppl": _ppl(tally.loss),
                 "tokens": tally.tokens}
            )  # fmt: skip
        if length == seq_len:
            meta[f"{split}_loss"] = carried.loss
            _position_rows(split, carried, rows)


def _sentence_split(model, dm, split, batch_size, max_len, rows, meta) -> None:
    name = SPLIT_NAMES[split]
    longest = int(dm.sentences(name, batch_size).batches[-1][1].ne(IGNORE_INDEX).sum(1).max())
    with _evaluation_extrapolation(model.core, max_len is not None and longest > max_len) as extrapolation:
        tally, per_sentence = sentence_pass(model, dm.sentences(name, batch_size))
        carried = sentence_carried_pass(model, dm, name)
    for b in _binned(per_sentence, max_len):
        rows["length"].append(
            {"split": split, "mode": "sentence", "length": b["length"], "bin_lo": b["bin_lo"],
             "past_max_len": b["past_max_len"], "loss": b["loss"], "ppl": b["ppl"], "tokens": b["tokens"],
             "extrapolation": extrapolation if b["past_max_len"] else _own(model.core)}
        )  # fmt: skip
    _position_rows(split, tally, rows)
    meta[f"{split}_loss"] = tally.loss
    for state, t in (("carried", carried), ("reset", tally)):
        rows["state_reset"].append(
            {"split": split, "state": state, "length": None, "loss": t.loss, "ppl": _ppl(t.loss), "tokens": t.tokens}
        )


def train_windows(total: int, limit: int | float | None) -> int:
    """How many training windows one epoch used, as Lightning reads ``limit_train_batches`` (a float is a fraction,
    rounded down but at least 1; an int a count)."""
    if limit is None:
        return total
    if isinstance(limit, float) and limit <= 1.0:
        return min(total, max(1, int(total * limit)))
    return min(total, int(limit))


def _train_rows(model: RNNLM, dm: Any, seq_len: int, limit: int | float | None) -> Rows:
    windows = dm.windows("train", dm.batch_size)
    n = train_windows(len(windows), limit)
    tally = stream_pass(model, itertools.islice(iter(windows), n), carry=True)
    return [{"split": "train", "length": seq_len, "windows": n, "of_windows": len(windows), "loss": tally.loss,
             "ppl": _ppl(tally.loss), "tokens": tally.tokens}]  # fmt: skip


def _has_sentences(dm: Any) -> bool:
    """A word-level text corpus (sentences end with <eos>), not synthetic data."""
    return hasattr(dm, "sentences") and getattr(dm, "vocab", None) is not None


def _sentence_length_rows(model: RNNLM, dm: Any, split: str, batch_size: int, max_len: int | None) -> Rows:
    """Perplexity by sentence-length bin, every sentence from a zero state, positions from its start."""
    name = SPLIT_NAMES[split]
    batches = dm.sentences(name, batch_size)
    longest = int(batches.batches[-1][1].ne(IGNORE_INDEX).sum(1).max())
    with _evaluation_extrapolation(model.core, max_len is not None and longest > max_len) as extrapolation:
        _, per_sentence = sentence_pass(model, batches)
    return [{"split": split, **b, "extrapolation": extrapolation if b["past_max_len"] else _own(model.core)}
            for b in _binned(per_sentence, max_len)]  # fmt: skip


def _binned(per_sentence: list[tuple[int, float]], max_len: int | None) -> Rows:
    """Per sentence-length bin (``sentence_bins``; empty bins left out): the token-weighted loss of the sentences
    of that length. ``per_sentence``: (tokens, summed loss) of each sentence."""
    lengths = torch.tensor([n for n, _ in per_sentence])
    sums = torch.tensor([s for _, s in per_sentence], dtype=torch.float64)
    out = []
    for lo, hi in sentence_bins(int(lengths.max()), max_len):
        sel = (lengths >= lo) & (lengths <= hi)
        tokens = int(lengths[sel].sum())
        if tokens:
            loss = float(sums[sel].sum()) / tokens
            out.append({"length": hi, "bin_lo": lo, "past_max_len": max_len is not None and hi > max_len,
                        "loss": loss, "ppl": _ppl(loss), "tokens": tokens, "sentences": int(sel.sum())})  # fmt: skip
    return out


def _recurrence_rows(model: RNNLM, dm: Any, split: str, batch_size: int, seq_len: int, max_len: int | None) -> Rows:
    name = SPLIT_NAMES[split]
    out = []
    with _evaluation_extrapolation(model.core, max_len is not None and seq_len > max_len), _seq_len(dm, seq_len):
        for state, zero in zip(RECURRENCE_STATES, ("none", "cell", "state"), strict=True):
            tally = zeroed_pass(model, dm.split_data(name, batch_size), zero)
            out.append({"split": split, "state": state, "length": seq_len, "loss": tally.loss,
                        "ppl": _ppl(tally.loss), "tokens": tally.tokens})  # fmt: skip
    return out


def _own(core: Any) -> str:
    """The core's own extrapolation mode, "none" for cores without max_len."""
    return getattr(core, "extrapolation", "none") if hasattr(core, "max_len") else "none"


def _position_rows(split: str, tally: Tally, rows: dict[str, Rows]) -> None:
    for p, (s, n) in enumerate(zip(tally.pos_nll.tolist(), tally.pos_n.tolist(), strict=True)):
        if n:
            rows["position"].append({"split": split, "position": p, "loss": s / n, "tokens": n})


def _checkpoint_val_loss(checkpoint: dict[str, Any]) -> float | None:
    """The validation loss the run logged for this checkpoint's epoch (ModelCheckpoint's monitored val/loss)."""
    for key, value in (checkpoint.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and value.get("monitor") == "val/loss":
            score = value.get("current_score", value.get("best_model_score"))
            return None if score is None else float(score)
    return None


def _title(run_dir: Path, config: dict[str, Any]) -> str:
    name = config.get("name") or run_dir.parent.name
    return f"{name} ({run_dir.name})" if run_dir.name.startswith("version_") else str(name)


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


# ---- command line ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="lrnn evaluate",
        description="Length generalization, per-position loss and state reset of a run's checkpoint (CSV + PNG).",
    )
    parser.add_argument("run", help="run folder runs/<name>/version_<k> (holds config.yaml and checkpoints/)")
    parser.add_argument("--ckpt", default="best", help="best | last | a checkpoint path (default: best)")
    parser.add_argument("--lengths", type=int, nargs="+", help="stream window lengths (default: T/2 T 2T 4T 8T)")
    parser.add_argument(
        "--splits", nargs="*", default=["val", "test"], help="val and/or test (default: both; none with --train)"
    )
    parser.add_argument(
        "--train", action="store_true", help="also train.csv: eval-mode perplexity on the windows the run trained on"
    )
    parser.add_argument("--out", help="output folder (default: <run>/evaluation, or evaluation_<k> if that is taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in the output folder")
    parser.add_argument("--device", help="cpu | cuda | ... (default: cuda if available)")
    parser.add_argument("--no-plots", action="store_true", help="CSVs only")
    parser.add_argument(
        "--no-sentence-length", action="store_true", help="skip sentence_length.csv (perplexity by sentence length)"
    )
    parser.add_argument(
        "--no-recurrence", action="store_true", help="skip recurrence.csv (cell state / state zeroed at every step)"
    )
    args = parser.parse_args(argv)
    if not args.run:
        print("lrnn evaluate: error: no run given (make evaluate RUN=runs/<name>/version_<k>)", file=sys.stderr)
        return 2
    try:
        out = output_folder(args.run, args.out, args.overwrite)
        rows = evaluate_run(
            args.run, ckpt=args.ckpt, lengths=args.lengths, splits=args.splits, out_dir=out,
            plots=not args.no_plots, device=args.device, progress=True, overwrite=args.overwrite,
            sentence_length=not args.no_sentence_length, recurrence=not args.no_recurrence, train=args.train,
        )  # fmt: skip
    except (EvaluationError, ValueError, OSError) as e:  # bad run, checkpoint, data (e.g. corpus not found)
        print(f"lrnn evaluate: error: {e}", file=sys.stderr)
        return 2
    for r in rows["length"]:
        where = f"{r['bin_lo']}-{r['length']}" if r["mode"] == "sentence" else r["length"]
        flag = " (past max_len)" if r["past_max_len"] else ""
        print(f"{r['split']:>4} {r['mode']} length {where}: ppl {r['ppl']:.2f} over {r['tokens']} tokens{flag}")
    for r in rows["sentence_length"]:
        flag = " (past max_len)" if r["past_max_len"] else ""
        where = f"{r['bin_lo']}-{r['length']}"
        print(f"{r['split']:>4} sentences of {where}: ppl {r['ppl']:.2f} over {r['tokens']} tokens{flag}")
    for r in rows["recurrence"]:
        print(f"{r['split']:>4} windows of {r['length']}, {r['state']}: ppl {r['ppl']:.2f}")
    for r in rows["train"]:
        print(f"train windows of {r['length']} ({r['windows']} of {r['of_windows']}), eval mode: ppl {r['ppl']:.2f}")
    meta = json.loads((out / "meta.json").read_text())
    if meta.get("val_loss") is not None and meta.get("checkpoint_val_loss") is not None:
        where = f"at T={meta['seq_len']}" if meta["mode"] == "stream" else "over all sentences"
        print(
            f"val ppl {where}: {math.exp(meta['val_loss']):.4f}; "
            f"logged by the run for this checkpoint: {math.exp(meta['checkpoint_val_loss']):.4f}"
        )
        limit = meta.get("run_limit_val_batches")
        if limit is not None and limit != 1.0:  # the run validated on part of the split; this evaluation on all of it
            print(
                f"  (the run logged it over part of the split, trainer.limit_val_batches {limit}; "
                "this evaluation uses all of it)"
            )
    written = ",".join(name for name, table in rows.items() if table or name in BASE_TABLES)
    print(f"wrote {out}/{{{written}}}.csv" + ("" if args.no_plots else " and .png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
