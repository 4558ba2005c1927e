"""The core registry: every entry names a real class and a YAML of that class, and builds on every task it claims."""

from __future__ import annotations

import importlib

import pytest
import torch

import lrnn.cores
from lrnn.paper.cores import COLORS, CONTEST, CORES, MARKERS, MEASURE_CORES, TASK_CORES, core_spec
from lrnn.paper.grid import EXPERIMENTS, resolved_config


def _build(spec: dict) -> torch.nn.Module:
    module, name = spec["class_path"].rsplit(".", 1)
    with torch.device("meta"):
        return getattr(importlib.import_module(module), name)(**spec["init_args"])


def test_every_core_of_lrnn_is_in_the_paper() -> None:
    assert {c.class_path.rsplit(".", 1)[1] for c in CORES.values()} == set(lrnn.cores.__all__)


@pytest.mark.parametrize("name", list(CORES))
def test_an_entry_names_its_class_and_a_yaml_of_that_class(name: str) -> None:
    core = CORES[name]
    assert core.name == name
    assert (EXPERIMENTS / f"{core.experiment}.yaml").is_file()
    assert resolved_config(core.experiment, (), 0)["model"]["core"]["class_path"] == core.class_path


@pytest.mark.parametrize("name", list(CORES))
def test_an_entry_builds_on_every_task_it_claims(name: str) -> None:
    core = CORES[name]
    if core.ptb is not None:
        assert isinstance(_build(core.spec(64)), torch.nn.Module)
        for variant in core.variants:
            _build(core.spec(64, variant=variant))
    else:
        with pytest.raises(ValueError, match="not in the PTB contest"):
            core.spec(64)
    if core.positions is not None:
        _build(core_spec(name, 7, input_size=8, hidden_size=8, num_layers=1))
    if core.measure is not None:
        _build({"class_path": core.class_path, "init_args": {"input_size": 8, "hidden_size": 8, **core.measure(7)}})


def test_derived_lists_follow_the_entries() -> None:
    assert CONTEST == tuple(n for n, c in CORES.items() if c.ptb is not None) and "tied" in CONTEST
    assert "lexical" not in TASK_CORES and "tied_wide" in TASK_CORES and "tied_wide" not in CONTEST
    assert set(MEASURE_CORES) <= set(TASK_CORES)
    assert len(set(COLORS.values())) == len(CORES) and len(set(MARKERS.values())) == len(CORES)  # tell them apart
