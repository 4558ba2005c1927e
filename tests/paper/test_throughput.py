"""C10's throughput measurement: the contest run's own command cut short, cores alternating, rows appended."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from lrnn.paper import throughput as T
from lrnn.paper.grid import build_grid


def _fake_fit(calls: list[list[str]], speed: dict[str, float]):
    def run(cmd: list[str], env: dict[str, str]) -> int:
        calls.append(cmd)
        out, name = Path(cmd[cmd.index("--out_dir") + 1]), cmd[cmd.index("--name") + 1]
        version = out / name / "version_0"
        version.mkdir(parents=True)
        (version / "metrics.csv").write_text(f"epoch,step,train/tokens_per_s\n0,9,{speed[name]}\n")
        assert env["OMP_NUM_THREADS"] == "1"
        return 0

    return run


def test_timing_runs_are_the_contest_commands_cut_short_and_alternate(tmp_path: Path) -> None:
    grid = [dataclasses.replace(r, waiting="") for r in build_grid("smoke")]  # as if the tuning had finished
    specs = T.timing_specs(grid)
    assert [s.core for s in specs] == ["tied", "untied"] and all("C10" in s.claims for s in specs)
    calls: list[list[str]] = []
    rows = T.measure_throughput(specs, steps=7, repeats=3, run=_fake_fit(calls, {"tied": 900.0, "untied": 600.0}),
                                say=lambda m: None)  # fmt: skip
    assert [r["core"] for r in rows] == ["tied", "untied", "untied", "tied", "tied", "untied"]
    assert len(calls) == 7  # a warm-up fit first, not recorded
    assert {r["core"]: r["tokens_per_s"] for r in rows} == {"tied": 900.0, "untied": 600.0}
    cmd = calls[1]
    last = len(cmd) - 1 - cmd[::-1].index("--trainer.limit_train_batches")  # the cut overrides the run's own limit
    assert cmd[last + 1] == "7" and "--trainer.limit_val_batches" in cmd
    fit_args = specs[0].fit_args()
    assert cmd[3 : 3 + len(fit_args)] == fit_args  # the run's own config, lr and all; the cut comes after it
    T.write_rows(rows, tmp_path / "throughput.csv")
    T.write_rows(rows[:2], tmp_path / "throughput.csv")  # a second measurement appends
    assert len(list(csv.DictReader(open(tmp_path / "throughput.csv")))) == 8


def test_no_timing_before_the_lr_is_tuned(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="waits for its tuning"):
        T.timing_specs(build_grid("converged", tmp_path))
