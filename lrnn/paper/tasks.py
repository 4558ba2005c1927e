"""The synthetic runs of the paper, per profile: the position-rule task (C3, C7) and delayed recall (C6).

``synthetic_runs(profile) -> list[RunSpec]`` is what ``lrnn.paper.grid.build_grid`` adds for its synthetic claims.

Position rule (C3/C7), ``position_rule_p30_*.yaml``: sequences of P = 30 random symbols (A = 8) behind a
marker; the target at position p is ``perm[p][symbol]``, 30 fixed random permutations. At 1 layer of 16 units and
2,000 updates a tied LSTM cannot both count to 30 and hold the 30 x 8 table (it stays far below 100%); an untied
core (one weight set per position) and a tied LSTM widened to the untied core's parameter count (``tied_wide``)
can. So the task separates the cores at this budget in both directions, which a claim test needs (the old P = 10,
H = 64 task had every core at 100%). Every core of ``rule_cores`` runs at 1x16 except ``tied_wide``.

Delayed recall (C6): the target at step t is the input at t - D, a stream cut into windows of k steps, TBPTT with
k1 = k2 = k (tied 1x64). For each k the lags D = k // 2 (a control: the gradient reaches the input), k, k + 1 and
2k (no gradient path: only the carried state can carry the symbol), each trained twice: ``state=carried`` (the
state carried from window to window, as in training a language model) and ``state=reset`` (the state zeroed at
every window in training and evaluation, ``model.reset_state_every_window``). What the carried state adds is the
accuracy difference carried - reset of a cell.

Profiles: ``smoke`` (seconds per run; tests the pipeline), ``converged`` (the 2-core CPU: the whole synthetic part
< 3 core-hours at one thread per run, 5 seeds), ``full`` (GPUs: more updates, more truncations, untied recall too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrnn.paper.cores import CORES, TASK_CORES, core_spec
from lrnn.paper.grid import RunSpec, core_parameters, matched_width

RULE_EXPERIMENT = "position_rule_p30_untied"  # the model.core override picks the core
RECALL_EXPERIMENT = "recall_tied_k10"
RULE_PERIOD, RULE_ALPHABET, RULE_HIDDEN = 30, 8, 16
RULE_VOCAB = RULE_ALPHABET + 1  # the marker
RULE_CORES = TASK_CORES  # every core with settings for the synthetic tasks (lrnn/paper/cores.py)
RECALL_COST = 0.1


@dataclass(frozen=True)
class TaskBudget:
    """What a profile spends on the synthetic tasks."""

    seeds: tuple[int, ...]
    rule_sequences: int  # training sequences per epoch (P + 1 = 31 tokens each)
    rule_eval_sequences: int
    rule_epochs: int
    rule_cores: tuple[str, ...]
    recall_tokens: int  # training tokens per epoch
    recall_eval_tokens: int
    recall_epochs: int
    truncations: tuple[int, ...]  # k (k1 = k2 = k)
    recall_cores: tuple[str, ...]


TASK_BUDGETS: dict[str, TaskBudget] = {
    "smoke": TaskBudget(
        seeds=(0, 1), rule_sequences=64, rule_eval_sequences=64, rule_epochs=1, rule_cores=("tied", "untied",
        "tied_wide"), recall_tokens=3_200, recall_eval_tokens=1_600, recall_epochs=1, truncations=(5,),
        recall_cores=("tied",),
    ),
    "converged": TaskBudget(
        seeds=(0, 1, 2, 3, 4), rule_sequences=6_400, rule_eval_sequences=2_000, rule_epochs=10,
        rule_cores=RULE_CORES, recall_tokens=100_000, recall_eval_tokens=40_000, recall_epochs=10,
        truncations=(5, 10), recall_cores=("tied",),
    ),
    "full": TaskBudget(
        seeds=(0, 1, 2, 3, 4), rule_sequences=6_400, rule_eval_sequences=2_000, rule_epochs=30,
        rule_cores=RULE_CORES, recall_tokens=200_000, recall_eval_tokens=40_000, recall_epochs=30,
        truncations=(5, 10, 20), recall_cores=("tied", "untied"),
    ),
}  # fmt: skip


def rule_core(core: str, hidden: int = RULE_HIDDEN) -> dict[str, Any]:
    """The ``model.core`` spec of the position-rule task for a core short name (1 layer, input 32, max_len P + 1)."""
    return core_spec(core, RULE_PERIOD + 1, input_size=32, hidden_size=hidden, num_layers=1)


def wide_width() -> int:
    """tied_wide's width: the tied 1-layer LSTM with the untied core's total parameter count on this task."""
    target = core_parameters(rule_core("untied"), RULE_VOCAB)
    return matched_width(rule_core("tied"), RULE_VOCAB, target, keys=("hidden_size",))


def rule_runs(b: TaskBudget) -> list[RunSpec]:
    """C3 (untied vs tied, and the spectrum) and C7 (tied_wide vs untied) on the position-rule task."""
    wide = wide_width()
    length, eval_length = b.rule_sequences * (RULE_PERIOD + 1), b.rule_eval_sequences * (RULE_PERIOD + 1)
    runs = []
    for core in b.rule_cores:
        spec = rule_core(core, hidden=wide if core == "tied_wide" else RULE_HIDDEN)
        claims = ("C7",) if core == "tied_wide" else ("C3", "C7") if core in ("tied", "untied") else ("C3",)
        for seed in b.seeds:
            runs.append(
                RunSpec(
                    claims=claims,
                    core=core,
                    experiment=RULE_EXPERIMENT,
                    overrides=(
                        ("model.core", spec),
                        ("data.init_args.period", RULE_PERIOD),
                        ("data.init_args.alphabet", RULE_ALPHABET),
                        ("data.init_args.length", length),
                        ("data.init_args.eval_length", eval_length),
                        ("data.init_args.seed", seed),
                        ("trainer.max_epochs", b.rule_epochs),
                    ),
                    seed=seed,
                    factors=(("task", "rule"), ("width", spec["init_args"]["hidden_size"])),
                    tokens=length * b.rule_epochs,
                    cost=CORES[core].task_cost,
                )
            )
    return runs


def recall_lags(k: int) -> tuple[int, ...]:
    """D for truncation k: k // 2 (control, within the window), k, k + 1, 2k (beyond the truncation)."""
    return (max(1, k // 2), k, k + 1, 2 * k)


def recall_runs(b: TaskBudget) -> list[RunSpec]:
    """C6: delayed recall, D x k x core x state (carried / reset at every window) x seed."""
    runs = []
    for k in b.truncations:
        for lag in recall_lags(k):
            for core in b.recall_cores:
                # position-dependent cores count positions within the k-step gradient segment
                spec = core_spec(core, k, input_size=32, hidden_size=64, num_layers=1)
                for state in ("carried", "reset"):
                    for seed in b.seeds:
                        runs.append(
                            RunSpec(
                                claims=("C6",),
                                core=core,
                                experiment=RECALL_EXPERIMENT,
                                overrides=(
                                    ("model.core", spec),
                                    ("model.k1", k),
                                    ("model.k2", k),
                                    ("model.reset_state_every_window", state == "reset"),
                                    ("data.init_args.lag", lag),
                                    ("data.init_args.seq_len", k),
                                    ("data.init_args.length", b.recall_tokens),
                                    ("data.init_args.eval_length", b.recall_eval_tokens),
                                    ("data.init_args.seed", seed),
                                    ("trainer.max_epochs", b.recall_epochs),
                                ),
                                seed=seed,
                                factors=(("D", lag), ("k1", k), ("k2", k), ("state", state)),
                                tokens=b.recall_tokens * b.recall_epochs,
                                cost=RECALL_COST,
                            )
                        )
    return runs


def synthetic_runs(profile: str) -> list[RunSpec]:
    """Every synthetic run of a profile (``smoke``, ``converged``, ``full``): position rule, then delayed recall.

    Contract: RunSpec fields as in ``grid.py``. Position rule: claims ``C3``/``C7`` (``tied_wide``: ``C7`` only;
    share5, soft_tied, mixture, time_varying: ``C3`` only), factors ``task="rule"`` and ``width``; the verdicts
    read ``test_acc``. Recall: claim ``C6``, factors ``D``, ``k1``, ``k2``, ``state`` (``carried`` | ``reset``).
    No run needs ``lrnn evaluate``."""
    if profile not in TASK_BUDGETS:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(TASK_BUDGETS)}")
    b = TASK_BUDGETS[profile]
    return rule_runs(b) + recall_runs(b)
