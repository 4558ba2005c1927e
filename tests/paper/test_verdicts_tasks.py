"""Verdicts C2, C3, C6, C7, C8, C9 on synthetic tables: each gives its verdict on one table and the opposite on a
counter-example (and says "not converged" / "inconclusive" where it must)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lrnn.paper import verdicts as V

SEEDS = 5


def _noise(seed: int) -> float:
    return 0.002 * (seed - 2)  # a little spread between seeds, symmetric around 0


def _tables(runs: list[dict], **evals: list[dict]) -> dict[str, pd.DataFrame]:
    t = {k: pd.DataFrame() for k in ("curves", "length", "state_reset", "position", "sentence_length", "recurrence")}
    t["runs"] = pd.DataFrame(runs)
    t.update({k: pd.DataFrame(v) for k, v in evals.items()})
    return t


def _run(claim: str, core: str, seed: int, **cols) -> dict:
    return {"name": f"{claim}-{core}-s{seed}", "claims": claim, "core": core, "seed": seed, "seq_len": 20,
            "converged": True, "best_val_ppl": 100.0, **cols}  # fmt: skip


# ---- C2 / C8: length degradation from windows and sentences ------------------------------------------------------
def _length_tables(claim: str, growth: dict[str, float], converged: bool = True) -> dict[str, pd.DataFrame]:
    """Per core, ppl grows by `growth` from T (and short sentences) to the longest window (and long sentences)."""
    runs, length, sentences = [], [], []
    for core, g in growth.items():
        for seed in range(SEEDS):
            r = _run(claim, core, seed, converged=converged)
            runs.append(r)
            tag = {k: r[k] for k in ("name", "core", "seed", "claims")}
            base = 100.0 * (1 + _noise(seed))
            grown = base * g * (1 + _noise(seed))
            for n, ppl in ((10, base), (20, base), (80, grown)):
                length.append({**tag, "split": "val", "mode": "stream", "length": n, "ppl": ppl})
            for lo, hi, ppl in ((1, 10, base), (11, 20, base), (21, 30, grown), (31, 60, grown)):
                sentences.append({**tag, "split": "val", "length": hi, "bin_lo": lo, "loss": math.log(ppl),
                                  "tokens": 1000, "ppl": ppl})  # fmt: skip
    return _tables(runs, length=length, sentence_length=sentences)


@pytest.mark.parametrize(
    ("untied", "verdict"), [(1.30, "supported"), (1.00, "refuted"), (1.02, "mixed")]
)  # fmt: skip
def test_c2(untied: float, verdict: str) -> None:
    v = V.c2(_length_tables("C2", {"tied": 1.0, "untied": untied}), 3)
    assert v.verdict == verdict, v.effect
    assert set(v.table["source"]) == {"windows", "sentences"} and "n=5+5" in v.effect and "[" in v.interval


def test_c2_counter_example_tied_degrades_more() -> None:
    assert V.c2(_length_tables("C2", {"tied": 1.3, "untied": 1.0}), 3).verdict == "refuted"


def test_c2_one_source_shows_it_the_other_not_is_mixed() -> None:
    t = _length_tables("C2", {"tied": 1.0, "untied": 1.3})
    s = t["sentence_length"]
    t["sentence_length"] = s.assign(ppl=100.0, loss=math.log(100.0))  # flat sentences for every core
    assert V.c2(t, 3).verdict == "mixed"


def test_c2_not_converged_and_too_few_seeds() -> None:
    assert V.c2(_length_tables("C2", {"tied": 1.0, "untied": 1.3}, converged=False), 3).verdict == V.NOT_CONVERGED
    assert V.c2(_length_tables("C2", {"tied": 1.0, "untied": 1.3}), 6).verdict == "inconclusive"


@pytest.mark.parametrize(
    ("tv", "verdict"), [(1.0, "supported"), (1.3, "refuted"), (1.035, "mixed")]
)  # fmt: skip
def test_c8(tv: float, verdict: str) -> None:
    v = V.c8(_length_tables("C8", {"tied": 1.0, "time_varying": tv, "untied": 1.3}), 3)
    assert v.verdict == verdict, v.effect
    assert "time_varying/untied" in v.effect


def test_c8_waits_for_the_convergence_of_the_cores_it_reads_only() -> None:
    t = _length_tables("C8", {"tied": 1.0, "time_varying": 1.0, "untied": 1.3})
    other = _length_tables("C8", {"mixture": 1.0}, converged=False)  # a contest core the rule does not read
    t["runs"] = pd.concat([t["runs"], other["runs"]], ignore_index=True)
    assert V.c8(t, 3).verdict == "supported"
    t["runs"].loc[t["runs"]["core"] == "time_varying", "converged"] = False
    assert V.c8(t, 3).verdict == V.NOT_CONVERGED


# ---- C3 / C7: the position rule and PTB ------------------------------------------------------------------------
def _rule(acc: dict[str, float]) -> list[dict]:
    claims = {"tied": "C3 C7", "untied": "C3 C7", "tied_wide": "C7"}
    return [_run(claims[c], c, s, task="rule", test_acc=min(1.0, a + _noise(s))) | {"name": f"rule-{c}-s{s}"}
            for c, a in acc.items() for s in range(SEEDS)]  # fmt: skip


def _ptb(claims: str, ppl: dict[str, float], converged: bool = True) -> list[dict]:
    return [_run(claims, c, s, task=None, test_ppl=p * (1 + _noise(s)), best_val_ppl=p * 1.04, converged=converged)
            | {"name": f"ptb-{c}-s{s}"} for c, p in ppl.items() for s in range(SEEDS)]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "ptb", "verdict"),
    [
        ({"tied": 0.43, "untied": 1.0}, {"tied": 100.0, "untied": 104.0, "mixture": 101.0}, "supported"),
        ({"tied": 0.99, "untied": 1.0}, {"tied": 100.0, "untied": 90.0, "mixture": 101.0}, "refuted"),
        ({"tied": 0.43, "untied": 1.0}, {"tied": 100.0, "untied": 104.0, "mixture": 95.0}, "mixed"),
    ],
)
def test_c3(rule: dict, ptb: dict, verdict: str) -> None:
    v = V.c3(_tables(_rule(rule) + _ptb("C3 C8 C7", ptb)), 3)
    assert v.verdict == verdict, v.effect
    assert "pts" in v.size and "n=5" in v.effect


def test_c3_text_half_is_about_position_a_core_untied_by_content_does_not_count() -> None:
    """lexical (weights chosen by the token, shared across time) beats tied: no evidence against C3's text half."""
    rule = _rule({"tied": 0.43, "untied": 1.0})
    ptb = {"tied": 100.0, "untied": 104.0, "mixture": 101.0}
    assert V.c3(_tables(rule + _ptb("C3 C8", ptb | {"lexical": 95.0})), 3).verdict == "supported"
    assert V.c3(_tables(rule + _ptb("C3 C8", ptb | {"share5": 95.0})), 3).verdict == "mixed"  # by position: counts


