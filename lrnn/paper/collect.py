"""Run folders -> tidy tables: one row per run (``runs.csv``), learning curves (``curves.csv``) and the evaluation
CSVs of the evaluated runs (``length.csv``, ``state_reset.csv``, ``position.csv``, ``sentence_length.csv``,
``recurrence.csv``), each row tagged with its run."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from lrnn.paper.grid import ROOT, RunSpec
from lrnn.paper.runner import finished_version, read_status


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss == loss and loss < 50 else math.inf if loss == loss else math.nan


def run_row(spec: RunSpec, version: Path | None) -> dict[str, Any]:
    """The run's identity, factors and headline numbers (NaN where it has none)."""
    row: dict[str, Any] = {
        "name": spec.name,
        "key": spec.key,
        "claims": " ".join(spec.claims),
        "core": spec.core,
        "seed": spec.seed,
        **dict(spec.factors),
        "run_dir": _relative(version) if version else "",
        "status": read_status(version) if version else "missing",
    }
    if version is None:
        return row
    res = json.loads((version / "results.json").read_text())
    paper = json.loads((version / "paper.json").read_text()) if (version / "paper.json").is_file() else {}
    fit, test = res.get("fit", {}), res.get("test", {})
    row.update(
        best_val_loss=_num(res.get("best_val_loss")),
        best_val_ppl=_ppl(_num(res.get("best_val_loss"))),
        test_loss=_num(test.get("test/loss")),
        test_ppl=_num(test.get("test/ppl")),
        test_acc=_num(test.get("test/acc")),
        params=_num(res.get("params", {}).get("total")),
        recurrent_params=_num(res.get("params", {}).get("recurrent")),
        fit_seconds=_num(res.get("fit_seconds")),
        wall_s=_num(paper.get("wall_s")),
        threads=paper.get("threads"),
        git_commit=res.get("git_commit"),
        val_acc_last=_num(fit.get("val/acc")),
        command=readable_command(paper.get("command") or []),
    )
    train = version / "evaluation" / "train.csv"
    if train.is_file():  # lrnn evaluate --train: eval-mode perplexity on the windows it trained on (C4's gap)
        row["train_eval_ppl"] = float(pd.read_csv(train)["ppl"].iloc[0])
    data = _config(version).get("data", {}).get("init_args", {})
    row["seq_len"] = data.get("seq_len")
    metrics = version / "metrics.csv"
    if metrics.is_file():
        m = pd.read_csv(metrics)
        for col, key in (("train/ppl", "train_ppl_last"), ("val/ppl", "val_ppl_last"), ("val/acc", "val_acc_best")):
            if col in m:
                s = m[col].dropna()
                row[key] = float(s.max() if key == "val_acc_best" else s.iloc[-1]) if len(s) else math.nan
        if "train/tokens_per_s" in m:
            row["tokens_per_s"] = float(m["train/tokens_per_s"].dropna().mean())
        row["steps"] = int(m["step"].max()) + 1 if "step" in m and len(m) else 0
        max_epochs = _config(version).get("trainer", {}).get("max_epochs")
        stopped_early = max_epochs is not None and 0 <= epochs_completed(res, max_epochs) < int(max_epochs)
        row["converged"] = converged(m, stopped_early)
    row["quiet"] = bool(paper.get("quiet", False))  # timed alone on the machine (C10's timings need it)
    return row


def epochs_completed(results: dict, default: int) -> int:
    """Epochs a run finished, from its results.json: ``epochs_completed``; files written before it existed have
    only ``epoch``, which then held the same count (Lightning's epoch counter after fit). A file with both has a
    0-based ``epoch`` (the last epoch that trained), which is not a count."""
    return int(results.get("epochs_completed", results.get("epoch", default)))


CONVERGED_GAIN = 0.01  # a PTB run has converged when its last epoch improved the best validation ppl by < 1%


def converged(metrics: pd.DataFrame, stopped_early: bool = False, gain: float = CONVERGED_GAIN) -> bool:
    """The rule of every PTB verdict: early stopping ended the run, or its best validation perplexity at the end of
    the last epoch is less than ``gain`` (1%) better than at the end of the epoch before. A run with validation in
    fewer than two epochs has not converged."""
    if stopped_early:
        return True
    if "val/loss" not in metrics or "epoch" not in metrics:
        return False
    val = metrics[["epoch", "val/loss"]].dropna()
    if val.empty or val["epoch"].nunique() < 2:
        return False
    last = int(val["epoch"].max())
    best_before = float(val.loc[val["epoch"] < last, "val/loss"].min())
    best_now = float(val["val/loss"].min())
    return best_before - best_now < math.log1p(gain)


