"""Rendering from fake run folders: tables, figures and README come out of the numbers on disk; the W&B report is
built offline and saved through a fake W&B API."""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lrnn.paper import report as report_mod
from lrnn.paper.__main__ import main as paper_main
from lrnn.paper.grid import CLAIMS, build_grid
from lrnn.paper.runner import spec_root


def write_fake_run(runs: Path, spec, rng) -> None:
    """A finished run folder as ``lrnn fit`` + ``lrnn evaluate`` would leave it, with made-up numbers."""
    version = spec_root(runs, spec) / "version_0"
    (version / "evaluation").mkdir(parents=True)
    base = {"tied": 100.0, "untied": 140.0}.get(spec.core, 120.0) + rng.random()
    seq_len = dict(spec.factors).get("k2", 20)
    (version / "config.yaml").write_text(f"data: {{init_args: {{seq_len: {seq_len}, batch_size: 20}}}}\n")
    acc = 0.9 if spec.core != "tied" else 0.4
    (version / "results.json").write_text(json.dumps({
        "best_val_loss": float(pd.Series([base]).apply(lambda p: __import__("math").log(p))[0]),
        "test": {"test/ppl": base, "test/loss": 4.6, "test/acc": acc + 0.01 * rng.random()},
        "params": {"total": 1000, "recurrent": 100}, "fit_seconds": 10.0 + rng.random(), "git_commit": "abc",
    }))  # fmt: skip
    (version / "paper.json").write_text(json.dumps({"command": ["python", "-m", "lrnn", "fit"], "wall_s": 12.0,
                                                    "threads": 1}))  # fmt: skip
    lines = ["epoch,step,train/ppl,val/ppl,val/loss,val/acc"]
    for i, (step, val) in enumerate(zip((9, 19, 29), (3 * base, 1.005 * base, base), strict=True)):
        lines.append(f"{i},{step},,{val},{math.log(val)},{acc}")
        lines.append(f"{i},{step},{base * (2.5 - i) * 0.8},,,")
    (version / "metrics.csv").write_text("\n".join(lines) + "\n")
    if spec.train_eval:  # eval-mode train perplexity (C4's gap)
        rows = ["split,length,windows,of_windows,loss,ppl,tokens", f"train,20,10,10,4.0,{base * 0.7},1000"]
        (version / "evaluation/train.csv").write_text("\n".join(rows) + "\n")
    if spec.evaluate:
        growth = {"untied": 1.5}.get(spec.core, 1.0)
        rows = ["split,mode,length,bin_lo,past_max_len,loss,ppl,tokens,extrapolation"]
        rows += [f"val,stream,{n},,false,4.6,{base * (growth if n > 20 else 1)},1000,error" for n in (10, 20, 40)]
        (version / "evaluation/length.csv").write_text("\n".join(rows) + "\n")
        rows = ["split,state,length,loss,ppl,tokens"]
        rows += [f"val,carried,20,4.6,{base},1000", f"val,reset,20,4.7,{base * 1.3},1000"]
        (version / "evaluation/state_reset.csv").write_text("\n".join(rows) + "\n")
        rows = ["split,state,length,loss,ppl,tokens"]  # c zeroed at every step: 1.3x worse
        rows += [f"val,carried,20,4.6,{base},1000", f"val,cell_zeroed,20,4.7,{base * 1.3},1000"]
        rows += [f"val,state_zeroed,20,5.0,{base * 2},1000"]
        (version / "evaluation/recurrence.csv").write_text("\n".join(rows) + "\n")


def fake_measure() -> pd.DataFrame:
    rows = []
    for core in ("tied", "untied"):
        for t in (10, 20, 40):
            sets = t if core == "untied" else 1
            rows.append({"core": core, "T": t, "hidden": 8, "batch": 20, "core_params": 100 * sets,
                         "model_params": 1000, "weight_mb": 0.1 * sets, "saved_mb": 0.1 * t,
                         "tokens_per_s": 1000.0 / (2 if core == "untied" else 1), "threads": 1})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import random

    rng = random.Random(0)
    tmp_path = tmp_path_factory.mktemp("render")
    runs, out = tmp_path / "runs", tmp_path / "paper"
    for spec in build_grid("smoke"):
        write_fake_run(runs, spec, rng)
    fake_measure().to_csv(runs / "measure-H32-T10-20-40-r1.csv", index=False)
    pd.DataFrame({"core": ["tied", "untied"] * 2, "tokens_per_s": [900.0, 600.0, 910.0, 590.0], "quiet": True}).to_csv(
        runs / "throughput.csv", index=False
    )  # C10's quiet timings
    assert paper_main(["render", "--profile", "smoke", "--out", str(out), "--runs", str(runs)]) == 0
    return out


