"""``make report``: a W&B Report of the paper runs (``wandb_workspaces.reports.v2``).

One section per claim: the verdict and effect, the paper's figure, and panels of the claim's runs (selected by the
tag ``claim:<C>``, grouped by the config key ``paper/core``) showing the claim's own quantity where it is a logged
metric, with a run comparer; the verdict table as markdown on top. Online (API key and server) it is saved and
its URL printed. Offline it is built all the same (so a broken spec fails here, not later), its spec is written
beside the offline W&B runs (``RUNS/wandb/report-<profile>.json``, ignored by git: nothing new in the checkout, so
later runs still record a clean ``git_commit``), and the command prints how to publish: ``wandb sync`` the offline
runs it found there (or, where there are none, as in a fresh clone, how to make them), log in, ``make report``
again. Exit status 0 either way; non-zero only when ``OUT`` has no rendered results.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from lrnn.loggers import resolve_wandb_mode
from lrnn.paper.claims import CLAIM_LIST, CLAIMS
from lrnn.paper.grid import ROOT

# Every paper run logs its core's short name (tied, untied, share5, ...) into its W&B config under this key, and
# carries the tags claim:<C>, core:<name>, profile:<p> (lrnn/paper/runner.py).
CORE_KEY = "paper/core"
FACTOR_KEY = "paper/{}"  # the run's factors (fraction, matching, D, k1, k2, ...) under the same prefix

# The claim's own quantity where it is a logged metric: ("bar", summary metric) = mean ± stderr per core;
# ("line", history metric, x) = mean ± stderr curve per core; ("scatter", factor, summary metric).
CLAIM_PANELS: dict[str, list[tuple[str, ...]]] = {c.id: list(c.panels) for c in CLAIM_LIST}  # lrnn/paper/claims.py
NOT_LOGGED = {c.id: c.not_logged for c in CLAIM_LIST if c.not_logged}
X_TITLES = {"epoch": "epoch", "_runtime": "wall seconds", "trainer/global_step": "update"}


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    cols = [c for c in ("size", "interval", "n", "converged") if c in verdicts]
    lines = ["| claim | verdict | " + " | ".join(c.replace("size", "effect size") for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]  # fmt: skip
    for v in verdicts.itertuples(index=False):
        cells = [str(getattr(v, c) or "n/a").replace("|", "/") for c in cols]
        lines.append(f"| {v.claim}: {CLAIMS.get(v.claim, '')} | **{v.verdict}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures_url(out: str = "paper") -> str | None:
    """Where the committed figures can be fetched: ``LRNN_FIGURES_URL`` (a folder URL), else the raw files of the
    repository's GitHub remote at its default branch (``OUT/figures``); ``None`` when neither is known."""
    if os.environ.get("LRNN_FIGURES_URL"):
        return os.environ["LRNN_FIGURES_URL"].rstrip("/") + "/"
    import re
    import subprocess

    try:
        remote = subprocess.run(["git", "remote", "get-url", "origin"], capture_output=True, text=True, timeout=10,
                                cwd=ROOT).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"(?:https://|git@)github\.com[/:]([^/]+)/(.+?)(?:\.git)?$", remote)
    return f"https://github.com/{m.group(1)}/{m.group(2)}/raw/HEAD/{out}/figures/" if m else None


def _panel(spec: tuple[str, ...], claim: str):
    import wandb_workspaces.reports.v2 as wr

    group = {"groupby": wr.Config(CORE_KEY), "groupby_aggfunc": "mean", "groupby_rangefunc": "stderr"}
    if spec[0] == "bar":
        return wr.BarPlot(title=f"{claim}: {spec[1]} per core (mean ± s.e.)", metrics=[wr.SummaryMetric(spec[1])],
                          orientation="v", **group)  # fmt: skip
    if spec[0] == "line":
        _, y, x = spec
        return wr.LinePlot(title=f"{claim}: {y} vs {X_TITLES.get(x, x)} per core (mean ± s.e.)", x=x, y=[y],
                           title_x=X_TITLES.get(x, x), log_y=y.endswith("ppl"), **group)  # fmt: skip
    _, factor, y = spec
    return wr.ScatterPlot(title=f"{claim}: {y} vs {factor}", x=wr.Config(FACTOR_KEY.format(factor)),
                          y=wr.SummaryMetric(y), log_y=y.endswith("ppl"))  # fmt: skip


def runset(entity: str, project: str, claim: str, profile: str):
    """The runs of ``claim`` in ``profile``: filtered by the tags every paper run carries (a run serves several
    claims; its W&B group is only the first)."""
    import wandb_workspaces.reports.v2 as wr

    return wr.Runset(entity=entity, project=project, name=f"{claim} ({profile})",
                     filters=f"Tags in ['claim:{claim}'] and Tags in ['profile:{profile}']")  # fmt: skip


