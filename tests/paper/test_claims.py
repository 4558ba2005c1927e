"""The claim registry: every claim names runs the grid builds, a rule verdicts.py has, a figure figures.py draws."""

from __future__ import annotations

import dataclasses

import pytest

import lrnn.paper.grid as grid
from lrnn.paper import figures, report, verdicts
from lrnn.paper.claims import CLAIM_LIST, CLAIMS


@pytest.mark.parametrize("claim", CLAIM_LIST, ids=lambda c: c.id)
def test_a_claim_names_its_runs_rule_figure_and_panels(claim) -> None:
    assert CLAIMS[claim.id] == claim.statement and claim.statement.endswith((".", "?"))
    assert set(claim.runs) <= set(grid.SECTIONS)
    rule = getattr(verdicts, claim.verdict)
    assert callable(rule) and rule.__doc__, "a verdict rule is stated in its docstring"
    assert claim.figure in {f.__name__ for f in figures.FIGURES}
    assert report.CLAIM_PANELS[claim.id] == list(claim.panels)
    assert claim.runs or claim.not_logged, "a claim measured without training says what its quantity is"


def test_claim_ids_are_unique() -> None:
    assert len({c.id for c in CLAIM_LIST}) == len(CLAIM_LIST)


def test_the_grid_is_the_sections_its_claims_read(monkeypatch: pytest.MonkeyPatch) -> None:
    full = grid.build_grid("smoke")
    recall_only = [c for c in CLAIM_LIST if c.id in ("C1", "C6")]
    monkeypatch.setattr(grid, "CLAIM_LIST", tuple(recall_only))
    assert {c for r in grid.build_grid("smoke") for c in r.claims} == {"C6"}
    widened = dataclasses.replace(recall_only[1], runs=("recall", "rule"))
    monkeypatch.setattr(grid, "CLAIM_LIST", (widened,))
    runs = grid.build_grid("smoke")
    assert {r.factor("task") for r in runs} == {None, "rule"} and len(runs) < len(full)
