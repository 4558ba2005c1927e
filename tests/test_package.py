"""Packaging: what `pip install .` ships and declares, and what importing lrnn leaves alone."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lrnn
from lrnn import launch

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(lrnn.__file__).parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement_name(req: str) -> str:
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def _imported_modules(files: list[Path]) -> set[str]:
    """Top-level third-party modules imported anywhere in ``files`` (at module level or inside functions)."""
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("lrnn", "__future__")}


def _declared(extras: tuple[str, ...]) -> set[str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        reqs += PYPROJECT["project"]["optional-dependencies"][extra]
    return {_requirement_name(r) for r in reqs}


def _undeclared(files: list[Path], extras: tuple[str, ...]) -> dict[str, list[str]]:
    distributions = importlib.metadata.packages_distributions()
    declared = _declared(extras)
    out = {}
    for module in sorted(_imported_modules(files)):
        dists = [d.lower().replace("_", "-") for d in distributions.get(module, [module])]
        if not declared & set(dists):
            out[module] = dists
    return out


def test_every_package_lrnn_imports_is_declared_and_the_core_needs_no_extra() -> None:
    """`lrnn fit` / `evaluate` / `generate` run on the core dependencies; only lrnn/paper may use the paper extra."""
    paper = sorted((PACKAGE / "paper").rglob("*.py"))
    core = sorted(p for p in PACKAGE.rglob("*.py") if p not in paper)
    assert not _undeclared(core, ()), "imported outside lrnn/paper but not in [project] dependencies"
    assert not _undeclared(paper, ("paper",)), "imported by lrnn/paper but declared nowhere"
    assert {"pandas", "wandb-workspaces"} <= _declared(("paper",)) - _declared(())  # report-only: not in the core


def test_every_declared_requirement_has_a_floor() -> None:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        reqs += extra
    assert all(">=" in r for r in reqs), [r for r in reqs if ">=" not in r]


def test_the_wheel_ships_every_yaml_of_the_package() -> None:
    """Each YAML under lrnn/ (defaults, experiments, their bases) matches a package-data pattern of its package."""
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    missing = []
    for path in sorted(PACKAGE.rglob("*.yaml")):
        shipped = False
        for package, patterns in package_data.items():
            folder = REPO / package.replace(".", "/")
            if folder in path.parents:
                shipped |= any(fnmatch.fnmatch(str(path.relative_to(folder)), p) for p in patterns)
        missing += [] if shipped else [str(path.relative_to(REPO))]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_named_experiments_live_inside_the_package() -> None:
    assert launch.EXPERIMENTS.resolve().parent == PACKAGE.resolve()
    assert "tied_ptb" in launch.available() and "tied_ptb_dropout" in launch.available()


IMPORT_EVERYTHING = """
import importlib, logging, pkgutil, warnings
import torch, lightning, lightning.pytorch.cli, datasets, torchmetrics, matplotlib.pyplot, pandas, wandb
names = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
loggers = [logging.getLogger(n) for n in names]
before = (list(warnings.filters), [list(lg.filters) for lg in loggers])
import lrnn
for m in pkgutil.walk_packages(lrnn.__path__, "lrnn."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
after = (list(warnings.filters), [list(lg.filters) for lg in loggers])
added = [f for f in after[0] if f not in before[0]]
assert after == before, f"importing lrnn changed the warning filters: {added} {after[1]}"
print("ok")
"""


def test_importing_lrnn_leaves_warning_filters_alone() -> None:
    """A program that imports lrnn keeps its own warning filters and log filters; the `lrnn` command quiets itself
    (lrnn.loggers.quiet_known_noise in lrnn.cli.main)."""
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
