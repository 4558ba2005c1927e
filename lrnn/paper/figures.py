"""The report's figures (matplotlib, Agg): one function per figure, each ``(tables, measure, out_dir) -> file name``.

Means over seeds with their t-based 95% intervals (perplexities: geometric means, intervals on the log scale);
comparisons as points with intervals on a log axis, never bars from zero; chance lines on the synthetic tasks; every
title states the budget (profile, updates/epochs, seeds) read from the runs themselves."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lrnn.paper.collect import for_claim  # noqa: E402
from lrnn.paper.cores import COLORS, CORE_ORDER, MARKERS  # noqa: E402 (markers: lines that coincide stay visible)
from lrnn.paper.grid import PTB_TRAIN_TOKENS  # noqa: E402
from lrnn.paper.stats import stat, t_ppf  # noqa: E402
from lrnn.paper.verdicts import (  # noqa: E402
    CHANCE,
    MATCHINGS,
    all_converged,
    c4_runs,
    contest_table,
    expand_both,
    finished,
    time_to_target,
    untying_kind,
)

Tables = dict[str, pd.DataFrame]
PROFILE = {"name": ""}  # the profile of the current make_figures call (titles state it)


def _order(cores) -> list[str]:
    cores = list(dict.fromkeys(cores))
    return sorted(cores, key=lambda c: CORE_ORDER.index(c) if c in CORE_ORDER else len(CORE_ORDER))


def _empty(ax, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")


def human(v: float, _pos=None) -> str:
    """Tick label: 500, 2k, 20k, 1.5M (not 2e+06)."""
    if v == 0:
        return "0"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


LOG_SUBS = (  # sparse to dense
    (1.0, 2.0, 5.0),
    (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
    (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0),
    (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
)


def _plain_log(axis) -> None:
    """A log axis labelled 1-2-5 in plain numbers, unlabelled minor ticks: the sparsest of ``LOG_SUBS`` that puts at
    least 5 labels on the axis with one near its low end (within 1.3x), as long as a denser one stays at <= 9."""
    lo, hi = axis.get_view_interval()
    if not 0 < lo < hi:  # e.g. one x value so far: matplotlib's own ticks
        return
    locator = None
    for subs in LOG_SUBS:
        candidate = matplotlib.ticker.LogLocator(base=10, subs=subs)
        ticks = [v for v in candidate.tick_values(lo, hi) if lo <= v <= hi]
        if locator is not None and len(ticks) > 9:
            break
        if len(ticks) >= 5:
            locator = candidate
            if ticks[0] <= 1.3 * lo:
                break
    if locator is None:  # a narrow range: evenly spaced round numbers
        locator = matplotlib.ticker.MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10])
    axis.set_major_locator(locator)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(human))
    axis.set_minor_locator(matplotlib.ticker.LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _save(fig, out: Path, name: str) -> str:
    for ax in fig.axes:  # log axes: 150, 200, 2k rather than 1.5x10^2
        for axis, scale in ((ax.yaxis, ax.get_yscale()), (ax.xaxis, ax.get_xscale())):
            if scale == "log" and not isinstance(axis.get_major_locator(), matplotlib.ticker.FixedLocator):
                _plain_log(axis)
    if fig.get_layout_engine() is None:  # a figure made with layout="constrained" keeps it
        fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _plain_log_x(ax, values) -> None:
    """Log x axis labelled with the values themselves (not powers)."""
    ticks = sorted({float(v) for v in values})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [human(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def budget(runs: pd.DataFrame, curves: pd.DataFrame | None = None, ptb: bool = False) -> str:
    """ "profile cpu, ≤ 1,200 updates (0.52 epochs), 3 seeds": the budget of ``runs`` (a figure's runs), from the
    runs themselves (updates: ``steps``; epochs of PTB: training tokens of the curves / PTB's training tokens)."""
    parts = [f"profile {PROFILE['name']}"] if PROFILE["name"] else []
    if runs is not None and not runs.empty:
        done = finished(runs, "steps") if "steps" in runs else runs.iloc[:0]
        if len(done):
            lo, hi = int(done["steps"].min()), int(done["steps"].max())
            text = f"{hi:,} updates" if lo == hi else f"{lo:,}–{hi:,} updates"
            if curves is not None and not curves.empty and "tokens" in curves:
                full = curves[curves["fraction"].fillna(1.0) == 1.0] if "fraction" in curves else curves
                if len(full):
                    text += f" (≤ {full['tokens'].max() / PTB_TRAIN_TOKENS:.2g} epochs)"
            parts.append(text)
        # seeds that finished, per core (runs.csv also lists the planned runs still to come)
        ran = runs[runs["status"].isin(("completed", "diverged"))] if "status" in runs else runs
        seeds = ran.groupby("core")["seed"].nunique() if "seed" in ran else pd.Series(dtype=int)
        planned = int(runs.groupby("core")["seed"].nunique().max()) if "seed" in runs else 0
        if len(seeds):
            lo, hi = int(seeds.min()), int(seeds.max())
            text = f"{lo} seed{'s' * (lo != 1)}" if lo == hi else f"{lo}–{hi} seeds"
            parts.append(text + (f" of {planned}" if hi < planned else ""))
        if ptb:
            parts.append("converged" if all_converged(finished(runs, "best_val_ppl")) else "NOT converged")
    return ", ".join(parts)


def _title(ax, text: str, runs: pd.DataFrame | None = None, curves: pd.DataFrame | None = None, ptb: bool = False,
           **kw) -> None:  # fmt: skip
    b = budget(runs, curves, ptb) if runs is not None else (f"profile {PROFILE['name']}" if PROFILE["name"] else "")
    ax.set_title(text + (f"\n{b}" if b else ""), fontsize=kw.pop("fontsize", 10), **kw)


def _mean_band(x: np.ndarray, ys: list[np.ndarray], log: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and t-based 95% band over seeds at each x (geometric when ``log``); NaN band where n < 2."""
    mean, lo, hi = [], [], []
    for v in ys:
        v = np.log(v) if log else v
        s = stat(v)
        h = t_ppf(0.975, s.n - 1) * s.std / math.sqrt(s.n) if s.n >= 2 else math.nan
        f = np.exp if log else (lambda z: z)
        mean.append(f(s.mean)), lo.append(f(s.mean - h)), hi.append(f(s.mean + h))
    return np.asarray(mean), np.asarray(lo), np.asarray(hi)


def _mean_line(ax, df: pd.DataFrame, x: str, y: str, label_by: str = "core", log: bool = False) -> None:
    """Per core: mean over seeds at each x with its 95% band."""
    for core in _order(df[label_by]):
        g = df[df[label_by] == core].dropna(subset=[y])
        xs = np.sort(g[x].unique())
        mean, lo, hi = _mean_band(xs, [g.loc[g[x] == v, y].to_numpy(float) for v in xs], log)
        ax.plot(xs, mean, marker="o", ms=3, label=core, color=COLORS.get(core))
        ax.fill_between(xs, lo, hi, alpha=0.2, color=COLORS.get(core), lw=0)


def _points(ax, df: pd.DataFrame, y: str, ylabel: str, log: bool = False, chance: float | None = None) -> None:
    """One point per core: the mean (geometric when ``log``) with its 95% interval, and the seeds as dots."""
    if df.empty or y not in df or df[y].dropna().empty:
        return _empty(ax)
    cores = _order(df["core"])
    for i, c in enumerate(cores):
        v = df.loc[df["core"] == c, y].dropna().to_numpy(float)
        mean, lo, hi = _mean_band(np.zeros(1), [v], log)
        err = np.array([[mean[0] - lo[0]], [hi[0] - mean[0]]]) if np.isfinite(lo[0]) else None
        ax.errorbar([i], mean, yerr=err, fmt="o", ms=7, capsize=4, color=COLORS.get(c), zorder=3)
        ax.scatter(np.full(len(v), i) + 0.12, v, color="k", s=8, zorder=4, alpha=0.6)
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1.2)
        ax.text(len(cores) - 0.5, chance, f" chance {chance:.3g}", va="bottom", ha="right", color="grey", fontsize=8)
    ax.set_xticks(range(len(cores)), cores, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(cores) - 0.4)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)


def _epochs(curves: pd.DataFrame) -> pd.Series:
    """Epochs of PTB's training stream (of its fraction for C4) at each curve row."""
    fraction = curves["fraction"].fillna(1.0).astype(float) if "fraction" in curves else 1.0
    return curves["tokens"] / (PTB_TRAIN_TOKENS * fraction)


def _curve_panels(t: Tables) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(title, runs, validation curves) of every PTB group: the contest per matching, then C10's runs if it has
    runs of its own (in the converged profile it uses the contest's tied and untied at equal width)."""
    panels = []
    runs, curves = expand_both(for_claim(t["runs"], "contest")), expand_both(for_claim(t["curves"], "contest"))
    if not curves.empty and "val/ppl" in curves:
        keys = set(_matching_keys(curves))
        for key in [k for k in MATCHINGS if k in keys] + sorted(keys - set(MATCHINGS)):
            name = MATCHINGS.get(key, key)
            panels.append((f"contest, {name}, dropout", _of_matching(runs, name), _of_matching(curves, name)))
    c10 = for_claim(t["curves"], "C10")
    if not c10.empty and "val/ppl" in c10 and "name" in c10:
        c10 = c10[~c10["name"].isin(set(curves["name"]) if "name" in curves else set())]  # not drawn twice
        if not c10.empty:
            panels.append(("C10's own runs", for_claim(t["runs"], "C10"), c10))
    return panels


def learning_curves(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """Validation perplexity per epoch of every PTB core: geometric mean over seeds with its 95% band; a ring at
    each core's best (the checkpoint kept). Flat ends = converged."""
    panels = _curve_panels(t)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.2 * max(len(panels), 1), 4.6), squeeze=False)
    if not panels:
        _empty(axes[0][0])
    for ax, (title, runs, curves) in zip(axes[0], panels, strict=False):
        val = curves.dropna(subset=["val/ppl"])
        val = val.assign(epoch=_epochs(val).round(3))
        _mean_line(ax, val, "epoch", "val/ppl", log=True)
        for line in list(ax.get_lines()):  # the best point of each mean curve, its value in the legend
            x, y = line.get_data()
            i = int(np.nanargmin(y))
            ax.plot(x[i], y[i], "o", ms=9, mfc="none", color=line.get_color())
            line.set_label(f"{line.get_label()}: {y[i]:.1f}")
        lo, hi = val["val/ppl"].quantile(0.0), val["val/ppl"].quantile(0.98)
        ax.set_yscale("log")
        ax.set_ylim(lo * 0.9, hi * 1.05)
        ax.set(xlabel="epochs of PTB training data", ylabel="validation perplexity")
        _title(ax, title, runs, curves, ptb=True)
        ax.legend(fontsize=8, title="core: best (ringed)", title_fontsize=8, loc="best", framealpha=0.8)
        ax.grid(alpha=0.3, which="both")
    return _save(fig, out, "learning_curves.png")


def length_generalization(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """C2 (left) and C8 (right), PTB validation. Top: stream windows of each length, state carried, ppl relative to
    the run's own at T = 20. Bottom: real sentences, each from a zero state, by length bin, ppl relative to the
    run's own on the sentences up to T (token-weighted); a tick says the bin and its number of sentences."""
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8))
    for col, claim, title in ((0, "C2", "C2: tied and untied at equal width"),
                              (1, "C8", "C8: contest cores (equal parameters)")):  # fmt: skip
        ax, ax_s = axes[0][col], axes[1][col]
        runs = for_claim(t["runs"], claim)
        length = for_claim(t["length"], claim)
        if length.empty:
            _empty(ax)
        else:
            stream = length[(length["split"] == "val") & (length["mode"] == "stream")]
            at_t = stream[stream["length"] == 20].set_index("name")["ppl"] if (stream["length"] == 20).any() else None
            if at_t is not None:
                _mean_line(ax, stream.assign(rel=stream["ppl"] / stream["name"].map(at_t)), "length", "rel")
                _near_one(ax)
                ax.axvline(20, color="grey", ls=":", lw=1)
                ax.set_ylabel("val ppl / val ppl at T = 20")
            else:
                _mean_line(ax, stream, "length", "ppl")
                ax.set_ylabel("val ppl")
            _plain_log_x(ax, stream["length"])
            ax.set(xlabel="evaluation window length (state carried)")
            _title(ax, f"{title}, windows", runs, ptb=True)
            ax.legend(fontsize=8)
        _sentences(ax_s, for_claim(t.get("sentence_length", pd.DataFrame()), claim), f"{title}, sentences", runs)
    return _save(fig, out, "length.png")


def _near_one(ax) -> None:
    """A ratio axis that shows 1 plainly: tied alone is 1.000 everywhere, no 1e-10 offset."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, 0.95), max(hi, 1.05))
    ax.ticklabel_format(axis="y", useOffset=False)


def _sentences(ax, sentences: pd.DataFrame, title: str, runs: pd.DataFrame, seq_len: int = 20,
               min_sentences: int = 50) -> None:  # fmt: skip
    """Per core, ppl by sentence-length bin / the run's ppl on sentences up to ``seq_len`` (token-weighted; mean over
    seeds, 95% band); the longest bins are pooled into one holding >= ``min_sentences``. The untied core reuses its
    last weight set past ``seq_len`` (the dotted line)."""
    val = sentences[sentences["split"] == "val"] if not sentences.empty else sentences
    if val.empty or "bin_lo" not in val:
        return _empty(ax)
    bins = val.groupby("length").agg(lo=("bin_lo", "first"), n=("sentences", "max")).sort_index()
    last = len(bins) - 1  # the first bin of the pooled tail
    beyond = int((bins.index <= seq_len).sum())  # the first bin past seq_len: never pooled with those up to it
    while last > beyond and bins["n"].iloc[last:].sum() < min_sentences:
        last -= 1
    bins["pos"] = np.minimum(np.arange(len(bins)), last)
    val = val.assign(pos=val["length"].map(bins["pos"]), weighted=val["loss"] * val["tokens"])
    pooled = val.groupby(["core", "name", "pos"], as_index=False)[["weighted", "tokens"]].sum()
    pooled["ppl"] = np.exp(pooled["weighted"] / pooled["tokens"])
    short = val[val["length"] <= seq_len].groupby("name")
    base = np.exp(short["weighted"].sum() / short["tokens"].sum())
    _mean_line(ax, pooled.assign(rel=pooled["ppl"] / pooled["name"].map(base)), "pos", "rel")
    _near_one(ax)
    ax.axvline(bins.loc[bins.index <= seq_len, "pos"].max() + 0.5, color="grey", ls=":", lw=1)
    ticks = bins.reset_index().groupby("pos").agg(lo=("lo", "min"), hi=("length", "max"), n=("n", "sum"))
    ax.set_xticks(ticks.index, [f"{r.lo:.0f}–{r.hi:.0f}\n({r.n:,.0f})" for r in ticks.itertuples()], fontsize=8)
    ax.set(xlabel="sentence length in tokens (number of sentences)", ylabel=f"val ppl / val ppl, sentences ≤ {seq_len}")
    _title(ax, title, runs, ptb=True)
    ax.legend(fontsize=8)


def _lines_vs_t(ax, m: pd.DataFrame, y: str) -> None:
    """One line per core of measurement column ``y`` against T."""
    for core in _order(m["core"]):
        g = m[m["core"] == core].sort_values("T")
        ax.plot(g["T"], g[y], marker=MARKERS.get(core, "o"), mfc="none", ms=8, label=core, color=COLORS.get(core))


def params_vs_t(t: Tables, m: pd.DataFrame, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    if m.empty:
        _empty(ax)
    else:
        _lines_vs_t(ax, m, "core_params")
        ax.set(yscale="log", xlabel="window length T (untied: one weight set per step)", ylabel="core parameters")
        _plain_log_x(ax, m["T"])
        _title(ax, f"C1/C5: recurrent-core parameters vs T (2 layers, H={int(m['hidden'].iloc[0])})")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="major")
    return _save(fig, out, "params_vs_T.png")


def cost_vs_t(t: Tables, m: pd.DataFrame, out: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, y, label in (
        (axes[0], "weight_mb", "weights (MB)"),
        (axes[1], "saved_mb", "activations saved for backward (MB)"),
        (axes[2], "tokens_per_s", "fwd+bwd tokens/s"),
    ):
        if m.empty:
            _empty(ax)
            continue
        _lines_vs_t(ax, m, y)
        ax.set(yscale="log", xlabel="window length T", ylabel=label)
        _plain_log_x(ax, m["T"])
        ax.grid(alpha=0.3, which="major")
    axes[0].legend(fontsize=7)
    threads = int(m["threads"].iloc[0]) if not m.empty and "threads" in m else 1
    repeats = f", median of {int(m['repeats'].iloc[0])}" if "repeats" in m else ""
    fig.suptitle(
        f"C5: cost vs window length (H={int(m['hidden'].iloc[0]) if not m.empty else '?'}, batch 20, {threads} "
        f"thread{'s' if threads > 1 else ''}{repeats}); profile {PROFILE['name'] or '?'}"
    )
    return _save(fig, out, "cost_vs_T.png")


def recall_heatmap(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """C6: test accuracy per (lag D, truncation k) with the state carried across windows, with it reset at every
    window (the control), and their difference (what the carried state adds), per core; means over seeds."""
    runs = for_claim(t["runs"], "C6")
    cores = _order(runs["core"]) if not runs.empty else ["tied"]
    panels = [(core, state) for core in cores for state in ("carried", "reset", "carried - reset")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (core, state) in zip(axes[0], panels, strict=True):
        g = runs[runs["core"] == core] if not runs.empty else runs
        if g.empty or "test_acc" not in g or "state" not in g or g["test_acc"].isna().all():
            _empty(ax)
            continue
        g = g.assign(k=g["k1"].astype(int).astype(str) + "/" + g["k2"].astype(int).astype(str))

        def table(which: str, g: pd.DataFrame = g) -> pd.DataFrame:
            return g[g["state"] == which].pivot_table(index="D", columns="k", values="test_acc", aggfunc="mean")

        diff = state == "carried - reset"
        p = table("carried") - table("reset") if diff else table(state)
        p = p[sorted(p.columns, key=lambda s: tuple(int(v) for v in s.split("/")))]
        if p.empty or np.isnan(p.values).all():
            _empty(ax)
            continue
        vmin, vmax, cmap = (-0.5, 0.5, "RdBu") if diff else (0.0, 1.0, "viridis")
        im = ax.imshow(p.values, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
        for i, d in enumerate(p.index):
            for j, k in enumerate(p.columns):
                v = p.values[i, j]
                if np.isnan(v):  # not a cell of the grid (D in {k, k + 1, 2k} and a control per k)
                    continue
                text = f"{v:+.2f}" if diff else f"{v:.2f}"
                dark = abs(v) > 0.3 if diff else v < 0.6
                ax.text(j, i, text + ("*" if d >= int(k.split("/")[1]) else ""), ha="center", va="center",
                        color="w" if dark else "k", fontsize=9)  # fmt: skip
        ax.set_xticks(range(len(p.columns)), p.columns)
        ax.set_yticks(range(len(p.index)), [int(d) for d in p.index])
        ax.set(xlabel="truncation k1/k2", ylabel="lag D")
        n = g.groupby(["D", "k", "state"]).size()
        _title(ax, f"C6 {core}, state {state} (* D >= k2; n={n.min()}-{n.max()} seeds)", g)
        label = "accuracy difference" if diff else f"test accuracy (chance {CHANCE:.3f})"
        fig.colorbar(im, ax=ax, label=label)
    return _save(fig, out, "recall_heatmap.png")


def data_fraction(t: Tables, m: pd.DataFrame, out: Path) -> str:
    runs = c4_runs(t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    if runs.empty:
        _empty(axes[0]), _empty(axes[1])
        return _save(fig, out, "data_fraction.png")
    _mean_line(axes[0], runs, "fraction", "best_val_ppl", log=True)
    axes[0].set(yscale="log", ylabel="best validation perplexity")
    _plain_log_x(axes[0], runs["fraction"])
    _title(axes[0], "C4: validation perplexity vs training data", runs, ptb=True)
    axes[0].legend(fontsize=8)
    train = pd.to_numeric(runs["train_eval_ppl"], errors="coerce") if "train_eval_ppl" in runs else None
    if train is None or train.dropna().empty:
        _empty(axes[1], "no eval-mode train perplexity in these runs")
    else:
        _mean_line(axes[1], runs.assign(gap=runs["best_val_ppl"] / train), "fraction", "gap", log=True)
        axes[1].axhline(1.0, color="grey", ls=":", lw=1)
        axes[1].set(yscale="log", ylabel="best val ppl / eval-mode train ppl")
        _plain_log_x(axes[1], runs["fraction"])
        axes[1].legend(fontsize=8)
    _title(axes[1], "C4: generalization gap at the best checkpoint", runs, ptb=True)
    for ax in axes:
        ax.set_xlabel("fraction of PTB training data")
        ax.grid(alpha=0.3, which="major")
    return _save(fig, out, "data_fraction.png")


def time_to_target_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    curves, runs = for_claim(t["curves"], "C10"), for_claim(t["runs"], "C10")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if curves.empty or "val/ppl" not in curves or curves["val/ppl"].dropna().empty:
        _empty(axes[0]), _empty(axes[1])
        return _save(fig, out, "time_to_target.png")
    target, _ = time_to_target(curves)
    val = curves.dropna(subset=["val/ppl"]).assign(epoch=lambda d: _epochs(d))
    tp = t.get("throughput", pd.DataFrame())
    tp = tp[tp["quiet"].map(lambda x: str(x).lower() in ("true", "1", "1.0"))] if "quiet" in tp else tp.iloc[:0]
    speed = tp.groupby("core")["tokens_per_s"].mean() if not tp.empty else pd.Series(dtype=float)
    quiet = set(val["core"]) <= set(speed.index)
    if quiet:  # seconds at the core's throughput measured alone on the machine (C10's rule)
        val = val.assign(seconds=val["tokens"] / val["core"].map(speed))
    x0, label0 = ("seconds", "seconds of training at the quiet throughput") if quiet else ("wall_s", "wall seconds")
    for ax, x, label in ((axes[0], x0, label0), (axes[1], "epoch", "epochs of PTB")):
        for _, g in val.groupby("name"):
            core = g["core"].iloc[0]
            ax.plot(g[x], g["val/ppl"], marker="o", ms=3, color=COLORS.get(core), alpha=0.8, label=core)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.text(ax.get_xlim()[1], target, f"target {target:.0f} ", ha="right", va="bottom", color="grey", fontsize=8)
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
        ax.set(yscale="log", xlabel=label, ylabel="validation perplexity")
        ax.grid(alpha=0.3, which="major")
    _title(axes[0], "C10: time to the target" + ("" if quiet else " (NOT quiet timings)"), runs, curves, ptb=True)
    _title(axes[1], "C10: data to the target (one line per run)", runs, curves, ptb=True)
    return _save(fig, out, "time_to_target.png")


def _matching_keys(rows: pd.DataFrame) -> pd.Series:
    """Each contest row's matching key ("width", "params"); a row without one is equal parameters."""
    return rows["matching"].fillna("params") if "matching" in rows else pd.Series("params", index=rows.index)


def _of_matching(rows: pd.DataFrame, matching: str) -> pd.DataFrame:
    """The contest rows (runs or curves) of one matching, by its display name ("equal width")."""
    return rows[_matching_keys(rows).map(lambda k: MATCHINGS.get(k, k)) == matching]


def contest_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """Per matching: each core's test perplexity (geometric mean over seeds, 95% interval) on a log axis, tied's
    interval as a band, the ratio to tied and the Holm-adjusted outcome written beside each core."""
    runs = expand_both(finished(for_claim(t["runs"], "contest"), "test_ppl"))
    table = contest_table(runs) if not runs.empty else pd.DataFrame()
    rule = for_claim(t["runs"], "C3")
    rule = rule[rule["task"] == "rule"] if "task" in rule else rule.iloc[:0]
    groups = list(table.groupby("matching", sort=False)) if not table.empty else []
    n = max(len(groups), 1) + (not rule.empty)
    rows = max((len(g) for _, g in groups), default=5)
    fig, axes = plt.subplots(1, n, figsize=(5.8 * n, 0.75 * max(rows, 5) + 1.8), squeeze=False, layout="constrained")
    axes = list(axes[0])
    if not groups:
        _empty(axes[0])
    for ax, (matching, g) in zip(axes, groups, strict=False):
        g = g.iloc[::-1].reset_index(drop=True)  # best at the top
        mruns = _of_matching(runs, matching)
        tied = g[g["core"] == "tied"]
        if len(tied) and np.isfinite(tied["test_lo95"].iloc[0]):
            ax.axvspan(tied["test_lo95"].iloc[0], tied["test_hi95"].iloc[0], color=COLORS["tied"], alpha=0.15,
                       label="tied's 95% interval")  # fmt: skip
        for i, r in g.iterrows():
            err = [[r["test_ppl"] - r["test_lo95"]], [r["test_hi95"] - r["test_ppl"]]]
            ax.errorbar([r["test_ppl"]], [i], xerr=err if np.isfinite(r["test_lo95"]) else None, fmt="o", ms=7,
                        capsize=4, color=COLORS.get(r["core"]))  # fmt: skip
            seeds = mruns[mruns["core"] == r["core"]]
            ax.scatter(seeds["test_ppl"], np.full(len(seeds), i) - 0.18, color="k", s=7, alpha=0.6)
        labels = []
        for r in g.itertuples():
            label = r.core + (f" (lr {r.lr})" if r.lr != "n/a" else "")
            if r.core != "tied" and np.isfinite(r.ratio_lo95):
                label += f"\n×{r.ratio_vs_tied:.3f} [{r.ratio_lo95:.3f}, {r.ratio_hi95:.3f}]\n{r.result}"
            elif r.core != "tied":  # one seed: no interval, no test yet
                label += f"\n×{r.ratio_vs_tied:.3f}\n({r.n} seed{'s' * (r.n != 1)}: no interval yet)"
            labels.append(label + ("" if r.converged == "yes" else " (not converged)"))
        ax.set_yticks(range(len(g)), labels, fontsize=8)
        ax.set_xscale("log")
        lo, hi = np.nanmin(g["test_lo95"].fillna(g["test_ppl"])), np.nanmax(g["test_hi95"].fillna(g["test_ppl"]))
        ax.set_xlim(lo / 1.04, hi * 1.04)
        ax.set_ylim(-0.6, len(g) - 0.4)
        ax.set_xlabel("test perplexity, lower is better")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3, which="both", axis="x")
        _title(ax, f"contest, {matching}: each core vs tied", mruns, ptb=True)
    if not rule.empty:
        _points(axes[-1], rule, "test_acc", "test accuracy", chance=CHANCE)
        axes[-1].set_ylim(0, 1.05)
        _title(axes[-1], "C3: position-dependent rules", rule)
    if groups:  # said once for every panel (two long axis labels ran into each other)
        fig.supxlabel("points: geometric mean over seeds with its 95% interval; dots: seeds; "
                      "labels: ratio to tied [95% interval], Holm-adjusted outcome", fontsize=9)  # fmt: skip
    return _save(fig, out, "contest.png")


