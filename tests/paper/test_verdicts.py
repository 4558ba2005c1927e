"""Verdict rules on synthetic numbers: each rule can come out supported, refuted, mixed or inconclusive."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lrnn.paper import verdicts as V
from lrnn.paper.verdicts import Stat, clearly_greater, stat


def test_clearly_greater_is_welch_at_95_percent() -> None:
    assert clearly_greater(Stat(2.0, 0.1, 3), Stat(1.0, 0.1, 3)) is True
    # t = 0.2 / 0.0816 = 2.45 at 4 df: beyond 2 standard errors (a z-test says yes), below t(0.975, 4) = 2.78
    assert clearly_greater(Stat(1.2, 0.1, 3), Stat(1.0, 0.1, 3)) is False
    assert clearly_greater(Stat(1.25, 0.1, 3), Stat(1.0, 0.1, 3)) is True  # t = 3.06
    assert clearly_greater(Stat(1.05, 0.1, 3), Stat(1.0, 0.1, 3)) is False
    assert clearly_greater(Stat(2.0, 0.1, 2), Stat(1.0, 0.1, 3)) is None
    assert clearly_greater(Stat(2.0, 0.1, 2), Stat(1.0, 0.1, 2), min_seeds=2) is True
    assert stat([1.0, float("nan"), 3.0]) == Stat(2.0, math.sqrt(2.0), 2)


def _runs(rows: list[dict]) -> dict[str, pd.DataFrame]:
    empty = pd.DataFrame()
    return {"runs": pd.DataFrame(rows), "curves": empty, "length": empty, "state_reset": empty, "position": empty}


def _pair(claim: str, col: str, tied: list[float], untied: list[float], **extra) -> list[dict]:
    rows = []
    for core, values in (("tied", tied), ("untied", untied)):
        for seed, v in enumerate(values):
            rows.append({"name": f"{claim}-{core}-s{seed}", "claims": claim, "core": core, "seed": seed, col: v,
                         **extra})  # fmt: skip
    return rows


def test_c1_and_c5_from_measurements() -> None:
    rows = []
    for t in (10, 20, 40, 80):
        rows.append({"core": "tied", "T": t, "core_params": 1000, "weight_mb": 1.0, "saved_mb": 1.0 * t,
                     "tokens_per_s": 1000.0})  # fmt: skip
        rows.append({"core": "untied", "T": t, "core_params": 1000 * t, "weight_mb": 1.0 * t, "saved_mb": 1.0 * t,
                     "tokens_per_s": 300.0})  # fmt: skip
    m = pd.DataFrame(rows)
    assert V.c1(m).verdict == "supported"
    assert V.c5(m).verdict == "supported"
    flat = m.assign(core_params=1000, weight_mb=1.0)
    assert V.c1(flat).verdict == "refuted"
    fast = m.assign(tokens_per_s=1000.0)
    assert V.c5(fast).verdict == "mixed"
    assert V.c1(m).size == "untied/tied core parameters at T=20: ×20.0"


# ---- contest, C4, C10: each with the verdict and its opposite on a counter-example ------------------------------
def _contest_rows(factors: dict[str, float], matching: str = "params", seeds: int = 3, converged: bool = True,
                  noise: tuple[float, ...] = (0.01, -0.02, 0.015)) -> list[dict]:  # fmt: skip
    """Contest runs: tied at test ppl ~100 (3 seeds, a little spread), each other core at ``factor`` x tied's."""
    rows = []
    for core, f in {"tied": 1.0, **factors}.items():
        for seed in range(seeds):
            ppl = (100.0, 103.0, 97.0, 101.0)[seed] * f * (1 + noise[seed % len(noise)] * (core != "tied"))
            rows.append({"name": f"contest-{matching}-{core}-s{seed}", "claims": "contest C3", "core": core,
                         "seed": seed, "matching": matching, "width": 200, "params": 4.6e6, "lr": 1.0,
                         "test_ppl": ppl, "best_val_ppl": ppl * 1.05, "converged": converged})  # fmt: skip
    return rows


