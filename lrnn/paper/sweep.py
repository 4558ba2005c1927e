"""The grid as a W&B sweep (``method: grid``), for scale-out across machines with ``wandb agent``.

The grid's runs differ in many keys at once, so the sweep has one parameter, ``paper_run`` (the run's cache key);
its command runs ``python -m lrnn.paper exec --paper_run=<key>``, which starts that run's ``lrnn fit`` with its
LightningCLI dotted keys (listed in the YAML's comments) through the same cached runner as ``make paper``. Sync each
machine's ``runs/paper-<profile>/`` here (or share the folder), then ``make paper`` renders from the finished runs.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lrnn.launch import lrnn_command
from lrnn.paper.collect import readable_command
from lrnn.paper.grid import RunSpec


def sweep_config(grid: list[RunSpec], profile: str) -> dict:
    return {
        "name": f"lrnn-paper-{profile}",
        "method": "grid",
        "program": "lrnn/paper/__main__.py",
        "command": ["${env}", "${interpreter}", "-m", "lrnn.paper", "exec", "--profile", profile, "${args}"],
        "parameters": {"paper_run": {"values": [r.key for r in grid]}},
    }


def write_sweep(grid: list[RunSpec], path: Path, profile: str, runs: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# make paper PROFILE={profile} as a W&B sweep: `wandb sweep {path}`, then `wandb agent <id>`.",
        "# paper_run -> the lrnn fit command it runs:",
    ]
    lines += [f"#   {r.key}: {readable_command(lrnn_command(r.fit_args(), 'python'))}" for r in grid]
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(sweep_config(grid, profile), sort_keys=False))
    return path