def build_report(verdicts: pd.DataFrame, entity: str, project: str, profile: str, figures: str | None = None):
    """The ``wr.Report`` object (not saved). ``figures``: URL of the folder of the paper's PNGs (default
    ``figures_url()``); they are embedded as images, or named as files of the repository when no URL is known."""
    import wandb_workspaces.reports.v2 as wr

    figures = figures if figures is not None else figures_url()
    blocks = [
        wr.MarkdownBlock(
            text=f"Profile `{profile}`. Made by `make report` from `make paper PROFILE={profile}`. "
            "Runs are selected by their tags (`claim:<C>`, `profile:<p>`), lines and bars grouped by "
            f"the config key `{CORE_KEY}` (the core's short name)."
        ),  # fmt: skip
        wr.H1(text="Verdicts"),
        wr.MarkdownBlock(text=verdict_markdown(verdicts)),
    ]
    if figures:
        blocks.append(wr.Image(url=f"{figures}learning_curves.png", caption="Learning curves of the PTB runs"))
    for v in verdicts.itertuples(index=False):
        blocks += [
            wr.H2(text=f"{v.claim}: {CLAIMS.get(v.claim, '')}"),
            wr.MarkdownBlock(
                text=f"**{v.verdict}**: {v.effect}\n\nRule: {v.rule}"
                + (
                    f"\n\nIts quantity, {NOT_LOGGED[v.claim]}, is not a logged metric: see the figure."
                    if v.claim in NOT_LOGGED
                    else ""
                )
            ),  # fmt: skip
        ]
        if v.figure:
            blocks.append(
                wr.Image(url=f"{figures}{v.figure}", caption=f"{v.claim}: {v.figure}")
                if figures
                else wr.MarkdownBlock(
                    text=f"Figure: `paper/figures/{v.figure}` in the repository (set `LRNN_FIGURES_URL` to embed it)."
                )  # fmt: skip
            )
        panels = [_panel(p, v.claim) for p in CLAIM_PANELS.get(v.claim, [])]
        if panels:
            blocks.append(wr.PanelGrid(runsets=[runset(entity, project, v.claim, profile)],
                                       panels=[*panels, wr.RunComparer(diff_only="split")]))  # fmt: skip
    return wr.Report(
        entity=entity,
        project=project,
        title=f"lrnn: the ten claims ({profile})",
        description="Should an LSTM share its weights across time?",
        blocks=blocks,
    )


def main(out: Path, profile: str, mode: str | None = None, runs: Path | None = None) -> int:
    path = out / "results" / "verdicts.csv"
    if not path.is_file():
        print(f"error: {path} not found: run `make paper PROFILE={profile} OUT={out}` first", file=sys.stderr)
        return 2
    verdicts = pd.read_csv(path).fillna("")
    project = os.environ.get("WANDB_PROJECT", "lrnn")
    mode = mode or resolve_wandb_mode("auto")
    if mode == "online":
        import wandb_workspaces.reports.v2 as wr  # noqa: F401  (the API needs a logged-in wandb)

        entity = os.environ.get("WANDB_ENTITY") or _default_entity()
        report = build_report(verdicts, entity, project, profile).save()
        print(f"W&B report: {report.url}")
        return 0
    entity = os.environ.get("WANDB_ENTITY", "<your-entity>")
    wandb_dir = _relative(runs or Path("runs") / f"paper-{profile}") / "wandb"  # where `lrnn fit` keeps them
    with _no_server():
        report = build_report(verdicts, entity, project, profile)
        spec = wandb_dir / f"report-{profile}.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(report._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=1) + "\n")
    offline = sorted(wandb_dir.glob("offline-run-*"))
    if offline:
        upload = f"`wandb sync {wandb_dir}/offline-run-*` to upload its {len(offline)} offline runs"
    else:
        upload = (
            f"train the runs here with W&B on: there are no offline W&B runs in {wandb_dir} (a clone has none: the "
            f"committed run records carry no W&B files); with WANDB=offline, `wandb sync {wandb_dir}/offline-run-*` "
            "uploads them"
        )
    print(
        f"W&B is {mode} (no API key or no server): the report was built ({len(report.blocks)} blocks, spec in "
        f"{spec}) but not published. To publish: `wandb login`, then {upload}, then "
        f"`make report PROFILE={profile} OUT={out}` again."
    )
    return 0


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory where it lies below it (a command to paste), else as given."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path)


@contextlib.contextmanager
def _no_server() -> Iterator[None]:
    """Offline: serializing a runset asks the server for the project's internal id; answer a placeholder."""
    from wandb_workspaces.reports.v2 import interface

    saved = interface._get_api, interface.execute_graphql
    interface._get_api = lambda: None
    interface.execute_graphql = lambda api, query, variables=None: {"project": {"internalId": "offline"}}
    try:
        yield
    finally:
        interface._get_api, interface.execute_graphql = saved


def _default_entity() -> str:
    from wandb_workspaces.reports.v2.interface import _get_api

    return _get_api().default_entity


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "paper"), sys.argv[2] if len(sys.argv) > 2 else "cpu"))