def test_contest_says_who_beats_tied_and_by_how_much() -> None:
    v = V.contest(_runs(_contest_rows({"soft_tied": 0.9, "untied": 1.8})), 3)
    # 0.9 x tied's times the geometric mean of the noise (1.0015): 9.9% better
    assert v.verdict == "equal parameters: soft_tied beats tied by 9.9% [4.0%, 15.3%]"
    assert v.converged is True and "3 seeds per core" in v.n and "[" in v.interval
    row = v.table.set_index("core").loc["soft_tied"]
    assert row["ratio_lo95"] < row["ratio_vs_tied"] < row["ratio_hi95"] < 1
    assert v.table.set_index("core").loc["untied", "result"] == "worse than tied"


def test_contest_counter_example_nothing_beats_tied() -> None:
    v = V.contest(_runs(_contest_rows({"soft_tied": 1.02, "untied": 1.8})), 3)
    assert v.verdict == "equal parameters: nothing beats tied"


def test_contest_holm_correction_across_the_comparisons() -> None:
    """Alone, 0.93x tied at p = 0.037 beats tied; with two more comparisons Holm makes it 0.11: nothing beats tied."""
    alone = V.contest(_runs(_contest_rows({"soft_tied": 0.93})), 3)
    assert "soft_tied beats tied" in alone.verdict
    family = V.contest(_runs(_contest_rows({"soft_tied": 0.93, "share5": 1.0, "mixture": 1.01})), 3)
    assert family.verdict == "equal parameters: nothing beats tied"
    row = family.table.set_index("core").loc["soft_tied"]
    assert row["p"] < 0.05 < row["p_holm"]


def test_contest_per_matching_and_not_converged() -> None:
    rows = _contest_rows({"untied": 0.8}, matching="width") + _contest_rows({"untied": 1.5}, matching="params")
    v = V.contest(_runs(rows), 3)
    assert v.verdict == "equal width: untied beats tied by 19.9% [14.7%, 24.7%]; equal parameters: nothing beats tied"
    rows[0]["converged"] = False
    v = V.contest(_runs(rows), 3)
    assert v.verdict == "equal width: not converged; equal parameters: nothing beats tied"
    assert v.converged is False


def test_untying_kinds_names_each_kinds_best_and_compares_them() -> None:
    lines, table = V.untying_kinds(_runs(_contest_rows({"untied": 1.3, "soft_tied": 1.02, "lexical": 0.9})))
    assert set(table["kind"]) == {"by position", "by content"}
    best = table.set_index("kind")
    assert best.loc["by position", "core"] == "soft_tied" and best.loc["by content", "result"] == "beats tied"
    assert "content / position ×0.88" in lines[0]  # 0.9 / 1.02
    high = float(lines[0].split("content / position ×")[1].split("[")[1].split(",")[1].strip(" ]."))
    assert high < 1  # the interval says content beats position here


def test_untying_kinds_counter_example_position_wins() -> None:
    lines, table = V.untying_kinds(_runs(_contest_rows({"untied": 0.85, "lexical": 1.1})))
    best = table.set_index("kind")
    assert best.loc["by position", "result"] == "beats tied" and best.loc["by content", "result"] == "worse than tied"
    low = float(lines[0].split("content / position ×")[1].split("[")[1].split(",")[0])
    assert low > 1  # content is clearly worse than position
    assert V.untying_kinds(_runs([]))[0] == ["No finished contest runs yet."]


def test_contest_tied_serves_both_matchings() -> None:
    """runs.csv marks tied 2x200 with matching "both": it is the reference of each matching."""
    rows = [r for r in _contest_rows({"untied": 0.8}, matching="width") if r["core"] != "tied"]
    rows += [r for r in _contest_rows({"untied": 1.5}, matching="params") if r["core"] != "tied"]
    rows += [{**r, "matching": "both"} for r in _contest_rows({}, matching="both")]
    v = V.contest(_runs(rows), 3)
    assert v.verdict.startswith("equal width: untied beats tied by 19.9%")
    assert v.verdict.endswith("equal parameters: nothing beats tied")
    assert list(v.table["matching"]).count("equal width") == 2


def test_contest_needs_seeds() -> None:
    assert "inconclusive" in V.contest(_runs(_contest_rows({"untied": 0.5}, seeds=2)), 3).verdict


