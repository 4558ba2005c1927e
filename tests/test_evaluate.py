"""`lrnn evaluate` / evaluate_run: the length-T evaluation is the validation loop, per-position losses average back,
sentence bins, CSV + PNG, clear errors; and every new experiment config trains (tiny data, few steps)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrnn.cli import main as cli_main
from lrnn.evaluate import (
    FIELDS,
    _recurrence_rows,
    _sentence_length_rows,
    default_lengths,
    evaluate_run,
    sentence_bins,
    sentence_pass,
    stream_pass,
    train_windows,
)
from tests.conftest import REPO, pattern_rows, write_corpus

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")

STREAM = """
model:
  core:
    class_path: lrnn.UntiedLSTM
    init_args: {{input_size: 12, hidden_size: 12, num_layers: 2, max_len: 6}}
  optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
data:
  init_args: {{dataset: {corpus}, batch_size: 4, seq_len: 6, eval_batch_size: 3, test_batch_size: 1}}
trainer: {{max_epochs: 2, enable_progress_bar: false, enable_model_summary: false}}
"""
SENTENCE = """
model:
  core:
    class_path: lrnn.SoftTiedLSTM
    init_args: {{input_size: 12, hidden_size: 12, num_layers: 1, max_len: 4, penalty: 0.01, extrapolation: clamp}}
  optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
  bptt: full
data:
  init_args: {{dataset: {corpus}, batching: sentence, batch_size: 8, eval_batch_size: 5}}
trainer: {{max_epochs: 2, enable_progress_bar: false, enable_model_summary: false}}
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "tiny"
    return write_corpus(
        folder, {"train": pattern_rows(300, 0), "valid": pattern_rows(40, 1), "test": pattern_rows(30, 2)}
    )


def fit(config: Path, out: Path, *extra: str) -> Path:
    """`lrnn fit` in-process; returns the run folder."""
    status = cli_main(["fit", "--config", str(config), "--out_dir", str(out), "--wandb", "off", *extra])
    assert not isinstance(status, int) or status == 0, status  # main() may return an exit status
    (run_dir,) = (out / config.stem).glob("version_*")
    return run_dir


def _run(tmp_path_factory: pytest.TempPathFactory, corpus: Path, text: str, name: str) -> Path:
    folder = tmp_path_factory.mktemp(name)
    config = folder / f"{name}.yaml"
    config.write_text(text.format(corpus=corpus))
    return fit(config, folder / "runs")


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    return _run(tmp_path_factory, corpus, STREAM, "untied")


@pytest.fixture(scope="module")
def sentence_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    return _run(tmp_path_factory, corpus, SENTENCE, "soft")


def _token_mean(rows: list[dict]) -> float:
    return sum(r["loss"] * r["tokens"] for r in rows) / sum(r["tokens"] for r in rows)