def test_c3_text_half_waits_for_every_planned_core() -> None:
    """mixture beats tied, but it has not run yet: the text half says nothing, so the verdict cannot be mixed."""
    rows = _rule({"tied": 0.43, "untied": 1.0}) + _ptb("C3", {"tied": 100.0, "untied": 104.0, "mixture": 95.0})
    assert V.c3(_tables(rows), 3).verdict == "mixed"
    waiting = [{**r, "test_ppl": float("nan")} if r["core"] == "mixture" else r for r in rows]
    assert V.c3(_tables(waiting), 3).verdict == "inconclusive"


def test_c3_not_converged() -> None:
    t = _tables(_rule({"tied": 0.4, "untied": 1.0}) + _ptb("C3", {"tied": 100.0, "untied": 104.0}, converged=False))
    assert V.c3(t, 3).verdict == V.NOT_CONVERGED


@pytest.mark.parametrize(
    ("rule", "ptb", "verdict"),
    [
        ({"tied": 0.43, "untied": 1.0, "tied_wide": 1.0}, {"tied": 100.0, "untied": 104.0}, "supported"),
        ({"tied": 0.43, "untied": 1.0, "tied_wide": 0.6}, {"tied": 110.0, "untied": 100.0}, "refuted"),
        ({"tied": 0.43, "untied": 1.0, "tied_wide": 0.6}, {"tied": 100.0, "untied": 104.0}, "mixed"),
        ({"tied": 0.99, "untied": 1.0, "tied_wide": 1.0}, {"tied": 100.0, "untied": 104.0}, "inconclusive"),
    ],
)
def test_c7(rule: dict, ptb: dict, verdict: str) -> None:
    """The last case: the task does not separate untied from the small tied LSTM, so it cannot test imitation."""
    v = V.c7(_tables(_rule(rule) + _ptb("C7", ptb)), 3)
    assert v.verdict == verdict, v.effect


def test_c7_wide_just_below_untied_is_not_as_good() -> None:
    """Non-inferiority, not "no clear difference": 3 points below untied fails the 2-point margin."""
    v = V.c7(_tables(_rule({"tied": 0.43, "untied": 1.0, "tied_wide": 0.97})), 3)
    assert v.verdict == "refuted", v.effect


