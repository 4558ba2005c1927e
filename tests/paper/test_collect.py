"""collect reads how many epochs a run finished from any results.json lrnn has written: a run that used all of its
max_epochs did not stop early, so its "converged" comes from the validation curve."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lrnn.paper.collect import run_row
from lrnn.paper.grid import build_grid


@pytest.mark.parametrize(
    ("record", "stopped_early"),
    [
        ({"epochs_completed": 3, "last_epoch": 2}, False),  # today's results.json
        ({"epoch": 2, "epochs_completed": 3}, False),  # 0-based "epoch" beside the count (written for a while)
        ({"epoch": 3}, False),  # the first results.json: "epoch" was the count
        ({"epochs_completed": 2, "last_epoch": 1}, True),  # early stopping ended it after 2 of 3
    ],
)
def test_a_run_that_used_all_its_epochs_did_not_stop_early(tmp_path: Path, record: dict, stopped_early: bool) -> None:
    spec = build_grid("smoke", tmp_path)[0]
    version = tmp_path / "version_0"
    version.mkdir()
    (version / "config.yaml").write_text("trainer: {max_epochs: 3}\n")
    (version / "results.json").write_text(json.dumps({"status": "completed", "best_val_loss": 4.0, **record}))
    rows = ["epoch,step,val/loss"] + [f"{e},{s},{math.log(p)}" for e, s, p in ((0, 9, 300), (1, 19, 200), (2, 29, 150))]
    (version / "metrics.csv").write_text("\n".join(rows) + "\n")  # the last epoch still gains 25%: not converged
    assert run_row(spec, version)["converged"] is stopped_early
