"""The PNGs of ``lrnn evaluate`` (matplotlib, headless): each readable on its own, without the CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"val": "tab:blue", "test": "tab:orange"}
MIN_POSITION_TOKENS = 50  # sentence positions scored fewer times are too noisy to show


def plot_all(rows: dict[str, list[dict[str, Any]]], meta: dict[str, Any], out: Path, title: str) -> None:
    """Write length.png, position.png, state_reset.png (and sentence_length.png, recurrence.png where there are rows)
    into `out`."""
    subtitle = f"{title}: {meta['core']}"
    if meta.get("max_len") is not None:
        subtitle += f", max_len {meta['max_len']}"
    if meta["mode"] == "stream":
        subtitle += f", trained on windows of T = {meta['seq_len']}"
    else:
        subtitle += ", trained on sentences"
    _length(rows["length"], meta, out / "length.png", subtitle)
    _position(rows["position"], meta, out / "position.png", subtitle)
    _state_reset(rows["state_reset"], meta, out / "state_reset.png", subtitle)
    if rows.get("sentence_length"):
        _length_sentences(rows["sentence_length"], meta, out / "sentence_length.png", subtitle)
    if rows.get("recurrence"):
        _recurrence(rows["recurrence"], out / "recurrence.png", subtitle)


def _splits(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["split"] for r in rows))


def _past_note(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    modes = {r["extrapolation"] for r in rows if r["past_max_len"]}
    if not modes:
        return ""
    how = {
        "error->clamp": "last weight set reused (clamp, for this evaluation only: the core was built with 'error')",
        "clamp": "last weight set reused (clamp)",
        "cycle": "positions wrap modulo max_len (cycle)",
    }
    return f"shaded: positions past max_len = {meta['max_len']}; " + "; ".join(how.get(m, m) for m in sorted(modes))


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ylim(ax: Any, values: list[float]) -> None:
    """Pad the y range to at least ±3% of the values, so that float noise in a flat curve does not fill the axis."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    pad = max(0.03 * (lo + hi) / 2, 0.15 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def _t_line(ax: Any, seq_len: int) -> None:
    ax.axvline(seq_len, color="gray", ls="--", lw=1)
    ax.text(seq_len, 0.97, " T (training window)", transform=ax.get_xaxis_transform(), fontsize=8, color="gray",
            va="top")  # fmt: skip


def _log2_lengths(ax: Any, lengths: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(n) for n in lengths])
    ax.minorticks_off()


def _length(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path, subtitle: str) -> None:
    if meta["mode"] == "sentence":
        return _length_sentences(rows, meta, path, subtitle)
    fig, ax = plt.subplots(figsize=(8, 5))
    lengths = sorted({r["length"] for r in rows})
    for split in _splits(rows):
        rs = [r for r in rows if r["split"] == split]
        ax.plot([r["length"] for r in rs], [r["ppl"] for r in rs], "-o", color=COLORS.get(split), label=f"{split}")
        for r in rs:
            ax.annotate(f"{r['ppl']:.4g}", (r["length"], r["ppl"]), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=8, color=COLORS.get(split))  # fmt: skip
    _log2_lengths(ax, lengths)
    _ylim(ax, [r["ppl"] for r in rows])
    _t_line(ax, meta["seq_len"])
    note = _past_note(meta, rows)
    if note:
        ax.axvspan(meta["max_len"], max(lengths) * 1.2, color="tab:red", alpha=0.08)
    ax.set_xlim(min(lengths) / 1.2, max(lengths) * 1.2)
    ax.set_xlabel("evaluation window length (steps; positions restart at every window, state carried across)")
    ax.set_ylabel("perplexity")
    ax.set_title(f"Length generalization\n{subtitle}", fontsize=10)
    ax.legend(title="split")
    ax.grid(alpha=0.3)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="tab:red")
    _save(fig, path)


def _length_sentences(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path, subtitle: str) -> None:
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = sorted({(r["bin_lo"], r["length"]) for r in rows})
    x_of = {b: i for i, b in enumerate(bins)}
    splits = _splits(rows)
    width = 0.8 / max(1, len(splits))
    for j, split in enumerate(splits):
        rs = [r for r in rows if r["split"] == split]
        xs = [x_of[(r["bin_lo"], r["length"])] for r in rs]
        ax.plot(xs, [r["ppl"] for r in rs], "-o", color=COLORS.get(split), label=split)
        ax_n.bar([x - 0.4 + width * (j + 0.5) for x in xs], [r["tokens"] for r in rs], width=width,
                 color=COLORS.get(split))  # fmt: skip
    for b, i in x_of.items():
        if meta.get("max_len") is not None and b[1] > meta["max_len"]:
            for a in (ax, ax_n):
                a.axvspan(i - 0.5, i + 0.5, color="tab:red", alpha=0.08)
    ax.set_ylabel("perplexity")
    ax.set_title(f"Perplexity by sentence length (every sentence from a zero state)\n{subtitle}", fontsize=10)
    ax.legend(title="split")
    ax.grid(alpha=0.3)
    ax_n.set_ylabel("tokens")
    ax_n.set_xticks(range(len(bins)))
    ax_n.set_xticklabels([f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in bins], rotation=45, fontsize=8)
    ax_n.set_xlabel("sentence length bin (tokens incl. <eos>)")
    note = _past_note(meta, rows)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="tab:red")
    _save(fig, path)


