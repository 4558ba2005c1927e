"""``LanguageModel.load_from_checkpoint(path)`` rebuilds every core from the checkpoint alone, for checkpoints written
by a Python Trainer and by the ``lrnn`` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

import lrnn.cores
from lrnn import LanguageModel, SyntheticDataModule
from lrnn.lightning.lm import core_config
from tests.conftest import REPO

CORES = {
    "TiedLSTM": {},
    "UntiedLSTM": {"max_len": 6, "share_every": 2, "extrapolation": "clamp"},
    "SoftTiedLSTM": {"max_len": 6, "rank": 2, "penalty": 0.1},
    "MixtureLSTM": {"num_sets": 2, "max_len": 6},
    "TimeVaryingLSTM": {"num_bases": 3, "period": 12.0, "basis": "gaussian"},
    "LexicalLSTM": {"num_sets": 3, "rank": 2, "penalty": 0.1, "set_tokens": [3, 1]},
}


def test_every_core_is_covered() -> None:
    assert set(lrnn.cores.__all__) <= set(CORES), f"add a load_from_checkpoint row for {set(lrnn.cores.__all__)}"


@pytest.mark.parametrize("name", sorted(CORES))
def test_load_from_checkpoint_rebuilds_the_model(name: str, tmp_path: Path) -> None:
    L.seed_everything(0, verbose=False)
    core = getattr(lrnn.cores, name)(4, 6, 2, dropout=0.1, **CORES[name])
    model = LanguageModel(core, vocab_size=5, tie_embeddings=False, init_range=0.1, dropout=0.2)
    data = SyntheticDataModule(alphabet=5, lag=1, length=300, batch_size=2, seq_len=6)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=data)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    loaded = LanguageModel.load_from_checkpoint(path)
    assert type(loaded.core) is type(core) and repr(loaded.core) == repr(core)
    assert loaded.hparams.dropout == 0.2
    tokens = torch.randint(5, (2, 6))
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_core_config_is_none_where_the_arguments_are_unknown() -> None:
    class Opaque(nn.Module):
        def __init__(self, width: int) -> None:  # keeps no `width` attribute: cannot be rebuilt
            super().__init__()
            self.layer = nn.Linear(width, width)

    assert core_config(Opaque(3)) is None
    assert core_config(nn.LSTM(3, 5)) is None  # nn.LSTM(*args, **kwargs)
    assert core_config(lrnn.UntiedLSTM(3, 5, max_len=4))["init_args"]["max_len"] == 4


@pytest.mark.slow
def test_cli_checkpoint_loads(tmp_path: Path) -> None:
    config = tmp_path / "untied.yaml"
    config.write_text(
        "model:\n  core:\n    class_path: lrnn.UntiedLSTM\n"
        "    init_args: {input_size: 6, hidden_size: 6, num_layers: 1, max_len: 4}\n"
        "data:\n  class_path: lrnn.SyntheticDataModule\n"
        "  init_args: {alphabet: 5, lag: 1, length: 400, batch_size: 2, seq_len: 4}\n"
        "trainer: {max_epochs: 1, enable_progress_bar: false, enable_model_summary: false}\n"
    )
    args = [sys.executable, "-m", "lrnn", "fit", "--config", str(config), "--out_dir", str(tmp_path / "runs")]
    args += ["--wandb", "off", "--trainer.accelerator", "cpu", "--test_after_fit", "false"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={"PATH": "",
                            "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    best = next((tmp_path / "runs").rglob("best.ckpt"))
    loaded = LanguageModel.load_from_checkpoint(best)
    assert isinstance(loaded.core, lrnn.UntiedLSTM) and loaded.core.max_len == 4
    saved = torch.load(best, weights_only=False)["state_dict"]
    torch.testing.assert_close(loaded.state_dict()["model.decoder.weight"], saved["model.decoder.weight"])
