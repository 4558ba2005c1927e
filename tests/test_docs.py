"""The user docs: README.md stays a guide (length, verdict markers, layout) and every relative link resolves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 400
# [text](target) and ![alt](target); a target ends at whitespace or ')' (an optional "title" is ignored)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def docs() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """Relative link targets of a markdown file, code blocks and inline code left out."""
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file (lower case, punctuation dropped, spaces to '-')."""
    text = FENCE.sub("", path.read_text())
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        out.add(slug)
    out |= set(re.findall(r'<a (?:name|id)="([^"]+)"', path.read_text()))
    return out


def test_readme_is_a_guide_of_at_most_400_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


def test_readme_keeps_the_verdict_markers_near_the_top() -> None:
    from lrnn.paper.render import END, START

    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert text.index(START) < text.index(END)
    first_section = text.split("\n## ", 2)  # the title, the first section, the rest
    assert START in "\n## ".join(first_section[:2]), "the verdict table belongs in the README's first section"


@pytest.mark.parametrize("path", docs(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_images_exist(path: Path) -> None:
    missing = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve()
        if not dest.exists():
            missing.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            missing.append(target)
    assert not missing, f"{path.name}: links to nothing: {missing}"


def test_layout_names_every_folder() -> None:
    """The Layout section's tree names each top-level folder and each lrnn/ subpackage, and only paths that exist."""
    text = README.read_text()
    assert "\n## Layout\n" in text
    layout = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    tree = FENCE.search(layout)
    assert tree, "the Layout section has its tree in a code block"
    lines = tree.group(0).splitlines()[1:-1]
    named = {line.split()[0].rstrip("/") for line in lines if line.strip() and not line[0].isspace()}  # not wrapped
    tracked = _tracked_folders()
    folders = {f for f in tracked if "/" not in f and not f.startswith(".")}
    folders |= {f for f in tracked if f.startswith("lrnn/") and (ROOT / f / "__init__.py").is_file()}
    assert folders <= named, f"not in README's Layout: {sorted(folders - named)}"
    written = (ROOT / ".gitignore").read_text()  # folders lrnn writes (runs/) need not exist in a fresh clone
    absent = {n for n in named if not (ROOT / n).exists() and f"{n}/" not in written}
    assert not absent, f"README's Layout names paths that do not exist: {sorted(absent)}"


def _tracked_folders() -> set[str]:
    """Folders (and their parents) that hold files git tracks; a local .venv or build folder is not one of them."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked folders are unknown")
    folders = set()
    for file in out.splitlines():
        parts = file.split("/")[:-1]
        folders |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return folders