def test_render_writes_readme_figures_and_csvs(rendered: Path) -> None:
    readme = (rendered / "README.md").read_text()
    assert readme.index("## Verdicts") < readme.index("## C1")
    for claim in CLAIMS:
        assert f"## {claim}" in readme
    verdicts = pd.read_csv(rendered / "results/verdicts.csv")
    assert list(verdicts["claim"]) == list(CLAIMS)
    # made-up numbers: untied degrades 1.5x past T, tied not -> C2 supported; c zeroed 1.3x -> C9 supported
    assert verdicts.set_index("claim").loc["C2", "verdict"] == "supported"
    assert verdicts.set_index("claim").loc["C9", "verdict"] == "supported"
    assert verdicts.set_index("claim").loc["C1", "verdict"] == "supported"
    for fig in verdicts["figure"].dropna():
        assert (rendered / "figures" / fig).stat().st_size > 1000
        assert f"figures/{fig}" in readme
    runs = pd.read_csv(rendered / "results/runs.csv")
    assert (runs["status"] == "completed").all() and len(runs) == len(build_grid("smoke"))
    assert "## Which kind of untying helps" in readme and "figures/untying_kinds.png" in readme
    assert "made at commits `abc` (" in readme  # the header names the commits its runs used
    assert "## Tuning" in readme and "figures/tuning.png" in readme  # each core's chosen setting, recorded
    assert (rendered / "figures" / "untying_kinds.png").stat().st_size > 10_000
    c4 = runs[runs["claims"].str.contains("C4")]
    assert len(c4) and c4["train_eval_ppl"].notna().all() and (c4["train_eval_ppl"] < c4["best_val_ppl"]).all()
    assert json.loads((rendered / "results/provenance.json").read_text())["profile"] == "smoke"


def test_readme_opens_with_the_verdict_table_and_has_no_nan(rendered: Path) -> None:
    readme = (rendered / "README.md").read_text()
    head = readme.split("## How these numbers were made")[0]
    assert "| claim | statement | verdict | effect size | 95% interval | n | converged | evidence |" in head
    assert "![learning curves](figures/learning_curves.png)" in head
    assert " nan " not in readme.lower() and "| nan" not in readme.lower()
    verdicts = pd.read_csv(rendered / "results/verdicts.csv").set_index("claim")
    assert verdicts.loc["contest", "converged"] in ("yes", "no")  # a PTB claim says whether it converged