def test_contest_one_seed_has_no_interval_not_nan() -> None:
    rows = [r for r in _contest_rows({"lexical": 0.97}) if r["core"] == "tied" or r["seed"] == 0]
    v = V.contest(_runs(rows), 3)
    assert "inconclusive" in v.verdict and "nan" not in v.interval and v.interval == "equal parameters: n/a"
    assert v.table.set_index("core").loc["lexical", "result"].endswith(", provisional: 1 seed")


def test_contest_waits_for_every_planned_core() -> None:
    """tied and untied have 3 seeds, but the grid also plans lexical at equal width: no verdict before it runs."""
    rows = _contest_rows({"untied": 1.5, "lexical": 0.9}, matching="width")
    unfinished = [{**r, "test_ppl": float("nan")} if r["core"] == "lexical" else r for r in rows]
    v = V.contest(_runs(unfinished), 3)
    assert v.verdict == "equal width: inconclusive (no runs yet of lexical)"
    assert V.contest(_runs(rows), 3).verdict.startswith("equal width: lexical beats tied")


def _c4_rows(gap_untied: float, penalty_small: float, converged: bool = True) -> list[dict]:
    """tied: val/train ppl 1.1 everywhere; untied at 10% data: val/train ``gap_untied`` and val ppl
    ``penalty_small`` x tied's (1.0 x with all data)."""
    rows = []
    for fraction in (0.1, 1.0):
        for core in ("tied", "untied"):
            for seed in range(3):
                small_untied = core == "untied" and fraction == 0.1
                best = 120.0 * (penalty_small if small_untied else 1.0) + seed
                train = best / ((gap_untied if small_untied else 1.1) + 0.01 * seed)
                rows.append({"name": f"C4-{core}-{fraction}-{seed}", "claims": "C4", "core": core, "seed": seed,
                             "fraction": fraction, "train_eval_ppl": train, "best_val_ppl": best,
                             "converged": converged})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    ("gap", "penalty", "verdict"), [(2.0, 1.5, "supported"), (1.1, 1.0, "refuted"), (2.0, 1.0, "mixed")]
)
def test_c4_gap_and_data(gap: float, penalty: float, verdict: str) -> None:
    v = V.c4(_runs(_c4_rows(gap, penalty)), 3)
    assert v.verdict == verdict and v.converged is True
    assert v.size.startswith("(a) gap untied/tied at 10%: ×") and "n/a" not in v.interval


def test_c4_counter_example_untied_overfits_less() -> None:
    """Untied's gap below tied's and no data penalty: the opposite of the claim."""
    assert V.c4(_runs(_c4_rows(1.02, 0.9)), 3).verdict == "refuted"


def test_c4_whole_stream_runs_have_no_fraction_in_runs_csv() -> None:
    """The contest runs C4 shares train on all of PTB and runs.csv leaves their ``fraction`` empty: they are 1.0."""
    rows = [{**r, "fraction": float("nan")} if r["fraction"] == 1.0 else r for r in _c4_rows(2.0, 1.5)]
    v = V.c4(_runs(rows), 3)
    assert v.verdict == "supported" and "2 fractions" in v.n
    assert sorted(set(v.table["fraction"])) == [0.1, 1.0]


def test_c4_no_verdict_before_convergence() -> None:
    rows = _c4_rows(2.0, 1.5)
    rows[-1]["converged"] = False
    v = V.c4(_runs(rows), 3)
    assert v.verdict == "not converged" and v.converged is False
    assert "×" in v.size  # the effect is still reported


def _curves(tied_speed: float, untied_speed: float, quiet: bool = True, converged: bool = True,
            tied_data: float = 1.0, untied_data: float = 1.0):  # fmt: skip
    """Tied and untied runs whose val ppl falls as 1000 / (step * data efficiency), and quiet throughput rows
    (tokens/s ~ speed, three repeats with a little noise)."""
    rows, runs, throughput = [], [], []
    for core, speed, data in (("tied", tied_speed, tied_data), ("untied", untied_speed, untied_data)):
        for seed in range(3):
            name = f"C10-{core}-{seed}"
            runs.append({"name": name, "claims": "C10", "core": core, "seed": seed, "best_val_ppl": 1000.0 / 300,
                         "quiet": False, "converged": converged})  # fmt: skip
            for step in (100, 200, 300, 400, 500, 600):
                rows.append({"name": name, "claims": "C10", "core": core, "seed": seed, "step": step,
                             "val/ppl": 1000.0 / (step * data * (1 + 0.01 * seed)), "tokens": step * 400,
                             "wall_s": step * 7.0})  # fmt: skip
            throughput.append({"core": core, "repeat": seed, "tokens_per_s": 1000 * speed * (1 + 0.01 * seed),
                               "quiet": quiet})  # fmt: skip
    t = _runs(runs)
    t["curves"] = pd.DataFrame(rows)
    t["throughput"] = pd.DataFrame(throughput)
    return t


