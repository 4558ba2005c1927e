"""The cached runner: a finished run is reused, an unfinished one runs again in a new version folder (the old one
kept), a failed one is reported; W&B group and tags reach the logger."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import pytest

from lrnn.paper import runner
from lrnn.paper.grid import RunSpec, build_grid
from lrnn.paper.runner import DevicePool, execute, finished_version, run_lanes, spec_root


@pytest.fixture
def spec() -> RunSpec:
    return next(r for r in build_grid("smoke") if "C6" in r.claims)


def fake_fit(outcomes: list[str], calls: list[list[str]]):
    """Stands in for the ``lrnn fit`` subprocess: makes the next version folder and writes an outcome."""

    def run(cmd: list[str], env: dict[str, str], log: Path) -> int:
        calls.append(cmd)
        if "evaluate" in cmd:
            return 0
        out_dir, name = Path(cmd[cmd.index("--out_dir") + 1]), cmd[cmd.index("--name") + 1]
        root = out_dir / name
        k = len(list(root.glob("version_*")))
        version = root / f"version_{k}"
        version.mkdir(parents=True)
        (version / "config.yaml").write_text("data: {init_args: {seq_len: 5}}\n")
        outcome = outcomes.pop(0)
        if outcome == "completed":
            (version / "results.json").write_text(json.dumps({"best_val_loss": 1.0, "test": {"test/acc": 0.5}}))
            return 0
        if outcome == "diverged":
            (version / "results.json").write_text(json.dumps({"status": "diverged"}))
            return 1
        return 1  # crashed: no results.json

    return run


def _execute(spec: RunSpec, runs: Path):
    return execute(spec, runs, profile="smoke", wandb="off", threads=1, devices=DevicePool([]),
                   eval_lengths=(5,), eval_splits=("val",), say=lambda m: None)  # fmt: skip


def test_finished_run_is_reused(spec, tmp_path, monkeypatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "_run_logged", fake_fit(["completed"], calls))
    first = _execute(spec, tmp_path)
    assert first.status == "completed" and not first.reused and len(calls) == 1
    assert json.loads((first.version / "paper.json").read_text())["command"] == ["python", *calls[0][1:]]
    second = _execute(spec, tmp_path)
    assert second.reused and second.version == first.version and len(calls) == 1


def test_unfinished_run_restarts_in_a_new_version_and_keeps_the_old(spec, tmp_path, monkeypatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "_run_logged", fake_fit(["crashed", "completed"], calls))
    failed = _execute(spec, tmp_path)
    assert failed.version is None and failed.status == "incomplete"
    assert finished_version(tmp_path, spec) is None
    done = _execute(spec, tmp_path)
    assert done.version.name == "version_1" and (done.version.parent / "version_0").is_dir()
    assert finished_version(tmp_path, spec) == done.version


def test_diverged_counts_as_finished(spec, tmp_path, monkeypatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "_run_logged", fake_fit(["diverged"], calls))
    assert _execute(spec, tmp_path).status == "diverged"
    assert _execute(spec, tmp_path).reused and len(calls) == 1


def test_fit_command_carries_group_tags_and_dotted_keys(spec, tmp_path) -> None:
    cmd = runner.fit_command(spec, tmp_path, "smoke", "offline")
    assert cmd[1:4] == ["-m", "lrnn", "fit"]
    assert cmd[cmd.index("--wandb_group") + 1] == "C6"
    assert set(json.loads(cmd[cmd.index("--wandb_tags") + 1])) >= {f"core:{spec.core}", "profile:smoke"}
    assert "--data.init_args.lag" in cmd


def test_gpus_get_one_run_each(tmp_path, monkeypatch) -> None:
    grid = [r for r in build_grid("smoke") if "C6" in r.claims][:4]
    seen: list[str | None] = []
    busy: set[str] = set()

    def run(cmd, env, log):
        gpu = env.get("CUDA_VISIBLE_DEVICES")
        assert gpu not in busy, "two runs on one device"
        busy.add(gpu)
        seen.append(gpu)
        busy.discard(gpu)
        return 1

    release = runner.release

    def slow_release(runs, spec) -> None:  # widens the moment between a lock file going and the lane's bookkeeping
        release(runs, spec)
        time.sleep(0.3)

    monkeypatch.setattr(runner, "_run_logged", run)
    monkeypatch.setattr(runner, "release", slow_release)
    run_lanes(lambda: grid, tmp_path, profile="smoke", jobs=8, threads=1, gpus=["0", "1"], say=lambda m: None)
    assert sorted(set(seen)) == ["0", "1"] and len(seen) == 4  # each failed run ran once, not picked up again


def test_make_loggers_passes_group_and_tags(tmp_path) -> None:
    from lrnn.loggers import make_loggers

    loggers = make_loggers("C4-tied", 0, str(tmp_path), "offline", group="C4", tags=["core:tied"])
    init = loggers[1]._wandb_init
    assert init["group"] == "C4" and init["tags"] == ["core:tied"] and init["name"] == "C4-tied-s0"
    assert make_loggers("x", 0, str(tmp_path), "offline")[1]._wandb_init["group"] == "x"


def test_interrupted_run_with_a_checkpoint_is_resumed_in_its_folder(spec, tmp_path, monkeypatch) -> None:
    calls: list[list[str]] = []
    fit = fake_fit(["completed"], calls)

    def run(cmd, env, log):
        if "--resume" in cmd:  # lrnn fit --resume finishes the run in the same folder
            calls.append(cmd)
            folder = Path(cmd[cmd.index("--resume") + 1])
            (folder / "results.json").write_text(json.dumps({"status": "completed", "best_val_loss": 1.0}))
            return 0
        return fit(cmd, env, log)

    monkeypatch.setattr(runner, "_run_logged", run)
    version = spec_root(tmp_path, spec) / "version_0"
    (version / "checkpoints").mkdir(parents=True)
    (version / "checkpoints/last.ckpt").write_bytes(b"x")
    (version / "results.json").write_text(json.dumps({"status": "interrupted"}))
    state = _execute(spec, tmp_path)
    assert state.status == "completed" and state.version == version and len(calls) == 1
    assert calls[0][3:6] == ["fit", "--resume", str(version)]
    assert not (version.parent / "version_1").exists()


def test_failed_run_is_not_resumed(spec, tmp_path, monkeypatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "_run_logged", fake_fit(["completed"], calls))
    version = spec_root(tmp_path, spec) / "version_0"
    (version / "checkpoints").mkdir(parents=True)
    (version / "checkpoints/last.ckpt").write_bytes(b"x")
    (version / "results.json").write_text(json.dumps({"status": "failed"}))
    state = _execute(spec, tmp_path)
    assert "--resume" not in calls[0] and state.version.name == "version_1"


CHILD = """
import json, pathlib, signal, sys, time
version = pathlib.Path(sys.argv[1]) / "version_0"
version.mkdir(parents=True)
def save(signum, frame):  # what lrnn fit does: finish the batch, write last.ckpt, exit 128 + signum
    time.sleep(1.0)
    (version / "results.json").write_text(json.dumps({"status": "interrupted"}))
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, save)
(version / "started").write_text("")
time.sleep(60)
"""


def test_sigterm_stops_the_grid_after_the_runs_in_flight_saved(tmp_path, monkeypatch) -> None:
    """SIGTERM to the runner: no new run starts, the one in flight gets SIGTERM and time to save (not killed)."""
    import os
    import signal
    import sys
    import threading
    import time

    specs = [r for r in build_grid("smoke") if "C6" in r.claims][:2]
    monkeypatch.setattr(
        runner, "fit_command", lambda spec, runs, *a: [sys.executable, "-c", CHILD, str(spec_root(runs, spec))]
    )
    started = spec_root(tmp_path, specs[0]) / "version_0" / "started"

    def kill_when_started() -> None:
        for _ in range(300):
            if started.exists():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=kill_when_started, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(runner.GridInterrupted) as info:
        run_lanes(lambda: specs, tmp_path, profile="smoke", jobs=1, threads=1, say=lambda m: None)
    assert info.value.signum == signal.SIGTERM and info.value.stopped == 1
    assert time.monotonic() - t0 < 30  # stopped, not waited out
    first = spec_root(tmp_path, specs[0]) / "version_0"
    assert json.loads((first / "results.json").read_text())["status"] == "interrupted"  # it had time to save
    assert json.loads((first / "paper.json").read_text())["returncode"] == 128 + signal.SIGTERM
    assert not spec_root(tmp_path, specs[1]).exists()  # nothing new started
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_fit_is_quiet_only_if_the_load_stayed_at_its_own_threads(spec, tmp_path, monkeypatch) -> None:
    loads = iter([1.1, 3.9, 1.0] + [1.0] * 100)
    monkeypatch.setattr(runner.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    monkeypatch.setattr(runner, "LoadSampler", functools.partial(runner.LoadSampler, every_s=0.01))

    def slow_fit(cmd, env, log):
        time.sleep(0.2)  # several samples
        return fake_fit(["completed"], [])(cmd, env, log)

    monkeypatch.setattr(runner, "_run_logged", slow_fit)
    record = json.loads((_execute(spec, tmp_path).version / "paper.json").read_text())
    assert record["load_max"] == 3.9 and record["quiet"] is False  # another job ran beside it for a while
    loads = iter([1.2] * 1000)
    record = json.loads((_execute(dataclasses.replace(spec, seed=99), tmp_path).version / "paper.json").read_text())
    assert record["load_max"] == 1.2 and record["quiet"] is True


def test_a_lane_claims_a_run_once_and_takes_over_a_dead_lanes_lock(spec, tmp_path) -> None:
    assert runner.claim(tmp_path, spec)
    assert not runner.claim(tmp_path, spec)  # held by a live process (this one): another lane skips it
    runner.release(tmp_path, spec)
    (tmp_path / spec.key / ".lane.lock").write_text("999999999")  # a pid that does not exist
    assert runner.claim(tmp_path, spec)
    runner.release(tmp_path, spec)


def test_lanes_run_tuning_first_and_then_the_runs_that_waited_for_it(tmp_path, monkeypatch) -> None:
    first, waiting = dataclasses.replace(_c6(), seed=50), dataclasses.replace(_c6(), seed=51)
    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "_run_logged", fake_fit(["completed"] * 2, calls))

    def build():
        done = finished_version(tmp_path, first) is not None
        return [first, dataclasses.replace(waiting, waiting="" if done else "tuning")]

    states = runner.run_lanes(build, tmp_path, profile="smoke", jobs=2, threads=1, say=lambda m: None, poll_s=0.05)
    assert [s.spec.seed for s in states] == [50, 51] and all(s.status == "completed" for s in states)


def _c6() -> RunSpec:
    return next(r for r in build_grid("smoke") if "C6" in r.claims)


def test_c4_runs_get_their_eval_mode_train_perplexity_and_only_once(tmp_path, monkeypatch) -> None:
    grid = build_grid("converged", tmp_path)
    fraction = next(r for r in grid if r.claims == ("C4",))
    contest = next(r for r in grid if "C4" in r.claims and r.claims[0] == "contest")
    other = next(r for r in grid if r.claims[0] == "contest" and "C4" not in r.claims)
    assert fraction.train_eval and not fraction.evaluate and contest.train_eval and contest.evaluate
    assert not other.train_eval and not any(r.train_eval for r in grid if r.claims[0] == "tune")

    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "_run_logged", fake_fit(["completed"], calls))
    done = _execute(fraction, tmp_path)
    (evaluate,) = [c for c in calls if "evaluate" in c]
    assert "--train" in evaluate and evaluate[evaluate.index("--splits") + 1].startswith("--")  # no val/test
    assert runner.needs_evaluation(fraction, done.version)  # the fake evaluation wrote nothing
    (done.version / "evaluation").mkdir()
    (done.version / "evaluation" / "train.csv").write_text("split,length,windows,of_windows,loss,ppl,tokens\n")
    assert not runner.needs_evaluation(fraction, done.version)
    assert _execute(fraction, tmp_path).reused and len(calls) == 2