def test_report_offline_builds_and_tells_how_to_publish(rendered: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Offline: the spec goes beside the offline W&B runs (ignored by git), nothing is written into OUT (a clean
    checkout stays clean), and the printed `wandb sync` names folders that exist, or says there are none."""
    monkeypatch.setenv("LRNN_FIGURES_URL", "https://example.org/paper/figures")
    before = {p: p.read_bytes() for p in sorted(rendered.rglob("*")) if p.is_file()}
    runs = tmp_path / "runs"
    assert report_mod.main(rendered, "smoke", mode="offline", runs=runs) == 0
    out = capsys.readouterr().out
    assert "not published" in out and "no offline W&B runs" in out
    (runs / "wandb" / "offline-run-20260101_000000-abcd1234").mkdir(parents=True)
    assert report_mod.main(rendered, "smoke", mode="offline", runs=runs) == 0
    sync = next(w for w in capsys.readouterr().out.split("`") if w.startswith("wandb sync "))
    assert [Path(p) for p in glob.glob(sync.split()[-1])] == [runs / "wandb" / "offline-run-20260101_000000-abcd1234"]
    assert {p: p.read_bytes() for p in sorted(rendered.rglob("*")) if p.is_file()} == before  # byte for byte
    text = json.dumps(json.loads((runs / "wandb" / "report-smoke.json").read_text()))
    for claim in CLAIMS:
        assert f"{claim}: " in text
    with_runs = [c for c in CLAIMS if report_mod.CLAIM_PANELS[c]]
    assert text.count('"viewType": "Run Comparer"') == len(with_runs)
    assert "Group =" not in text and '"name": "group"' not in text  # by tags, not by the first W&B group
    for claim in with_runs:  # each runset: the claim's tag and the profile's
        assert f'"value": ["claim:{claim}"]' in text
    assert text.count('"value": ["profile:smoke"]') == len(with_runs)
    assert '"groupBy": "paper/core.value"' in text and "class_path" not in text
    assert '"metrics": ["summary_metrics.test/ppl"]' in text  # the contest's own quantity
    assert '"yAxis": "summary:test/ppl"' in text and "paper/fraction" in text  # C4: test ppl vs data fraction
    assert '"url": "https://example.org/paper/figures/contest.png"' in text
    assert '"url": "https://example.org/paper/figures/learning_curves.png"' in text


def test_report_names_the_figures_when_no_url_is_known(rendered: Path, monkeypatch) -> None:
    monkeypatch.delenv("LRNN_FIGURES_URL", raising=False)
    verdicts = pd.read_csv(rendered / "results/verdicts.csv").fillna("")
    with report_mod._no_server():
        report = report_mod.build_report(verdicts, "me", "lrnn", "smoke", figures="")
        text = report._to_model().model_dump_json(by_alias=True)
    assert "paper/figures/contest.png" in text and '"type":"image"' not in text.replace(" ", "")


def test_report_without_results_fails_clearly(tmp_path: Path, capsys) -> None:
    assert report_mod.main(tmp_path, "smoke", mode="offline") == 2
    assert "make paper" in capsys.readouterr().err


class FakeApi:
    """What ``Report.save`` uses of ``wandb.Api``: default entity, projects, app url."""

    default_entity = "me"
    client = SimpleNamespace(app_url="https://wandb.example/")

    def __init__(self) -> None:
        self.created: list[str] = []

    def projects(self, entity):
        return []

    def create_project(self, project, entity):
        self.created.append(project)


def test_report_online_saves_through_the_api(rendered: Path, monkeypatch, capsys) -> None:
    from wandb_workspaces.reports.v2 import interface

    api, saved = FakeApi(), {}

    def fake_graphql(_api, query, variables):
        if "spec" not in variables:  # the runsets' project lookup
            return {"project": {"internalId": "P1"}}
        saved.update(variables)
        spec = json.loads(variables["spec"])
        view = {"id": "R1", "name": variables["name"], "displayName": variables["displayName"],
                "description": variables["description"], "spec": spec,
                "project": {"name": variables["projectName"], "entityName": variables["entityName"]}}  # fmt: skip
        return {"upsertView": {"view": view}}

    monkeypatch.setattr(interface, "_get_api", lambda: api)
    monkeypatch.setattr(interface, "execute_graphql", fake_graphql)
    monkeypatch.setattr(interface, "get_app_url", lambda a: a.client.app_url)
    monkeypatch.setenv("WANDB_PROJECT", "lrnn-test")
    assert report_mod.main(rendered, "smoke", mode="online") == 0
    assert "https://wandb.example/me/lrnn-test/reports/" in capsys.readouterr().out
    assert saved["projectName"] == "lrnn-test" and api.created == ["lrnn-test"]
    assert "Verdicts" in saved["spec"]


def test_top_readme_table_between_markers(rendered: Path, tmp_path: Path) -> None:
    from lrnn.paper.render import END, START, update_top_readme
    from lrnn.paper.verdicts import Verdict

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\nold\n{END}\n\n## rest\n")
    verdicts = [Verdict("C1", "supported", "20x", "rule", "params_vs_T.png")]
    assert update_top_readme(readme, tmp_path / "paper", verdicts, "cpu", "abc")
    text = readme.read_text()
    assert "old" not in text and "## rest" in text and "[C1](paper/README.md#c1)" in text
    assert "[params_vs_T.png](paper/figures/params_vs_T.png)" in text and "Which kind" not in text
    assert update_top_readme(readme, tmp_path / "paper", verdicts, "cpu", "abc", ["equal width: lexical x0.97"])
    text = readme.read_text()
    assert "**Which kind of untying helps**" in text and "- equal width: lexical x0.97" in text
    readme.write_text("no markers")
    assert not update_top_readme(readme, tmp_path / "paper", verdicts, "cpu", "abc")
