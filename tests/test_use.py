"""``lrnn generate`` and ``lrnn score`` on a run trained by ``lrnn fit``: scoring the validation file reproduces the
run's own validation loss (one stream, same windows), sampling is seeded, and bad input is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrnn.cli import main as cli_main
from lrnn.use import Trained
from tests.conftest import pattern_rows, write_corpus

CONFIG = """
model:
  core:
    class_path: lrnn.{core}
    init_args: {{input_size: 8, hidden_size: 8, num_layers: 1{extra}}}
data:
  init_args: {{dataset: {dataset}, batch_size: 4, seq_len: 6, eval_batch_size: 1, batching: {batching}}}
trainer:
  max_epochs: 1
  enable_progress_bar: false
  enable_model_summary: false
"""


def fit(tmp_path: Path, core: str = "UntiedLSTM", batching: str = "stream") -> tuple[Path, Path]:
    corpus = write_corpus(
        tmp_path / "tiny", {"train": pattern_rows(200, 0), "valid": pattern_rows(30, 1), "test": pattern_rows(30, 2)}
    )
    config = tmp_path / "run.yaml"
    extra = ", max_len: 6" if core == "UntiedLSTM" else ""
    config.write_text(CONFIG.format(core=core, extra=extra, dataset=corpus, batching=batching))
    args = ["fit", "--config", str(config), "--out_dir", str(tmp_path / "runs"), "--wandb", "off"]
    args += ["--trainer.accelerator", "cpu", "--test_after_fit", "false"]
    if batching == "sentence":
        args += ["--model.bptt", "full"]
    assert cli_main(args) == 0
    return next((tmp_path / "runs").glob("*/version_0")), corpus


@pytest.mark.parametrize("batching", ["stream", "sentence"])
def test_score_of_the_validation_file_is_the_runs_validation_loss(
    batching: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    run, corpus = fit(tmp_path, batching=batching)
    results = json.loads((run / "results.json").read_text())
    capsys.readouterr()
    assert cli_main(["score", str(run), str(corpus / "valid.txt"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["tokens"] == 30 * 6 - (1 if batching == "stream" else 0)  # 5 words + <eos> per row
    assert scored["loss"] == pytest.approx(results["best_val_loss"], rel=1e-5)


def test_generate_samples_from_the_vocabulary_with_a_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    run, _ = fit(tmp_path)
    capsys.readouterr()
    args = ["generate", str(run), "--prompt", "the cat", "--max_tokens", "12", "--seed", "3"]
    assert cli_main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the cat") and len(first.split()) >= 8  # the prompt, then words (<eos> becomes a newline)
    trained = Trained.load(run)
    assert set(first.split()) <= set(trained.vocab.itos)
    assert cli_main(args) == 0 and capsys.readouterr().out == first  # same seed, same text
    assert cli_main([*args[:-1], "4"]) == 0 and capsys.readouterr().out != first
    assert trained.generate("the cat", max_tokens=5, temperature=0.01, seed=0) == trained.generate(
        "the cat", max_tokens=5, temperature=0.01, seed=1
    )  # near-greedy


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["score", str(tmp_path / "nope"), str(tmp_path / "x.txt")]) == 2
    assert cli_main(["generate", str(tmp_path / "nope"), "--prompt", "a"]) == 2
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    assert cli_main(["generate", str(tmp_path / "bad.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("lrnn ") and "error:" in line for line in err)
    assert "Traceback" not in "".join(err)
