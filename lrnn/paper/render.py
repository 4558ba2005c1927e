"""``OUT/README.md``: the verdict table first, then one section per claim (verdict, effect, rule, figure, numbers,
the commands), then provenance. Everything comes from the tables and verdicts passed in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lrnn.paper.claims import CLAIMS
from lrnn.paper.grid import Budget
from lrnn.paper.verdicts import Verdict, untying_kinds


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "n/a" if math.isnan(v) else f"{v}"
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _p_value(p: float) -> str:
    return "n/a" if p != p else "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _readable(table: pd.DataFrame) -> pd.DataFrame:
    """4 decimals; p-values (columns ``p``, ``p_*``) below 0.0001 as "< 0.0001" rather than 0."""
    if table.empty:
        return table
    table = table.round(4)
    for c in table.columns:
        if c == "p" or str(c).startswith("p_"):
            table[c] = table[c].map(_p_value)
    return table


def markdown_table(df: pd.DataFrame, max_rows: int = 60) -> str:
    """A GitHub markdown table of ``df`` (first ``max_rows`` rows)."""
    if df is None or df.empty:
        return "_no data_\n"
    df = df.head(max_rows)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def converged_cell(v: Verdict) -> str:
    """yes / no for PTB verdicts, n/a for the others."""
    return "n/a" if v.converged is None else "yes" if v.converged else "no"


def verdict_table(verdicts: list[Verdict], prefix: str = "") -> str:
    """The verdict table: verdict, effect size, its 95% interval, n and (PTB) converged; links point into the report
    (``prefix``: the report folder, from another page)."""
    rows = []
    for v in verdicts:
        evidence = f"[{v.figure}]({prefix}figures/{v.figure})" if v.figure else "n/a"
        anchor = f"[{v.claim}]({prefix + 'README.md' if prefix else ''}#{v.claim.lower()})"
        rows.append(
            {
                "claim": anchor,
                "statement": CLAIMS[v.claim],
                "verdict": f"**{v.verdict}**",
                "effect size": v.size or "n/a",
                "95% interval": v.interval or "n/a",
                "n": v.n or "n/a",
                "converged": converged_cell(v),
                "evidence": evidence,
            }
        )
    return markdown_table(pd.DataFrame(rows))


HOW_TO_READ = (
    "How to read it: a difference counts when both sides have ≥ {min_seeds} seeds and its two-sided 95% Welch "
    "interval excludes 0 (Welch's t with its Welch–Satterthwaite degrees of freedom, `lrnn/paper/stats.py`). "
    "Perplexities and times are compared on the log scale: an effect ×1.10 means 10% higher, its interval is that "
    "of the ratio of geometric means. The contest's p-values are Holm-adjusted over each matching's comparisons. "
    "*converged* (PTB claims): every run behind the verdict met the profile's convergence rule; a PTB verdict is "
    "only issued when it is *yes* (otherwise the verdict reads *not converged* and the effect is that of the "
    "unfinished training). `inconclusive`: too few seeds or missing runs. Each claim's rule is stated in its section."
)


def _profile_note(budget: Budget) -> list[str]:
    if budget.name == "smoke":
        return [
            "> **Smoke profile**: tiny budgets that test the pipeline. The numbers and verdicts below mean "
            "nothing about the claims.",
            "",
        ]
    if hasattr(budget, "ptb_epochs"):
        return [
            f"> **{budget.name} profile**: every PTB run trains {budget.ptb_epochs} epochs (lr constant for "
            f"{budget.ptb_decay_after}, then x{budget.ptb_decay} per epoch; validation every "
            f"{budget.ptb_val_interval:g} epoch, C4's data fractions after every pass over their data; early "
            f"stopping after {budget.ptb_patience} validations without a new best; the best checkpoint is tested "
            f"with batch {budget.ptb_test_batch or 1}). Each core's lr "
            f"(from {', '.join(map(str, budget.tune_lrs))}) and regularization strength are tuned first on "
            f"{budget.tune_epochs} epoch at a constant lr. A PTB verdict needs every run converged (early stopping "
            "ended it, or its last epoch improved the best validation perplexity by < 1%).",
            "",
        ]
    note = getattr(budget, "note", "")
    return [f"> **{budget.name} profile**: {note}", ""] if note else []


def run_commits(runs: pd.DataFrame) -> str:
    """ ", made at commits `abc1234` (n runs), ..." for the finished runs (their records name the commit)."""
    if runs.empty or "git_commit" not in runs:
        return ""
    counts = runs["git_commit"].dropna().astype(str).map(lambda c: c[:7]).value_counts()
    return (", made at commits " + ", ".join(f"`{c}` ({n})" for c, n in counts.items())) if len(counts) else ""


def render(
    out: Path,
    verdicts: list[Verdict],
    tables: dict[str, pd.DataFrame],
    budget: Budget,
    provenance: dict[str, Any],
) -> Path:
    """Write ``out/README.md`` (figures are expected in ``out/figures``)."""
    cmd = provenance.get("command", f"make paper PROFILE={budget.name}")
    runs = tables["runs"]
    done = int(runs["status"].isin(["completed", "diverged"]).sum()) if not runs.empty else 0
    lines = [
        "# Should an LSTM share its weights across time? The ten claims, tested",
        "",
        f"Profile **{budget.name}**, rendered by the code of commit `{provenance.get('commit')}`, {done} of "
        f"{len(runs)} runs finished{run_commits(runs)}.",
        "",
        "## Verdicts",
        "",
        verdict_table(verdicts),
        HOW_TO_READ.format(min_seeds=budget.min_seeds),
        "",
    ]
    if (out / "figures" / "learning_curves.png").is_file():
        lines += [
            "Learning curves of the PTB runs (validation perplexity per epoch, mean over seeds with its 95% "
            "interval): where they have flattened, the runs have converged.",
            "",
            "![learning curves](figures/learning_curves.png)",
            "",
        ]
    lines += [
        "## How these numbers were made",
        "",
        f"Generated by `{cmd}` (profile **{budget.name}**) by the code of commit `{provenance.get('commit')}` "
        f"({provenance.get('machine', {}).get('cpus', '?')} CPUs"
        f"{', GPUs ' + ','.join(provenance['gpus']) if provenance.get('gpus') else ''}), finished "
        f"{provenance.get('finished_at', '?')}. Runs: {done} of {len(runs)} finished "
        f"({provenance.get('reused', 0)} reused from earlier invocations); {provenance.get('jobs')} at a time, "
        f"{provenance.get('threads')} torch thread(s) each; wall time of this invocation "
        f"{provenance.get('wall_s', 0) / 60:.1f} min, sum of run wall times "
        f"{provenance.get('run_wall_s', 0) / 60:.1f} min.",
        "",
        *_profile_note(budget),
    ]
    lines += _tuning_section(tables.get("tuning", pd.DataFrame()), out)
    for v in verdicts:
        lines += [
            f"## {v.claim}",
            "",
            f"*{CLAIMS[v.claim]}*",
            "",
            f"**Verdict: {v.verdict}.** {v.effect}",
            "",
            f"Effect size: {v.size or 'n/a'}; 95% interval: {v.interval or 'n/a'}; n: {v.n or 'n/a'}"
            + (f"; converged: {converged_cell(v)}." if v.converged is not None else "."),
            "",
            f"Rule: {' '.join(v.rule.split())}",
            "",
        ]
        if v.figure:
            lines += [f"![{v.claim}](figures/{v.figure})", ""]
        lines += [markdown_table(_readable(v.table)), ""]
        example = _example_command(runs, v.claim)
        render_cmd = f"python -m lrnn.paper render --profile {budget.name}"
        also = "" if cmd.startswith(render_cmd) else f" (rendered by `{render_cmd}`)"
        lines += [f"Figure and table: `{cmd}`{also}."]
        if example:
            lines += [f"One of its runs: `{example}`"]
        lines += [""]
    kinds, _ = untying_kinds(tables)
    lines += [
        "## Which kind of untying helps",
        "",
        "Untying by *position* (a weight set per step: untied, share5; or a position-dependent blend: soft_tied, "
        "mixture, time_varying) against untying by *content* (lexical: the weight set is chosen by the token read), "
        "both against tied, at each matching. Each kind's best core is named with its test perplexity ratio to "
        "tied (95% interval, Holm-adjusted outcome from the contest); the last number compares the two kinds' best "
        "cores directly (Welch on log test perplexity, 95% interval).",
        "",
        *[f"- {line}" for line in kinds],
        "",
    ]
    if (out / "figures" / "untying_kinds.png").is_file():
        lines += ["![which kind of untying helps](figures/untying_kinds.png)", ""]
    lines += [
        "## Provenance",
        "",
        "Every run (the CSV is `results/runs.csv`; learning curves `results/curves.csv`):",
        "",
    ]
    cols = [
        c
        for c in (
            "name",
            "core",
            "seed",
            "status",
            "wall_s",
            "threads",
            "best_val_ppl",
            "test_ppl",
            "test_acc",
            "git_commit",
            "run_dir",
        )
        if c in runs
    ]
    lines += [markdown_table(runs[cols], max_rows=10_000) if not runs.empty else "_no runs_\n"]
    (out / "README.md").write_text("\n".join(lines))
    return out / "README.md"


def _tuning_section(tuning: pd.DataFrame, out: Path) -> list[str]:
    """Each core's lr (and strength, and structure) chosen on the short budget: the finished tuning runs, the
    choice marked, and the figure."""
    if tuning.empty or "status" not in tuning:
        return []
    done = tuning[tuning["status"].isin(["completed", "diverged"])]
    cols = [c for c in ("matching", "core", "lr", "reg", "num_sets", "status", "best_val_ppl", "chosen") if c in done]
    lines = [
        "## Tuning",
        "",
        f"{len(done)} of {len(tuning)} tuning runs finished (one epoch at a constant lr, seed 0). *chosen*: the "
        "setting the core's contest runs use (lowest best validation loss of its matching; a diverged run never "
        "wins; an lr at the edge of the grid was extended first). Full table: `results/tuning.csv`.",
        "",
    ]
    if (out / "figures" / "tuning.png").is_file():
        lines += ["![tuning](figures/tuning.png)", ""]
    if not done.empty:
        lines += [markdown_table(_readable(done[cols]), max_rows=10_000), ""]
    return lines


START, END = "<!-- paper:verdicts -->", "<!-- /paper:verdicts -->"


def update_top_readme(
    readme: Path, out: Path, verdicts: list[Verdict], profile: str, commit: str | None, kinds: Sequence[str] = ()
) -> bool:
    """Replace the block between the ``paper:verdicts`` markers of the repository README with the verdict table
    (links into ``out``), the learning curves and ``kinds`` (the lines of "Which kind of untying helps"). Returns
    False (and changes nothing) when the markers are missing."""
    text = readme.read_text() if readme.is_file() else ""
    if START not in text or END not in text:
        return False
    rel = out.resolve().relative_to(readme.parent.resolve())
    block = f"Profile `{profile}`, commit `{commit}`.\n\n" + verdict_table(verdicts, prefix=f"{rel}/").rstrip()
    if (out / "figures" / "learning_curves.png").is_file():
        block += (
            f"\n\nLearning curves of the PTB runs (validation perplexity per epoch, mean over seeds and its 95% "
            f"interval):\n\n![learning curves]({rel}/figures/learning_curves.png)"
        )
    if kinds:
        block += (
            f"\n\n**Which kind of untying helps** (test perplexity against tied's, [{rel}/README.md]"
            f"({rel}/README.md#which-kind-of-untying-helps)):\n\n" + "\n".join(f"- {line}" for line in kinds)
        )
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n{block}\n{END}{after}")
    return True


def _example_command(runs: pd.DataFrame, claim: str) -> str:
    if runs.empty or "command" not in runs:
        return ""
    rows = runs[runs["claims"].str.split().apply(lambda cs: claim in cs) & runs["command"].fillna("").ne("")]
    return str(rows["command"].iloc[0]) if len(rows) else ""
