"""lrnn.configs: ``extends:`` layers a config on others, in the order LightningCLI reads several --config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrnn.configs import ConfigError, config_chain, expand_config_args
from lrnn.paper.grid import EXPERIMENTS


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_chain_reads_bases_first_depth_first_each_once(tmp_path: Path) -> None:
    _write(tmp_path, {
        "base/a.yaml": "x: 1\n",
        "base/b.yaml": "extends: a.yaml\ny: 2\n",  # relative to the base's own folder
        "base/c.yaml": "extends: [a.yaml]\nz: 3\n",
        "top.yaml": "extends: [base/b.yaml, base/c.yaml]\n",
    })  # fmt: skip
    chain = [p.relative_to(tmp_path).as_posix() for p in config_chain(tmp_path / "top.yaml")]
    assert chain == ["base/a.yaml", "base/b.yaml", "base/c.yaml", "top.yaml"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"top.yaml": "extends: nowhere.yaml\n"}, "does not exist"),
        ({"top.yaml": "extends: b.yaml\n", "b.yaml": "extends: top.yaml\n"}, "circle"),
        ({"top.yaml": "extends: {a: 1}\n"}, "must be a path or a list"),
    ],
)
def test_bad_extends_is_a_config_error(tmp_path: Path, files: dict[str, str], message: str) -> None:
    _write(tmp_path, files)
    with pytest.raises(ConfigError, match=message):
        config_chain(tmp_path / "top.yaml")


def test_every_config_file_argument_gets_its_bases_before_it(tmp_path: Path) -> None:
    _write(tmp_path, {"a.yaml": "x: 1\n", "top.yaml": "extends: a.yaml\n"})
    a, top = str(tmp_path / "a.yaml"), str(tmp_path / "top.yaml")
    assert expand_config_args(["fit", "--config", top, "--x", "1"]) == [
        "fit",
        "--config",
        a,
        "--config",
        top,
        "--x",
        "1",
    ]
    assert expand_config_args(["fit", f"--config={top}"]) == ["fit", "--config", a, "--config", top]
    assert expand_config_args(["fit", "-c", a]) == ["fit", "--config", a]
    assert expand_config_args(["fit", "--config", "{trainer: {max_epochs: 1}}"])[-1] == "{trainer: {max_epochs: 1}}"


def test_shipped_experiments_share_their_recipes() -> None:
    """The PTB experiments are the Zaremba-small or dropout recipe + a data block + at most their core; no YAML
    repeats the PTB data block or the schedule (the only exception: tied_wt2, another corpus)."""
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        chain = [p.relative_to(EXPERIMENTS).as_posix() for p in config_chain(path)]
        text = path.read_text()
        if path.stem == "tied_wt2":
            continue
        assert len(chain) > 1, f"{path.name} extends no base"
        assert "lr_decay_after" not in text and "test_batch_size" not in text, f"{path.name} repeats its base"
        if "_ptb" in path.stem:
            assert "base/zaremba_small.yaml" in chain and (
                "base/ptb.yaml" in chain or "base/ptb_sentences.yaml" in chain
            )
