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


@pytest.mark.parametrize(
    ("untied", "verdict"),
    [([150.0, 152.0, 151.0], "supported"), ([100.0, 101.0, 99.0], "refuted"), ([120.0, 121.0], "inconclusive")],
)
def test_contest(untied: list[float], verdict: str) -> None:
    t = _runs(_pair("contest", "best_val_ppl", [120.0, 121.0, 119.0], untied))
    assert V.contest(t, 3).verdict == verdict


def _c4_rows(gap_untied: float, penalty_small: float) -> list[dict]:
    rows = []
    for fraction in (0.1, 1.0):
        for core in ("tied", "untied"):
            for seed in range(3):
                train = 100.0
                gap = gap_untied if core == "untied" and fraction == 0.1 else 1.1
                best = 120.0 * (penalty_small if core == "untied" and fraction == 0.1 else 1.0) + seed
                rows.append({"name": f"C4-{core}-{fraction}-{seed}", "claims": "C4", "core": core, "seed": seed,
                             "fraction": fraction, "train_ppl_last": train, "val_ppl_last": train * gap + seed,
                             "best_val_ppl": best})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    ("gap", "penalty", "verdict"), [(2.0, 1.5, "supported"), (1.1, 1.0, "refuted"), (2.0, 1.0, "mixed")]
)
def test_c4_gap_and_data(gap: float, penalty: float, verdict: str) -> None:
    assert V.c4(_runs(_c4_rows(gap, penalty)), 3).verdict == verdict


def _c6_rows(beyond_acc: float, control_acc: float) -> list[dict]:
    rows = []
    for core in ("tied", "untied"):
        for k in (5, 20):
            for seed in range(3):
                acc = (beyond_acc if 10 >= k else control_acc) + 0.001 * seed
                rows.append({"name": f"C6-{core}-{k}-{seed}", "claims": "C6", "core": core, "seed": seed, "D": 10,
                             "k1": k, "k2": k, "test_acc": acc})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    ("beyond", "control", "verdict"),
    [(0.9, 0.99, "supported"), (0.125, 0.99, "refuted"), (0.125, 0.125, "inconclusive")],
)
def test_c6_beyond_truncation(beyond: float, control: float, verdict: str) -> None:
    v = V.c6(_runs(_c6_rows(beyond, control)), 3)
    assert v.verdict == verdict
    assert set(v.table["beyond"]) == {True, False}


def _state_reset(ratio: float) -> dict[str, pd.DataFrame]:
    rows = []
    for core, r in (("tied", 1.5), ("untied", ratio)):
        for seed in range(3):
            name = f"C9-{core}-s{seed}"
            rows += [{"name": name, "claims": "C9", "core": core, "seed": seed, "split": "val", "state": "carried",
                      "length": 20, "ppl": 100.0 + seed},
                     {"name": name, "claims": "C9", "core": core, "seed": seed, "split": "val", "state": "reset",
                      "length": 20, "ppl": (100.0 + seed) * r}]  # fmt: skip
    t = _runs([])
    t["state_reset"] = pd.DataFrame(rows)
    return t


@pytest.mark.parametrize(("ratio", "verdict"), [(1.4, "supported"), (1.02, "mixed"), (1.0, "refuted")])
def test_c9_state_reset(ratio: float, verdict: str) -> None:
    assert V.c9(_state_reset(ratio), 3).verdict == verdict


def _lengths(claim: str, growth: dict[str, float]) -> dict[str, pd.DataFrame]:
    rows, runs = [], []
    for core, g in growth.items():
        for seed in range(3):
            name = f"{claim}-{core}-s{seed}"
            runs.append({"name": name, "claims": claim, "core": core, "seed": seed, "seq_len": 20})
            for length, ppl in ((20, 100.0 + seed), (160, (100.0 + seed) * g * (1 + 0.001 * seed))):
                rows.append({"name": name, "claims": claim, "core": core, "seed": seed, "split": "val",
                             "mode": "stream", "length": length, "ppl": ppl})  # fmt: skip
    t = _runs(runs)
    t["length"] = pd.DataFrame(rows)
    return t


@pytest.mark.parametrize(("untied", "verdict"), [(1.5, "supported"), (1.02, "mixed"), (1.0, "refuted")])
def test_c2_length(untied: float, verdict: str) -> None:
    assert V.c2(_lengths("C2", {"tied": 1.0, "untied": untied}), 3).verdict == verdict


@pytest.mark.parametrize(("tv", "verdict"), [(1.0, "supported"), (1.2, "mixed"), (1.5, "refuted")])
def test_c8_smooth_weights(tv: float, verdict: str) -> None:
    t = _lengths("C8", {"tied": 1.0, "untied": 1.5, "time_varying": tv})
    assert V.c8(t, 3).verdict == verdict


def _curves(tied_speed: float, untied_speed: float) -> dict[str, pd.DataFrame]:
    rows = []
    for core, speed in (("tied", tied_speed), ("untied", untied_speed)):
        for seed in range(3):
            for step in (100, 200, 300):
                rows.append({"name": f"C10-{core}-{seed}", "claims": "C10", "core": core, "seed": seed,
                             "step": step, "val/ppl": 1000.0 / step, "tokens": step * 400,
                             "wall_s": step / speed * (1 + 0.01 * seed)})  # fmt: skip
    t = _runs([])
    t["curves"] = pd.DataFrame(rows)
    return t


@pytest.mark.parametrize(("tied", "untied", "verdict"), [(2.0, 1.0, "supported"), (1.0, 2.0, "refuted")])
def test_c10_time_to_target(tied: float, untied: float, verdict: str) -> None:
    v = V.c10(_curves(tied, untied), 3)
    assert v.verdict == verdict


def test_c10_target_is_reached_by_every_seed() -> None:
    """One slow-learning seed (best val ppl above its core's mean best) still counts: the target is its best."""
    t = _curves(2.0, 1.0)
    c = t["curves"]
    c.loc[c["name"] == "C10-untied-2", "val/ppl"] *= 1.2
    target, df = V.time_to_target(c)
    assert target == pytest.approx(1.2 * 1000.0 / 300)
    assert df["wall_s"].notna().all()
    assert V.c10(t, 3).verdict == "supported"


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
