"""W&B (offline, as without an API key): the best validation and the test numbers reach the run summary, and
``--wandb_log_model true`` logs the best checkpoint as a model artifact (off by default)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_cli import TINY_CONFIG, run


@pytest.mark.slow
@pytest.mark.parametrize("log_model", [False, True])
def test_summary_and_model_artifact(log_model: bool, tiny_corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(dataset=tiny_corpus).replace("max_epochs: 2", "max_epochs: 1"))
    out = tmp_path / "runs"
    args = ["-m", "lrnn", "fit", "--config", str(config), "--out_dir", str(out), "--wandb", "offline"]
    args += ["--trainer.limit_train_batches", "20"] + (["--wandb_log_model", "true"] if log_model else [])
    result = run(args, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "tiny" / "version_0" / "results.json").read_text())
    (offline,) = (out / "wandb").glob("offline-run-*")
    # offline, the summary and the artifact are records of the run's log (wandb sync uploads them)
    log = next(offline.glob("run-*.wandb")).read_bytes()
    for key, value in (
        ("best/val_loss", results["best_val_loss"]),
        ("best/val_ppl", math.exp(results["best_val_loss"])),
        ("test/ppl", results["test"]["test/ppl"]),
    ):
        assert key.encode() in log and json.dumps(value).encode()[:8] in log, key
    assert b'"completed"' in log
    assert (f"model-{results['wandb']['id']}".encode() in log) == log_model
