"""C10's seconds: the training throughput (tokens/s) of each core's contest model, measured one job at a time.

The contest runs share the machine (two lanes, other work), so their own wall clocks are not timings. C10 takes the
*tokens* to the target from their learning curves (independent of the load) and the *seconds per token* from this
measurement: for each core, the same ``lrnn fit`` command as its equal-width contest run (tuned lr and all), cut to
``steps`` training updates without validation, one thread, after a short warm-up fit that is not recorded (the
first fit after a pause ran ~40% slower); cores alternate within each repeat, so that a drift of the machine hits
both. Each row records the load seen during its fit (``quiet``: the load stayed at its own thread).

``python -m lrnn.paper throughput [--steps 200] [--repeats 3]`` (``make paper-throughput``) writes
``runs/paper-<profile>/throughput.csv`` (appended: earlier rows are kept); run it on an otherwise idle machine.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lrnn.launch import lrnn_command
from lrnn.paper.grid import ROOT, RunSpec

FIELDS = ["core", "repeat", "steps", "tokens_per_s", "threads", "load_max", "quiet", "git_commit", "measured_at"]


def timing_specs(grid: list[RunSpec], cores: Sequence[str] = ("tied", "untied")) -> list[RunSpec]:
    """Seed 0 of each core's C10 run (its equal-width contest run); ``ValueError`` while one still waits for its
    tuning (its lr is not known yet)."""
    out = []
    for core in cores:
        spec = next((r for r in grid if "C10" in r.claims and r.core == core and r.seed == 0), None)
        if spec is None:
            raise ValueError(f"no C10 run of core {core!r} in this profile")
        if spec.waiting:
            raise ValueError(f"the C10 run of {core!r} waits for its tuning ({spec.waiting}): measure after it")
        out.append(spec)
    return out


def timing_command(spec: RunSpec, out_dir: Path, steps: int, python: str = sys.executable) -> list[str]:
    """The spec's ``lrnn fit`` cut to ``steps`` updates: one epoch, no validation, no test, no W&B."""
    return lrnn_command([
        *spec.fit_args(), "--out_dir", str(out_dir), "--name", spec.core, "--wandb", "off",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(steps), "--trainer.limit_val_batches", "0",
        "--trainer.callbacks", "[]", "--test_after_fit", "false",
        "--trainer.enable_progress_bar", "false",
    ], python)  # fmt: skip


def _tokens_per_s(run_root: Path) -> float:
    (metrics,) = run_root.glob("version_*/metrics.csv")
    values = pd.read_csv(metrics)["train/tokens_per_s"].dropna()
    if values.empty:
        raise RuntimeError(f"{metrics} has no train/tokens_per_s")
    return float(values.iloc[-1])


def measure_throughput(
    specs: Sequence[RunSpec],
    steps: int = 200,
    repeats: int = 3,
    threads: int = 1,
    run: Callable[[list[str], dict[str, str]], int] | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """``repeats`` rounds; in each, every spec's timing command once (the order alternates between rounds)."""
    from lrnn.loggers import git_commit
    from lrnn.paper.runner import QUIET_MARGIN, LoadSampler

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "WANDB_MODE": "disabled"}
    run = run or (lambda cmd, env: subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL).returncode)
    rows, commit = [], git_commit()
    with tempfile.TemporaryDirectory(prefix="lrnn-throughput-") as tmp:  # warm-up, not recorded: the first fit of a
        if run(timing_command(specs[0], Path(tmp), min(steps, 20)), env) != 0:  # session runs slower (file cache)
            raise RuntimeError(f"the warm-up fit of {specs[0].core} failed")
    for r in range(repeats):
        for spec in specs if r % 2 == 0 else list(reversed(specs)):
            with tempfile.TemporaryDirectory(prefix="lrnn-throughput-") as tmp, LoadSampler(every_s=5.0) as load:
                rc = run(timing_command(spec, Path(tmp), steps), env)
                if rc != 0:
                    raise RuntimeError(f"the timing fit of {spec.core} failed (exit {rc})")
                tps = _tokens_per_s(Path(tmp) / spec.core)
            quiet = load.max is not None and load.max <= threads + QUIET_MARGIN
            rows.append({"core": spec.core, "repeat": r, "steps": steps, "tokens_per_s": round(tps, 1),
                         "threads": threads, "load_max": load.max, "quiet": quiet, "git_commit": commit,
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})  # fmt: skip
            say(f"{spec.core:>8} repeat {r}: {tps:,.0f} tokens/s (load max {load.max}, {'quiet' if quiet else 'BUSY'})")
    return rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Append to ``path`` (earlier measurements are kept: C10 uses every quiet row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
