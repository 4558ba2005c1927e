"""Hygiene of what the paper commits: its records and report name no machine (no absolute path, no hostname) and
each record names the clean commit it was made at."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from lrnn.paper.grid import ROOT

ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?:work|home|root|tmp|Users|mnt|opt|scratch|data)/[\w.-]")


def committed(*folders: str) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", *folders], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.stdout.splitlines() if p.endswith((".json", ".csv", ".md", ".yaml", ".txt"))]


def offending(text: str) -> list[str]:
    return ABSOLUTE.findall(text) + re.findall(r'"host(?:name)?":', text)


def test_the_check_finds_what_it_should() -> None:  # the rule below can fail
    assert offending('{"best_checkpoint": "/work/pc/runs/x/best.ckpt"}')
    assert offending('{"machine": {"host": "vm"}}')
    assert offending("wandb sync /home/me/lrnn/runs/paper/wandb")
    assert not offending('{"best_checkpoint": "runs/paper-converged/ab12/x/version_0/checkpoints/best.ckpt"}')
    assert not offending("see https://github.com/a/b and docs/figures/x.png, 1/2 = 0.5")


def test_committed_records_and_paper_name_no_machine() -> None:
    bad = {}
    for path in committed("paper", "runs", "docs"):
        found = offending((ROOT / path).read_text(errors="replace"))
        if found:
            bad[path] = found[:3]
    assert not bad, f"absolute paths or hostnames in committed files: {dict(list(bad.items())[:5])}"


def test_committed_records_name_a_clean_commit() -> None:
    dirty = []
    for path in committed("runs"):
        if path.endswith("results.json"):
            commit = json.loads((ROOT / path).read_text()).get("git_commit") or ""
            if not re.fullmatch(r"[0-9a-f]{40}", commit):
                dirty.append((path, commit))
    assert not dirty, f"records made at a modified checkout (or none): {dirty[:5]}"


def test_render_commit_is_dirty_only_for_changed_code(tmp_path, monkeypatch) -> None:
    """The paper's header names the commit of the code that rendered it: rewriting ``paper/`` (what a render does)
    leaves it clean, a change under ``lrnn/`` marks it ``-dirty``."""
    from lrnn.loggers import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "lrnn").mkdir()
    (tmp_path / "paper").mkdir()
    (tmp_path / "lrnn" / "core.py").write_text("x = 1\n")
    (tmp_path / "paper" / "README.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper" / "README.md").write_text("new\n")
    code = git_commit(("lrnn",))
    assert code is not None and not code.endswith("-dirty")
    assert git_commit() == code + "-dirty"
    (tmp_path / "lrnn" / "core.py").write_text("x = 2\n")
    assert git_commit(("lrnn",)) == code + "-dirty"
