"""The paper's claims, each defined once: its statement, the runs it reads, its verdict rule, its figure, its panels.

Adding a claim: one entry in ``CLAIM_LIST`` below, its rule (a function of ``verdicts.py`` whose docstring states
the rule), its figure (a function of ``figures.py``) if it needs a new one, and its test. ``grid.build_grid`` runs
the grid sections its entries name, ``verdicts.all_verdicts`` applies their rules in this order, ``render.py`` and
``report.py`` print their statements, and the W&B report shows their panels.
"""

from __future__ import annotations

from dataclasses import dataclass

Panel = tuple[str, ...]  # ("bar", summary metric) | ("line", history metric, x) | ("scatter", factor, summary metric)


@dataclass(frozen=True)
class Claim:
    """``runs``: the grid sections whose runs it reads (``grid.SECTIONS``: ``ptb``, ``rule``, ``recall``); none:
    measured without training (its rule reads ``measure.py``'s table). ``verdict``: its rule, a function of
    ``verdicts.py``. ``figure``: its figure, a function of ``figures.py``. ``panels``: the W&B report's panels of
    its logged quantity; ``not_logged``: what its quantity is when it is not a logged metric."""

    id: str
    statement: str
    runs: tuple[str, ...]
    verdict: str
    figure: str
    panels: tuple[Panel, ...] = ()
    not_logged: str = ""


CLAIM_LIST: tuple[Claim, ...] = (
    Claim("C1", "Sharing gives far fewer parameters.", (), "c1", "params_vs_t",
          not_logged="parameter counts (measured without training)"),
    Claim("C2", "An untied LSTM cannot handle sequences of other lengths than it was trained on.", ("ptb",), "c2",
          "length_generalization", (("line", "val/ppl", "epoch"),),
          not_logged="perplexity by evaluation window length (`lrnn evaluate`)"),
    Claim("C3", "Text follows the same rules at every position, so sharing is the right prior "
          "(unlike position-dependent data).", ("ptb", "rule"), "c3", "contest_fig",
          (("bar", "test/ppl"), ("bar", "test/acc"))),
    Claim("C4", "Untied is more flexible, so it overfits and needs far more data.", ("ptb",), "c4", "data_fraction",
          (("scatter", "fraction", "test/ppl"), ("line", "val/ppl", "epoch"))),
    Claim("C5", "Parameters grow linearly with T, infeasible for long sequences.", (), "c5", "cost_vs_t",
          not_logged="parameters, memory and tokens/s vs T (measured without training)"),
    Claim("C6", "Trained with truncated BPTT, the carried state can still learn structure longer than the "
          "truncation.", ("recall",), "c6", "recall_heatmap", (("bar", "test/acc"), ("scatter", "k2", "test/acc"))),
    Claim("C7", "Untying is not more powerful: a tied LSTM with more width can imitate it.", ("ptb", "rule"), "c7",
          "capacity_fig", (("bar", "test/acc"), ("bar", "test/ppl"))),
    Claim("C8", "Making the weights a smooth function of time keeps variable-length inputs.", ("ptb",), "c8",
          "length_generalization", (("line", "val/ppl", "epoch"),),
          not_logged="perplexity by evaluation window length (`lrnn evaluate`)"),
    Claim("C9", "An untied LSTM still carries its cell state across time: it is still recurrent.", ("ptb",), "c9",
          "recurrence_fig", (("line", "val/ppl", "epoch"),),
          not_logged="perplexity with the state reset vs carried (`lrnn evaluate`)"),
    Claim("C10", "Sharing reduces training time.", ("ptb",), "c10", "time_to_target_fig",
          (("line", "val/ppl", "_runtime"), ("line", "val/ppl", "epoch"))),
    Claim("contest", "The sharing spectrum on PTB at convergence, at equal width and at equal parameters: does "
          "anything beat tied?", ("ptb",), "contest", "contest_fig",
          (("bar", "test/ppl"), ("line", "val/ppl", "epoch"))),
)  # fmt: skip
CLAIMS: dict[str, str] = {c.id: c.statement for c in CLAIM_LIST}  # id -> statement
