"""Verdicts from numbers, by explicit rules (nothing here knows a result in advance).

Statistics (``lrnn.paper.stats``): a difference between two groups of seeds is *clear* when both have at least
``min_seeds`` seeds and the two-sided 95% Welch interval of the difference of the means excludes 0 (Welch's t with
its Welch–Satterthwaite degrees of freedom: at n = 3 per side that takes t > ~2.8, not the 2 of a z-test). Fewer
seeds: the verdict is ``inconclusive``. Perplexities and times are compared on the log scale and reported as ratios
with 95% intervals. Each rule below is stated in its function's docstring and printed in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lrnn.paper.claims import CLAIM_LIST
from lrnn.paper.collect import for_claim
from lrnn.paper.stats import Stat, Welch, holm, linear, log_ratio, stat, welch

__all__ = ["Stat", "Verdict", "clearly_greater", "stat", "welch"]

CHANCE = 1 / 8  # synthetic tasks: alphabet of 8


def clearly_greater(a: Stat, b: Stat, min_seeds: int = 3) -> bool | None:
    """``a > b``: the two-sided 95% Welch interval of mean(a) - mean(b) lies above 0; ``None`` when either side
    has fewer than ``min_seeds`` values. (A constant to compare with: ``Stat(value, 0.0, 10**6)``.)"""
    if a.n < min_seeds or b.n < min_seeds:
        return None
    return welch(a, b).low > 0


@dataclass
class Verdict:
    claim: str
    verdict: str  # supported | refuted | mixed | inconclusive
    effect: str  # one line with the effect size(s)
    rule: str  # the rule that decided it
    figure: str = ""  # figure file name (figures/...)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # the numbers behind it
    notes: list[str] = field(default_factory=list)
    # The verdict table's columns (strings, "" = not applicable; the render writes "n/a"):
    size: str = ""  # the effect size, e.g. "untied/tied test ppl ×1.12"
    interval: str = ""  # its 95% interval, e.g. "[1.05, 1.19]"
    n: str = ""  # what it rests on, e.g. "3+3 seeds"
    converged: bool | None = None  # PTB claims: every run behind the verdict converged; None: not a PTB claim


def _combine(parts: list[bool | None]) -> str:
    """Two or more sub-tests -> supported (all hold) / refuted (none) / mixed / inconclusive (any undecided)."""
    if any(p is None for p in parts):
        return "inconclusive"
    return "supported" if all(parts) else "refuted" if not any(parts) else "mixed"


def _large_increase(clear: bool | None, log_r: float, at_least: float = 1.05) -> str:
    """A clear increase of at least ``at_least``x: supported; clear but smaller: mixed; not clear: refuted."""
    if clear is None:
        return "inconclusive"
    return "refuted" if not clear else "supported" if log_r >= math.log(at_least) else "mixed"


def _by_core(df: pd.DataFrame, col: str) -> dict[str, Stat]:
    return {c: stat(g[col]) for c, g in df.groupby("core", sort=False)} if not df.empty and col in df else {}


def summary_table(df: pd.DataFrame, cols: list[str], by: list[str]) -> pd.DataFrame:
    """Mean, t-based 95% interval (``_lo95``, ``_hi95``) and n of ``cols`` per group (the CSV / README tables)."""
    if df.empty:
        return pd.DataFrame()
    cols = [c for c in cols if c in df]
    rows = []
    for keys, g in df.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys, strict=True))
        for c in cols:
            s = stat(g[c])
            row[f"{c}_mean"], (row[f"{c}_lo95"], row[f"{c}_hi95"]), row["n"] = s.mean, s.ci(), s.n
        rows.append(row)
    return pd.DataFrame(rows)


# ---- helpers for the PTB verdicts: convergence gate, ratios with intervals ------------------------------------
NOT_CONVERGED = "not converged"


def truthy(x: object) -> bool:
    """A boolean cell of runs.csv (bool, or "True"/"1"/"yes" after a CSV round trip); NaN/missing is False."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    return str(x).strip().lower() in ("true", "1", "1.0", "yes")


def finished(runs: pd.DataFrame, col: str) -> pd.DataFrame:
    """The rows of ``runs`` with a finite positive ``col`` (unfinished runs have NaN)."""
    if runs.empty or col not in runs:
        return runs.iloc[:0]
    v = pd.to_numeric(runs[col], errors="coerce")
    return runs[np.isfinite(v) & (v > 0)]


def gated(verdict: str, converged: bool | None) -> str:
    """A PTB verdict stands only if its runs converged; "inconclusive" (runs missing) stays inconclusive."""
    return verdict if converged is not False or verdict == "inconclusive" else NOT_CONVERGED


def all_converged(runs: pd.DataFrame) -> bool:
    """Every row has ``converged`` true (a missing column counts as not converged)."""
    return not runs.empty and "converged" in runs and bool(runs["converged"].map(truthy).all())


def times(log_value: float, digits: int = 3) -> str:
    """exp(log_value) as "×1.234"; "n/a" where there is nothing to exponentiate yet (no runs)."""
    return f"×{math.exp(log_value):.{digits}f}" if math.isfinite(log_value) else "n/a"


def ratio_text(w: Welch, digits: int = 3) -> tuple[str, str]:
    """A Welch result on a log scale as (``×ratio``, ``[low, high]`` of the ratio); "n/a" where undefined."""
    if w.diff != w.diff:
        return "n/a", "n/a"
    size = f"×{math.exp(w.diff):.{digits}f}"
    return size, (f"[{math.exp(w.low):.{digits}f}, {math.exp(w.high):.{digits}f}]" if w.low == w.low else "n/a")


def seeds_text(counts: dict[str, int]) -> str:
    """``{"tied": 3, "untied": 3}`` -> "3 seeds per core" (or "tied 3, untied 2" when they differ)."""
    values = set(counts.values())
    if len(values) == 1:
        return f"{values.pop()} seeds per core ({len(counts)} cores)"
    return ", ".join(f"{c} {k}" for c, k in counts.items()) + " seeds"


