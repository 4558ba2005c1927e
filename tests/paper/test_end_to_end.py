"""``python -m lrnn.paper run`` end to end on two real smoke runs (a delayed-recall cell and an evaluated untied LM on
the generated corpus): real ``lrnn fit`` + ``lrnn evaluate`` subprocesses, then the report; a second invocation
reuses both runs. The whole smoke grid is ``make paper PROFILE=smoke OUT=<dir>`` (about 26 runs, minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lrnn.paper.__main__ import main as paper_main

RUNS = ["C6-tied-D=5-k1=5-k2=5-state=carried-s0", "contest-untied-matching=width-width=200-lr=1.0-s0"]
TUNING = "tune-untied-matching=width-lr=1.0-s0"  # the contest run waits for it


@pytest.mark.slow
def test_run_then_rerun_reuses(tmp_path: Path, capsys) -> None:
    args = ["run", "--profile", "smoke", "--out", str(tmp_path / "paper"), "--runs", str(tmp_path / "runs"),
            "--filter", *RUNS, TUNING, "--wandb", "off", "--jobs", "2", "--threads", "1"]  # fmt: skip
    assert paper_main(args) == 0
    runs = pd.read_csv(tmp_path / "paper/results/runs.csv")
    assert sorted(runs["name"]) == sorted([*RUNS, TUNING]) and (runs["status"] == "completed").all()
    assert runs.set_index("name").loc[RUNS[0], "test_acc"] >= 0
    length = pd.read_csv(tmp_path / "paper/results/length.csv")
    assert set(length["length"]) == {20, 40} and set(length["name"]) == {RUNS[1]}
    readme = (tmp_path / "paper/README.md").read_text()
    assert "## Verdicts" in readme and "C6-tied-D=5-k1=5-k2=5-state=carried-s0" in readme
    first = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/*/version_*/results.json")}
    assert len(first) == 3
    capsys.readouterr()

    assert paper_main(args) == 0
    assert "start" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/*/version_*/results.json")} == first
    provenance = json.loads((tmp_path / "paper/results/provenance.json").read_text())
    assert provenance["reused"] == 3
