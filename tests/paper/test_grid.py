"""The grid: every claim has runs in every profile, seeds where differences are claimed, stable cache keys."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from lrnn.paper.grid import (
    CLAIMS,
    CORES,
    PROFILES,
    PTB_VOCAB,
    _merge,
    _ptb_overrides,
    build_grid,
    contest_width,
    core_parameters,
    estimate_minutes,
    tuning_runs,
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
        for claim in set(r.claims) - {"tune"}:  # tuning: one seed per setting, by design
            seeds[(claim, r.core, r.factors)].add(r.seed)
    assert all(len(s) >= budget.min_seeds for s in seeds.values())
    if profile != "smoke":
        assert budget.min_seeds >= 3


def test_converged_profile_fits_forty_core_hours() -> None:
    grid = build_grid("converged")
    assert sum(estimate_minutes(r) for r in grid) / 60 <= 40


def test_key_depends_on_config_not_on_claims() -> None:
    run = build_grid("smoke")[0]
    assert run.key == dataclasses.replace(run, claims=("C9",)).key
    assert run.key != dataclasses.replace(run, seed=run.seed + 100).key
    assert run.key != dataclasses.replace(run, overrides=(*run.overrides, ("trainer.max_steps", 3))).key
    assert run.key == build_grid("smoke")[0].key  # stable across builds


def test_fit_args_are_lightningcli_dotted_keys() -> None:
    run = next(r for r in build_grid("converged") if "C6" in r.claims)
    args = run.fit_args()
    assert args[:3] == ["fit", "--config", "lrnn/experiments/recall_tied_k10.yaml"]  # relative: records name no machine
    assert "--model.k1" in args and "--data.init_args.lag" in args
    assert '"lrnn.TiedLSTM"' in args[args.index("--model.core") + 1]


def test_contest_at_equal_parameters_matches_tied_2x200_at_a_fixed_softmax_width() -> None:
    budget = PROFILES["converged"]
    tied = core_parameters(CORES["tied"].spec(200), PTB_VOCAB)
    for core in budget.params_cores:
        overrides = dict(tuning_runs(budget, core, "params")[0].overrides)
        width = overrides["model.core"]["init_args"]["hidden_size"]
        assert overrides["model.core"]["init_args"]["input_size"] == 200  # the embedding stays 200 wide
        assert overrides.get("model.output_size", 200) == 200  # so does the softmax (a projection where H != 200)
        n = core_parameters(overrides["model.core"], PTB_VOCAB, overrides.get("model.output_size"))
        assert abs(n - tied) / tied < 0.03, (core, width, n, tied)
    assert contest_width("untied", "params") < contest_width("share5", "params") < 200
    assert all(contest_width(core, "width") == 200 for core in budget.width_cores)


def _finish(runs: Path, spec, best_val_loss: float | None, status: str = "completed") -> None:
    version = runs / spec.key / spec.experiment_name / "version_0"
    version.mkdir(parents=True)
    results = {"status": status, **({"best_val_loss": best_val_loss} if best_val_loss is not None else {})}
    (version / "results.json").write_text(json.dumps(results))


def test_contest_runs_wait_for_their_cores_tuning_then_take_its_best_setting(tmp_path: Path) -> None:
    def contest(core: str) -> list:
        return [r for r in build_grid("converged", tmp_path) if r.claims[0] == "contest" and r.core == core]

    assert all(r.waiting for r in contest("untied"))
    tuning = tuning_runs(PROFILES["converged"], "untied", "width")
    losses = {0.5: 5.1, 1.0: 4.9, 2.0: None}  # lr 2 diverged: never chosen
    for spec in tuning[:-1]:
        _finish(tmp_path, spec, losses[spec.factor("lr")])
    assert all(r.waiting for r in contest("untied") if r.factor("matching") == "width")  # one still missing
    _finish(tmp_path, tuning[-1], None, status="diverged")
    ready = [r for r in contest("untied") if r.factor("matching") == "width"]
    assert ready and not any(r.waiting for r in ready)
    assert {r.factor("lr") for r in ready} == {1.0}
    assert all(dict(r.overrides)["model.optimizer.init_args.lr"] == 1.0 for r in ready)
    assert all(r.waiting for r in contest("untied") if r.factor("matching") == "params")


def test_an_edge_lr_choice_extends_the_tuning_grid_before_the_contest_runs(tmp_path: Path) -> None:
    budget = PROFILES["converged"]
    base = tuning_runs(budget, "untied", "width", tmp_path)
    assert [r.factor("lr") for r in base] == list(budget.tune_lrs)  # nothing finished: no extension yet
    for spec in base:  # the largest lr wins: the grid must try 2x that before choosing
        _finish(tmp_path, spec, {0.5: 5.6, 1.0: 5.4, 2.0: 5.3}[spec.factor("lr")])
    extended = tuning_runs(budget, "untied", "width", tmp_path)
    assert [r.factor("lr") for r in extended] == [0.5, 1.0, 2.0, 4.0]
    contest = [r for r in build_grid("converged", tmp_path) if r.claims[0] == "contest" and r.core == "untied"]
    assert all(r.waiting for r in contest if r.factor("matching") == "width")
    _finish(tmp_path, extended[-1], 5.5)  # 4.0 is worse: 2.0 is now an interior choice
    assert len(tuning_runs(budget, "untied", "width", tmp_path)) == 4
    ready = [r for r in build_grid("converged", tmp_path) if r.claims[0] == "contest" and r.core == "untied"]
    assert {r.factor("lr") for r in ready if r.factor("matching") == "width"} == {2.0}
    assert not any(r.waiting for r in ready if r.factor("matching") == "width")


def test_an_interior_lr_choice_does_not_extend_the_grid(tmp_path: Path) -> None:
    budget = PROFILES["converged"]
    for spec in tuning_runs(budget, "tied", "width"):
        _finish(tmp_path, spec, {0.5: 5.6, 1.0: 5.2, 2.0: 5.3}[spec.factor("lr")])
    assert [r.factor("lr") for r in tuning_runs(budget, "tied", "width", tmp_path)] == [0.5, 1.0, 2.0]


def test_a_smallest_lr_choice_extends_downwards_at_the_best_strength(tmp_path: Path) -> None:
    budget = PROFILES["converged"]
    for spec in tuning_runs(budget, "soft_tied", "width"):
        loss = 5.0 if (spec.factor("lr"), spec.factor("reg")) == (0.5, 1e-3) else 5.5
        _finish(tmp_path, spec, loss)
    extra = tuning_runs(budget, "soft_tied", "width", tmp_path)[-1]
    assert (extra.factor("lr"), extra.factor("reg")) == (0.25, 1e-3)


def test_a_core_with_variants_tries_them_at_its_chosen_lr_and_strength(tmp_path: Path) -> None:
    budget = PROFILES["converged"]
    for spec in tuning_runs(budget, "lexical", "params"):  # lr 1, penalty 1e-3 wins the first stage
        _finish(tmp_path, spec, 5.0 if (spec.factor("lr"), spec.factor("reg")) == (1.0, 1e-3) else 5.5)
    tuning = tuning_runs(budget, "lexical", "params", tmp_path)
    variants = [r for r in tuning if r.variant]
    assert [r.variant for r in variants] == list(CORES["lexical"].variants)
    assert all((r.factor("lr"), r.factor("reg")) == (1.0, 1e-3) for r in variants)
    widths = {dict(r.overrides)["model.core"]["init_args"]["hidden_size"] for r in variants}
    assert len(widths) == 2  # at equal parameters each K gets its own width

    def contest() -> list:
        runs = build_grid("converged", tmp_path)
        return [
            r for r in runs if r.claims[0] == "contest" and r.core == "lexical" and r.factor("matching") == "params"
        ]

    assert all(r.waiting for r in contest())  # the variants have not run yet
    for r in variants:
        _finish(tmp_path, r, 4.9 if r.factor("num_sets") == 256 else 5.2)
    ready = contest()
    assert ready and not any(r.waiting for r in ready)
    core = dict(ready[0].overrides)["model.core"]["init_args"]
    assert core["num_sets"] == 256 and core["penalty"] == 1e-3 and ready[0].variant == (("num_sets", 256),)
    assert core["hidden_size"] == contest_width("lexical", "params", (("num_sets", 256),))


def test_c4_fractions_keep_the_schedule_in_updates() -> None:
    budget = PROFILES["converged"]
    by_fraction = {f: dict(_ptb_overrides(budget, 1.0, f)) for f in budget.fractions}
    for f, o in by_fraction.items():
        epochs = o["trainer.max_epochs"] * f
        assert abs(epochs - budget.ptb_epochs) <= f, (f, epochs)
        assert abs(o["model.lr_decay"] ** (1 / f) - budget.ptb_decay) < 1e-4
        assert abs(o["model.lr_decay_after"] * f - budget.ptb_decay_after) <= f
        assert o["trainer.callbacks"][0]["class_path"].endswith("EarlyStopping")
        if f < 1:  # every pass over its data: a small fraction overfits within a few passes
            assert o["trainer.check_val_every_n_epoch"] == 1


def test_sweep_is_a_grid_over_the_run_keys() -> None:
    grid = build_grid("smoke")
    config = sweep_config(grid, "smoke")
    assert config["method"] == "grid"
    assert config["parameters"]["paper_run"]["values"] == [r.key for r in grid]
    assert "lrnn.paper" in config["command"] and "exec" in config["command"]


def test_key_is_the_resolved_config_not_the_yaml_text(tmp_path: Path, monkeypatch) -> None:
    """The same settings in another layout (the experiment and the bases it extends as one flat, reordered file)
    are the same run; another setting is another run."""
    import lrnn.paper.grid as grid
    from lrnn.configs import EXTENDS, config_chain

    run = next(r for r in build_grid("converged") if r.claims[0] == "tune")
    key = run.key
    flat: dict = {}
    for path in config_chain(grid.EXPERIMENTS / f"{run.experiment}.yaml"):
        flat = _merge(flat, {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != EXTENDS})
    assert len(config_chain(grid.EXPERIMENTS / f"{run.experiment}.yaml")) > 1  # it does extend a base
    monkeypatch.setattr(grid, "EXPERIMENTS", tmp_path)
    grid._yaml.cache_clear()
    (tmp_path / f"{run.experiment}.yaml").write_text("# one flat file\n" + yaml.safe_dump(flat, sort_keys=True))
    assert run.key == key
    flat["model"]["dropout"] = 0.5
    (tmp_path / f"{run.experiment}.yaml").write_text(yaml.safe_dump(flat))
    grid._yaml.cache_clear()
    assert run.key != key
    grid._yaml.cache_clear()


def test_merge_follows_lightningcli_class_path_semantics() -> None:
    base = {"core": {"class_path": "A", "init_args": {"x": 1, "y": 2}}, "lr": 1}
    assert _merge(base, {"core": {"class_path": "A", "init_args": {"y": 3}}})["core"]["init_args"] == {"x": 1, "y": 3}
    assert _merge(base, {"core": {"class_path": "B", "init_args": {"y": 3}}})["core"]["init_args"] == {"y": 3}
    assert _merge(base, {"lr": 2}) == {**base, "lr": 2}


def test_committed_records_belong_to_the_converged_grid() -> None:
    """The records in runs/paper-converged/ (committed, what paper/ is rendered from) are runs of today's converged
    grid: an edit that changes a finished run's resolved config must come with a rerun of `make paper`."""
    from lrnn.paper.grid import ROOT

    committed = ROOT / "runs" / "paper-converged"
    keys = {r.key for r in build_grid("converged")}
    stale = sorted(p.name for p in committed.glob("*/") if p.is_dir() and p.name not in keys)
    assert not stale, f"runs/paper-converged/ has records of runs no longer in the grid: {stale[:5]}; rerun make paper"


def test_c4_runs_come_smallest_fraction_first_with_tied_and_untied_paired_by_seed() -> None:
    budget = PROFILES["converged"]
    grid = build_grid("converged")
    c4 = [(dict(r.factors)["fraction"], r.seed, r.core) for r in grid if "fraction" in dict(r.factors)]
    small = min(budget.fractions)
    assert c4[: 2 * len(budget.seeds)] == [(small, s, core) for s in budget.seeds for core in ("tied", "untied")]
    assert [f for f, _, _ in c4] == sorted(f for f, _, _ in c4)