def _relative(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def readable_command(cmd: list[str]) -> str:
    """``python -m lrnn fit ...`` as ``lrnn fit ...`` with repository-relative paths, shell-quoted."""
    if not cmd:
        return ""
    root = str(ROOT) + "/"
    args = cmd[2:] if len(cmd) > 2 and cmd[1:3] == ["-m", "lrnn"] else cmd
    args = ["lrnn", *args[1:]] if args and args[0] == "lrnn" else args
    return " ".join(shlex.quote(a.replace(root, "")) for a in args)


def curve_rows(spec: RunSpec, version: Path) -> pd.DataFrame:
    """Validation (and train, per epoch) metrics per step, with the wall time at each step (fit time x step share)."""
    metrics = version / "metrics.csv"
    if not metrics.is_file():
        return pd.DataFrame()
    m = pd.read_csv(metrics)
    keep = [c for c in ("epoch", "step", "train/ppl", "val/ppl", "val/acc", "val/loss") if c in m]
    m = m[keep]
    m = m[m[[c for c in keep if c not in ("epoch", "step")]].notna().any(axis=1)]
    res = json.loads((version / "results.json").read_text())
    last = max(int(m["step"].max()) + 1, 1) if len(m) else 1
    step = m["step"] + 1
    m = m.assign(wall_s=step / last * _num(res.get("fit_seconds")), tokens=step * _tokens_per_step(version))
    return m.assign(name=spec.name, core=spec.core, seed=spec.seed, claims=" ".join(spec.claims), **dict(spec.factors))


def _config(version: Path) -> dict[str, Any]:
    import yaml

    path = version / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _tokens_per_step(version: Path) -> int:
    config = _config(version)
    data = config.get("data", {}).get("init_args", {})
    model = config.get("model", {})
    steps = model.get("k1") or data.get("seq_len") or 1
    return int(data.get("batch_size", 1)) * int(steps)


def collect(specs: list[RunSpec], runs: Path) -> dict[str, pd.DataFrame]:
    """All tables of a grid from its run folders (unfinished runs appear with status ``missing``)."""
    rows, curves = [], []
    evals: dict[str, list[pd.DataFrame]] = {
        k: [] for k in ("length", "state_reset", "position", "sentence_length", "recurrence")
    }
    for spec in specs:
        version = finished_version(runs, spec)
        rows.append(run_row(spec, version))
        if version is None:
            continue
        curves.append(curve_rows(spec, version))
        for kind in evals:
            path = version / "evaluation" / f"{kind}.csv"
            if path.is_file():
                evals[kind].append(
                    pd.read_csv(path).assign(
                        name=spec.name,
                        core=spec.core,
                        seed=spec.seed,
                        claims=" ".join(spec.claims),
                        **dict(spec.factors),
                    )
                )
    tables = {"runs": pd.DataFrame(rows), "curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()}
    tables["tuning"] = tuning_table(tables["runs"])
    for kind, frames in evals.items():
        tables[kind] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    throughput = runs / "throughput.csv"  # C10's quiet timings (python -m lrnn.paper throughput)
    tables["throughput"] = pd.read_csv(throughput) if throughput.is_file() else pd.DataFrame()
    return tables


def tuning_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuning runs (one epoch at a constant lr) and which setting each core's contest runs took: the lowest
    best validation loss of its (core, matching); a diverged run never wins."""
    df = for_claim(runs, "tune")
    if df.empty or "best_val_loss" not in df:
        return df
    df = df.copy()
    loss = df["best_val_loss"].where(df["status"] == "completed", math.inf)
    df["chosen"] = False
    for _, group in df.groupby(["core", "matching"]):
        if (group["status"].isin(["completed", "diverged"])).all():
            df.loc[loss[group.index].idxmin(), "chosen"] = True
    return df


def for_claim(df: pd.DataFrame, claim: str) -> pd.DataFrame:
    """Rows of runs that serve ``claim``."""
    if df.empty or "claims" not in df:
        return df
    return df[df["claims"].str.split().apply(lambda cs: claim in cs)]
