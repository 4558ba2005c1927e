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

from lrnn.paper.collect import for_claim
from lrnn.paper.stats import Stat, Welch, holm, log_ratio, stat, welch

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


def all_converged(runs: pd.DataFrame) -> bool:
    """Every row has ``converged`` true (a missing column counts as not converged)."""
    return not runs.empty and "converged" in runs and bool(runs["converged"].map(truthy).all())


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
def _degradation(length: pd.DataFrame, runs: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Per run: log(ppl at the longest window / ppl at the training window T) (stream, state carried)."""
    if length.empty:
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
            {
                "name": name,
                "core": g["core"].iloc[0],
                "seed": g["seed"].iloc[0],
                "T": seq_len,
                "L": int(longest["length"]),
                "ppl_T": float(at_t["ppl"].iloc[0]),
                "ppl_L": float(longest["ppl"]),
                "log_ratio": math.log(float(longest["ppl"]) / float(at_t["ppl"].iloc[0])),
            }
        )
    return pd.DataFrame(rows)


def _seq_len_of(runs: pd.DataFrame, name: str) -> int:
    """The run's training window T (``seq_len`` in runs.csv)."""
    values = runs.loc[runs["name"] == name, "seq_len"].dropna() if "seq_len" in runs else pd.Series(dtype=float)
    return int(values.iloc[0]) if len(values) else 20


def c2(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """On the Zaremba-small runs (no dropout, all data): let d = log(ppl at the longest window / ppl at T).
    Supported if the untied core's d clearly exceeds the tied core's and its ppl grows >= 5% (d >= log 1.05);
    refuted if it does not clearly exceed it; mixed if it does, by less than 5%."""
    rule = c2.__doc__ or ""
    deg = _degradation(for_claim(t["length"], "C2"), t["runs"])
    if deg.empty:
        return Verdict("C2", "inconclusive", "no length evaluation", rule, "length.png")
    s = _by_core(deg, "log_ratio")
    u, ti = s.get("untied", stat([])), s.get("tied", stat([]))
    verdict = _large_increase(clearly_greater(u, ti, min_seeds), u.mean)
    L = int(deg["L"].max())
    effect = (
        f"ppl at length {L} / ppl at T: untied ×{math.exp(u.mean):.3f} ({u}), tied ×{math.exp(ti.mean):.3f} "
        f"({ti}) [log ratios]"
    )
    return Verdict(
        "C2", verdict, effect, rule, "length.png", summary_table(deg, ["ppl_T", "ppl_L", "log_ratio"], ["core"])
    )


def c3(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Two halves. Text (the contest runs, equal parameters): no other core has a clearly lower best validation
    perplexity than tied. Position rule: the untied core's test accuracy clearly exceeds the tied core's.
    Supported if both hold, refuted if neither, mixed otherwise."""
    rule = c3.__doc__ or ""
    runs = for_claim(t["runs"], "C3")
    task = runs["task"] if "task" in runs else pd.Series("", index=runs.index)
    text, rule_runs = runs[task != "rule"], runs[task == "rule"]
    ppl = _by_core(text, "best_val_ppl")
    acc = _by_core(rule_runs, "test_acc")
    tied = ppl.get("tied", stat([]))
    beaten = [clearly_greater(tied, s, min_seeds) for c, s in ppl.items() if c != "tied"]
    text_holds = None if not beaten or any(b is None for b in beaten) else not any(beaten)
    rule_holds = clearly_greater(acc.get("untied", stat([])), acc.get("tied", stat([])), min_seeds)
    best = min(((c, s) for c, s in ppl.items() if c != "tied"), key=lambda cs: cs[1].mean, default=None)
    effect = (
        f"PTB best val ppl: tied {tied}"
        + (f", best other {best[0]} {best[1]}" if best else "")
        + f"; position rule test acc: untied {acc.get('untied', stat([]))}, tied {acc.get('tied', stat([]))}"
    )
    table = pd.concat(
        [
            summary_table(text, ["best_val_ppl", "test_ppl"], ["core"]).assign(task="PTB"),
            summary_table(rule_runs, ["test_acc"], ["core"]).assign(task="position rule"),
        ]
    )
    return Verdict("C3", _combine([text_holds, rule_holds]), effect, rule, "contest.png", table)


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
    runs = finished(for_claim(t["runs"], "C4"), "best_val_ppl")
    if runs.empty or "fraction" not in runs:
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
    b = clearly_greater(p_small, p_all, min_seeds) if fmin != fmax else None
    gap_size, gap_ci = ratio_text(welch(g_u, g_t))
    pen_size, pen_ci = ratio_text(welch(p_small, p_all))
    gaps = (
        f"val/train ppl at {fmin:.0%} data: untied ×{math.exp(g_u.mean):.2f}, tied ×{math.exp(g_t.mean):.2f} "
        f"(untied/tied {gap_size} {gap_ci})"
        if g_u.n and g_t.n
        else "no eval-mode train perplexity (train_eval_ppl)"
    )
    effect = (
        f"(a) {gaps}; (b) untied/tied best val ppl ×{math.exp(p_small.mean):.2f} at {fmin:.0%} vs "
        f"×{math.exp(p_all.mean):.2f} at {fmax:.0%} (ratio {pen_size} {pen_ci})"
    )
    table = summary_table(runs, ["best_val_ppl", "train_eval_ppl", "gap"], ["fraction", "core"])
    return Verdict(
        "C4", _combine([a, b]) if converged else NOT_CONVERGED, effect, rule, "data_fraction.png", table,
        size=f"(a) gap untied/tied at {fmin:.0%}: {gap_size}; (b) penalty {fmin:.0%} vs {fmax:.0%}: {pen_size}",
        interval=f"(a) {gap_ci}; (b) {pen_ci}", n=n, converged=converged,
    )  # fmt: skip


def c6(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """A cell (lag D, truncation k1/k2) is *learned* if its test accuracy clearly exceeds chance + 0.05. Cells with
    D >= k2 (no gradient path from a target to its input) test the claim; cells with D < k2 are controls. Supported
    if a beyond-truncation cell is learned; refuted if none is while some control with the same D is learned;
    inconclusive if no control is learned (the model could not do the task at all)."""
    rule = c6.__doc__ or ""
    runs = for_claim(t["runs"], "C6")
    if runs.empty or "D" not in runs:
        return Verdict("C6", "inconclusive", "no runs", rule, "recall_heatmap.png")
    floor = Stat(CHANCE + 0.05, 0.0, 10**6)
    rows = []
    for (core, d, k1, k2), g in runs.groupby(["core", "D", "k1", "k2"], sort=False):
        s = stat(g["test_acc"])
        rows.append(
            {
                "core": core,
                "D": d,
                "k1": k1,
                "k2": k2,
                "acc_mean": s.mean,
                "acc_std": s.std,
                "n": s.n,
                "beyond": d >= k2,
                "learned": clearly_greater(s, floor, min_seeds),
            }
        )
    cells = pd.DataFrame(rows)
    beyond, control = cells[cells["beyond"]], cells[~cells["beyond"]]
    if cells["learned"].isna().any():
        verdict = "inconclusive"
    elif beyond["learned"].astype(bool).any():
        verdict = "supported"
    elif control[control["D"].isin(beyond["D"])]["learned"].astype(bool).any():
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    best_beyond = beyond["acc_mean"].max() if len(beyond) else math.nan
    effect = (
        f"best accuracy with D >= k2: {best_beyond:.3f} (chance {CHANCE:.3f}, {len(beyond)} cells); "
        f"controls learned: {int(control['learned'].fillna(False).astype(bool).sum())}/{len(control)}"
    )
    return Verdict("C6", verdict, effect, rule, "recall_heatmap.png", cells)


def c7(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Position rule: the tied LSTM widened to the untied core's parameter count is not clearly less accurate than
    the untied core. PTB at equal parameters (contest): the tied core's best val ppl is not clearly higher than
    the untied core's. (Full profile also: tied_ptb_wide vs untied at 17M.) Supported if all hold, refuted if none,
    mixed otherwise."""
    rule = c7.__doc__ or ""
    runs = for_claim(t["runs"], "C7")
    if runs.empty:
        return Verdict("C7", "inconclusive", "no runs", rule, "capacity.png")
    task = runs["task"] if "task" in runs else pd.Series("", index=runs.index)
    rule_runs, ptb = runs[task == "rule"], runs[task != "rule"]
    acc = _by_core(rule_runs, "test_acc")
    parts: list[bool | None] = []
    worse = clearly_greater(acc.get("untied", stat([])), acc.get("tied_wide", stat([])), min_seeds)
    parts.append(None if worse is None else not worse)
    eq = ptb[ptb["size"].isna()] if "size" in ptb else ptb
    ppl = _by_core(eq, "best_val_ppl")
    worse = clearly_greater(ppl.get("tied", stat([])), ppl.get("untied", stat([])), min_seeds)
    parts.append(None if worse is None else not worse)
    effect = (
        f"position rule acc: tied_wide {acc.get('tied_wide', stat([]))} vs untied {acc.get('untied', stat([]))}"
        f" (tied 1x64 {acc.get('tied', stat([]))}); PTB equal params best val ppl: tied {ppl.get('tied', stat([]))}"
        f" vs untied {ppl.get('untied', stat([]))}"
    )
    if "size" in ptb and ptb["size"].notna().any():
        big = _by_core(ptb[ptb["size"].notna()], "best_val_ppl")
        worse = clearly_greater(big.get("tied_wide", stat([])), big.get("untied", stat([])), min_seeds)
        parts.append(None if worse is None else not worse)
        effect += f"; PTB 17M: tied_wide {big.get('tied_wide', stat([]))} vs untied {big.get('untied', stat([]))}"
    table = pd.concat(
        [
            summary_table(rule_runs, ["test_acc", "params"], ["core"]).assign(task="position rule"),
            summary_table(ptb, ["best_val_ppl", "params"], ["core"]).assign(task="PTB"),
        ]
    )
    return Verdict("C7", _combine(parts), effect, rule, "capacity.png", table)


def c8(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """On the contest runs, d = log(ppl at the longest window / ppl at T). Supported if the time-varying core's d is
    clearly below the untied core's and not clearly above the tied core's; mixed if below untied's but clearly above
    tied's; refuted if not clearly below the untied core's. (Mixture and soft-tied are reported alongside.)"""
    rule = c8.__doc__ or ""
    deg = _degradation(for_claim(t["length"], "C8"), t["runs"])
    if deg.empty:
        return Verdict("C8", "inconclusive", "no length evaluation", rule, "length.png")
    s = _by_core(deg, "log_ratio")
    tv, u, ti = (s.get(c, stat([])) for c in ("time_varying", "untied", "tied"))
    below_untied = clearly_greater(u, tv, min_seeds)
    above_tied = clearly_greater(tv, ti, min_seeds)
    if below_untied is None or above_tied is None:
        verdict = "inconclusive"
    else:
        verdict = "refuted" if not below_untied else "mixed" if above_tied else "supported"
    effect = "ppl at the longest window / at T: " + ", ".join(
        f"{c} ×{math.exp(v.mean):.3f}" for c, v in s.items() if v.n
    )
    return Verdict(
        "C8", verdict, effect, rule, "length.png", summary_table(deg, ["ppl_T", "ppl_L", "log_ratio"], ["core"])
    )


def c9(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Zaremba-small untied runs, windows of the training length T: resetting the state at every window instead of
    carrying it raises the validation perplexity. Supported if log(ppl reset / ppl carried) is clearly above 0 and
    the increase >= 5%; mixed if clearly above 0 but < 5%; refuted otherwise."""
    rule = c9.__doc__ or ""
    sr = for_claim(t["state_reset"], "C9")
    if sr.empty:
        return Verdict("C9", "inconclusive", "no state-reset evaluation", rule, "state_reset.png")
    rows = []
    for name, g in sr[sr["split"] == "val"].groupby("name", sort=False):
        seq_len = _seq_len_of(t["runs"], name)
        g = g[g["length"] == seq_len] if (g["length"] == seq_len).any() else g
        p = g.set_index("state")["ppl"]
        if {"reset", "carried"} <= set(p.index):
            rows.append(
                {
                    "name": name,
                    "core": g["core"].iloc[0],
                    "ppl_carried": p["carried"],
                    "ppl_reset": p["reset"],
                    "log_ratio": math.log(p["reset"] / p["carried"]),
                }
            )
    df = pd.DataFrame(rows)
    s = _by_core(df, "log_ratio")
    u = s.get("untied", stat([]))
    verdict = _large_increase(clearly_greater(u, Stat(0.0, 0.0, 10**6), min_seeds), u.mean)
    effect = "val ppl reset/carried at T: " + ", ".join(f"{c} ×{math.exp(v.mean):.3f} ({v})" for c, v in s.items())
    return Verdict(
        "C9",
        verdict,
        effect,
        rule,
        "state_reset.png",
        summary_table(df, ["ppl_carried", "ppl_reset", "log_ratio"], ["core"]),
    )


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
    """PTB, Zaremba small without dropout, all data. Target = the worst run's best validation perplexity (every
    run reaches it); per run the wall seconds and tokens to reach it (``time_to_target``). Only runs measured one
    job at a time on a quiet machine (runs.csv ``quiet`` true) count for time. Supported if the tied core's wall
    time is clearly below the untied core's (95% Welch interval of log(untied/tied seconds) above 0); refuted if
    the untied core's is clearly below; mixed otherwise (no clear difference). "not converged" if any run has not
    converged; inconclusive with fewer than ``min_seeds`` quiet runs per core."""
    rule = c10.__doc__ or ""
    curves = for_claim(t["curves"], "C10")
    runs = finished(for_claim(t["runs"], "C10"), "best_val_ppl")
    if curves.empty or "val/ppl" not in curves or runs.empty:
        return Verdict("C10", "inconclusive", "no learning curves", rule, "time_to_target.png", n="0")
    curves = curves[curves["name"].isin(set(runs["name"]))]
    n_all = seeds_text(runs.groupby("core").size().to_dict())
    converged = all_converged(runs)
    target, df = time_to_target(curves)
    k = _by_core(df, "tokens")
    wt = log_ratio(df.loc[df["core"] == "untied", "tokens"], df.loc[df["core"] == "tied", "tokens"])
    tok_size, tok_ci = ratio_text(wt, 2)
    tokens_text = (f"tokens to val ppl {target:.1f}: untied/tied {tok_size} {tok_ci} (tied {k.get('tied', stat([]))},"
                   f" untied {k.get('untied', stat([]))})")  # fmt: skip
    quiet = set(runs.loc[runs["quiet"].map(truthy), "name"]) if "quiet" in runs else set()
    dq = df[df["name"].isin(quiet)]
    lu, lt = (stat(np.log(dq.loc[dq["core"] == c, "wall_s"].dropna())) for c in ("untied", "tied"))
    if min(lu.n, lt.n) < min_seeds:
        verdict = NOT_CONVERGED if not converged else QUIET if min(lu.n, lt.n) == 0 else "inconclusive"
        return Verdict(
            "C10", verdict, f"{tokens_text}; seconds: {len(quiet)} runs measured on a quiet machine", rule,
            "time_to_target.png", summary_table(df, ["wall_s", "tokens"], ["core"]),
            size=f"tokens untied/tied {tok_size}", interval=tok_ci, n=f"{len(quiet)} quiet runs; {n_all}",
            converged=converged,
        )  # fmt: skip
    tied_faster, untied_faster = clearly_greater(lu, lt, min_seeds), clearly_greater(lt, lu, min_seeds)
    verdict = "supported" if tied_faster else "refuted" if untied_faster else "mixed"
    size, ci = ratio_text(welch(lu, lt), 2)
    secs = _by_core(dq, "wall_s")
    effect = (
        f"seconds to val ppl {target:.1f} (quiet machine): untied/tied {size} {ci} (tied {secs.get('tied')} s, "
        f"untied {secs.get('untied')} s); {tokens_text}"
    )
    return Verdict(
        "C10", verdict if converged else NOT_CONVERGED, effect, rule, "time_to_target.png",
        summary_table(dq, ["wall_s", "tokens"], ["core"]), size=f"seconds untied/tied {size}; tokens {tok_size}",
        interval=f"{ci}; tokens {tok_ci}", n=f"{lt.n}+{lu.n} quiet runs", converged=converged,
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


def contest_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per matching and core: seeds, converged, tuned lr, parameters, width, geometric-mean test and best val ppl
    with 95% intervals, and against tied: the test ppl ratio with its 95% interval (Welch on log ppl), p and the
    Holm-adjusted p over that matching's comparisons; ``result``: beats tied / worse than tied / no clear
    difference (Holm-adjusted p < 0.05)."""
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
        rows += sorted(block, key=lambda r: r["test_ppl"])
    return pd.DataFrame(rows)


def contest(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """PTB, every core at convergence, each with its tuned lr, two matchings: equal width (the same 2x200 LSTM,
    weights untied) and equal parameters (recurrent parameters matched at a fixed embedding/softmax width). Per
    matching: each core's test perplexity against tied's as a ratio of geometric means with its 95% interval
    (Welch on log ppl), p-values Holm-adjusted over that matching's comparisons. A core *beats tied* if its ratio is
    below 1 at Holm-adjusted p < 0.05. Verdict per matching: "X beats tied by Y% [95% interval]" (X the best of the
    cores that beat tied), else "nothing beats tied"; "not converged" if any of its runs has not converged;
    inconclusive with fewer than ``min_seeds`` finished seeds for a core. (The intervals are per comparison; the
    decision uses the Holm-adjusted p.)"""
    rule = contest.__doc__ or ""
    runs = expand_both(finished(for_claim(t["runs"], "contest"), "test_ppl"))
    if runs.empty or "tied" not in set(runs["core"]):
        return Verdict("contest", "inconclusive", "no finished contest runs with tied", rule, "contest.png", n="0")
    table = contest_table(runs)
    verdicts, sizes, intervals, ns = [], [], [], []
    for matching, m in table.groupby("matching", sort=False):
        ns.append(f"{matching}: {seeds_text(dict(zip(m['core'], m['n'], strict=True)))}")
        others = m[m["core"] != "tied"]
        best = others.sort_values("ratio_vs_tied").iloc[0] if len(others) else None
        if best is not None:
            sizes.append(f"{matching}: best other {best['core']} ×{best['ratio_vs_tied']:.3f} tied's test ppl")
            intervals.append(f"{matching}: [{best['ratio_lo95']:.3f}, {best['ratio_hi95']:.3f}]")
        if (m["converged"] != "yes").any():
            verdicts.append(f"{matching}: {NOT_CONVERGED}")
        elif m["n"].min() < min_seeds or best is None:
            verdicts.append(f"{matching}: inconclusive (fewer than {min_seeds} seeds)")
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


def all_verdicts(tables: dict[str, pd.DataFrame], measure: pd.DataFrame, min_seeds: int = 3) -> list[Verdict]:
    return [
        c1(measure),
        c2(tables, min_seeds),
        c3(tables, min_seeds),
        c4(tables, min_seeds),
        c5(measure),
        c6(tables, min_seeds),
        c7(tables, min_seeds),
        c8(tables, min_seeds),
        c9(tables, min_seeds),
        c10(tables, min_seeds),
        contest(tables, min_seeds),
    ]