def _position(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path, subtitle: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    sentence = meta["mode"] == "sentence"
    shown = [r for r in rows if not sentence or r["tokens"] >= MIN_POSITION_TOKENS]
    for split in _splits(rows):
        rs = [r for r in shown if r["split"] == split]
        ax.plot([r["position"] for r in rs], [r["loss"] for r in rs], "-o", ms=3, color=COLORS.get(split),
                label=split)  # fmt: skip
    max_len = meta.get("max_len")
    positions = [r["position"] for r in shown]
    if max_len is not None and positions and max(positions) >= max_len:
        ax.axvspan(max_len - 0.5, max(positions) + 0.5, color="tab:red", alpha=0.08)
        fig.text(0.01, 0.005, f"shaded: positions past max_len = {max_len}", fontsize=7, color="tab:red")
    ppl = ax.secondary_yaxis("right", functions=(np.exp, lambda y: np.log(np.maximum(y, 1e-12))))
    ppl.set_ylabel("perplexity")
    if sentence:
        ax.set_xlabel(f"position from the sentence start (0 = first word; positions with < {MIN_POSITION_TOKENS} "
                      "tokens not shown)")  # fmt: skip
        what = "at each position of the sentence"
    else:
        ax.set_xlabel(f"position in the evaluation window of T = {meta['seq_len']} steps (state carried)")
        what = "at each position of the training window"
    ax.set_ylabel("mean NLL (nats)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(f"Loss {what}\n{subtitle}", fontsize=10)
    ax.legend(title="split")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _state_reset(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path, subtitle: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    splits = _splits(rows)
    if meta["mode"] == "sentence":
        states = ["carried", "reset"]
        for j, split in enumerate(splits):
            for k, state in enumerate(states):
                r = next(r for r in rows if r["split"] == split and r["state"] == state)
                x = j + (k - 0.5) * 0.38
                ax.bar(x, r["ppl"], width=0.36, color=COLORS.get(split), alpha=1.0 if state == "reset" else 0.5)
                ax.annotate(f"{r['ppl']:.4g}", (x, r["ppl"]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks([j + d for j in range(len(splits)) for d in (-0.19, 0.19)])
        ax.set_xticklabels([f"{s}\ncarried from the\nprevious sentence" if st == "carried" else f"{s}\nzero at every\n"
                            "sentence (as trained)" for s in splits for st in states], fontsize=8)  # fmt: skip
        ax.set_title(f"State carried across sentences vs reset\n{subtitle}", fontsize=10)
    else:
        lengths = sorted({r["length"] for r in rows})
        for split in splits:
            for state, style in (("carried", "-o"), ("reset", "--s")):
                rs = [r for r in rows if r["split"] == split and r["state"] == state]
                label = f"{split}, state {'carried across windows' if state == 'carried' else 'zeroed every window'}"
                ax.plot([r["length"] for r in rs], [r["ppl"] for r in rs], style, color=COLORS.get(split),
                        label=label)  # fmt: skip
        _log2_lengths(ax, lengths)
        _ylim(ax, [r["ppl"] for r in rows])
        _t_line(ax, meta["seq_len"])
        ax.set_xlabel("evaluation window length (steps)")
        ax.set_title(f"What the carried state is worth: carried vs zeroed at every window\n{subtitle}", fontsize=10)
        ax.legend(fontsize=8)
    ax.set_ylabel("perplexity")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _recurrence(rows: list[dict[str, Any]], path: Path, subtitle: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    splits, states = _splits(rows), list(dict.fromkeys(r["state"] for r in rows))
    labels = {
        "carried": "h, c carried",
        "cell_zeroed": "c zeroed\nevery step",
        "state_zeroed": "h, c zeroed\nevery step",
    }
    width = 0.8 / len(states)
    for j, split in enumerate(splits):
        for k, state in enumerate(states):
            r = next(r for r in rows if r["split"] == split and r["state"] == state)
            x = j - 0.4 + width * (k + 0.5)
            ax.bar(x, r["ppl"], width=width * 0.95, color=COLORS.get(split), alpha=1.0 - 0.3 * k)
            ax.annotate(f"{r['ppl']:.4g}", (x, r["ppl"]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks([j - 0.4 + width * (k + 0.5) for j in range(len(splits)) for k in range(len(states))])
    ax.set_xticklabels([f"{s}\n{labels.get(st, st)}" for s in splits for st in states], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("perplexity (log)")
    ax.set_title(f"Is it recurrent? State carried from step to step vs zeroed (windows of T)\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)