# ---- C6: carried vs reset --------------------------------------------------------------------------------------
def _c6(acc_beyond: float, acc_control: float, reset_beyond: float = V.CHANCE, seeds: int = SEEDS) -> list[dict]:
    rows = []
    for k in (5, 10):
        for d in (k // 2, k, k + 1, 2 * k):
            for state in ("carried", "reset"):
                for s in range(seeds):
                    if d < k:
                        acc = acc_control if state == "carried" else 0.6
                    else:
                        acc = acc_beyond if state == "carried" else reset_beyond
                    rows.append(_run("C6", "tied", s, D=d, k1=k, k2=k, state=state, test_acc=acc + _noise(s))
                                | {"name": f"C6-{d}-{k}-{state}-s{s}"})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    ("beyond", "control", "verdict"),
    [(0.5, 0.99, "supported"), (V.CHANCE, 0.99, "refuted"), (V.CHANCE, V.CHANCE, "inconclusive")],
)
def test_c6(beyond: float, control: float, verdict: str) -> None:
    v = V.c6(_tables(_c6(beyond, control)), 3)
    assert v.verdict == verdict, v.effect
    assert int(v.table["beyond"].sum()) == 6 and "p_holm" in v.table


def test_c6_small_gain_after_holm_is_not_learning() -> None:
    """A 3-point gain (below the 5-point floor) in every beyond cell is not learning beyond the truncation."""
    v = V.c6(_tables(_c6(V.CHANCE + 0.03, 0.99)), 3)
    assert v.verdict == "refuted", v.effect
    assert V.c6(_tables(_c6(0.5, 0.99, seeds=2)), 3).verdict == "inconclusive"


# ---- C9: cell state zeroed within the window -------------------------------------------------------------------
def _c9(ratio: dict[str, float], converged: bool = True) -> dict[str, pd.DataFrame]:
    runs, rec = [], []
    for core, r in ratio.items():
        for s in range(SEEDS):
            run = _run("C9", core, s, converged=converged)
            runs.append(run)
            tag = {k: run[k] for k in ("name", "core", "seed", "claims")}
            for state, ppl in (("carried", 100.0), ("cell_zeroed", 100.0 * r * (1 + _noise(s))),
                               ("state_zeroed", 400.0)):  # fmt: skip
                rec.append({**tag, "split": "val", "state": state, "length": 20, "ppl": ppl})
    return _tables(runs, recurrence=rec)


@pytest.mark.parametrize(("untied", "verdict"), [(1.5, "supported"), (1.0, "refuted"), (1.02, "mixed")])
def test_c9(untied: float, verdict: str) -> None:
    v = V.c9(_c9({"tied": 1.5, "untied": untied}), 3)
    assert v.verdict == verdict, v.effect
    assert "n=5" in v.effect and "h and c zeroed" in v.effect


def test_c9_counter_example_and_gates() -> None:
    assert V.c9(_c9({"untied": 0.9}), 3).verdict == "refuted"  # zeroing the cell helps: not carried
    assert V.c9(_c9({"untied": 1.5}, converged=False), 3).verdict == V.NOT_CONVERGED
    assert V.c9(_c9({"untied": 1.5}), 6).verdict == "inconclusive"


def test_runs_not_yet_finished_make_a_claim_inconclusive_not_unconverged() -> None:
    """runs.csv lists every planned run; one still to run has no best_val_ppl and no converged flag."""
    t = _c9({"tied": 1.5, "untied": 1.5})
    runs = t["runs"]
    t["runs"] = runs.assign(best_val_ppl=runs["best_val_ppl"].where(runs["core"] == "tied"),
                            converged=runs["converged"].where(runs["core"] == "tied"))  # fmt: skip
    t["recurrence"] = t["recurrence"][t["recurrence"]["core"] == "tied"]
    v = V.c9(t, 3)
    assert v.verdict == "inconclusive" and v.converged is True
    w = _length_tables("C2", {"tied": 1.0, "untied": 1.3})
    w["runs"] = w["runs"].assign(best_val_ppl=w["runs"]["best_val_ppl"].where(w["runs"]["core"] == "tied"),
                                 converged=w["runs"]["converged"].where(w["runs"]["core"] == "tied"))  # fmt: skip
    for k in ("length", "sentence_length"):
        w[k] = w[k][w[k]["core"] == "tied"]
    assert V.c2(w, 3).verdict == "inconclusive"


def test_c6_with_runs_not_finished_says_so_without_nan() -> None:
    rows = [{"name": f"C6-tied-{s}", "claims": "C6", "core": "tied", "seed": 0, "D": 5, "k1": 5, "k2": 5, "state": s,
             "test_acc": float("nan"), "status": "missing"} for s in ("carried", "reset")]  # fmt: skip
    v = V.c6({"runs": pd.DataFrame(rows)}, 3)
    assert v.verdict == "inconclusive" and v.effect == "no finished runs" and "nan" not in v.effect.lower()
