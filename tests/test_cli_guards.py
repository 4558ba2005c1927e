"""Nothing silent, nothing damaged: refused resumes, full option names, one-line argument errors before any run
folder, start-up interrupts, honest run records (issue 27)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from lrnn import cli, launch
from lrnn.cli import main
from tests.conftest import REPO
from tests.test_cli import TINY_CONFIG, run

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")


@pytest.fixture
def config(tiny_corpus: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    short = "max_epochs: 1\n  limit_train_batches: 6\n  limit_val_batches: 3\n  limit_test_batches: 3"
    path.write_text(TINY_CONFIG.format(dataset=tiny_corpus).replace("max_epochs: 2", short))
    return path


def fit(config: Path, out: Path, *extra: str) -> int:
    return main(["fit", "--config", str(config), "--out_dir", str(out), "--wandb", "off", *extra])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_of_a_completed_run_is_refused_and_touches_nothing(config: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert fit(config, out) == 0
    run_dir = out / "tiny" / "version_0"
    before = snapshot(out)
    capsys.readouterr()
    assert main(["fit", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "completed" in err and "nothing was changed" in err and len(err.splitlines()) == 1
    assert snapshot(out) == before  # byte for byte: results.json, metrics.csv, checkpoints, config.yaml


def test_mid_epoch_resume_with_another_process_count_is_one_line_and_touches_nothing(
    config: Path, tmp_path: Path, capsys
) -> None:
    """A checkpoint taken in the middle of an epoch by 2 DDP processes (each carries its own streams' state) resumed
    with 1 process: one line on stderr, exit 2, before anything of the run folder changes (results.json keeps
    "interrupted")."""
    import torch

    out = tmp_path / "runs"
    assert fit(config, out, "--trainer.max_steps", "3") == 0  # stops inside the epoch: last.ckpt is mid-epoch
    run_dir = out / "tiny" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    single = ckpt.pop("lrnn_train_state")
    assert single["mid_epoch"]
    ckpt["lrnn_rank_train_states"] = {"states": [single, single], "mid_epoch": True}  # as 2 ranks write it
    torch.save(ckpt, last)
    results = json.loads((run_dir / "results.json").read_text())
    (run_dir / "results.json").write_text(json.dumps({**results, "status": "interrupted"}))
    before = snapshot(out)
    capsys.readouterr()
    assert main(["fit", "--resume", str(run_dir), "--trainer.max_steps", "6"]) == 2
    (err,) = error_lines(capsys.readouterr().err)
    assert "middle of an epoch by 2 processes" in err and "not 1" in err and "Nothing was changed" in err
    assert snapshot(out) == before


def test_abbreviated_or_misspelled_options_exit_2_naming_the_right_one(config: Path, tmp_path: Path, capsys) -> None:
    for given in ("--trainer.max_epoch", "--trainer.max_epochz"):
        with pytest.raises(SystemExit) as info:  # --print_config: where prefixes are accepted, nothing trains
            main(["fit", "--config", str(config), given, "1", "--print_config"])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: unknown option {given}; did you mean --trainer.max_epochs?"
    with pytest.raises(SystemExit) as info:
        launch.main(["tied_ptb", "--gpu", "1"])
    assert info.value.code == 2 and "did you mean --gpus?" in capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    """The error lines of stderr (the corpus loader's progress lines aside); a traceback fails the test."""
    assert "Traceback" not in err
    return [ln for ln in err.splitlines() if ln.startswith("error")]


def test_argument_errors_are_one_line_and_exit_2_before_any_run_folder(config: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert fit(config, out, "--model.optimizer.init_args.lr", "-1") == 2  # torch's ValueError, at optimizer build
    (err,) = error_lines(capsys.readouterr().err)
    assert "Invalid learning rate: -1" in err
    assert not out.exists()
    assert launch.main(["tied_ptb", "--gpus", "abc"]) == 2
    assert "GPUS must be a positive integer" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():  # Lightning's MisconfigurationException
        assert fit(config, out, "--trainer.accelerator", "gpu", "--trainer.devices", "2") == 2
        assert len(error_lines(capsys.readouterr().err)) == 1
        assert not out.exists()


def test_ctrl_c_during_start_up_leaves_no_half_made_folder(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["-m", "lrnn", "fit", "--config", str(config), "--out_dir", str(out), "--wandb", "off"]
    result = run([*args, "--trainer.callbacks+=tests.helpers.CtrlCAtStart"], cwd=REPO)
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-3000:]
    assert "nothing to resume" in result.stdout
    assert not (out / "tiny" / "version_0").exists()


def test_records_time_fit_and_test_apart_and_count_epochs_from_0(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fake clock: each training epoch takes 10 s, the test pass 1000 s. ``fit_seconds`` is the fit only;
    results.json counts the finished epochs (``epochs_completed``) and names the last one as the console and
    metrics.csv do (``last_epoch``, 0-based, as Lightning shows)."""
    from lrnn.lightning.lm import LanguageModel

    class Clock:
        t = 0.0

        def time(self) -> float:
            return self.t

    clock = Clock()
    monkeypatch.setattr(cli, "time", clock)
    epoch_start, test_start = LanguageModel.on_train_epoch_start, LanguageModel.on_test_epoch_start
    monkeypatch.setattr(
        LanguageModel, "on_train_epoch_start", lambda m: (setattr(clock, "t", clock.t + 10), epoch_start(m))
    )
    monkeypatch.setattr(
        LanguageModel, "on_test_epoch_start", lambda m: (setattr(clock, "t", clock.t + 1000), test_start(m))
    )
    out = tmp_path / "runs"
    assert fit(config, out, "--trainer.max_epochs", "2") == 0
    run_dir = out / "tiny" / "version_0"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["fit_seconds"] == 20.0 and results["test_seconds"] == 1000.0
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    train_epochs = [
        float(r.split(",")[header.index("epoch")]) for r in rows[1:] if r.split(",")[header.index("train/loss")]
    ]
    console = [m.split(":")[0] for m in caplog.messages if m.startswith("epoch ")]
    assert results["last_epoch"] == max(train_epochs) == 1 and console == ["epoch 0", "epoch 1"]
    assert results["epochs_completed"] == 2 and "epoch" not in results  # no bare "epoch": 0-based or a count?


def test_help_lists_evaluate_and_test_has_no_dirpath_warning(config: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "evaluate" in capsys.readouterr().out
    out = tmp_path / "runs"
    assert fit(config, out, "--test_after_fit", "false") == 0
    best = out / "tiny" / "version_0" / "checkpoints" / "best.ckpt"
    result = run(["-m", "lrnn", "test", "--config", str(config), "--out_dir", str(out), "--wandb", "off",
                  "--ckpt_path", str(best)], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dirpath has changed" not in result.stderr + result.stdout


def test_a_test_session_leaves_nothing_in_the_checkout_runs_folder(tmp_path: Path) -> None:
    """A pytest session with a test that builds the smoke grid (which writes runs/paper-tiny-corpus) leaves no such
    folder behind (one this session made already is set aside meanwhile)."""
    import os
    import shutil
    import subprocess
    import sys

    folder = REPO / "runs" / "paper-tiny-corpus"
    aside = tmp_path / "aside"
    if folder.exists():
        shutil.move(folder, aside)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/paper/test_grid.py::test_key_depends_on_config_not_on_claims"],
            cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:]
        assert not folder.exists()
    finally:
        if aside.exists():
            shutil.rmtree(folder, ignore_errors=True)
            shutil.move(aside, folder)


def test_readme_try_it_command_is_short_and_parses(capsys) -> None:
    """The "Run an experiment" section has a fast "Try it" command: limited train, validation and test batches (a
    test over PTB's 82k tokens one stream at a time would take minutes), and every option in it exists."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Run an experiment") :]
    block = section[section.index("**Try it**") :].split("```")[1]  # the fenced command after the heading
    words = shlex.split(block.replace("\\\n", " ").removeprefix("bash"))
    name = next(w.split("=", 1)[1] for w in words if w.startswith("NAME="))
    args = shlex.split(next(w.split("=", 1)[1] for w in words if w.startswith("ARGS=")))
    assert name in launch.available()
    given = dict(zip(args[::2], args[1::2], strict=True))
    assert int(given["--trainer.limit_train_batches"]) <= 200 and int(given["--trainer.limit_test_batches"]) <= 200
    assert re.fullmatch(r"\d+", given["--trainer.limit_val_batches"]) and given["--trainer.max_epochs"] == "1"
    with pytest.raises(SystemExit) as info:
        main(launch.build_argv(name, extra=args) + ["--print_config"])
    assert info.value.code == 0