def test_stream_run_evaluation(stream_run: Path, tmp_path: Path) -> None:
    rows = evaluate_run(stream_run, out_dir=tmp_path, device="cpu")
    meta = json.loads((tmp_path / "meta.json").read_text())
    results = json.loads((stream_run / "results.json").read_text())
    length = {(r["split"], r["length"]): r for r in rows["length"]}
    assert sorted({n for _, n in length}) == default_lengths(6) == [3, 6, 12, 24, 48]
    # at T the evaluation is the run's own validation loop (the loss it logged for this checkpoint) and test loop
    assert length[("val", 6)]["loss"] == pytest.approx(meta["checkpoint_val_loss"], rel=1e-5)
    assert meta["checkpoint_val_loss"] == pytest.approx(results["best_val_loss"], rel=1e-6)
    assert length[("test", 6)]["loss"] == pytest.approx(results["test"]["test/loss"], rel=1e-5)
    # windows longer than max_len=6 run with the last weight set (the core says "error": clamp for evaluation)
    for (_, n), r in length.items():
        assert r["past_max_len"] == (n > 6)
        assert r["extrapolation"] == ("error->clamp" if n > 6 else "error")
        assert math.isfinite(r["ppl"]) and r["ppl"] == pytest.approx(math.exp(r["loss"]))
    assert len({round(r["loss"], 6) for (s, _), r in length.items() if s == "val"}) > 1  # untied: length matters
    # per-position losses at T average back to the window loss
    for split in ("val", "test"):
        pos = [r for r in rows["position"] if r["split"] == split]
        assert [r["position"] for r in pos] == list(range(6))
        assert _token_mean(pos) == pytest.approx(length[(split, 6)]["loss"], rel=1e-9)
    # carried state rows are the length rows; reset rows differ (the state carries information)
    for r in rows["state_reset"]:
        if r["state"] == "carried":
            assert r["loss"] == length[(r["split"], r["length"])]["loss"]
    resets = {(r["split"], r["length"]): r["loss"] for r in rows["state_reset"] if r["state"] == "reset"}
    assert set(resets) == set(length) and resets[("val", 3)] != length[("val", 3)]["loss"]
    assert not (tmp_path / "train.csv").exists()  # only with train=True (--train)
    for name, fields in ((n, f) for n, f in FIELDS.items() if n != "train"):
        with open(tmp_path / f"{name}.csv") as f:
            table = list(csv.DictReader(f))
        assert list(table[0]) == fields and len(table) == len(rows[name])
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert {r["past_max_len"] for r in csv.DictReader(open(tmp_path / "length.csv"))} == {"true", "false"}
    # recurrence at T: carried (a step at a time) is the window evaluation; zeroing c, or h and c, changes it
    for split in ("val", "test"):
        rec = {r["state"]: r for r in rows["recurrence"] if r["split"] == split}
        assert rec["carried"]["loss"] == pytest.approx(length[(split, 6)]["loss"], rel=1e-5)
        assert rec["cell_zeroed"]["loss"] != pytest.approx(rec["carried"]["loss"], rel=1e-4)
        assert rec["state_zeroed"]["loss"] != pytest.approx(rec["cell_zeroed"]["loss"], rel=1e-4)
        assert {r["length"] for r in rec.values()} == {6}


def test_sentence_run_evaluation(sentence_run: Path, tmp_path: Path) -> None:
    rows = evaluate_run(sentence_run, out_dir=tmp_path, splits=("val",), device="cpu")
    meta = json.loads((tmp_path / "meta.json").read_text())
    bins = rows["length"]
    assert {r["mode"] for r in bins} == {"sentence"} and all(r["split"] == "val" for r in bins)
    # the bins together are the sentence-mode validation loop
    assert _token_mean(bins) == pytest.approx(meta["checkpoint_val_loss"], rel=1e-5)
    assert any(r["past_max_len"] for r in bins) and all(r["past_max_len"] == (r["length"] > 4) for r in bins)
    assert _token_mean(rows["position"]) == pytest.approx(meta["checkpoint_val_loss"], rel=1e-5)
    states = {r["state"]: r for r in rows["state_reset"]}
    assert states["reset"]["loss"] == pytest.approx(meta["checkpoint_val_loss"], rel=1e-5)
    assert states["carried"]["tokens"] == states["reset"]["tokens"] and states["carried"]["length"] is None
    assert (tmp_path / "length.png").exists() and (tmp_path / "state_reset.png").exists()


