"""Command-line options by their full names only, and unknown options named with the closest valid one.

argparse (and jsonargparse) accept any unambiguous prefix of an option by default: ``--trainer.max_epoch 1`` runs
as ``--trainer.max_epochs 1``, and a prefix can resolve to an option the user did not mean. lrnn's parsers turn that
off (``allow_abbrev=False``) and answer an unknown option with one line, ``error: unknown option --x; did you mean
--y?``, and exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any, NoReturn

_UNKNOWN = re.compile(r"unrecognized arguments: (\S+)", flags=re.IGNORECASE)


def option_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``--option`` a parser accepts, its subcommands' included."""
    names = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    for action in parser._actions:
        for sub in (getattr(action, "_name_parser_map", None) or {}).values():
            names += option_names(sub)
    return names


def suggestion(given: str, names: list[str]) -> str:
    """``"; did you mean --x?"`` for the closest name (difflib), else a pointer to ``--help``."""
    close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else " (see --help for the options)"


def unknown_option(message: str, parser: Any, prog: str = "error") -> NoReturn | None:
    """For an argparse "unrecognized arguments" message: print the one-line error and exit 2; else return None."""
    match = _UNKNOWN.match(message)
    if match is None:
        return None
    given = match.group(1).split("=", 1)[0]
    print(f"{prog}: unknown option {given}{suggestion(given, option_names(parser))}", file=sys.stderr)
    sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` without prefix matching; an unknown option is named with the closest valid one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        unknown_option(message, self, prog=f"{self.prog}: error")
        super().error(message)