# ---- C1, C5: measured, no seeds ---------------------------------------------------------------------------------
def c1(measure: pd.DataFrame, train_t: int = 20) -> Verdict:
    """Supported if the untied core has >= 5x the tied core's parameters at the training window T (T weight sets);
    refuted if < 2x; mixed in between. Parameters are counted, not sampled: no interval."""
    rule = c1.__doc__ or ""
    if measure.empty or not {"tied", "untied"} <= set(measure["core"]):
        return Verdict("C1", "inconclusive", "no measurements", rule, n="0")
    t = train_t if train_t in set(measure["T"]) else int(sorted(measure["T"])[len(set(measure["T"])) // 2])
    at = measure[measure["T"] == t].set_index("core")["core_params"]
    ratio = at["untied"] / at["tied"]
    verdict = "supported" if ratio >= 5 else "refuted" if ratio < 2 else "mixed"
    others = ", ".join(f"{c} {at[c] / at['tied']:.1f}x" for c in at.index if c not in ("tied", "untied"))
    effect = f"untied/tied core parameters at T={t}: {ratio:.1f}x ({at['untied']:,.0f} vs {at['tied']:,.0f}); {others}"
    return Verdict(
        "C1", verdict, effect, rule, "params_vs_T.png", measure[measure["T"] == t],
        size=f"untied/tied core parameters at T={t}: ×{ratio:.1f}", interval="exact (counted)",
        n=f"{len(at)} cores counted",
    )  # fmt: skip


def c5(measure: pd.DataFrame) -> Verdict:
    """Supported if the untied parameter count is linear in T (R^2 >= 0.999 of a line), its weights at the largest
    T are >= 10x the tied core's, and its fwd+bwd tokens/s there is <= 0.5x the tied core's; mixed if linear but one
    of the two costs is not that large; refuted if not linear. Counts are exact; tokens/s is the median of the
    measurement's repeats (one process, one thread), reported without an interval."""
    rule = c5.__doc__ or ""
    u, t = measure[measure["core"] == "untied"], measure[measure["core"] == "tied"]
    if len(u) < 2 or t.empty:
        return Verdict("C5", "inconclusive", "fewer than 2 window lengths measured", rule, n=f"{len(u)} T values")
    slope, intercept = np.polyfit(u["T"], u["core_params"], 1)
    pred = slope * u["T"] + intercept
    ss = ((u["core_params"] - u["core_params"].mean()) ** 2).sum()
    r2 = 1 - ((u["core_params"] - pred) ** 2).sum() / ss if ss > 0 else 0.0
    tmax = int(u["T"].max())
    um, tm = u[u["T"] == tmax].iloc[0], t[t["T"] == tmax].iloc[0]
    weight_ratio, speed_ratio = um["weight_mb"] / tm["weight_mb"], um["tokens_per_s"] / tm["tokens_per_s"]
    linear = r2 >= 0.999
    verdict = "refuted" if not linear else "supported" if weight_ratio >= 10 and speed_ratio <= 0.5 else "mixed"
    effect = (
        f"untied core parameters = {slope:,.0f}·T + {intercept:,.0f} (R²={r2:.4f}); at T={tmax}: "
        f"{um['weight_mb']:.0f} MB vs {tm['weight_mb']:.1f} MB of weights ({weight_ratio:.0f}x), "
        f"activations saved {um['saved_mb']:.0f} vs {tm['saved_mb']:.0f} MB, "
        f"tokens/s {speed_ratio:.2f}x tied"
    )
    repeats = f", tokens/s median of {int(measure['repeats'].iloc[0])}" if "repeats" in measure else ""
    return Verdict(
        "C5", verdict, effect, rule, "cost_vs_T.png", measure,
        size=f"at T={tmax}: weights ×{weight_ratio:.0f}, tokens/s ×{speed_ratio:.2f} (untied/tied); R²={r2:.4f}",
        interval="exact (counted); tokens/s: no interval", n=f"{u['T'].nunique()} T values{repeats}",
    )  # fmt: skip


# ---- PTB / synthetic claims (seeds) ------------------------------------------------------------------------------
LENGTH_GROWTH = 1.05  # C2/C8: a degradation smaller than 5% in perplexity is not "cannot handle"
LENGTH_MARGIN = 0.02  # C8: non-inferiority margin on the degradation ratio (as good as tied within 2%)
ACC_GAIN = 0.05  # C3/C6/C7: an accuracy gain below 5 points is not a task the core can do and the other cannot
ACC_MARGIN = 0.02  # C7: non-inferiority margin in accuracy points
RECURRENT_GROWTH = 1.05  # C9: zeroing the cell state must cost >= 5% perplexity to call the cell "carried"


def _welch_text(w: Welch, digits: int = 3, pct: bool = False) -> tuple[str, str]:
    """An absolute difference (accuracy) with its 95% interval: ("+0.412", "[0.38, 0.44]") ("n/a" where undefined)."""
    if w.diff != w.diff:
        return "n/a", "n/a"
    f = (lambda x: f"{100 * x:+.1f} pts") if pct else (lambda x: f"{x:+.{digits}f}")
    return f(w.diff), (f"[{f(w.low)}, {f(w.high)}]" if w.low == w.low else "n/a")


def _degradation(length: pd.DataFrame, runs: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Stream windows, per run: d = log(ppl at the longest window / ppl at the training window T), state carried."""
    if length.empty or "mode" not in length:
        return pd.DataFrame()
    rows = []
    for name, g in length[(length["split"] == split) & (length["mode"] == "stream")].groupby("name", sort=False):
        g = g.sort_values("length")
        seq_len = _seq_len_of(runs, name)
        at_t = g[g["length"] == seq_len]
        if at_t.empty:
            continue
        longest = g.iloc[-1]
        rows.append(
            {"name": name, "core": g["core"].iloc[0], "seed": g["seed"].iloc[0], "source": "windows", "T": seq_len,
             "L": int(longest["length"]), "ppl_T": float(at_t["ppl"].iloc[0]), "ppl_L": float(longest["ppl"]),
             "log_ratio": math.log(float(longest["ppl"]) / float(at_t["ppl"].iloc[0]))}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _sentence_degradation(sentences: pd.DataFrame, runs: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Sentences (each from a zero state, ``sentence_length.csv``), per run: d = log(ppl of the sentences longer than
    T / ppl of those up to T), token-weighted over the length bins (T: the run's training window; for the untied
    core T = max_len, so the long sentences are exactly those that reach past max_len)."""
    if sentences.empty or "bin_lo" not in sentences:
        return pd.DataFrame()
    rows = []
    for name, g in sentences[sentences["split"] == split].groupby("name", sort=False):
        seq_len = _seq_len_of(runs, name)
        short, long = g[g["length"] <= seq_len], g[g["bin_lo"] > seq_len]
        if short.empty or long.empty:
            continue

        def ppl(b: pd.DataFrame) -> float:
            return math.exp(float((b["loss"] * b["tokens"]).sum() / b["tokens"].sum()))

        rows.append(
            {"name": name, "core": g["core"].iloc[0], "seed": g["seed"].iloc[0], "source": "sentences",
             "T": seq_len, "L": int(long["length"].max()), "ppl_T": ppl(short), "ppl_L": ppl(long),
             "log_ratio": math.log(ppl(long) / ppl(short))}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _seq_len_of(runs: pd.DataFrame, name: str) -> int:
    """The run's training window T (``seq_len`` in runs.csv)."""
    values = runs.loc[runs["name"] == name, "seq_len"].dropna() if "seq_len" in runs else pd.Series(dtype=float)
    return int(values.iloc[0]) if len(values) else 20


def _length_tables(t: dict[str, pd.DataFrame], claim: str) -> pd.DataFrame:
    """Per run and source (stream windows, sentences): the degradation d (see _degradation, _sentence_degradation)."""
    runs = t.get("runs", pd.DataFrame())
    parts = [
        _degradation(for_claim(t.get("length", pd.DataFrame()), claim), runs),
        _sentence_degradation(for_claim(t.get("sentence_length", pd.DataFrame()), claim), runs),
    ]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _d(deg: pd.DataFrame, source: str, core: str) -> list[float]:
    return deg.loc[(deg["source"] == source) & (deg["core"] == core), "log_ratio"].tolist()


def _enough(values: list[list[float]], min_seeds: int) -> bool:
    return all(len(v) >= min_seeds for v in values)


def _ptb_runs(t: dict[str, pd.DataFrame], claim: str) -> pd.DataFrame:
    runs = for_claim(t.get("runs", pd.DataFrame()), claim)
    if runs.empty or "task" not in runs:
        return runs
    return runs[runs["task"] != "rule"]


def _ptb_converged(t: dict[str, pd.DataFrame], claim: str, cores: tuple[str, ...] = ()) -> bool:
    """Whether every finished PTB run of ``claim`` (of ``cores``, when given: those its rule reads) has converged
    (see ``all_converged``)."""
    runs = _ptb_runs(t, claim)
    runs = runs[runs["core"].isin(cores)] if cores and not runs.empty else runs
    return all_converged(finished(runs, "best_val_ppl"))


def c2(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Tied and untied at equal width (2x200, all data, trained on windows of T; the untied core has max_len = T
    and reuses its last weight set past it: ``clamp``). Two sources of a length degradation d per run: stream
    windows, d = log(ppl at the longest window / ppl at T); real sentences of PTB validation, each from a zero state,
    d = log(ppl of sentences longer than T / ppl of sentences up to T). Per source, the untied excess e =
    mean d(untied) - mean d(tied) with its 95% Welch interval (n = seeds per core). A source *shows* the claim if
    the interval of e lies above 0 and exp(e) >= 1.05 (untied degrades >= 5% more than tied).
    Supported if every source shows it; refuted if in no source the interval of e lies above 0; mixed otherwise
    (e.g. one source only, or a clear excess below 5%). "not converged" if a run behind it has not converged;
    inconclusive without ``min_seeds`` seeds per core in some source."""
    rule = c2.__doc__ or ""
    deg = _length_tables(t, "C2")
    if deg.empty:
        return Verdict("C2", "inconclusive", "no length evaluation", rule, "length.png", n="0")
    parts, sizes, intervals, effects, ns = [], [], [], [], []
    for source in dict.fromkeys(deg["source"]):
        du, dt = _d(deg, source, "untied"), _d(deg, source, "tied")
        w = welch(du, dt)
        ns.append(f"{source} {len(du)}+{len(dt)}")
        size, ci = ratio_text(w)
        sizes.append(f"{source}: untied/tied degradation {size}")
        intervals.append(f"{source}: {ci}")
        L = int(deg.loc[deg["source"] == source, "L"].max())
        effects.append(
            f"{source} (longest {L} vs T): untied {times(stat(du).mean)}, tied {times(stat(dt).mean)}"
            f", untied/tied {size} {ci} (n={len(du)}+{len(dt)})"
        )
        if not _enough([du, dt], min_seeds):
            parts.append(None)
        else:
            parts.append("shows" if w.low > 0 and w.diff >= math.log(LENGTH_GROWTH) else "clear" if w.low > 0 else "no")
    converged = _ptb_converged(t, "C2")
    if any(p is None for p in parts):
        verdict = "inconclusive"
    else:
        verdict = "supported" if all(p == "shows" for p in parts) else "refuted" if all(p == "no" for p in parts) \
            else "mixed"  # fmt: skip
    return Verdict(
        "C2", gated(verdict, converged), "; ".join(effects), rule, "length.png",
        summary_table(deg, ["ppl_T", "ppl_L", "log_ratio"], ["source", "core"]), size="; ".join(sizes),
        interval="; ".join(intervals), n="seeds " + ", ".join(ns), converged=converged,
    )  # fmt: skip


def _rule_gap(rule_runs: pd.DataFrame, a: str, b: str) -> tuple[Welch, list[float], list[float]]:
    """Welch on test accuracy a - b of the position-rule runs."""
    acc = {c: g["test_acc"].astype(float).dropna().tolist() for c, g in rule_runs.groupby("core")}
    va, vb = acc.get(a, []), acc.get(b, [])
    return welch(va, vb), va, vb


def _rule_runs(t: dict[str, pd.DataFrame], claim: str) -> pd.DataFrame:
    runs = for_claim(t.get("runs", pd.DataFrame()), claim)
    if runs.empty or "task" not in runs or "test_acc" not in runs:
        return pd.DataFrame(columns=["core", "test_acc"])
    return runs[(runs["task"] == "rule") & runs["test_acc"].notna()]


def c3(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Two halves. Position rule (position-dependent data, 1x16 cores; chance 1/8): the untied core's test accuracy
    exceeds the tied core's by >= 5 points with the 95% Welch interval of the difference above 0 (n = seeds per
    core). Text (PTB, the contest runs at equal parameters, test ppl): no core whose weights depend on the position
    beats tied (ratio < 1 at Holm-adjusted p < 0.05 over those cores' comparisons with tied, as in the contest). A
    core untied by content (lexical) shares its weights across time, so it says nothing about this claim and is
    left out. Supported if both hold, refuted if neither, mixed otherwise; "not converged" if a text run has not
    converged; inconclusive without ``min_seeds`` seeds per core."""
    rule = c3.__doc__ or ""
    rule_runs = _rule_runs(t, "C3")
    w, va, vb = _rule_gap(rule_runs, "untied", "tied")
    rule_holds = None if not _enough([va, vb], min_seeds) else bool(w.low > 0 and w.diff >= ACC_GAIN)
    gap, gap_ci = _welch_text(w, pct=True)
    planned = _ptb_runs(t, "C3")
    planned = planned[planned["core"].map(untying_kind) != "by content"] if not planned.empty else planned
    text = finished(planned, "test_ppl")
    text_holds, best, converged = None, None, all_converged(text)
    if not text.empty and "tied" in set(text["core"]):
        table = contest_table(text.drop(columns=["matching"], errors="ignore"), min_seeds)
        others = table[table["core"] != "tied"]
        every_core = set(planned["core"]) <= set(table["core"])  # no verdict while a planned core has no run
        if len(others) and every_core and table["n"].min() >= min_seeds:
            text_holds = not (others["result"] == "beats tied").any()
        best = others.sort_values("ratio_vs_tied").iloc[0] if len(others) else None
    text_effect = (
        f"PTB: best core untied by position, {best['core']} ×{best['ratio_vs_tied']:.3f} tied's test ppl "
        f"{ratio_interval(best)} ({best['result']})"
        if best is not None else "PTB: no contest runs"
    )  # fmt: skip
    acc = _by_core(rule_runs, "test_acc")
    effect = (
        f"position rule test acc: untied {acc.get('untied', stat([]))}, tied {acc.get('tied', stat([]))}, "
        f"untied - tied {gap} {gap_ci}; {text_effect}"
    )
    verdict = _combine([rule_holds, text_holds])
    if not text.empty:
        verdict = gated(verdict, converged)
    table = pd.concat(
        [
            summary_table(text, ["best_val_ppl", "test_ppl"], ["core"]).assign(task="PTB"),
            summary_table(rule_runs, ["test_acc"], ["core"]).assign(task="position rule"),
        ]
    )
    return Verdict(
        "C3", verdict, effect, rule, "contest.png", table,
        size=f"rule: untied - tied acc {gap}; PTB: best by position/tied "
        + (f"×{best['ratio_vs_tied']:.3f}" if best is not None else "n/a"),
        interval=f"rule: {gap_ci}; PTB: "
        + (ratio_interval(best) if best is not None else "n/a"),
        n=f"rule {len(va)}+{len(vb)} seeds; PTB " + (seeds_text(text.groupby("core").size().to_dict())
                                                      if not text.empty else "0"),
        converged=converged if not text.empty else None,
    )  # fmt: skip


def c4_runs(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """C4's finished runs with their data fraction; runs on the whole stream (the contest runs C4 shares) have no
    ``fraction`` factor in runs.csv: they are fraction 1."""
    runs = finished(for_claim(t["runs"], "C4"), "best_val_ppl")
    fraction = runs["fraction"] if "fraction" in runs else pd.Series(math.nan, index=runs.index)
    return runs.assign(fraction=pd.to_numeric(fraction, errors="coerce").fillna(1.0))


def c4(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Each data fraction f trained to convergence (early stopping), numbers at the best checkpoint. Per run, the
    generalization gap g = log(best val ppl) - log(eval-mode train ppl at the best checkpoint); per seed and f,
    the untied penalty P(f) = log(untied best val ppl) - log(tied best val ppl) (runs paired by seed).
    (a) overfits: at the smallest fraction, untied's g clearly exceeds tied's (95% Welch interval above 0).
    (b) needs more data: P at the smallest fraction clearly exceeds P with the largest (95% Welch interval of
    P(smallest) - P(largest) above 0): untied's deficit shrinks as the data grows.
    Supported if (a) and (b), refuted if neither, mixed otherwise. "not converged" if any run has not converged;
    inconclusive with fewer than ``min_seeds`` finished seeds per core and fraction."""
    rule = c4.__doc__ or ""
    runs = c4_runs(t)
    if runs.empty:
        return Verdict("C4", "inconclusive", "no finished runs", rule, "data_fraction.png", n="0")
    converged = all_converged(runs)
    counts = runs.groupby(["fraction", "core"]).size()
    n = f"{counts.min()}–{counts.max()} seeds per core and fraction ({runs['fraction'].nunique()} fractions)"
    if counts.max() == counts.min():
        n = f"{counts.min()} seeds per core and fraction ({runs['fraction'].nunique()} fractions)"
    train = pd.to_numeric(runs["train_eval_ppl"], errors="coerce") if "train_eval_ppl" in runs else math.nan
    runs = runs.assign(
        gap=np.log(runs["best_val_ppl"].astype(float)) - np.log(train),
        log_best=np.log(runs["best_val_ppl"].astype(float)),
    )
    fmin, fmax = runs["fraction"].min(), runs["fraction"].max()
    gap = _by_core(runs[runs["fraction"] == fmin], "gap")
    g_u, g_t = gap.get("untied", stat([])), gap.get("tied", stat([]))
    a = clearly_greater(g_u, g_t, min_seeds)

    def penalty(f: float) -> list[float]:
        p = runs[runs["fraction"] == f].pivot_table(index="seed", columns="core", values="log_best")
        return (p["untied"] - p["tied"]).dropna().tolist() if {"untied", "tied"} <= set(p.columns) else []

    p_small, p_all = stat(penalty(fmin)), stat(penalty(fmax))
    one_fraction = fmin == fmax  # no data penalty to compare: not the whole stream with itself
    b = None if one_fraction else clearly_greater(p_small, p_all, min_seeds)
    gap_size, gap_ci = ratio_text(welch(g_u, g_t))
    pen_size, pen_ci = ("n/a", "n/a") if one_fraction else ratio_text(welch(p_small, p_all))
    missing = [core for core, g in (("untied", g_u), ("tied", g_t)) if not g.n]
    gaps = (
        f"val/train ppl at {fmin:.0%} data: untied {times(g_u.mean, 2)}, tied {times(g_t.mean, 2)} "
        f"(untied/tied {gap_size} {gap_ci})"
        if not missing
        else f"no finished {' or '.join(missing)} run with an eval-mode train perplexity at {fmin:.0%} data"
    )
    effect = (
        f"(a) {gaps}; (b) untied/tied best val ppl {times(p_small.mean, 2)} at {fmin:.0%} vs "
        f"{times(p_all.mean, 2)} at {fmax:.0%} (ratio {pen_size} {pen_ci})"
        if not one_fraction
        else f"(a) {gaps}; (b) needs a second data fraction"
    )
    table = summary_table(runs, ["best_val_ppl", "train_eval_ppl", "gap"], ["fraction", "core"])
    return Verdict(
        "C4", gated(_combine([a, b]), converged), effect, rule, "data_fraction.png", table,
        size=f"(a) gap untied/tied at {fmin:.0%}: {gap_size}; (b) "
        + ("penalty: n/a (one fraction)" if one_fraction else f"penalty {fmin:.0%} vs {fmax:.0%}: {pen_size}"),
        interval=f"(a) {gap_ci}; (b) {pen_ci}", n=n, converged=converged,
    )  # fmt: skip


def c6(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Delayed recall (target at t = input at t - D, chance 1/8), TBPTT with k1 = k2 = k. Per cell (core, D, k):
    the gain g = test acc with the state carried across windows - test acc with the state zeroed at every window
    (the reset control: nothing can cross a window boundary), 95% Welch interval, n = seeds per state. Cells with
    D >= k (no gradient path from a target to its input: D = k, k + 1, 2k) test the claim, Holm-adjusted over
    those cells; D < k cells are controls. A beyond-truncation cell *learned through the carried state* if its
    Holm-adjusted p < 0.05 with g >= 5 points. Supported if some such cell exists; refuted if none does while the
    model does learn the task (some control's carried accuracy exceeds chance + 5 points, interval above it);
    inconclusive otherwise (no control learned, or fewer than ``min_seeds`` seeds in a cell)."""
    rule = c6.__doc__ or ""
    runs = for_claim(t.get("runs", pd.DataFrame()), "C6")
    if runs.empty or "D" not in runs or "state" not in runs or "test_acc" not in runs:
        return Verdict("C6", "inconclusive", "no runs with carried and reset states", rule, "recall_heatmap.png",
                       n="0")  # fmt: skip
    runs = runs[pd.to_numeric(runs["test_acc"], errors="coerce").notna()]
    if runs.empty:
        return Verdict("C6", "inconclusive", "no finished runs", rule, "recall_heatmap.png", n="0")
    rows = []
    for (core, d, k1, k2), g in runs.groupby(["core", "D", "k1", "k2"], sort=False):
        carried = g.loc[g["state"] == "carried", "test_acc"].astype(float).dropna().tolist()
        reset = g.loc[g["state"] == "reset", "test_acc"].astype(float).dropna().tolist()
        w = welch(carried, reset)
        c = stat(carried)
        rows.append({
            "core": core, "D": int(d), "k1": int(k1), "k2": int(k2), "beyond": bool(d >= k2),
            "acc_carried": c.mean, "acc_reset": stat(reset).mean, "gain": w.diff, "gain_lo95": w.low,
            "gain_hi95": w.high, "p": w.p, "n_carried": len(carried), "n_reset": len(reset),
            "control_learned": bool(c.n >= 2 and c.ci()[0] > CHANCE + ACC_GAIN),
        })  # fmt: skip
    cells = pd.DataFrame(rows)
    beyond = cells[cells["beyond"]]
    cells["p_holm"] = math.nan
    cells.loc[beyond.index, "p_holm"] = holm(beyond["p"].tolist())
    cells["learned_beyond"] = cells["beyond"] & (cells["p_holm"] < ALPHA) & (cells["gain"] >= ACC_GAIN)
    enough = bool(len(cells)) and bool((cells[["n_carried", "n_reset"]].min(axis=1) >= min_seeds).all())
    controls = cells[~cells["beyond"]]
    if not enough:
        verdict = "inconclusive"
    elif cells["learned_beyond"].any():
        verdict = "supported"
    elif controls["control_learned"].any():
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    parts = [
        f"{r.core} D={r.D} k={r.k2}: {r.gain:+.3f} [{r.gain_lo95:.3f}, {r.gain_hi95:.3f}] (p_holm {r.p_holm:.2g})"
        for r in cells[cells["beyond"]].itertuples()
    ]
    best = beyond.sort_values("gain").iloc[-1] if len(beyond) else None
    effect = (
        f"carried - reset test acc with D >= k (chance {CHANCE:.3f}): " + ("; ".join(parts) or "none")
        + f"; controls (D < k) learned: {int(controls['control_learned'].sum())}/{len(controls)}"
    )  # fmt: skip
    n = cells[["n_carried", "n_reset"]]
    return Verdict(
        "C6", verdict, effect, rule, "recall_heatmap.png", cells,
        size=f"best D >= k cell ({best['core']} D={best['D']} k={best['k2']}): carried - reset acc {best['gain']:+.3f}"
        if best is not None else "n/a",
        interval=f"[{best['gain_lo95']:+.3f}, {best['gain_hi95']:+.3f}]" if best is not None else "n/a",
        n=f"{int(n.values.min())}-{int(n.values.max())} seeds per state and cell, {len(cells)} cells",
    )  # fmt: skip


def c7(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """ "As good as", tested as non-inferiority. Position rule: valid only where the task separates the cores (the
    untied core beats the small tied one by >= 5 points, interval above 0, as in C3; else inconclusive); then the
    tied LSTM widened to the untied core's parameter count is as good as the untied core: the lower end of the 95%
    Welch interval of acc(tied_wide) - acc(untied) is above -2 points. PTB at equal parameters (test ppl): tied is
    as good as untied: the upper end of the 95% interval of the ratio tied/untied is below 1.02 (Welch on log
    ppl). (Full profile also: tied_ptb_wide vs untied at 17M, the same margin.) Supported if every available part
    holds, refuted if none, mixed otherwise; "not converged" if a PTB run has not converged."""
    rule = c7.__doc__ or ""
    rule_runs = _rule_runs(t, "C7")
    parts: list[bool | None] = []
    sizes, intervals, ns, effects = [], [], [], []
    sep, su, st = _rule_gap(rule_runs, "untied", "tied")
    wide, sw, su2 = _rule_gap(rule_runs, "tied_wide", "untied")
    if len(sw) or len(su2):
        if not _enough([su, st, sw], min_seeds):
            parts.append(None)
        elif not (sep.low > 0 and sep.diff >= ACC_GAIN):
            parts.append(None)
            effects.append("position rule does not separate untied from tied: no test")
        else:
            parts.append(bool(wide.low > -ACC_MARGIN))
        size, ci = _welch_text(wide, pct=True)
        acc = _by_core(rule_runs, "test_acc")
        sizes.append(f"rule: tied_wide - untied acc {size}")
        intervals.append(f"rule: {ci}")
        ns.append(f"rule {len(sw)}+{len(su2)}")
        effects.insert(
            0,
            f"position rule acc: tied_wide {acc.get('tied_wide', stat([]))}, untied "
            f"{acc.get('untied', stat([]))}, tied {acc.get('tied', stat([]))}; tied_wide - untied {size} {ci}",
        )
    ptb = finished(_ptb_runs(t, "C7"), "test_ppl")
    converged = all_converged(ptb) if not ptb.empty else None
    groups = [("PTB equal params", ptb[ptb["size"].isna()] if "size" in ptb else ptb, "tied")] if len(ptb) else []
    if len(ptb) and "size" in ptb and ptb["size"].notna().any():
        groups.append(("PTB 17M", ptb[ptb["size"].notna()], "tied_wide"))
    for label, g, tied in groups:
        a = g.loc[g["core"] == tied, "test_ppl"].astype(float).tolist()
        b = g.loc[g["core"] == "untied", "test_ppl"].astype(float).tolist()
        if not a and not b:
            continue
        w = log_ratio(a, b)
        parts.append(None if not _enough([a, b], min_seeds) else bool(w.high < math.log1p(LENGTH_MARGIN)))
        size, ci = ratio_text(w)
        sizes.append(f"{label}: {tied}/untied test ppl {size}")
        intervals.append(f"{label}: {ci}")
        ns.append(f"{label} {len(a)}+{len(b)}")
        effects.append(f"{label}: {tied}/untied test ppl {size} {ci}")
    if not parts:
        return Verdict("C7", "inconclusive", "no runs", rule, "capacity.png", n="0")
    verdict = gated(_combine(parts), converged)
    table = pd.concat(
        [
            summary_table(rule_runs, ["test_acc", "params"], ["core"]).assign(task="position rule"),
            summary_table(ptb, ["test_ppl", "params"], ["core"]).assign(task="PTB"),
        ]
    )
    return Verdict(
        "C7", verdict, "; ".join(effects), rule, "capacity.png", table, size="; ".join(sizes),
        interval="; ".join(intervals), n="seeds " + ", ".join(ns), converged=converged,
    )  # fmt: skip


def c8(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """ "Keeps variable-length inputs" = handles other lengths as well as the tied core. Contest runs at equal
    parameters; the time-varying core uses a non-periodic (Legendre) basis, so every evaluated length is a new
    computation. Per source (stream windows; PTB sentences from a zero state; d as in C2), the excess e =
    mean d(time_varying) - mean d(tied), 95% Welch interval. A source *keeps* lengths if the upper end of e's
    interval is below log 1.02 (non-inferior to tied, margin 2%); it *loses* them if the interval lies above 0 and
    exp(e) >= 1.05. Supported if every source keeps; refuted if some source loses; mixed otherwise. The untied
    core's d is reported alongside. "not converged" if a run has not converged; inconclusive without ``min_seeds``
    seeds per core."""
    rule = c8.__doc__ or ""
    deg = _length_tables(t, "C8")
    if deg.empty:
        return Verdict("C8", "inconclusive", "no length evaluation", rule, "length.png", n="0")
    parts, sizes, intervals, effects, ns = [], [], [], [], []
    for source in dict.fromkeys(deg["source"]):
        dv, dt, du = (_d(deg, source, c) for c in ("time_varying", "tied", "untied"))
        w = welch(dv, dt)
        size, ci = ratio_text(w)
        sizes.append(f"{source}: time_varying/tied degradation {size}")
        intervals.append(f"{source}: {ci}")
        ns.append(f"{source} {len(dv)}+{len(dt)}")
        vs_untied = ratio_text(welch(dv, du))
        effects.append(
            f"{source}: time_varying/tied {size} {ci}, time_varying/untied {vs_untied[0]} {vs_untied[1]} "
            f"(n={len(dv)}+{len(dt)})"
        )
        if not _enough([dv, dt], min_seeds):
            parts.append(None)
        elif w.high < math.log1p(LENGTH_MARGIN):
            parts.append("keeps")
        elif w.low > 0 and w.diff >= math.log(LENGTH_GROWTH):
            parts.append("loses")
        else:
            parts.append("neither")
    converged = _ptb_converged(t, "C8", ("time_varying", "tied", "untied"))  # the other contest cores are not read
    if any(p is None for p in parts):
        verdict = "inconclusive"
    else:
        verdict = "supported" if all(p == "keeps" for p in parts) else "refuted" if "loses" in parts else "mixed"
    return Verdict(
        "C8", gated(verdict, converged), "; ".join(effects), rule, "length.png",
        summary_table(deg, ["ppl_T", "ppl_L", "log_ratio"], ["source", "core"]), size="; ".join(sizes),
        interval="; ".join(intervals), n="seeds " + ", ".join(ns), converged=converged,
    )  # fmt: skip


def c9(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Is an untied LSTM still recurrent through its cell? Untied (and tied) at equal width, PTB validation on
    windows of T, state carried across windows (``recurrence.csv``). Per run r = log(ppl with the cell state c
    zeroed before every step / ppl with c carried); the hidden state h still carries, so r is what the cell adds
    across time. Supported if the untied core's mean r has its 95% t interval above 0 and exp(mean r) >= 1.05;
    mixed if the interval is above 0 but the increase < 5%; refuted otherwise. (Zeroing h and c, no recurrence at
    all, is reported alongside; the figure's right panel shows what the state carried *across* windows adds, by
    window length, which is not this test.) "not converged" if a run has not converged; inconclusive with fewer
    than ``min_seeds`` seeds."""
    rule = c9.__doc__ or ""
    rec = for_claim(t.get("recurrence", pd.DataFrame()), "C9")
    if rec.empty:
        return Verdict("C9", "inconclusive", "no recurrence evaluation", rule, "recurrence.png", n="0")
    rows = []
    for name, g in rec[rec["split"] == "val"].groupby("name", sort=False):
        p = g.set_index("state")["ppl"]
        if {"carried", "cell_zeroed"} <= set(p.index):
            rows.append({
                "name": name, "core": g["core"].iloc[0], "ppl_carried": p["carried"], "ppl_cell_zeroed":
                p["cell_zeroed"], "ppl_state_zeroed": p.get("state_zeroed", math.nan),
                "log_ratio": math.log(p["cell_zeroed"] / p["carried"]),
                "log_ratio_state": math.log(p["state_zeroed"] / p["carried"]) if "state_zeroed" in p else math.nan,
            })  # fmt: skip
    df = pd.DataFrame(rows)
    s = _by_core(df, "log_ratio")
    u = s.get("untied", stat([]))
    lo, hi = u.ci()
    if u.n < min_seeds:
        verdict = "inconclusive"
    else:
        clear = lo > 0 or (u.std == 0 and u.mean > 0)
        verdict = "refuted" if not clear else "supported" if u.mean >= math.log(RECURRENT_GROWTH) else "mixed"
    converged = _ptb_converged(t, "C9")
    states = _by_core(df, "log_ratio_state")

    def fmt(c: str, v: Stat) -> str:
        a, b = v.ci()
        both = states.get(c, stat([]))
        return (f"{c} ×{math.exp(v.mean):.3f} [{math.exp(a):.3f}, {math.exp(b):.3f}] (n={v.n}; h and c zeroed "
                f"×{math.exp(both.mean):.3f})")  # fmt: skip

    effect = "val ppl with c zeroed at every step / carried, windows of T: " + ", ".join(
        fmt(c, v) for c, v in s.items()
    )
    return Verdict(
        "C9", gated(verdict, converged), effect, rule, "recurrence.png",
        summary_table(df, ["ppl_carried", "ppl_cell_zeroed", "ppl_state_zeroed", "log_ratio"], ["core"]),
        size=f"untied ppl c zeroed/carried ×{math.exp(u.mean):.3f}" if u.n else "n/a",
        interval=f"[{math.exp(lo):.3f}, {math.exp(hi):.3f}]" if u.n >= 2 else "n/a", n=f"{u.n} untied seeds",
        converged=converged,
    )  # fmt: skip


def time_to_target(curves: pd.DataFrame, target: float | None = None) -> tuple[float, pd.DataFrame]:
    """Target (default: the worst run's best val ppl, so that every run reaches it; a core's mean best would leave
    its weaker seeds out); per run the wall seconds and training tokens when the validation perplexity first
    reaches it, interpolated linearly in log ppl between the last validation above the target and the first at or
    below it (the first validation itself when it is already below)."""
    val = curves.dropna(subset=["val/ppl"])
    if target is None:
        target = float(val.groupby("name")["val/ppl"].min().max())
    rows = []
    for name, g in val.groupby("name", sort=False):
        g = g.sort_values("step")
        ppl = g["val/ppl"].to_numpy(float)
        hit = np.flatnonzero(ppl <= target * (1 + 1e-9))
        wall = tokens = math.nan
        if len(hit):
            i = int(hit[0])
            w = 0.0 if i == 0 else (math.log(ppl[i - 1]) - math.log(target)) / (math.log(ppl[i - 1]) - math.log(ppl[i]))
            at = {c: (1 - w) * float(g[c].iloc[i - 1]) + w * float(g[c].iloc[i]) if i else float(g[c].iloc[i])
                  for c in ("wall_s", "tokens")}  # fmt: skip
            wall, tokens = at["wall_s"], at["tokens"]
        rows.append({"name": name, "core": g["core"].iloc[0], "seed": g["seed"].iloc[0], "wall_s": wall,
                     "tokens": tokens})  # fmt: skip
    return target, pd.DataFrame(rows)


QUIET = "inconclusive: timing not measured on a quiet machine"


def c10(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Tied and untied at equal width (the contest's runs, all data). Target = the worst run's best validation
    perplexity (every run reaches it); per run the training tokens to reach it, from its learning curve
    (``time_to_target``: independent of what else ran on the machine). Per core the training throughput, measured
    one job at a time on an otherwise idle machine (``throughput.csv``, ``python -m lrnn.paper throughput``: the
    run's own command cut to a few hundred updates, cores alternating; only rows with ``quiet`` true count).
    Seconds to the target = tokens / throughput, so log(untied/tied seconds) = log(untied/tied tokens) -
    log(untied/tied tokens per second), with a 95% Welch interval over the four groups (``stats.linear``).
    Supported if that interval lies above 0 (tied reaches the target sooner), refuted if below, mixed otherwise.
    "not converged" if a run has not converged; inconclusive with fewer than ``min_seeds`` runs per core, or
    without 2 quiet throughput repeats per core."""
    rule = c10.__doc__ or ""
    curves = for_claim(t["curves"], "C10")
    runs = finished(for_claim(t["runs"], "C10"), "best_val_ppl")
    if curves.empty or "val/ppl" not in curves or runs.empty:
        return Verdict("C10", "inconclusive", "no learning curves", rule, "time_to_target.png", n="0")
    curves = curves[curves["name"].isin(set(runs["name"]))]
    converged = all_converged(runs)
    target, df = time_to_target(curves)
    tokens = {c: df.loc[df["core"] == c, "tokens"].dropna().tolist() for c in ("tied", "untied")}
    wt = log_ratio(tokens["untied"], tokens["tied"])
    tok_size, tok_ci = ratio_text(wt, 2)
    tokens_text = (f"tokens to val ppl {target:.1f}: untied/tied {tok_size} {tok_ci} (n={len(tokens['untied'])}+"
                   f"{len(tokens['tied'])})")  # fmt: skip
    tp = t.get("throughput", pd.DataFrame())
    tp = (
        tp[tp["quiet"].map(truthy)]
        if not tp.empty and "quiet" in tp
        else pd.DataFrame(columns=["core", "tokens_per_s"])
    )
    tps = {c: tp.loc[tp["core"] == c, "tokens_per_s"].astype(float).tolist() for c in ("tied", "untied")}
    n = f"runs {len(tokens['tied'])}+{len(tokens['untied'])}; quiet throughput repeats {len(tps['tied'])}+" \
        f"{len(tps['untied'])}"  # fmt: skip
    table = summary_table(df, ["tokens"], ["core"])
    if min(len(v) for v in tokens.values()) < min_seeds or min(len(v) for v in tps.values()) < 2:
        verdict = "inconclusive" if min(len(v) for v in tokens.values()) < min_seeds else QUIET
        return Verdict(
            "C10", gated(verdict, converged), tokens_text, rule, "time_to_target.png", table,
            size=f"tokens untied/tied {tok_size}", interval=tok_ci, n=n, converged=converged,
        )  # fmt: skip
    log = lambda v: [math.log(x) for x in v if x > 0]  # noqa: E731
    w = linear([(1.0, log(tokens["untied"])), (-1.0, log(tokens["tied"])), (-1.0, log(tps["untied"])),
                (1.0, log(tps["tied"]))])  # fmt: skip
    verdict = "supported" if w.low > 0 else "refuted" if w.high < 0 else "mixed"
    size, ci = ratio_text(w, 2)
    speed_size, speed_ci = ratio_text(log_ratio(tps["tied"], tps["untied"]), 2)
    effect = (
        f"seconds to val ppl {target:.1f}: untied/tied {size} {ci}; {tokens_text}; tokens/s tied/untied "
        f"{speed_size} {speed_ci} (quiet, {stat(tps['tied']).mean:,.0f} vs {stat(tps['untied']).mean:,.0f})"
    )
    return Verdict(
        "C10", gated(verdict, converged), effect, rule, "time_to_target.png", table,
        size=f"seconds untied/tied {size}; tokens {tok_size}", interval=f"{ci}; tokens {tok_ci}", n=n,
        converged=converged,
    )  # fmt: skip


MATCHINGS = {"width": "equal width", "params": "equal parameters"}
ALPHA = 0.05


def expand_both(df: pd.DataFrame) -> pd.DataFrame:
    """Tied 2x200 serves both matchings (``matching == "both"`` in runs.csv / curves.csv): its rows appear once
    under each."""
    if df.empty or "matching" not in df or not (df["matching"] == "both").any():
        return df
    both = df["matching"] == "both"
    parts = [df[~both], df[both].assign(matching="width"), df[both].assign(matching="params")]
    return pd.concat(parts, ignore_index=True)


def _result(core: str, ratio: float, p_holm: float) -> str:
    if core == "tied":
        return "reference"
    if p_holm != p_holm:
        return "n/a"
    return "no clear difference" if p_holm >= ALPHA else "beats tied" if ratio < 1 else "worse than tied"


def ratio_interval(row: pd.Series) -> str:
    """A contest row's 95% interval of its ratio to tied, "[low, high]"; "n/a" while it has none (one seed)."""
    lo, hi = float(row["ratio_lo95"]), float(row["ratio_hi95"])
    return f"[{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else "n/a"


def contest_table(runs: pd.DataFrame, min_seeds: int = 3) -> pd.DataFrame:
    """Per matching and core: seeds, converged, tuned lr, parameters, width, geometric-mean test and best val ppl
    with 95% intervals, and against tied: the test ppl ratio with its 95% interval (Welch on log ppl), p and the
    Holm-adjusted p over that matching's comparisons; ``result``: beats tied / worse than tied / no clear
    difference (Holm-adjusted p < 0.05), marked provisional while either side has fewer than ``min_seeds``."""
    rows = []
    runs = runs.assign(matching=runs["matching"].fillna("params")) if "matching" in runs else runs.assign(
        matching="params")  # fmt: skip
    order = {k: i for i, k in enumerate(MATCHINGS)}  # equal width first: the seed's literal question
    for matching, m in sorted(runs.groupby("matching", sort=False), key=lambda km: order.get(km[0], len(order))):
        tied = m.loc[m["core"] == "tied", "test_ppl"].astype(float)
        block = []
        for core, g in m.groupby("core", sort=False):
            test, val = stat(np.log(g["test_ppl"].astype(float))), stat(np.log(g["best_val_ppl"].astype(float)))
            w = log_ratio(g["test_ppl"].astype(float), tied) if core != "tied" else None
            lrs = sorted({f"{float(x):g}" for x in g["lr"].dropna()}) if "lr" in g else []
            block.append({
                "matching": MATCHINGS.get(str(matching), str(matching)), "core": core, "n": test.n,
                "converged": "yes" if all_converged(g) else "no", "lr": ", ".join(lrs) or "n/a",
                "params": float(g["params"].mean()) if "params" in g else math.nan,
                "width": float(g["width"].mean()) if "width" in g else math.nan,
                "test_ppl": math.exp(test.mean), "test_lo95": math.exp(test.ci()[0]),
                "test_hi95": math.exp(test.ci()[1]), "best_val_ppl": math.exp(val.mean),
                "ratio_vs_tied": math.exp(w.diff) if w else 1.0, "ratio_lo95": math.exp(w.low) if w else math.nan,
                "ratio_hi95": math.exp(w.high) if w else math.nan, "p": w.p if w else math.nan,
            })  # fmt: skip
        adjusted = holm([r["p"] for r in block])
        for r, p in zip(block, adjusted, strict=True):
            r["p_holm"] = p
            r["result"] = _result(r["core"], r["ratio_vs_tied"], p)
            if r["core"] != "tied" and min(r["n"], len(tied)) < min_seeds:
                r["result"] += f", provisional: {r['n']} seed{'s' * (r['n'] != 1)}"
        rows += sorted(block, key=lambda r: r["test_ppl"])
    return pd.DataFrame(rows)


def contest(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """PTB, every core at convergence, each with its tuned lr, two matchings: equal width (the same 2x200 LSTM,
    weights untied) and equal parameters (recurrent parameters matched at a fixed embedding/softmax width). Per
    matching: each core's test perplexity against tied's as a ratio of geometric means with its 95% interval
    (Welch on log ppl), p-values Holm-adjusted over that matching's comparisons. A core *beats tied* if its ratio is
    below 1 at Holm-adjusted p < 0.05. Verdict per matching: "X beats tied by Y% [95% interval]" (X the best of the
    cores that beat tied), else "nothing beats tied"; "not converged" if any of its runs has not converged;
    inconclusive with fewer than ``min_seeds`` finished seeds for a core, or while a core the grid plans for that
    matching (a row of runs.csv without a test perplexity yet) has none. (The intervals are per comparison; the
    decision uses the Holm-adjusted p.)"""
    rule = contest.__doc__ or ""
    planned = expand_both(for_claim(t["runs"], "contest"))
    runs = expand_both(finished(planned, "test_ppl"))
    if runs.empty or "tied" not in set(runs["core"]):
        return Verdict("contest", "inconclusive", "no finished contest runs with tied", rule, "contest.png", n="0")
    table = contest_table(runs, min_seeds)
    waiting = _waiting_cores(planned, table)
    verdicts, sizes, intervals, ns = [], [], [], []
    for matching, m in table.groupby("matching", sort=False):
        ns.append(f"{matching}: {seeds_text(dict(zip(m['core'], m['n'], strict=True)))}")
        others = m[m["core"] != "tied"]
        best = others.sort_values("ratio_vs_tied").iloc[0] if len(others) else None
        if best is not None:
            sizes.append(f"{matching}: best other {best['core']} ×{best['ratio_vs_tied']:.3f} tied's test ppl")
            intervals.append(f"{matching}: {ratio_interval(best)}")
        if waiting.get(matching):
            verdicts.append(f"{matching}: inconclusive (no runs yet of {', '.join(waiting[matching])})")
        elif m["n"].min() < min_seeds or best is None:
            verdicts.append(f"{matching}: inconclusive (fewer than {min_seeds} seeds)")
        elif (m["converged"] != "yes").any():
            verdicts.append(f"{matching}: {NOT_CONVERGED}")
        else:
            beats = others[others["result"] == "beats tied"].sort_values("ratio_vs_tied")
            if beats.empty:
                verdicts.append(f"{matching}: nothing beats tied")
            else:
                b = beats.iloc[0]
                verdicts.append(
                    f"{matching}: {b['core']} beats tied by {100 * (1 - b['ratio_vs_tied']):.1f}% "
                    f"[{100 * (1 - b['ratio_hi95']):.1f}%, {100 * (1 - b['ratio_lo95']):.1f}%]"
                )
    ranking = "; ".join(
        f"{matching}: " + ", ".join(f"{r.core} {r.test_ppl:.1f}" for r in m.itertuples())
        for matching, m in table.groupby("matching", sort=False)
    )
    effect = f"test ppl (geometric mean over seeds), best first: {ranking}"
    return Verdict(
        "contest", "; ".join(verdicts), effect, rule, "contest.png", table, size="; ".join(sizes) or "n/a",
        interval="; ".join(intervals) or "n/a", n="; ".join(ns), converged=bool((table["converged"] == "yes").all()),
    )  # fmt: skip


def _waiting_cores(planned: pd.DataFrame, table: pd.DataFrame) -> dict[str, list[str]]:
    """Per matching (as the contest table names it): the cores the grid plans for it with no finished run yet."""
    if "matching" not in planned:
        return {}
    out: dict[str, list[str]] = {}
    for matching, g in planned.groupby(planned["matching"].fillna("params")):
        name = MATCHINGS.get(str(matching), str(matching))
        done = set(table.loc[table["matching"] == name, "core"])
        out[name] = sorted(set(g["core"]) - done)
    return out


UNTYING = {"tied": "tied", "lexical": "by content"}  # every other contest core unties by position


def untying_kind(core: str) -> str:
    """How a contest core makes its weights specific: "tied", "by position" (a weight set per step, or a
    position-dependent blend) or "by content" (a weight set chosen by the token read)."""
    return UNTYING.get(core, "by position")


def untying_kinds(t: dict[str, pd.DataFrame]) -> tuple[list[str], pd.DataFrame]:
    """Which kind of untying helps: per matching, the best core of each kind against tied (its row of the contest
    table: ratio, 95% interval, Holm-adjusted outcome), and the best by-content core against the best by-position
    core (Welch on log test ppl, 95% interval). Returns sentences for the paper and the table."""
    runs = expand_both(finished(for_claim(t["runs"], "contest"), "test_ppl"))
    if runs.empty or "tied" not in set(runs["core"]):
        return ["No finished contest runs yet."], pd.DataFrame()
    table = contest_table(runs).assign(kind=lambda d: d["core"].map(untying_kind))
    lines, rows = [], []
    for matching, m in table.groupby("matching", sort=False):
        best = {kind: g.sort_values("ratio_vs_tied").iloc[0] for kind, g in m.groupby("kind") if kind != "tied"}
        parts = []
        for kind in ("by position", "by content"):
            if kind in best:
                b = best[kind]
                parts.append(f"best {kind} {b['core']} ×{b['ratio_vs_tied']:.3f} tied's test ppl "
                             f"{ratio_interval(b)} ({b['result']}, n={b['n']})")  # fmt: skip
                rows.append({"matching": matching, "kind": kind, **b.to_dict()})
        if len(best) == 2:
            here = runs[runs["matching"].map(lambda k: MATCHINGS.get(k, k)) == matching]
            content, position = (here.loc[here["core"] == best[k]["core"], "test_ppl"].astype(float)
                                 for k in ("by content", "by position"))  # fmt: skip
            w = log_ratio(content, position)
            size, ci = ratio_text(w)
            parts.append(f"content / position {size} {ci}")
        lines.append(f"**{matching}**: " + ("; ".join(parts) if parts else "only tied has finished") + ".")
    return lines, pd.DataFrame(rows)


def all_verdicts(tables: dict[str, pd.DataFrame], measure: pd.DataFrame, min_seeds: int = 3) -> list[Verdict]:
    """Each claim's rule (lrnn/paper/claims.py), in the order of the claims: a claim measured without training reads
    ``measure``, the others the tables of their runs."""
    rules = globals()
    return [rules[c.verdict](measure) if not c.runs else rules[c.verdict](tables, min_seeds) for c in CLAIM_LIST]
