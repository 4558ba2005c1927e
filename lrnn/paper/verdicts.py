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
from lrnn.paper.stats import Stat, stat, welch

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


def _large_increase(clear: bool | None, log_ratio: float, at_least: float = 1.05) -> str:
    """A clear increase of at least ``at_least``x: supported; clear but smaller: mixed; not clear: refuted."""
    if clear is None:
        return "inconclusive"
    return "refuted" if not clear else "supported" if log_ratio >= math.log(at_least) else "mixed"


def _by_core(df: pd.DataFrame, col: str) -> dict[str, Stat]:
    return {c: stat(g[col]) for c, g in df.groupby("core", sort=False)} if not df.empty and col in df else {}


def summary_table(df: pd.DataFrame, cols: list[str], by: list[str]) -> pd.DataFrame:
    """mean, std and n of ``cols`` per group (the CSV / README tables)."""
    if df.empty:
        return pd.DataFrame()
    cols = [c for c in cols if c in df]
    rows = []
    for keys, g in df.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys, strict=True))
        for c in cols:
            s = stat(g[c])
            row[f"{c}_mean"], row[f"{c}_std"], row["n"] = s.mean, s.std, s.n
        rows.append(row)
    return pd.DataFrame(rows)


# ---- C1, C5: measured, no seeds ---------------------------------------------------------------------------------
def c1(measure: pd.DataFrame, train_t: int = 20) -> Verdict:
    """Supported if the untied core has >= 5x the tied core's parameters at the training window T (T weight sets);
    refuted if < 2x; mixed in between."""
    rule = c1.__doc__ or ""
    if measure.empty:
        return Verdict("C1", "inconclusive", "no measurements", rule)
    t = train_t if train_t in set(measure["T"]) else int(sorted(measure["T"])[len(set(measure["T"])) // 2])
    at = measure[measure["T"] == t].set_index("core")["core_params"]
    ratio = at["untied"] / at["tied"]
    verdict = "supported" if ratio >= 5 else "refuted" if ratio < 2 else "mixed"
    others = ", ".join(f"{c} {at[c] / at['tied']:.1f}x" for c in at.index if c not in ("tied", "untied"))
    effect = f"untied/tied core parameters at T={t}: {ratio:.1f}x ({at['untied']:,.0f} vs {at['tied']:,.0f}); {others}"
    return Verdict("C1", verdict, effect, rule, "params_vs_T.png", measure[measure["T"] == t])


def c5(measure: pd.DataFrame) -> Verdict:
    """Supported if the untied parameter count is linear in T (R^2 >= 0.999 of a line), its weights at the largest
    T are >= 10x the tied core's, and its fwd+bwd tokens/s there is <= 0.5x the tied core's; mixed if linear but one
    of the two costs is not that large; refuted if not linear."""
    rule = c5.__doc__ or ""
    u, t = measure[measure["core"] == "untied"], measure[measure["core"] == "tied"]
    if len(u) < 2 or t.empty:
        return Verdict("C5", "inconclusive", "fewer than 2 window lengths measured", rule)
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
    return Verdict("C5", verdict, effect, rule, "cost_vs_T.png", measure)


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
    """(a) overfits: at the smallest data fraction, the untied core's generalization gap log(val ppl) - log(train
    ppl) (last logged) clearly exceeds the tied core's. (b) needs more data: the untied penalty log(untied best val
    ppl) - log(tied's) is clearly larger at the smallest fraction than with all data (seeds paired by seed).
    Supported if (a) and (b), refuted if neither, mixed otherwise."""
    rule = c4.__doc__ or ""
    runs = for_claim(t["runs"], "C4")
    if runs.empty or "fraction" not in runs or "train_ppl_last" not in runs:
        return Verdict("C4", "inconclusive", "no runs", rule, "data_fraction.png")
    runs = runs.assign(
        gap=np.log(runs["val_ppl_last"]) - np.log(runs["train_ppl_last"]), log_best=np.log(runs["best_val_ppl"])
    )
    fmin, fmax = runs["fraction"].min(), runs["fraction"].max()
    small = runs[runs["fraction"] == fmin]
    gap = _by_core(small, "gap")
    a = clearly_greater(gap.get("untied", stat([])), gap.get("tied", stat([])), min_seeds)

    def penalty(f: float) -> Stat:
        p = runs[runs["fraction"] == f].pivot_table(index="seed", columns="core", values="log_best")
        return stat((p["untied"] - p["tied"]).tolist()) if {"untied", "tied"} <= set(p.columns) else stat([])

    p_small, p_all = penalty(fmin), penalty(fmax)
    b = clearly_greater(p_small, p_all, min_seeds) if fmin != fmax else None
    effect = (
        f"gap log(val/train ppl) at {fmin:.0%} data: untied {gap.get('untied', stat([]))}, tied "
        f"{gap.get('tied', stat([]))}; untied/tied best val ppl: ×{math.exp(p_small.mean):.2f} at {fmin:.0%} "
        f"vs ×{math.exp(p_all.mean):.2f} at {fmax:.0%}"
    )
    table = summary_table(runs, ["train_ppl_last", "val_ppl_last", "best_val_ppl", "gap"], ["fraction", "core"])
    return Verdict("C4", _combine([a, b]), effect, rule, "data_fraction.png", table)


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


def time_to_target(curves: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    """Target = the worst run's best val ppl, so that every run reaches it (a core's mean best would leave its
    weaker seeds out); per run the wall time and tokens at the first validation at or below it."""
    val = curves.dropna(subset=["val/ppl"])
    target = float(val.groupby("name")["val/ppl"].min().max())
    rows = []
    for name, g in val.groupby("name", sort=False):
        hit = g[g["val/ppl"] <= target * (1 + 1e-9)].sort_values("step")
        first = hit.iloc[0] if len(hit) else None
        rows.append(
            {
                "name": name,
                "core": g["core"].iloc[0],
                "seed": g["seed"].iloc[0],
                "wall_s": float(first["wall_s"]) if first is not None else math.nan,
                "tokens": float(first["tokens"]) if first is not None else math.nan,
            }
        )
    return target, pd.DataFrame(rows)


def c10(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Zaremba-small runs with all data: wall time to reach a target validation perplexity (the worst run's best,
    so every run reaches it). Supported if the tied core's time is clearly below the untied core's;
    refuted if the untied core's is clearly below; mixed otherwise (no clear difference)."""
    rule = c10.__doc__ or ""
    curves = for_claim(t["curves"], "C10")
    if curves.empty or "val/ppl" not in curves:
        return Verdict("C10", "inconclusive", "no learning curves", rule, "time_to_target.png")
    target, df = time_to_target(curves)
    w, k = _by_core(df, "wall_s"), _by_core(df, "tokens")
    tied_faster = clearly_greater(w.get("untied", stat([])), w.get("tied", stat([])), min_seeds)
    untied_faster = clearly_greater(w.get("tied", stat([])), w.get("untied", stat([])), min_seeds)
    if tied_faster is None:
        verdict = "inconclusive"
    else:
        verdict = "supported" if tied_faster else "refuted" if untied_faster else "mixed"
    effect = (
        f"to val ppl {target:.1f}: tied {w.get('tied', stat([]))} s / {k.get('tied', stat([]))} tokens, "
        f"untied {w.get('untied', stat([]))} s / {k.get('untied', stat([]))} tokens"
    )
    return Verdict(
        "C10", verdict, effect, rule, "time_to_target.png", summary_table(df, ["wall_s", "tokens"], ["core"])
    )


def contest(t: dict[str, pd.DataFrame], min_seeds: int) -> Verdict:
    """Every core at the tied model's parameter count, tied_ptb_dropout's recipe. "Supported" (nothing beats tied)
    if no core's best val ppl is clearly below tied's; "refuted" if some core's is."""
    rule = contest.__doc__ or ""
    runs = for_claim(t["runs"], "contest")
    ppl = _by_core(runs, "best_val_ppl")
    tied = ppl.get("tied", stat([]))
    beats = {c: clearly_greater(tied, s, min_seeds) for c, s in ppl.items() if c != "tied"}
    if not beats or any(b is None for b in beats.values()):
        verdict = "inconclusive"
    else:
        verdict = "refuted" if any(beats.values()) else "supported"
    ranking = sorted(ppl.items(), key=lambda cs: cs[1].mean)
    effect = "best val ppl: " + ", ".join(f"{c} {s}" for c, s in ranking)
    table = summary_table(runs, ["best_val_ppl", "test_ppl", "params", "width"], ["core"])
    return Verdict("contest", verdict, effect, rule, "contest.png", table)


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
