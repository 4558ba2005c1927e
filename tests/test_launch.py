"""`make experiment`'s thread default (one torch thread per physical core unless THREADS= says otherwise) and the
exit status it reports."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lrnn import launch
from tests.conftest import REPO


def test_thread_default_is_one_per_physical_core() -> None:
    n, why = launch.thread_count("")
    assert n == launch.physical_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))
    assert "physical core" in why and "THREADS" in why
    assert launch.thread_count("3") == (3, "THREADS")


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_bad_thread_counts_exit_with_status_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.main(["tied_ptb", "--threads", bad]) == 2
    assert "THREADS must be a positive integer" in capsys.readouterr().err


def test_launcher_sets_and_reports_the_threads(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    executed = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    launch.main(["tied_ptb", "--threads", "1", "--wandb", "off"])
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert "threads: 1 (THREADS)" in capsys.readouterr().out
    assert executed and executed[0][1:3] == ["-m", "lrnn"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize("status", [3, 130])
def test_make_experiment_reports_lrnns_own_exit_status(status: int, tmp_path: Path) -> None:
    """make exits 2 whenever a recipe fails; the recipe says first which status lrnn exited with."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexit {status}\n")
    fake.chmod(0o755)
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "experiment", "NAME=tied_ptb", "STAMP=", f"PY={fake}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"make: lrnn exited with status {status} " in done.stderr


def test_gpus_and_nodes_map_to_ddp_and_share_the_cores(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(launch, "physical_cores", lambda: 8)
    assert launch.thread_count("", ranks=2)[0] == 4 and launch.thread_count("", ranks=16)[0] == 1
    assert launch.thread_count("3", ranks=2)[0] == 3
    for cuda, accelerator in ((True, "gpu"), (False, "cpu")):  # no CUDA GPU: N CPU processes over gloo
        monkeypatch.setattr(launch, "cuda_available", lambda cuda=cuda: cuda)
        argv = launch.build_argv("untied_ptb", gpus="2", nodes="3")
        assert argv[argv.index("--trainer.accelerator") + 1] == accelerator
        assert argv[argv.index("--trainer.devices") + 1] == "2" and argv[argv.index("--trainer.num_nodes") + 1] == "3"
        assert argv[argv.index("--trainer.strategy") + 1] == "ddp"
    assert "--trainer.strategy" not in launch.build_argv("untied_ptb", gpus="1")
    executed = []
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.append(argv))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    launch.main(["untied_ptb", "--gpus", "2", "--wandb", "off"])
    out = capsys.readouterr().out
    assert os.environ["OMP_NUM_THREADS"] == "4" and "threads: 4 (physical cores / 2 processes" in out
    assert "runs 2 CPU processes (DDP over gloo)" in out
    assert launch.main(["untied_ptb", "--nodes", "0"]) == 2
