"""The grid: every claim has runs in every profile, seeds where differences are claimed, stable cache keys."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from lrnn.paper.grid import (
    CLAIMS,
    PROFILES,
    PTB_VOCAB,
    build_grid,
    core_parameters,
    estimate_minutes,
    position_rule_core,
)
from lrnn.paper.sweep import sweep_config

TRAINED_CLAIMS = set(CLAIMS) - {"C1", "C5"}  # C1 and C5 are measured without training


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_trained_claim_has_runs_and_enough_seeds(profile: str) -> None:
    grid = build_grid(profile)
    budget = PROFILES[profile]
    assert len({r.key for r in grid}) == len(grid), "cache keys must be unique after deduplication"
    covered = {c for r in grid for c in r.claims}
    assert TRAINED_CLAIMS <= covered
    seeds = collections.defaultdict(set)
    for r in grid:
        for claim in r.claims:
            seeds[(claim, r.core, r.factors)].add(r.seed)
    assert all(len(s) >= budget.min_seeds for s in seeds.values())
    if profile != "smoke":
        assert budget.min_seeds >= 3


def test_cpu_profile_fits_four_hours_on_two_cores() -> None:
    grid = build_grid("cpu")
    assert sum(estimate_minutes(r) for r in grid) / 2 <= 4 * 60


def test_key_depends_on_config_not_on_claims() -> None:
    run = build_grid("smoke")[0]
    assert run.key == dataclasses.replace(run, claims=("C9",)).key
    assert run.key != dataclasses.replace(run, seed=run.seed + 100).key
    assert run.key != dataclasses.replace(run, overrides=(*run.overrides, ("trainer.max_steps", 3))).key
    assert run.key == build_grid("smoke")[0].key  # stable across builds


def test_fit_args_are_lightningcli_dotted_keys() -> None:
    run = next(r for r in build_grid("cpu") if "C6" in r.claims and r.core == "untied")
    args = run.fit_args()
    assert args[:2] == ["fit", "--config"] and args[2].endswith("experiments/recall_tied_k10.yaml")
    assert "--model.k1" in args and "--data.init_args.lag" in args
    core = args[args.index("--model.core") + 1]
    assert '"lrnn.UntiedLSTM"' in core and f'"max_len": {dict(run.factors)["k2"]}' in core


def test_contest_cores_have_the_tied_models_parameter_count() -> None:
    contest = [r for r in build_grid("cpu") if r.claims[0] == "contest" and r.seed == 0]
    assert {r.core for r in contest} == set(PROFILES["cpu"].contest_cores)
    counts = {r.core: core_parameters(dict(r.overrides)["model.core"], PTB_VOCAB) for r in contest}
    for core, n in counts.items():
        assert abs(n - counts["tied"]) / counts["tied"] < 0.03, (core, n, counts["tied"])


def test_wide_tied_matches_untied_on_the_position_rule() -> None:
    wide = next(r for r in build_grid("cpu") if r.core == "tied_wide")
    n_wide = core_parameters(dict(wide.overrides)["model.core"], 9)
    n_untied = core_parameters(position_rule_core("untied"), 9)
    assert abs(n_wide - n_untied) / n_untied < 0.03


def test_sweep_is_a_grid_over_the_run_keys() -> None:
    grid = build_grid("smoke")
    config = sweep_config(grid, "smoke")
    assert config["method"] == "grid"
    assert config["parameters"]["paper_run"]["values"] == [r.key for r in grid]
    assert "lrnn.paper" in config["command"] and "exec" in config["command"]


def test_committed_cpu_records_belong_to_the_cpu_grid() -> None:
    """The records in runs/paper-cpu/ (committed, what paper/ is rendered from) are runs of today's cpu grid: an
    edit to an experiment YAML or defaults.yaml that changes their keys must come with a rerun of `make paper`."""
    from lrnn.paper.grid import ROOT

    committed = ROOT / "runs" / "paper-cpu"
    keys = {r.key for r in build_grid("cpu")}
    stale = sorted(p.name for p in committed.glob("*/") if p.is_dir() and p.name not in keys and p.name != "wandb")
    assert not stale, f"runs/paper-cpu/ has records of runs no longer in the cpu grid: {stale[:5]}; rerun make paper"