KIND_COLORS = {"tied": "tab:blue", "by position": "tab:pink", "by content": "tab:orange"}  # as tied, untied, lexical


def untying_kinds_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """Which kind of untying helps: per matching, every core's test ppl as a ratio to tied's (95% interval, log
    axis), grouped tied | by position | by content; 1 = as good as tied."""
    runs = expand_both(finished(for_claim(t["runs"], "contest"), "test_ppl"))
    table = contest_table(runs) if not runs.empty and "tied" in set(runs["core"]) else pd.DataFrame()
    groups = list(table.groupby("matching", sort=False)) if not table.empty else []
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(6.2 * max(len(groups), 1), 4.4), squeeze=False)
    if not groups:
        _empty(axes[0][0])
    order = {"tied": 0, "by position": 1, "by content": 2}
    for ax, (matching, g) in zip(axes[0], groups, strict=False):
        g = g.assign(kind=g["core"].map(untying_kind))
        g = g.sort_values(["kind", "ratio_vs_tied"], key=lambda c: c.map(order) if c.name == "kind" else c)
        g = g.reset_index(drop=True)
        for i, r in g.iterrows():
            lo, hi = r["ratio_lo95"], r["ratio_hi95"]
            err = [[r["ratio_vs_tied"] - lo], [hi - r["ratio_vs_tied"]]] if np.isfinite(lo) else None
            ax.errorbar([i], [r["ratio_vs_tied"]], yerr=err, fmt="o", ms=7, capsize=4, color=KIND_COLORS[r["kind"]])
            if r["core"] != "tied":  # the ratio beside its point: near 1 the axis alone does not say it
                ax.annotate(f"×{r['ratio_vs_tied']:.3f}", (i, r["ratio_vs_tied"]), xytext=(9, 0),
                            textcoords="offset points", va="center", fontsize=8,
                            bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
        for kind, kg in g.groupby("kind"):  # the kind names above the frame, never on a point
            ax.text(kg.index.to_numpy().mean(), 1.01, kind, ha="center", va="bottom", fontsize=10, weight="bold",
                    color=KIND_COLORS[kind], transform=ax.get_xaxis_transform())  # fmt: skip
        bounds = [i - 0.5 for i in range(1, len(g)) if g["kind"].iloc[i] != g["kind"].iloc[i - 1]]
        for b in bounds:
            ax.axvline(b, color="0.8", lw=1)
        ax.axhline(1.0, color="grey", ls=":", lw=1.2)
        ax.set_xticks(range(len(g)), g["core"], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(g) - 0.4)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set_ylabel("test ppl / tied's (95% interval); below 1 beats tied")
        ax.grid(alpha=0.3, which="major", axis="y")
        _title(ax, f"which kind of untying helps? {matching}", _of_matching(runs, matching), ptb=True, pad=20)
    return _save(fig, out, "untying_kinds.png")


def tuning_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """Tuning: best validation perplexity after the short budget against the lr, one line per (core, strength,
    structure), per matching; the setting each core's contest runs took is ringed; diverged runs at the top."""
    tun = t.get("tuning", pd.DataFrame())
    tun = tun[tun["status"].isin(["completed", "diverged"])] if "status" in tun else tun.iloc[:0]
    matchings = [k for k in MATCHINGS if not tun.empty and (tun["matching"] == k).any()]
    fig, axes = plt.subplots(1, max(len(matchings), 1), figsize=(6.4 * max(len(matchings), 1), 4.4), squeeze=False)
    if not matchings:
        _empty(axes[0][0])
    for ax, matching in zip(axes[0], matchings, strict=False):
        g = tun[tun["matching"] == matching]
        done = g.loc[g["status"] == "completed", "best_val_ppl"].astype(float)
        top = done.max() * 1.15 if done.notna().any() else 1000.0
        extra = [c for c in ("reg", "num_sets") if c in g and g[c].notna().any()]
        diverged = False
        for keys, line in g.groupby(["core", *extra], dropna=False, sort=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            core = keys[0]
            label = core + "".join(f", {c} {v:g}" for c, v in zip(extra, keys[1:], strict=True) if v == v)
            line = line.sort_values("lr")
            ok = line["status"] == "completed"
            ls = "-" if len(keys) < 2 or keys[1] != keys[1] or keys[1] == min(g[extra[0]].dropna()) else "--"
            marker = MARKERS.get(core, "o")
            if "num_sets" in extra and keys[1 + extra.index("num_sets")] == keys[1 + extra.index("num_sets")]:
                sets = sorted(g["num_sets"].dropna().unique())  # a structure variant: its own marker, one per value
                marker = "sD^v"[sets.index(keys[1 + extra.index("num_sets")]) % 4]
            ax.plot(line["lr"][ok], line["best_val_ppl"][ok].astype(float), marker=marker, ms=5, ls=ls,
                    color=COLORS.get(core), label=label)  # fmt: skip
            ax.scatter(line["lr"][~ok], np.full(int((~ok).sum()), top), marker="x", s=60, color=COLORS.get(core))
            diverged = diverged or bool((~ok).any())
            chosen = line[line["chosen"].map(lambda x: str(x).lower() in ("true", "1"))]
            ax.scatter(chosen["lr"], chosen["best_val_ppl"], s=160, facecolors="none", edgecolors="k", zorder=5)
        ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="best validation perplexity (1 epoch)")
        _plain_log_x(ax, g["lr"])
        _plain_log(ax.yaxis)
        ax.grid(alpha=0.3, which="major")
        if diverged:
            ax.scatter([], [], marker="x", s=60, color="0.4", label="diverged (drawn at the top)")
        ax.legend(fontsize=7, ncol=2, loc="best")
        _title(ax, f"tuning, {MATCHINGS[matching]} (ringed: the contest's choice)", g)
    return _save(fig, out, "tuning.png")


def capacity_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    runs = for_claim(t["runs"], "C7")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    task = runs["task"] if "task" in runs else pd.Series("", index=runs.index)
    _points(axes[0], runs[task == "rule"], "test_acc", "test accuracy", chance=CHANCE)
    axes[0].set_ylim(0, 1.05)
    _title(axes[0], "C7: position rule, tied widened to untied's parameters", runs[task == "rule"])
    _points(axes[1], finished(runs[task != "rule"], "test_ppl"), "test_ppl", "test ppl (the rule's quantity)", log=True)
    _title(axes[1], "C7: PTB at equal parameters", runs[task != "rule"], ptb=True)
    return _save(fig, out, "capacity.png")


def recurrence_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    """C9, PTB validation, the equal-width runs. Left, within a window: per core, val ppl with the cell state c
    zeroed before every step (and with h and c zeroed) relative to carried, windows of T: geometric mean over seeds
    with its 95% interval; 1 = the cell carries nothing. Right, across windows: val ppl by window length with the
    state carried from window to window vs reset at every window (mean over seeds)."""
    rec = for_claim(t.get("recurrence", pd.DataFrame()), "C9")
    sr = for_claim(t.get("state_reset", pd.DataFrame()), "C9")
    fig, (ax, ax_sr) = plt.subplots(1, 2, figsize=(12, 4.2))
    runs = for_claim(t["runs"], "C9")
    if rec.empty:
        _empty(ax)
    else:
        _cell_zeroed(ax, rec[rec["split"] == "val"])
        _title(ax, "C9, within a window: the cell zeroed every step", runs, ptb=True)
    if sr.empty:
        _empty(ax_sr)
    else:
        sr = sr[sr["split"] == "val"]
        for core in _order(sr["core"]):
            for state, ls in (("carried", "-"), ("reset", "--")):
                g = sr[(sr["core"] == core) & (sr["state"] == state)].groupby("length")["ppl"].mean()
                ax_sr.plot(g.index, g.values, ls=ls, marker="o", ms=3, color=COLORS.get(core),
                           label=f"{core}, state {state}")  # fmt: skip
        ax_sr.set(yscale="log", xlabel="evaluation window length", ylabel="val ppl")
        _plain_log_x(ax_sr, sr["length"])
        _title(ax_sr, "across windows: state carried vs reset at every window", runs, ptb=True)
        ax_sr.legend(fontsize=8)
    return _save(fig, out, "recurrence.png")


def _cell_zeroed(ax, rec: pd.DataFrame) -> None:
    """Per core, ppl with c (and with h and c) zeroed every step / ppl carried, one point per state."""
    wide = rec.pivot_table(index=["name", "core"], columns="state", values="ppl").reset_index()
    cores = _order(wide["core"])
    for dx, (state, marker, label) in enumerate(
        (("cell_zeroed", "o", "c zeroed every step"), ("state_zeroed", "s", "h and c zeroed every step"))
    ):
        if state not in wide:
            continue
        for i, core in enumerate(cores):
            v = (wide.loc[wide["core"] == core, state] / wide.loc[wide["core"] == core, "carried"]).dropna()
            mean, lo, hi = _mean_band(np.zeros(1), [v.to_numpy(float)], log=True)
            err = np.array([[mean[0] - lo[0]], [hi[0] - mean[0]]]) if np.isfinite(lo[0]) else None
            ax.errorbar([i + 0.15 * dx], mean, yerr=err, fmt=marker, ms=7, capsize=4, color=COLORS.get(core),
                        label=label if i == 0 else None)  # fmt: skip
            ax.scatter(np.full(len(v), i + 0.15 * dx + 0.07), v, color="k", s=8, alpha=0.6, zorder=4)
    ax.axhline(1.0, color="grey", ls=":", lw=1.2)
    ax.text(len(cores) - 0.5, 1.0, " carried (= 1)", va="bottom", ha="right", color="grey", fontsize=8)
    ax.set_xticks(range(len(cores)), cores)
    ax.set_xlim(-0.5, len(cores) - 0.2)
    ax.set(yscale="log", ylabel="val ppl / val ppl carried (windows of T)")
    _plain_log(ax.yaxis)
    ax.legend(fontsize=8)


FIGURES: list[Callable[[Tables, pd.DataFrame, Path], str]] = [
    learning_curves,
    length_generalization,
    params_vs_t,
    cost_vs_t,
    recall_heatmap,
    data_fraction,
    time_to_target_fig,
    contest_fig,
    capacity_fig,
    recurrence_fig,
    untying_kinds_fig,
    tuning_fig,
]


def make_figures(tables: Tables, measure: pd.DataFrame, out: Path, profile: str = "") -> list[str]:
    """Every figure of ``FIGURES`` into ``out``; ``profile`` goes into the titles."""
    out.mkdir(parents=True, exist_ok=True)
    PROFILE["name"] = profile
    return [f(tables, measure, out) for f in FIGURES]
