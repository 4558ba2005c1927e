"""The synthetic runs (lrnn.paper.tasks): the contract build_grid relies on, the budgets, and that a smoke run of
each kind trains through ``lrnn fit`` (the reset control included)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from lrnn.cli import main as cli_main
from lrnn.paper.grid import core_parameters, estimate_minutes
from lrnn.paper.tasks import (
    RULE_CORES,
    RULE_VOCAB,
    TASK_BUDGETS,
    recall_lags,
    rule_core,
    synthetic_runs,
    wide_width,
)

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")


@pytest.mark.parametrize("profile", list(TASK_BUDGETS))
def test_contract(profile: str) -> None:
    runs = synthetic_runs(profile)
    assert len({r.key for r in runs}) == len(runs) and len({r.name for r in runs}) == len(runs)
    rule = [r for r in runs if r.factor("task") == "rule"]
    recall = [r for r in runs if "C6" in r.claims]
    assert len(rule) + len(recall) == len(runs)
    for r in rule:
        assert r.claims == (
            ("C7",) if r.core == "tied_wide" else ("C3", "C7") if r.core in ("tied", "untied") else ("C3",)
        )
        assert dict(r.overrides)["data.init_args.period"] == 30 and not r.evaluate and r.tokens > 0
    assert {"tied", "untied", "tied_wide"} <= {r.core for r in rule}
    cells = collections.defaultdict(set)
    for r in recall:
        o = dict(r.overrides)
        k = r.factor("k1")
        assert r.factor("k2") == k == o["model.k1"] == o["model.k2"] == o["data.init_args.seq_len"]
        assert o["data.init_args.lag"] == r.factor("D") and r.factor("D") in recall_lags(k)
        assert o["model.reset_state_every_window"] == (r.factor("state") == "reset")
        cells[(r.core, r.factor("D"), k, r.factor("state"))].add(r.seed)
    assert {s for _, _, _, s in cells} == {"carried", "reset"}
    min_seeds = 2 if profile == "smoke" else 5
    assert all(len(s) >= min_seeds for s in cells.values())
    assert all(len({r.seed for r in rule if r.core == c}) >= min_seeds for c in {r.core for r in rule})


def test_recall_lags_cover_k_k1_2k_and_a_control() -> None:
    assert recall_lags(5) == (2, 5, 6, 10) and recall_lags(10) == (5, 10, 11, 20)


def test_converged_profile_fits_three_core_hours() -> None:
    runs = synthetic_runs("converged")
    assert sum(estimate_minutes(r) for r in runs) <= 3 * 60
    assert {r.core for r in runs if r.factor("task") == "rule"} == set(RULE_CORES)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        synthetic_runs("cpu-fast")


def test_tied_wide_matches_the_untied_parameter_count() -> None:
    untied = core_parameters(rule_core("untied"), RULE_VOCAB)
    wide = core_parameters(rule_core("tied", hidden=wide_width()), RULE_VOCAB)
    assert abs(wide / untied - 1) < 0.02
    assert core_parameters(rule_core("tied"), RULE_VOCAB) < untied / 10  # the small tied LSTM is really small


@pytest.mark.parametrize("which", ["rule-untied", "recall-reset"])
def test_smoke_runs_train(which: str, tmp_path: Path) -> None:
    runs = synthetic_runs("smoke")
    if which == "rule-untied":
        spec = next(r for r in runs if r.core == "untied" and r.factor("task") == "rule")
    else:
        spec = next(r for r in runs if r.factor("state") == "reset")
    status = cli_main([*spec.fit_args(), "--out_dir", str(tmp_path), "--name", "x", "--wandb", "off",
                       "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert not isinstance(status, int) or status == 0
    (version,) = (tmp_path / "x").glob("version_*")
    results = json.loads((version / "results.json").read_text())
    assert 0.0 <= results["test"]["test/acc"] <= 1.0
