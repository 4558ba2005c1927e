"""Nothing lost, nothing silent: exit codes, divergence, interrupts with an exact resume, honest run records."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from lrnn.cli import finite_json, main
from tests.test_cli import run

CONFIG = """
model:
  core:
    class_path: lrnn.TiedLSTM
    init_args: {{input_size: 16, hidden_size: 16, num_layers: 1}}
  dropout: 0.3
  lr_decay: 0.5
  lr_decay_after: 1
{extra_model}
data:
  init_args: {{dataset: {dataset}, batch_size: 4, seq_len: 8, test_batch_size: 1}}
trainer:
  max_epochs: 3
  limit_train_batches: 60
  enable_progress_bar: false
  enable_model_summary: false
"""


def _config(tmp_path: Path, corpus: Path, name: str = "tiny", extra_model: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(dataset=corpus, extra_model=extra_model))
    return path


def _fit(config: Path, out: Path, *extra: str, env: dict[str, str] | None = None):
    args = ["-m", "lrnn", "fit", "--config", str(config), "--out_dir", str(out), *extra]
    return run(args, cwd=out.parent, env={"PYTHONPATH": str(Path(__file__).parent.parent), **(env or {})})


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())  # strict: json rejects nothing, so check below


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signame", "step", "extra_model"),
    [("SIGINT", 80, ""), ("SIGTERM", 130, "  bptt: tbptt\n  k1: 5\n  k2: 10\n"), ("SIGINT", 30, "")],
    ids=["sigint-window", "sigterm-tbptt", "sigint-before-the-first-validation"],
)
def test_interrupt_then_resume_matches_an_uninterrupted_run(
    tiny_corpus: Path, tmp_path: Path, signame: str, step: int, extra_model: str
) -> None:
    """A real signal mid-epoch (epoch 1 of 2, 60 batches an epoch), resume, and compare every final number."""
    config = _config(tmp_path, tiny_corpus, extra_model=extra_model)
    plain = _fit(config, tmp_path / "plain", "--wandb", "off", "--trainer.max_epochs", "2")
    assert plain.returncode == 0, plain.stderr[-3000:]
    expected = _results(tmp_path / "plain" / "tiny" / "version_0")

    out = tmp_path / "runs"
    helper = ["--trainer.callbacks+=tests.helpers.SignalAt", "--wandb", "offline", "--trainer.max_epochs", "2"]
    stopped = _fit(config, out, *helper, env={"LRNN_SIGNAL_AT": f"{signame}:{step}"})
    assert stopped.returncode == 128 + getattr(signal, signame), stopped.stderr[-3000:]
    run_dir = out / "tiny" / "version_0"
    first = _results(run_dir)
    assert first["status"] == "interrupted" and step <= first["global_step"] <= step + 2  # TBPTT: 1-2 per batch
    assert signame in first["error"] and (run_dir / "checkpoints" / "last.ckpt").exists()
    assert "test" not in first
    metrics = run_dir / "metrics.csv"  # none yet when stopped before the first row was written
    rows_before = metrics.read_text().splitlines() if metrics.exists() else []

    resumed = run(["-m", "lrnn", "fit", "--resume", str(run_dir)], cwd=tmp_path, env={"PYTHONPATH": str(Path.cwd())})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _results(run_dir)
    assert final["status"] == "completed"
    assert final["resumed_from"]["step"] == first["global_step"]
    assert final["earlier_attempts"][0]["status"] == "interrupted"  # the earlier record is kept
    assert final["wandb"]["id"] == first["wandb"]["id"]  # the same W&B run
    assert not (out / "tiny" / "version_1").exists()  # the same folder
    # the validations after the resume overwrite last.ckpt (the file --resume reads), not a last-v1.ckpt beside it
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    # bit-identical on CPU: test, best validation, last epoch's train loss and lr
    assert final["test"] == expected["test"]
    assert final["best_val_loss"] == expected["best_val_loss"]
    for key in ("train/loss", "train/lr", "val/loss"):
        assert final["fit"][key] == expected["fit"][key], key
    rows_after = (run_dir / "metrics.csv").read_text().splitlines()
    steps = lambda rows: [tuple(r.split(",")[:2]) for r in rows[1:]]  # noqa: E731  (epoch, step) of each row
    assert steps(rows_after)[: max(len(rows_before) - 1, 0)] == steps(rows_before)  # the earlier rows are all kept


@pytest.mark.parametrize("lr", ["1e12", ".nan"])
def test_diverging_run_stops_with_a_record(tiny_corpus: Path, tmp_path: Path, lr: str) -> None:
    config = _config(tmp_path, tiny_corpus)
    result = _fit(config, tmp_path / "runs", "--wandb", "off", "--model.optimizer.init_args.lr", lr)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "training diverged: loss" in result.stderr and "at step" in result.stderr
    assert f"(lr {float(lr.strip('.')):.4g})" in result.stderr
    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    text = (run_dir / "results.json").read_text()
    results = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert results["status"] == "diverged" and results["diverged"]["lr"] in (float(lr.strip(".")), None)
    assert results["diverged"]["step"] < 60  # stopped in the first epoch, not after training to the end


def test_failed_run_records_why(tiny_corpus: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_corpus)
    result = _fit(config, tmp_path / "runs", "--wandb", "off", "--trainer.max_epochs", "1", "--model.bptt", "full")
    assert result.returncode != 0
    results = _results(tmp_path / "runs" / "tiny" / "version_0")
    assert results["status"] == "failed" and "bptt='full' does not fit batching='stream'" in results["error"]


def test_fast_dev_run_leaves_no_checkpoint_in_the_working_directory(tiny_corpus: Path, tmp_path: Path) -> None:
    """fast_dev_run has no logger, so Lightning would put last.ckpt in ``<cwd>/checkpoints``."""
    config = _config(tmp_path, tiny_corpus)
    result = _fit(config, tmp_path / "runs", "--wandb", "off", "--trainer.fast_dev_run", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_short_run_validates_at_the_end_and_tests_best(tiny_corpus: Path, tmp_path: Path) -> None:
    """max_steps inside the first epoch: validation still runs, best.ckpt exists, test says what it used."""
    config = _config(tmp_path, tiny_corpus)
    result = _fit(config, tmp_path / "runs", "--wandb", "off", "--trainer.max_steps", "30")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    results = _results(run_dir)
    assert (run_dir / "checkpoints" / "best.ckpt").exists()
    assert results["tested_checkpoint"].endswith("best.ckpt") and results["best_val_loss"] > 0
    assert "train/grad_norm" not in results["fit"]  # no stale step-level values
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    test_row = next(r.split(",") for r in rows[1:] if r.split(",")[header.index("test/loss")])
    assert float(test_row[header.index("epoch")]) == 0  # the tested weights' epoch, not a future one


def test_epoch_line_shows_the_lr_of_that_epoch(tiny_corpus: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_corpus)
    result = _fit(config, tmp_path / "runs", "--wandb", "off", "--trainer.max_epochs", "2", "--test_after_fit", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("epoch ")]
    assert ", lr 1," in lines[0] and ", lr 0.5," in lines[1]  # decay after 1 epoch: 1, then 0.5


def test_main_returns_zero_on_success_and_finite_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    assert finite_json({"a": float("nan"), "b": [float("inf"), 1.0]}) == {"a": None, "b": [None, 1.0]}


def test_old_checkpoints_still_load(tiny_corpus: Path, tmp_path: Path) -> None:
    """A checkpoint without the new resume keys (as written before them) loads for test and for resuming."""
    config = _config(tmp_path, tiny_corpus)
    result = _fit(config, tmp_path / "runs", "--wandb", "off", "--trainer.max_epochs", "1", "--test_after_fit", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt.pop("lrnn_train_state")
    ckpt["loops"]["fit_loop"]["state_dict"].pop("combined_loader", None)
    torch.save(ckpt, run_dir / "checkpoints" / "last.ckpt")
    resumed = run(["-m", "lrnn", "fit", "--resume", str(run_dir), "--trainer.max_epochs", "2"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _results(run_dir)["status"] == "completed"
