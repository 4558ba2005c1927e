"""Config files: ``defaults.yaml`` under every config, and ``extends:``, which layers a YAML on others.

A config may name the configs it is layered on, paths relative to itself::

    # lrnn/experiments/untied_ptb_dropout.yaml
    extends: [base/zaremba_dropout.yaml, base/ptb.yaml]
    model:
      core: {class_path: lrnn.UntiedLSTM, init_args: {...}}

``lrnn fit --config X`` then reads the bases first (``config_chain``), as if given ``--config base ... --config X``:
LightningCLI's own layering of several config files, where a later file overrides an earlier one key by key.
Bases may extend other bases; each file is read once, before every file that extends it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULTS = Path(__file__).parent / "defaults.yaml"
EXTENDS = "extends"


class ConfigError(ValueError):
    """A config names a base that does not exist, or bases that extend each other in a circle."""


def read(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    return data if isinstance(data, dict) else {}


def bases(path: str | Path) -> list[Path]:
    """The configs that ``path`` extends, in order, resolved against its folder."""
    named = read(path).get(EXTENDS) or []
    named = [named] if isinstance(named, str) else named
    if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
        raise ConfigError(f"{path}: {EXTENDS} must be a path or a list of paths, got {named!r}")
    out = [Path(path).parent / n for n in named]
    for base in out:
        if not base.is_file():
            raise ConfigError(f"{path}: {EXTENDS} names {base}, which does not exist")
    return out


def config_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """``path``'s bases (recursively, depth first, each once), then ``path``: the order to read them in."""
    here = Path(path)
    if here.resolve() in _seen:
        raise ConfigError(f"{EXTENDS} goes in a circle: {' -> '.join(str(p) for p in (*_seen, here.resolve()))}")
    out: list[Path] = []
    for base in bases(here):
        out += [
            p for p in config_chain(base, (*_seen, here.resolve())) if p.resolve() not in {q.resolve() for q in out}
        ]
    return [*out, here]


def expand_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config FILE`` (``-c FILE``, ``--config=FILE``) preceded by the files it extends."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        is_file = value.endswith((".yaml", ".yml", ".json")) and Path(value).is_file()
        for p in config_chain(value) if is_file else [value]:
            out += ["--config", str(p)]
    return out
