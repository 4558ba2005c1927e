"""The paper's cores, each defined once: short name -> class, experiment YAML, settings per task, colour, cost.

Adding a core to the paper: the core itself (``lrnn/cores/``), its experiment YAML (``lrnn/experiments/``) and one
entry in ``CORES`` below. The grid (``grid.py``: the PTB contest, ``tasks.py``: the synthetic tasks), the
measurements (``measure.py``: C1/C5) and the figures read everything about a core from its entry; a profile's budget
(``grid.PROFILES``, ``tasks.TASK_BUDGETS``) only chooses which cores it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PTB_WIDTH = 200  # embedding and softmax width of every PTB contest run (tied 2x200: Zaremba-small)
Variant = tuple[tuple[str, Any], ...]  # init_args that replace a core's defaults, e.g. (("num_sets", 64),)
Positions = Callable[[int], dict[str, Any]]  # n -> init_args of the core for inputs of n positions


@dataclass(frozen=True)
class Core:
    """One core of the paper.

    ``experiment``: its YAML (``make experiment NAME=...``); ``color``/``marker``: its lines and points in every
    figure. PTB contest (``ptb``, None: not in the contest): init_args beyond (input_size, hidden_size, num_layers,
    dropout); ``reg``: the init_arg of its regularization strength and the values tuning tries (with every lr);
    ``cost``: training cost per token relative to tied 2x200 (one thread, for the estimates); ``variants``: other
    settings of its structure, tried in a second tuning stage at the chosen lr and strength. ``positions``: its
    init_args on the synthetic tasks, for sequences of n positions (None: not run there), at ``task_cost`` per
    token; ``measure``: its init_args in C1/C5's measurements at window length T (None: not measured)."""

    name: str
    class_path: str
    experiment: str
    color: str
    marker: str
    ptb: Variant | None = None
    reg: tuple[str, tuple[float, ...]] | None = None
    cost: float = 1.0
    variants: tuple[Variant, ...] = ()
    positions: Positions | None = None
    task_cost: float = 0.1
    measure: Positions | None = None

    def spec(self, width: int, reg: float | None = None, variant: Variant = ()) -> dict[str, Any]:
        """Its ``model.core`` in the PTB contest: 2 layers of ``width``, input ``PTB_WIDTH``."""
        if self.ptb is None:
            raise ValueError(f"core {self.name!r} is not in the PTB contest")
        args = {"input_size": PTB_WIDTH, "hidden_size": width, "num_layers": 2, **dict(self.ptb)}
        args.update(variant)
        args["dropout"] = 0.3  # between the two layers (the recipe's dropout on the other connections is 0.3 too)
        if self.reg is not None and reg is not None:
            args[self.reg[0]] = reg
        return {"class_path": self.class_path, "init_args": args}


def _entries(*cores: Core) -> dict[str, Core]:
    return {c.name: c for c in cores}


# Order: the order of the contest, the synthetic tasks, the measurements and every figure's legend. Colours: tab10.
# task_cost: from lrnn fit at one thread on a loaded 2-core machine (rule, 1.98M tokens: tied 1x16 29 s, untied 1x16
# 220 s, tied 1x141 236 s at load ~12), scaled to a quiet one; estimates only.
CORES: dict[str, Core] = _entries(
    Core("tied", "lrnn.TiedLSTM", "tied_ptb_dropout", "tab:blue", "o",
         ptb=(), positions=lambda n: {}, task_cost=0.05, measure=lambda t: {}),
    Core("share5", "lrnn.UntiedLSTM", "untied_ptb_share5", "tab:green", "D", cost=1.1,
         ptb=(("max_len", 20), ("share_every", 5)),
         positions=lambda n: {"max_len": n, "share_every": 5}, measure=lambda t: {"max_len": t, "share_every": 5}),
    Core("soft_tied", "lrnn.SoftTiedLSTM", "soft_tied_ptb_rank8", "tab:red", "^", cost=1.9,
         ptb=(("max_len", 20), ("rank", 8)), reg=("penalty", (1e-4, 1e-3)),
         positions=lambda n: {"max_len": n, "penalty": 1.0e-4}, measure=lambda t: {"max_len": t}),
    Core("mixture", "lrnn.MixtureLSTM", "mixture_ptb", "tab:purple", "v", cost=1.4,
         ptb=(("max_len", 20), ("num_sets", 4)),
         positions=lambda n: {"max_len": n, "num_sets": 4}, measure=lambda t: {"max_len": t, "num_sets": 4}),
    # weights a smooth, non-periodic function of the position: Legendre polynomials over the longest evaluated window
    Core("time_varying", "lrnn.TimeVaryingLSTM", "time_varying_ptb_dropout", "tab:brown", "<", cost=1.5,
         ptb=(("num_bases", 4), ("period", 160.0), ("basis", "legendre")),
         positions=lambda n: {"num_bases": 4, "basis": "legendre", "period": float(n)},
         measure=lambda t: {"num_bases": 4, "period": float(t)}),
    Core("untied", "lrnn.UntiedLSTM", "untied_ptb_dropout", "tab:pink", ">", cost=1.4,
         ptb=(("max_len", 20),), positions=lambda n: {"max_len": n}, measure=lambda t: {"max_len": t}),
    # untied by content: the 127 most frequent tokens own a rank-8 delta on W_hh; K = 64 and 256 sets are tried at
    # the chosen lr and penalty. Not on the synthetic tasks or in the measurements (its sets follow the tokens).
    Core("lexical", "lrnn.LexicalLSTM", "lexical_ptb", "tab:orange", "P", cost=1.5,
         ptb=(("num_sets", 128), ("rank", 8)), reg=("penalty", (1e-4, 1e-3)),
         variants=((("num_sets", 64),), (("num_sets", 256),))),
    # C7: a tied LSTM widened to the untied core's parameter count (the width is solved per task)
    Core("tied_wide", "lrnn.TiedLSTM", "tied_ptb_wide", "tab:cyan", "s", positions=lambda n: {}, task_cost=0.15),
)  # fmt: skip
CORE_ORDER = tuple(CORES)
CONTEST = tuple(name for name, c in CORES.items() if c.ptb is not None)  # the PTB contest at equal parameters
TASK_CORES = tuple(name for name, c in CORES.items() if c.positions is not None)  # the position-rule task
MEASURE_CORES = tuple(name for name, c in CORES.items() if c.measure is not None)  # C1/C5
COLORS = {name: c.color for name, c in CORES.items()}
MARKERS = {name: c.marker for name, c in CORES.items()}


def core_spec(core: str, positions: int, **init_args: Any) -> dict[str, Any]:
    """``model.core`` of ``core`` on a synthetic task of ``positions`` positions, with ``init_args`` (sizes)."""
    c = CORES[core]
    if c.positions is None:
        raise ValueError(f"core {core!r} does not run on the synthetic tasks")
    return {"class_path": c.class_path, "init_args": {**init_args, **c.positions(positions)}}
