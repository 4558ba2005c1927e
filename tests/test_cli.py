"""End to end: `lrnn fit` (+ test) from a YAML, W&B offline, local metrics; `make experiment`'s launcher errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lrnn import launch
from lrnn.cli import main as cli_main
from lrnn.data import TextDataModule
from lrnn.paper.grid import EXPERIMENTS, resolved_config
from tests.conftest import REPO

TINY_CONFIG = """
model:
  core:
    class_path: lrnn.TiedLSTM
    init_args: {{input_size: 16, hidden_size: 16, num_layers: 1}}
data:
  init_args: {{dataset: {dataset}, batch_size: 4, seq_len: 8, test_batch_size: 1}}
trainer:
  max_epochs: 2
  enable_progress_bar: false
  enable_model_summary: false
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def tiny_config(tiny_corpus: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(dataset=tiny_corpus))
    return path


def test_fit_then_test_with_wandb_offline(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["-m", "lrnn", "fit", "--config", str(tiny_config), "--out_dir", str(out), "--wandb", "auto"]
    first = run(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = out / "tiny" / "version_0"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["test/ppl"] > 1 and results["best_val_loss"] > 0
    assert results["params"]["recurrent"] == 4 * 16 * (16 + 16 + 2)
    metrics = (run_dir / "metrics.csv").read_text()
    for key in ("train/loss", "val/ppl", "test/ppl", "train/tokens_per_s", "train/lr"):
        assert key in metrics
    assert (run_dir / "checkpoints" / "best.ckpt").exists() and (run_dir / "config.yaml").exists()
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb")), "W&B offline run kept for `wandb sync`"
    # the vocabulary travels with the checkpoint
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    itos = next(v["vocab"]["itos"] for k, v in ckpt.items() if k == "TextDataModule")
    assert itos[:1] and len(itos) < 30

    second = run([*args, "--wandb", "off", "--trainer.max_epochs", "1"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (out / "tiny" / "version_1" / "results.json").exists()
    assert (run_dir / "results.json").read_text() == json.dumps(results, indent=2) + "\n"  # earlier run intact


def test_bad_config_value_is_a_clear_error(tiny_config: Path, tmp_path: Path) -> None:
    result = run(["-m", "lrnn", "fit", "--config", str(tiny_config), "--data.init_args.batch_size", "many"], tmp_path)
    assert result.returncode != 0
    assert "batch_size" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_launcher_lists_experiments_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.main(["--list"]) == 0
    assert "tied_ptb" in capsys.readouterr().out
    assert launch.main(["no_such_experiment"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'no_such_experiment'" in err and "untied_ptb" in err
    assert launch.main(["tied_ptb", "--gpus", "0"]) == 2
    assert "GPUS" in capsys.readouterr().err


def test_launcher_builds_the_fit_command() -> None:
    argv = launch.build_argv("tied_ptb", gpus="2", wandb="off", extra=["--trainer.max_epochs", "1"])
    assert argv[:2] == ["fit", "--config"] and argv[2].endswith("lrnn/experiments/tied_ptb.yaml")
    assert argv[argv.index("--trainer.strategy") + 1] == "ddp" and argv[-2:] == ["--trainer.max_epochs", "1"]


def _leaves(config: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in config.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("name", sorted(launch.available()))
def test_every_experiment_config_parses_to_what_the_paper_hashes(name: str, capsys: pytest.CaptureFixture) -> None:
    """Each lrnn/experiments/*.yaml is a valid LightningCLI config (--print_config parses it with the configs it
    extends, nothing is trained), and every setting of the paper's resolved config (its cache key) is the setting
    LightningCLI gives the run."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(EXPERIMENTS / f"{name}.yaml"), "--seed_everything", "7", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = _leaves(yaml.safe_load(capsys.readouterr().out))
    hashed = _leaves(resolved_config(name, (), seed=7))
    assert {k: printed.get(k, "<missing>") for k in hashed} == hashed


def test_a_config_extends_its_bases_and_the_saved_config_stands_alone(tiny_config: Path, tmp_path: Path) -> None:
    top = tmp_path / "top" / "shorter.yaml"  # a base in another folder: extends is relative to the config
    top.parent.mkdir()
    top.write_text("extends: ../tiny.yaml\ntrainer:\n  max_epochs: 1\n")
    out = tmp_path / "runs"
    args = ["-m", "lrnn", "fit", "--config", str(top), "--out_dir", str(out), "--wandb", "off"]
    result = run([*args, "--trainer.limit_train_batches", "2", "--test_after_fit", "false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = yaml.safe_load((out / "shorter" / "version_0" / "config.yaml").read_text())  # named after the top
    assert saved["model"]["core"]["init_args"]["hidden_size"] == 16 and saved["trainer"]["max_epochs"] == 1
    assert saved.get("extends") is None  # complete: resuming from it reads no base
    (tmp_path / "tiny.yaml").unlink()
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr[-2000:]
    assert "tiny.yaml" in result.stderr and "does not exist" in result.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_see_each_token_once(tiny_config: Path, tmp_path: Path) -> None:
    """2 gloo ranks together see exactly the windows of one process with twice the streams, each once."""
    record = tmp_path / "record"
    args = ["-m", "lrnn", "fit", "--config", str(tiny_config), "--out_dir", str(tmp_path / "runs"), "--wandb", "off"]
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    args += [
        "--trainer.max_epochs",
        "1",
        "--trainer.callbacks+=tests.helpers.RecordBatches",
        "--test_after_fit",
        "false",
    ]
    result = run(args, cwd=tmp_path, env={"LRNN_RECORD_DIR": str(record), "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(record / f"rank{r}.pt") for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    dm = TextDataModule(str(tiny_config.parent / "tiny"), batch_size=8, seq_len=8)
    single = list(dm.windows("train", 8))
    assert len(single) == len(ranks[0])
    for (x, _), r0, r1 in zip(single, *ranks, strict=True):
        assert torch.equal(torch.cat([r0, r1]), x)
