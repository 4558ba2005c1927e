"""``make report``: a W&B Report of the paper runs (``wandb_workspaces.reports.v2``).

One section per claim: the verdict and effect, line plots of the claim's runs (W&B group = the claim) grouped by
core class, and a run comparer; the verdict table as markdown on top. Online (API key and server) it is saved and
its URL printed. Offline it is built all the same (so a broken spec fails here, not later), its spec is written to
``OUT/results/wandb_report.json``, and the command prints how to publish: ``wandb sync`` the offline runs, log in,
run ``make report`` again. Exit status 0 either way; non-zero only when ``OUT`` has no rendered results.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from lrnn.loggers import resolve_wandb_mode
from lrnn.paper.grid import CLAIMS

CORE_KEY = "config.model.core.class_path"  # the full LightningCLI config is logged under "config"


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    lines = ["| claim | verdict | effect |", "|---|---|---|"]
    for v in verdicts.itertuples(index=False):
        lines.append(f"| {v.claim}: {CLAIMS.get(v.claim, '')} | **{v.verdict}** | {str(v.effect).replace('|', '/')} |")
    return "\n".join(lines)


def build_report(verdicts: pd.DataFrame, entity: str, project: str, profile: str):
    """The ``wr.Report`` object (not saved)."""
    import wandb_workspaces.reports.v2 as wr

    blocks = [
        wr.MarkdownBlock(text=f"Profile `{profile}`. Made by `make report` from `make paper PROFILE={profile}`."),
        wr.H1(text="Verdicts"),
        wr.MarkdownBlock(text=verdict_markdown(verdicts)),
    ]
    for v in verdicts.itertuples(index=False):
        synthetic = v.claim in ("C6",)
        y = ["val/acc"] if synthetic else ["val/ppl"]
        runset = wr.Runset(entity=entity, project=project, name=v.claim, filters=f"Group = '{v.claim}'")
        blocks += [
            wr.H2(text=f"{v.claim}: {CLAIMS.get(v.claim, '')}"),
            wr.MarkdownBlock(text=f"**{v.verdict}**: {v.effect}\n\nRule: {v.rule}"),
            wr.PanelGrid(
                runsets=[runset],
                panels=[
                    wr.LinePlot(
                        title=f"{v.claim}: {y[0]}",
                        x="trainer/global_step",
                        y=y,
                        groupby=wr.Config(CORE_KEY),
                        groupby_aggfunc="mean",
                        groupby_rangefunc="stddev",
                    ),
                    wr.LinePlot(
                        title=f"{v.claim}: train/loss",
                        x="trainer/global_step",
                        y=["train/loss"],
                        groupby=wr.Config(CORE_KEY),
                        groupby_aggfunc="mean",
                        groupby_rangefunc="stddev",
                    ),
                    wr.RunComparer(diff_only="split"),
                ],
            ),
        ]
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
    with _no_server():
        report = build_report(verdicts, entity, project, profile)
        spec = out / "results" / "wandb_report.json"
        spec.write_text(report._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=1) + "\n")
    print(
        f"W&B is {mode} (no API key or no server): the report was built ({len(report.blocks)} blocks, spec in "
        f"{spec}) but not published. To publish: `wandb login`, then `wandb sync {runs or f'runs/paper-{profile}'}/*/"
        f"wandb/offline-run-*` to upload the runs, then `make report PROFILE={profile} OUT={out}` again."
    )
    return 0


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
