"""Figures on made-up tables: readable log ticks, the budget in titles, the contest as points on a log axis."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lrnn.paper import figures as F


def test_human_tick_labels() -> None:
    assert [F.human(v) for v in (0, 250, 2000, 15000, 2.5e6, 1e8)] == ["0", "250", "2k", "15k", "2.5M", "100M"]


def test_log_axes_get_plain_labels(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([5e5, 1e8], [240, 800])
    ax.set(xscale="log", yscale="log")
    F._save(fig, tmp_path, "x.png")
    fig.canvas.draw()
    ys = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    xs = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "300" in ys and "500" in ys and not any("e+" in v or "^" in v for v in xs + ys)
    assert "1M" in xs and "10M" in xs


def test_narrow_log_axis_labels_its_low_end(tmp_path: Path) -> None:
    # learning curves from ~105 to ~370: a label near the converged end, not only every 50 from 150 up
    fig, ax = plt.subplots()
    ax.plot([0, 8], [370, 105])
    ax.set_yscale("log")
    ax.set_ylim(100.5, 380)
    F._save(fig, tmp_path, "x.png")
    fig.canvas.draw()
    ys = [float(t.get_text()) for t in ax.get_yticklabels() if t.get_text() and 100.5 <= t.get_position()[1] <= 380]
    assert min(ys) <= 120 and len(ys) >= 5, ys


@pytest.mark.parametrize(("lo", "hi"), [(105, 520), (102, 530), (0.01, 1.0), (1, 1e5)])  # 100.5-380: the test above
def test_log_axis_labels_its_low_end_with_five_to_nine_labels_or_one_per_decade(
    tmp_path: Path, lo: float, hi: float
) -> None:
    # 102-530: C4's validation perplexities (tied 113 at all data), once labelled only from 150 up
    fig, ax = plt.subplots()
    ax.plot([0, 1], [lo, hi])
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    F._save(fig, tmp_path, "x.png")
    fig.canvas.draw()
    ys = [float(t.get_text().replace("k", "e3")) for t in ax.get_yticklabels() if t.get_text()]
    ys = [y for y in ys if lo <= y <= hi]
    assert min(ys) <= 1.3 * lo and 5 <= len(ys) <= max(9, 3 * math.log10(hi / lo) + 1), ys


def test_budget_in_title_reads_the_runs() -> None:
    runs = pd.DataFrame({"core": ["tied"] * 3 + ["untied"] * 3, "seed": [0, 1, 2] * 2, "steps": [100, 120, 90] * 2,
                         "best_val_ppl": 100.0, "converged": [True] * 5 + [False]})  # fmt: skip
    F.PROFILE["name"] = "converged"
    try:
        assert F.budget(runs, ptb=True) == "profile converged, 90–120 updates, 3 seeds, NOT converged"
        assert F.budget(runs.assign(converged=True), ptb=True).endswith("3 seeds, converged")
        # runs.csv lists planned runs too: the title counts the seeds that finished
        status = ["completed"] * 2 + ["missing"] + ["completed"] * 3
        assert ", 2–3 seeds, " in F.budget(runs.assign(status=status), ptb=True)
        status = (["completed"] * 2 + ["missing"]) * 2
        assert ", 2 seeds of 3, " in F.budget(runs.assign(status=status), ptb=True)
    finally:
        F.PROFILE["name"] = ""


def _contest(provisional: bool = False) -> dict[str, pd.DataFrame]:
    """Tied and untied at both matchings, 3 seeds; ``provisional``: also soft_tied at equal width with 2 seeds (the
    longest tick label the figure writes)."""
    rows = []
    width = {"tied": 1.0, "untied": 0.8} | ({"soft_tied": 1.01} if provisional else {})
    for matching, factors in (("width", width), ("params", {"tied": 1.0, "untied": 1.5})):
        for core, f in factors.items():
            for seed in range(2 if core == "soft_tied" else 3):
                ppl = (100.0, 103.0, 97.0)[seed] * f
                rows.append({"name": f"{matching}-{core}-{seed}", "claims": "contest", "core": core, "seed": seed,
                             "matching": matching, "test_ppl": ppl, "best_val_ppl": ppl, "converged": True,
                             "steps": 1000, "lr": 1.0})  # fmt: skip
    empty = pd.DataFrame()
    return {"runs": pd.DataFrame(rows), "curves": empty, "length": empty, "state_reset": empty, "position": empty}


def test_contest_figure_points_on_a_log_axis_per_matching(tmp_path: Path, monkeypatch) -> None:
    made = {}
    real = F._save

    def keep(fig, out, name):
        made["axes"] = [(ax.get_xscale(), ax.get_title(), len(ax.patches)) for ax in fig.axes]
        fig.canvas.draw()
        made["xlabels"] = [ax.xaxis.label.get_window_extent() for ax in fig.axes]
        return real(fig, out, name)

    monkeypatch.setattr(F, "_save", keep)
    assert F.contest_fig(_contest(provisional=True), pd.DataFrame(), tmp_path) == "contest.png"
    assert (tmp_path / "contest.png").stat().st_size > 1000
    (s1, t1, _), (s2, t2, _) = made["axes"]
    assert (s1, s2) == ("log", "log")  # points with intervals on a log axis
    assert t1.startswith("contest, equal width") and t2.startswith("contest, equal parameters")
    assert "2–3 seeds, converged" in t1 and "3 seeds, converged" in t2
    left, right = made["xlabels"]
    assert not left.overlaps(right)  # the panels' axis labels do not run into each other


def test_untying_kinds_titles_count_their_own_matching_and_label_each_ratio(tmp_path: Path, monkeypatch) -> None:
    made = {}
    real = F._save

    def keep(fig, out, name):
        made["titles"] = [ax.get_title() for ax in fig.axes]
        made["texts"] = [[t.get_text() for t in ax.texts] for ax in fig.axes]
        return real(fig, out, name)

    monkeypatch.setattr(F, "_save", keep)
    assert F.untying_kinds_fig(_contest(provisional=True), pd.DataFrame(), tmp_path) == "untying_kinds.png"
    (width, params), (width_texts, params_texts) = made["titles"], made["texts"]
    assert "2–3 seeds" in width and "2–3 seeds" not in params and "3 seeds" in params  # soft_tied's 2 are width's
    ratios = [[t for t in texts if t.startswith("×")] for texts in (width_texts, params_texts)]
    assert ratios == [["×0.800", "×1.025"], ["×1.500"]]  # every core but tied, its ratio (soft_tied: seeds 0-1)


def test_recurrence_figure_draws_only_c9_runs_within_and_across_windows(tmp_path: Path, monkeypatch) -> None:
    made = {}
    real = F._save

    def keep(fig, out, name):
        made["legends"] = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
        return real(fig, out, name)

    rec, sr = [], []
    for core, claims in (("tied", "C9 contest"), ("untied", "C9"), ("lexical", "contest")):  # lexical: not C9's
        for seed in range(3):
            name = f"{core}-{seed}"
            for state, f in (("carried", 1.0), ("cell_zeroed", 1.4), ("state_zeroed", 1.6)):
                rec.append({"split": "val", "state": state, "length": 20, "ppl": 100 * f, "name": name,
                            "core": core, "claims": claims})  # fmt: skip
            for length in (10, 20, 40):
                for state, f in (("carried", 1.0), ("reset", 1.2)):
                    sr.append({"split": "val", "state": state, "length": length, "ppl": 100 * f, "name": name,
                               "core": core, "claims": claims})  # fmt: skip
    empty = pd.DataFrame()
    t = {"runs": empty, "recurrence": pd.DataFrame(rec), "state_reset": pd.DataFrame(sr)}
    monkeypatch.setattr(F, "_save", keep)
    assert F.recurrence_fig(t, empty, tmp_path) == "recurrence.png"
    within, across = made["legends"]
    assert within == ["c zeroed every step", "h and c zeroed every step"]
    assert across == ["tied, state carried", "tied, state reset", "untied, state carried", "untied, state reset"]


def test_sentence_panel_pools_the_sparse_longest_bins_but_never_across_t() -> None:
    rows = []
    for core, growth in (("tied", 1.0), ("untied", 1.5)):
        for seed in range(2):
            for length, n in ((10, 100), (20, 100), (30, 10), (40, 5)):
                ppl = 100.0 * (growth if length > 20 else 1.0)
                rows.append({"split": "val", "length": length, "bin_lo": length - 9, "loss": np.log(ppl),
                             "ppl": ppl, "tokens": n * length, "sentences": n, "name": f"{core}-{seed}",
                             "core": core})  # fmt: skip
    fig, ax = plt.subplots()
    F._sentences(ax, pd.DataFrame(rows), "t", pd.DataFrame())
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["1–10\n(100)", "11–20\n(100)", "21–40\n(15)"]  # 15 < 50 sentences, yet not pooled into 11–20
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines() if not line.get_label().startswith("_")}
    np.testing.assert_allclose(lines["untied"], [1.0, 1.0, 1.5])
    np.testing.assert_allclose(lines["tied"], [1.0, 1.0, 1.0])
    plt.close(fig)


def test_capacity_ptb_panel_draws_the_rules_test_perplexity(tmp_path: Path, monkeypatch) -> None:
    made = {}
    real = F._save

    def keep(fig, out, name):
        ax = fig.axes[1]
        made["ylabel"] = ax.get_ylabel()
        made["y"] = [float(line.get_ydata()[0]) for line in ax.get_lines() if line.get_marker() == "o"]
        return real(fig, out, name)

    rows = [{"name": f"{core}-{seed}", "claims": "C7", "core": core, "seed": seed, "task": "ptb", "steps": 10,
             "test_ppl": test, "best_val_ppl": test + 5, "converged": True}
            for core, test in (("tied", 100.0), ("untied", 120.0)) for seed in range(3)]  # fmt: skip
    monkeypatch.setattr(F, "_save", keep)
    F.capacity_fig({"runs": pd.DataFrame(rows)}, pd.DataFrame(), tmp_path)
    assert made["ylabel"].startswith("test ppl") and made["y"] == pytest.approx([100.0, 120.0])


def test_tuning_figure_tells_every_line_apart(tmp_path: Path, monkeypatch) -> None:
    """Each (core, strength, structure) line differs from the others in colour, line style or marker, and a
    diverged run is an x at the top with its legend entry."""
    made = {}
    real = F._save

    def keep(fig, out, name):
        ax = fig.axes[0]
        made["lines"] = {ln.get_label(): (ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()}
        made["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        return real(fig, out, name)

    rows = [{"matching": "params", "core": core, "lr": lr, "reg": reg, "num_sets": sets, "status": status,
             "best_val_ppl": 200.0 + lr if status == "completed" else float("nan"), "chosen": False, "seed": 0,
             "steps": 10}
            for core, reg, sets in (("lexical", 1e-4, None), ("lexical", 1e-3, None), ("lexical", 1e-4, 64),
                                    ("lexical", 1e-4, 256), ("tied", None, None))
            for lr, status in ((0.5, "completed"), (1.0, "completed"), (2.0, "diverged"))]  # fmt: skip
    monkeypatch.setattr(F, "_save", keep)
    F.tuning_fig({"tuning": pd.DataFrame(rows)}, pd.DataFrame(), tmp_path)
    styles = [style for label, style in made["lines"].items() if not label.startswith("_")]
    assert len(styles) == 5 and len(set(styles)) == 5
    assert "diverged (drawn at the top)" in made["legend"]


@pytest.mark.parametrize("name", ["learning_curves", "data_fraction", "time_to_target_fig", "capacity_fig",
                                  "recurrence_fig"])  # fmt: skip
def test_figures_survive_empty_tables(tmp_path: Path, name: str) -> None:
    empty = pd.DataFrame()
    t = {"runs": empty, "curves": empty, "length": empty, "state_reset": empty, "position": empty}
    assert getattr(F, name)(t, empty, tmp_path).endswith(".png")