@pytest.fixture(scope="module")
def varied_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sentences of 3 to 27 tokens (with <eos>): bins on both sides of max_len."""
    import random

    rng = random.Random(0)

    def rows(n: int) -> list[str]:
        return [" ".join(f"w{rng.randrange(20)}" for _ in range(rng.choice((2, 4, 7, 9, 12, 15, 20, 26)))) for _ in
                range(n)]  # fmt: skip

    return write_corpus(
        tmp_path_factory.mktemp("varied") / "c", {"train": rows(60), "valid": rows(30), "test": rows(10)}
    )


CORES = {
    "tied": ("lrnn.TiedLSTM", {}),
    "untied": ("lrnn.UntiedLSTM", {"max_len": 6}),
    "share2": ("lrnn.UntiedLSTM", {"max_len": 6, "share_every": 2}),
    "soft_tied": ("lrnn.SoftTiedLSTM", {"max_len": 6}),
    "mixture": ("lrnn.MixtureLSTM", {"max_len": 6, "num_sets": 2}),
    "time_varying": ("lrnn.TimeVaryingLSTM", {"num_bases": 3, "basis": "legendre", "period": 64.0}),
}


@pytest.mark.parametrize("core", list(CORES))
def test_sentence_length_and_recurrence_on_every_core(core: str, varied_corpus: Path) -> None:
    """Perplexity by sentence length (incl. sentences past max_len = 6, clamped) and the recurrence rows run on an
    RNNLM of every core; the bins partition the sentence-mode evaluation (each sentence from a zero state)."""
    import importlib

    from lrnn import TextDataModule
    from lrnn.rnnlm import RNNLM

    torch.manual_seed(0)
    dm = TextDataModule(str(varied_corpus), batch_size=4, seq_len=6, eval_batch_size=3)
    dm.setup()
    module, name = CORES[core][0].rsplit(".", 1)
    model = RNNLM(dm.vocab_size, getattr(importlib.import_module(module), name)(8, 8, 2, **CORES[core][1])).eval()
    max_len = getattr(model.core, "max_len", None)
    rows = _sentence_length_rows(model, dm, "val", 3, max_len)
    assert sum(r["sentences"] for r in rows) == 30 and max(r["length"] for r in rows) == 27
    with torch.no_grad():
        if max_len:
            model.core.extrapolation = "clamp"
        tally, _ = sentence_pass(model, dm.sentences("validation", 3))
    assert _token_mean(rows) == pytest.approx(tally.loss, rel=1e-9)
    assert sum(r["tokens"] for r in rows) == tally.tokens
    if max_len:  # the untied core stays as built ("error"): evaluation clamps past max_len and says so
        model.core.extrapolation = "error"
        assert {r["extrapolation"] for r in _sentence_length_rows(model, dm, "val", 3, max_len) if r["past_max_len"]} \
            == {"error->clamp"}  # fmt: skip
        assert model.core.extrapolation == "error"
    assert any(r["past_max_len"] for r in rows) == (max_len is not None)
    rec = {r["state"]: r["loss"] for r in _recurrence_rows(model, dm, "val", 3, 6, max_len)}
    assert set(rec) == {"carried", "cell_zeroed", "state_zeroed"} and len(set(rec.values())) == 3


def test_sentence_bins() -> None:
    assert sentence_bins(25, None) == [(1, 10), (11, 20), (21, 25)]
    assert sentence_bins(25, 15) == [(1, 10), (11, 15), (16, 20), (21, 25)]
    assert sentence_bins(7, 40) == [(1, 7)]


def test_cli_end_to_end_and_errors(stream_run: Path, tmp_path: Path) -> None:
    def lrnn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lrnn", "evaluate", *args], cwd=REPO, capture_output=True, text=True, timeout=300
        )

    out = tmp_path / "eval"
    ok = lrnn(str(stream_run), "--out", str(out), "--lengths", "3", "6", "--splits", "val", "--device", "cpu")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "logged by the run for this checkpoint" in ok.stdout
    for name in ("length", "position", "state_reset", "sentence_length", "recurrence"):
        assert (out / f"{name}.csv").exists() and (out / f"{name}.png").exists()
    assert "sentences of" in ok.stdout and "cell_zeroed" in ok.stdout
    skipped = lrnn(str(stream_run), "--out", str(tmp_path / "e2"), "--lengths", "6", "--splits", "val",
                   "--no-sentence-length", "--no-recurrence", "--no-plots")  # fmt: skip
    assert skipped.returncode == 0 and not (tmp_path / "e2" / "recurrence.csv").exists()
    assert not (tmp_path / "e2" / "sentence_length.csv").exists()
    assert not (stream_run / "evaluation").exists()  # --out: the run folder is left alone

    missing = lrnn(str(tmp_path / "no_such_run"))
    assert missing.returncode == 2 and "run folder" in missing.stderr and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    not_a_run = lrnn(str(tmp_path))
    assert not_a_run.returncode == 2 and "no config.yaml" in not_a_run.stderr
    bad_ckpt = lrnn(str(stream_run), "--ckpt", str(tmp_path / "x.ckpt"))
    assert bad_ckpt.returncode == 2 and "no checkpoint" in bad_ckpt.stderr
    empty = lrnn("")
    assert empty.returncode == 2 and "RUN=" in empty.stderr


def test_an_earlier_evaluation_is_never_overwritten(stream_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from lrnn.evaluate import main as evaluate_main

    run_dir = Path(shutil.copytree(stream_run, tmp_path / "version_0"))
    quick = ["--lengths", "6", "--splits", "val", "--device", "cpu", "--no-plots"]
    assert evaluate_main([str(run_dir), "--lengths", "3", *quick[2:]]) == 0
    first = {p.name: p.read_bytes() for p in (run_dir / "evaluation").iterdir()}
    assert evaluate_main([str(run_dir), *quick]) == 0  # a second evaluation, other lengths: a new folder
    assert {p.name: p.read_bytes() for p in (run_dir / "evaluation").iterdir()} == first  # byte for byte
    assert json.loads((run_dir / "evaluation_1" / "meta.json").read_text())["lengths"] == [6]
    assert f"wrote {run_dir / 'evaluation_1'}/" in capsys.readouterr().out
    # an --out holding an evaluation: refused (exit 2, nothing written) unless --overwrite
    assert evaluate_main([str(run_dir), *quick, "--out", str(run_dir / "evaluation")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (run_dir / "evaluation").iterdir()} == first
    assert evaluate_main([str(run_dir), *quick, "--out", str(run_dir / "evaluation"), "--overwrite"]) == 0
    assert json.loads((run_dir / "evaluation" / "meta.json").read_text())["lengths"] == [6]


def test_evaluate_says_when_the_run_validated_on_part_of_the_split(corpus: Path, tmp_path: Path, capsys) -> None:
    from lrnn.evaluate import main as evaluate_main

    config = tmp_path / "limited.yaml"
    config.write_text(STREAM.format(corpus=corpus).replace("max_epochs: 2", "max_epochs: 1, limit_val_batches: 2"))
    run_dir = fit(config, tmp_path / "runs")
    capsys.readouterr()
    assert evaluate_main([str(run_dir), "--lengths", "3", "6", "--splits", "val", "--device", "cpu", "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert "logged it over part of the split, trainer.limit_val_batches 2" in captured.out
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("lrnn evaluate: val: windows of")]
    assert len(progress) == 2  # a line per window length


NEW_CONFIGS = [
    "tied_ptb_dropout", "untied_ptb_dropout", "time_varying_ptb_dropout", "soft_tied_ptb", "soft_tied_ptb_rank8",
    "mixture_ptb", "tied_ptb_wide", "untied_ptb_narrow", "tied_ptb_sentences_dropout", "untied_ptb_sentences",
    "soft_tied_ptb_sentences", "mixture_ptb_sentences", "time_varying_ptb_sentences", "lexical_ptb",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_new_config_trains(name: str, corpus: Path, tmp_path: Path, one_thread) -> None:
    """Each new experiment config, on tiny data at width 16, trains a few steps and validates to a finite loss."""
    config = REPO / "lrnn" / "experiments" / f"{name}.yaml"
    run_dir = fit(
        config, tmp_path / "runs",
        "--data.init_args.dataset", str(corpus),
        "--model.core.init_args.input_size", "16", "--model.core.init_args.hidden_size", "16",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--test_after_fit", "false",
    )  # fmt: skip
    results = json.loads((run_dir / "results.json").read_text())
    assert math.isfinite(results["best_val_loss"]) and results["fit"]["val/ppl"] > 1
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert ("train/reg" in header) == name.startswith(("soft_tied", "lexical"))


@pytest.mark.slow
def test_lexical_run_evaluates(corpus: Path, tmp_path: Path, one_thread) -> None:
    """lexical_ptb.yaml at width 16 on tiny data: `lrnn fit` trains it through LightningCLI (the core gets the tokens
    from RNNLM), and `lrnn evaluate` reloads the checkpoint (the token -> set map with it) and reproduces the loss
    the run logged; carried state and resets differ, as for any core."""
    run_dir = fit(
        REPO / "lrnn" / "experiments" / "lexical_ptb.yaml", tmp_path / "runs",
        "--data.init_args.dataset", str(corpus), "--data.init_args.seq_len", "6",
        "--model.core.init_args.input_size", "16", "--model.core.init_args.hidden_size", "16",
        "--model.core.init_args.num_sets", "8", "--model.core.init_args.rank", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "3",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--test_after_fit", "false",
    )  # fmt: skip
    rows = evaluate_run(run_dir, out_dir=tmp_path / "eval", lengths=(3, 6), splits=("val",), device="cpu")
    meta = json.loads((tmp_path / "eval" / "meta.json").read_text())
    assert meta["core"] == "LexicalLSTM"
    length = {r["length"]: r for r in rows["length"]}
    assert length[6]["loss"] == pytest.approx(meta["checkpoint_val_loss"], rel=1e-5)
    assert all(r["extrapolation"] == "none" and not r["past_max_len"] for r in length.values())


def test_train_windows_reads_limit_train_batches_as_lightning_does() -> None:
    assert train_windows(40, None) == 40
    assert train_windows(40, 1.0) == 40  # float 1.0: the whole epoch
    assert train_windows(40, 0.1) == 4 and train_windows(40, 0.01) == 1  # a fraction, at least one window
    assert train_windows(40, 1) == 1 and train_windows(40, 7) == 7 and train_windows(40, 100) == 40  # a count


def test_train_evaluation_is_the_eval_mode_stream_over_the_windows_one_epoch_used(
    corpus: Path, tmp_path: Path, one_thread
) -> None:
    from lrnn.evaluate import load_run
    from lrnn.evaluate import main as evaluate_main

    config = tmp_path / "frac.yaml"
    config.write_text(STREAM.format(corpus=corpus).replace("max_epochs: 2", "max_epochs: 1, limit_train_batches: 0.5"))
    run_dir = fit(config, tmp_path / "runs")
    out = tmp_path / "train_only"
    assert evaluate_main([str(run_dir), "--splits", "--train", "--out", str(out), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.csv"]
    (row,) = csv.DictReader(open(out / "train.csv"))
    model, dm, *_ = load_run(run_dir, "best", "cpu")
    windows = dm.windows("train", dm.batch_size)
    assert int(row["windows"]) == len(windows) // 2 and int(row["of_windows"]) == len(windows)
    # the same number as scoring the first half of the training stream by hand, state carried, eval mode
    model.eval()
    first_half = [w for i, w in enumerate(windows) if i < len(windows) // 2]
    assert float(row["loss"]) == pytest.approx(stream_pass(model, first_half, carry=True).loss, rel=1e-6)
    assert float(row["loss"]) != pytest.approx(stream_pass(model, list(windows), carry=True).loss, rel=1e-6)
    assert evaluate_main([str(run_dir), "--splits", "--out", str(tmp_path / "none"), "--device", "cpu"]) == 2