@pytest.mark.parametrize(("tied", "untied", "verdict"), [(2.0, 1.0, "supported"), (1.0, 2.0, "refuted")])
def test_c10_time_to_target(tied: float, untied: float, verdict: str) -> None:
    v = V.c10(_curves(tied, untied), 3)
    assert v.verdict == verdict
    assert v.size.startswith("seconds untied/tied ×") and v.n == "runs 3+3; quiet throughput repeats 3+3"


def test_c10_seconds_combine_tokens_and_throughput() -> None:
    """Untied needs 2x fewer tokens to the target but runs 2.5x slower: tied is still sooner (and the run's own
    wall clocks, the same for both here, are not what decides)."""
    assert V.c10(_curves(2.5, 1.0, untied_data=2.0), 3).verdict == "supported"
    assert V.c10(_curves(1.5, 1.0, untied_data=2.0), 3).verdict == "refuted"  # fewer tokens win now


def test_c10_same_speed_is_no_clear_difference() -> None:
    assert V.c10(_curves(1.0, 1.0), 3).verdict == "mixed"


def test_c10_only_from_a_quiet_machine() -> None:
    v = V.c10(_curves(2.0, 1.0, quiet=False), 3)
    assert v.verdict == "inconclusive: timing not measured on a quiet machine"
    assert v.size.startswith("tokens untied/tied ×")
    assert V.c10(_curves(2.0, 1.0, converged=False), 3).verdict == "not converged"


def test_c10_target_is_reached_by_every_seed() -> None:
    """One slow-learning seed (best val ppl above its core's mean best) still counts: the target is its best."""
    t = _curves(2.0, 1.0)
    c = t["curves"]
    c.loc[c["name"] == "C10-untied-2", "val/ppl"] *= 1.2
    target, df = V.time_to_target(c)
    assert target == pytest.approx(1.2 * 1000.0 / (600 * 1.02))  # seed 2, slowed by 1.2, is the worst
    assert df["tokens"].notna().all()
    assert V.c10(t, 3).verdict == "supported"


def test_time_to_target_interpolates_in_log_ppl() -> None:
    c = pd.DataFrame({"name": "r", "core": "tied", "seed": 0, "step": [1, 2], "val/ppl": [400.0, 100.0],
                      "wall_s": [10.0, 20.0], "tokens": [1000.0, 2000.0]})  # fmt: skip
    _, df = V.time_to_target(c, target=200.0)  # halfway in log ppl
    assert df["wall_s"].iloc[0] == pytest.approx(15.0) and df["tokens"].iloc[0] == pytest.approx(1500.0)
    _, df = V.time_to_target(c, target=500.0)  # already below at the first validation
    assert df["wall_s"].iloc[0] == 10.0
    _, df = V.time_to_target(c, target=50.0)  # never reached
    assert math.isnan(df["wall_s"].iloc[0])


def test_c4_with_one_fraction_is_inconclusive_and_compares_nothing_with_itself() -> None:
    """Only the whole stream finished: no data penalty to compare (not "x1.000"), no verdict."""
    v = V.c4(_runs([r for r in _c4_rows(2.0, 1.5) if r["fraction"] == 1.0]), 3)
    assert v.verdict == "inconclusive" and "1 fractions" in v.n
    assert v.size.endswith("(b) penalty: n/a (one fraction)") and v.interval.endswith("(b) n/a")
    assert "needs a second data fraction" in v.effect


def test_c4_names_the_core_missing_at_the_smallest_fraction() -> None:
    rows = [r for r in _c4_rows(2.0, 1.5) if not (r["core"] == "untied" and r["fraction"] == 0.1)]
    v = V.c4(_runs(rows), 3)
    assert v.verdict == "inconclusive" and "no finished untied run" in v.effect and "at 10% data" in v.effect
