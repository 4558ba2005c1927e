"""The report's figures (matplotlib, Agg): one function per figure, each ``(tables, measure, out_dir) -> file name``.
Lines and bars are means over seeds; shaded bands and error bars are one standard deviation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lrnn.paper.collect import for_claim  # noqa: E402
from lrnn.paper.grid import CORE_ORDER  # noqa: E402
from lrnn.paper.verdicts import time_to_target  # noqa: E402

Tables = dict[str, pd.DataFrame]
COLORS = dict(zip(CORE_ORDER, plt.get_cmap("tab10").colors, strict=False))


def _order(cores) -> list[str]:
    cores = list(dict.fromkeys(cores))
    return sorted(cores, key=lambda c: CORE_ORDER.index(c) if c in CORE_ORDER else len(CORE_ORDER))


def _empty(ax, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")


def _save(fig, out: Path, name: str) -> str:
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for ax in fig.axes:  # log y axes: 150, 200 rather than 1.5x10^2
        if ax.get_yscale() == "log":
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _plain_log_x(ax, values) -> None:
    """Log x axis labelled with the values themselves (not powers)."""
    ticks = sorted({float(v) for v in values})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _mean_line(ax, df: pd.DataFrame, x: str, y: str, label_by: str = "core") -> None:
    for core in _order(df[label_by]):
        g = df[df[label_by] == core].groupby(x)[y].agg(["mean", "std"]).reset_index().sort_values(x)
        ax.plot(g[x], g["mean"], marker="o", ms=3, label=core, color=COLORS.get(core))
        ax.fill_between(
            g[x], g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), alpha=0.2, color=COLORS.get(core)
        )


def _bars(ax, df: pd.DataFrame, y: str, ylabel: str) -> None:
    if df.empty or y not in df or df[y].dropna().empty:
        return _empty(ax)
    cores = _order(df["core"])
    g = df.groupby("core")[y].agg(["mean", "std"]).reindex(cores)
    ax.bar(range(len(cores)), g["mean"], yerr=g["std"].fillna(0), color=[COLORS.get(c) for c in cores], capsize=3)
    for i, c in enumerate(cores):  # the seeds themselves
        v = df[df["core"] == c][y].dropna()
        ax.scatter(np.full(len(v), i), v, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(cores)), cores, rotation=30, ha="right")
    ax.set_ylabel(ylabel)


def learning_curves(t: Tables, m: pd.DataFrame, out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, claim, title in (
        (axes[0], "C10", "Zaremba small, no dropout, all data"),
        (axes[1], "contest", "equal parameters, dropout (contest)"),
    ):
        c = for_claim(t["curves"], claim)
        c = c.dropna(subset=["val/ppl"]) if "val/ppl" in c else c.iloc[:0]
        if c.empty:
            _empty(ax)
        else:
            _mean_line(ax, c, "tokens", "val/ppl")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set(title=title, xlabel="training tokens", ylabel="validation perplexity")
    return _save(fig, out, "learning_curves.png")


def length_generalization(t: Tables, m: pd.DataFrame, out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, claim, title in (
        (axes[0], "C2", "C2: Zaremba small, no dropout"),
        (axes[1], "C8", "C8: contest cores (equal parameters)"),
    ):
        length = for_claim(t["length"], claim)
        if length.empty:
            _empty(ax)
            continue
        stream = length[(length["split"] == "val") & (length["mode"] == "stream")]
        at_t = stream[stream["length"] == 20].set_index("name")["ppl"] if (stream["length"] == 20).any() else None
        if at_t is not None:
            stream = stream.assign(rel=stream["ppl"] / stream["name"].map(at_t))
            _mean_line(ax, stream, "length", "rel")
            ax.axvline(20, color="grey", ls=":", lw=1)
            ax.set_ylabel("val ppl / val ppl at T = 20")
        else:
            _mean_line(ax, stream, "length", "ppl")
            ax.set_ylabel("val ppl")
        _plain_log_x(ax, stream["length"])
        ax.set(title=title, xlabel="evaluation window length (state carried)")
        ax.legend(fontsize=8)
    return _save(fig, out, "length.png")


def _lines_vs_t(ax, m: pd.DataFrame, y: str) -> None:
    """One line per core of measurement column ``y`` against T."""
    for core in _order(m["core"]):
        g = m[m["core"] == core].sort_values("T")
        ax.plot(g["T"], g[y], marker="o", label=core, color=COLORS.get(core))


def params_vs_t(t: Tables, m: pd.DataFrame, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    if m.empty:
        _empty(ax)
    else:
        _lines_vs_t(ax, m, "core_params")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="window length T (weight sets = T)",
            ylabel="core parameters",
            title=f"C1/C5: parameters vs T (2 layers, H={int(m['hidden'].iloc[0])})",
        )
        ax.legend(fontsize=8)
    return _save(fig, out, "params_vs_T.png")


def cost_vs_t(t: Tables, m: pd.DataFrame, out: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, y, label in (
        (axes[0], "weight_mb", "weights (MB)"),
        (axes[1], "saved_mb", "activations saved (MB)"),
        (axes[2], "tokens_per_s", "fwd+bwd tokens/s"),
    ):
        if m.empty:
            _empty(ax)
            continue
        _lines_vs_t(ax, m, y)
        ax.set(yscale="log", xlabel="T", ylabel=label)
        _plain_log_x(ax, m["T"])
    axes[0].legend(fontsize=7)
    fig.suptitle("C5: cost vs window length (batch 20, one thread)")
    return _save(fig, out, "cost_vs_T.png")


def recall_heatmap(t: Tables, m: pd.DataFrame, out: Path) -> str:
    runs = for_claim(t["runs"], "C6")
    cores = _order(runs["core"]) if not runs.empty else ["tied"]
    fig, axes = plt.subplots(1, len(cores), figsize=(5 * len(cores), 3.8), squeeze=False)
    for ax, core in zip(axes[0], cores, strict=True):
        g = runs[runs["core"] == core] if not runs.empty else runs
        if g.empty or "test_acc" not in g:
            _empty(ax)
            continue
        g = g.assign(k=g["k1"].astype(int).astype(str) + "/" + g["k2"].astype(int).astype(str))
        p = g.pivot_table(index="D", columns="k", values="test_acc", aggfunc="mean")
        p = p[sorted(p.columns, key=lambda s: tuple(int(v) for v in s.split("/")))]
        im = ax.imshow(p.values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i, d in enumerate(p.index):
            for j, k in enumerate(p.columns):
                beyond = d >= int(k.split("/")[1])
                ax.text(
                    j,
                    i,
                    f"{p.values[i, j]:.2f}" + ("*" if beyond else ""),
                    ha="center",
                    va="center",
                    color="w" if p.values[i, j] < 0.6 else "k",
                    fontsize=9,
                )
        ax.set_xticks(range(len(p.columns)), p.columns)
        ax.set_yticks(range(len(p.index)), [int(d) for d in p.index])
        ax.set(xlabel="truncation k1/k2", ylabel="lag D", title=f"C6 {core}: test accuracy (* D >= k2)")
        fig.colorbar(im, ax=ax)
    return _save(fig, out, "recall_heatmap.png")


def data_fraction(t: Tables, m: pd.DataFrame, out: Path) -> str:
    runs = for_claim(t["runs"], "C4")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if runs.empty or "fraction" not in runs or runs["best_val_ppl"].dropna().empty:
        _empty(axes[0]), _empty(axes[1])
    else:
        _mean_line(axes[0], runs, "fraction", "best_val_ppl")
        axes[0].set(
            xscale="log",
            yscale="log",
            xlabel="fraction of PTB training data",
            ylabel="best val ppl",
            title="C4: validation perplexity vs data",
        )
        gap = runs.assign(gap=runs["val_ppl_last"] / runs["train_ppl_last"])
        _mean_line(axes[1], gap, "fraction", "gap")
        axes[1].set(
            xscale="log",
            xlabel="fraction of PTB training data",
            ylabel="last val ppl / last train ppl",
            title="C4: generalization gap",
        )
        axes[0].legend(fontsize=8)
    return _save(fig, out, "data_fraction.png")


def time_to_target_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    curves = for_claim(t["curves"], "C10")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if curves.empty or "val/ppl" not in curves or curves["val/ppl"].dropna().empty:
        _empty(ax)
    else:
        target, _ = time_to_target(curves)
        val = curves.dropna(subset=["val/ppl"])
        for _, g in val.groupby("name"):
            ax.plot(
                g["wall_s"],
                g["val/ppl"],
                marker="o",
                ms=3,
                color=COLORS.get(g["core"].iloc[0]),
                alpha=0.8,
                label=g["core"].iloc[0],
            )
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
        ax.set(yscale="log", xlabel="wall seconds (fit)", ylabel="val ppl", title=f"C10: time to val ppl {target:.0f}")
    return _save(fig, out, "time_to_target.png")


def contest_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    runs = t["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    text = for_claim(runs, "contest")
    _bars(axes[0], text, "best_val_ppl", "best val ppl")
    axes[0].set_title("contest / C3 text: PTB, equal parameters, dropout")
    rule = for_claim(runs, "C3")
    rule = rule[rule["task"] == "rule"] if "task" in rule else rule.iloc[:0]
    _bars(axes[1], rule, "test_acc", "test accuracy")
    axes[1].axhline(1 / 8, color="grey", ls=":", lw=1)
    axes[1].set_title("C3: position-dependent rules (chance 1/8)")
    return _save(fig, out, "contest.png")


def capacity_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    runs = for_claim(t["runs"], "C7")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    task = runs["task"] if "task" in runs else pd.Series("", index=runs.index)
    _bars(axes[0], runs[task == "rule"], "test_acc", "test accuracy")
    axes[0].set_title("C7: position rule, tied widened to untied's parameters")
    _bars(axes[1], runs[task != "rule"], "best_val_ppl", "best val ppl")
    axes[1].set_title("C7: PTB at equal parameters")
    return _save(fig, out, "capacity.png")


def state_reset_fig(t: Tables, m: pd.DataFrame, out: Path) -> str:
    sr = for_claim(t["state_reset"], "C9")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if sr.empty:
        _empty(ax)
    else:
        sr = sr[sr["split"] == "val"]
        for core in _order(sr["core"]):
            for state, ls in (("carried", "-"), ("reset", "--")):
                g = sr[(sr["core"] == core) & (sr["state"] == state)].groupby("length")["ppl"].mean()
                ax.plot(g.index, g.values, ls=ls, marker="o", ms=3, color=COLORS.get(core), label=f"{core} {state}")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="window length",
            ylabel="val ppl",
            title="C9: state carried across windows vs reset",
        )
        ax.legend(fontsize=8)
    return _save(fig, out, "state_reset.png")


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
    state_reset_fig,
]


def make_figures(tables: Tables, measure: pd.DataFrame, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [f(tables, measure, out) for f in FIGURES]
