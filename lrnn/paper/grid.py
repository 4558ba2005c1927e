"""The grid: which ``lrnn fit`` runs each claim needs, per profile.

A run is an experiment YAML (``experiments/<name>.yaml``) plus LightningCLI dotted-key overrides and a seed. Its
identity (the cache key) is a hash of the YAML text, ``lrnn/configs/defaults.yaml`` and the overrides: the same
resolved inputs give the same run folder, so a finished run is reused and a changed budget makes a new run. W&B
group/tags and output paths are not part of the key (they do not change the numbers).

Profiles (``Budget``): ``smoke`` (every section on tiny budgets, minutes: tests the pipeline, not the numbers),
``cpu`` (the 2-core CPU in <= 4 h: PTB runs on a fixed token budget, validation every few hundred steps), ``full``
(the published schedules for GPUs: the experiment YAMLs as they are).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
DEFAULTS = ROOT / "lrnn" / "configs" / "defaults.yaml"
PTB_VOCAB = 10_000  # PTB's vocabulary (tested in tests/data/test_corpora.py)
PTB_TRAIN_TOKENS = 929_589

CLAIMS: dict[str, str] = {
    "C1": "Sharing gives far fewer parameters.",
    "C2": "An untied LSTM cannot handle sequences of other lengths than it was trained on.",
    "C3": "Text follows the same rules at every position, so sharing is the right prior "
    "(unlike position-dependent data).",
    "C4": "Untied is more flexible, so it overfits and needs far more data.",
    "C5": "Parameters grow linearly with T, infeasible for long sequences.",
    "C6": "Trained with truncated BPTT, the carried state can still learn structure longer than the truncation.",
    "C7": "Untying is not more powerful: a tied LSTM with more width can imitate it.",
    "C8": "Making the weights a smooth function of time keeps variable-length inputs.",
    "C9": "An untied LSTM still carries its cell state across time: it is still recurrent.",
    "C10": "Sharing reduces training time.",
    "contest": "The sharing spectrum at equal parameter count on PTB, with dropout: does anything beat tied?",
}


@dataclass(frozen=True)
class Budget:
    """What a profile spends. PTB runs stop after ``ptb_steps`` updates (``None``: the YAML's epochs)."""

    name: str
    seeds: tuple[int, ...]
    ptb_steps: int | None  # training updates per PTB run (B=20 x T=20 tokens each)
    ptb_val_every: int | None  # validate every N updates (None: every epoch)
    ptb_limit_val: float | int | None  # trainer.limit_val_batches
    ptb_limit_test: float | int | None  # trainer.limit_test_batches
    ptb_test_batch: int | None  # data.test_batch_size (None: the YAML's 1, Zaremba's protocol)
    ptb_constant_lr: bool  # no lr decay (short budgets: "epochs" differ between data fractions)
    fractions: tuple[float, ...]  # C4: fractions of the PTB training stream
    synth_tokens: int  # training tokens per epoch of a delayed-recall run
    rule_tokens: int  # training tokens per epoch of a position-rule run (sequences of 11)
    synth_epochs: int
    synth_eval_tokens: int
    lags: tuple[int, ...]  # C6
    truncations: tuple[int, ...]  # C6 (k1 = k2 = k)
    k1_k2: tuple[tuple[int, int], ...]  # C6, k1 < k2
    eval_lengths: tuple[int, ...]  # C2/C8/C9: window lengths for lrnn evaluate
    eval_splits: tuple[str, ...]
    measure_ts: tuple[int, ...]  # C1/C5
    measure_hidden: int
    measure_repeats: int
    contest_cores: tuple[str, ...]
    rule_cores: tuple[str, ...]  # C3/C7 on the position-rule task
    wide_ptb: bool  # C7: also the 17M-parameter tied_ptb_wide vs untied_ptb (expensive)
    min_seeds: int = 3  # fewer seeds than this: a difference is "inconclusive"
    tiny_corpus: bool = False  # "PTB" runs read a small generated corpus instead (smoke: fast, no mirror needed)


PROFILES: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke", seeds=(0, 1), min_seeds=2, tiny_corpus=True, ptb_steps=12, ptb_val_every=6, ptb_limit_val=4,
        ptb_limit_test=4,
        ptb_test_batch=20, ptb_constant_lr=True, fractions=(0.1, 1.0), synth_tokens=6_400, rule_tokens=3_520,
        synth_epochs=1, synth_eval_tokens=3_200, lags=(10,), truncations=(5,), k1_k2=((5, 20),),
        eval_lengths=(20, 40),
        eval_splits=("val",), measure_ts=(10, 20, 40), measure_hidden=32, measure_repeats=1,
        contest_cores=("tied", "time_varying", "untied"), rule_cores=("tied", "untied", "tied_wide"), wide_ptb=False,
    ),
    "cpu": Budget(
        name="cpu", seeds=(0, 1, 2), ptb_steps=1200, ptb_val_every=300, ptb_limit_val=None, ptb_limit_test=None,
        ptb_test_batch=20, ptb_constant_lr=True, fractions=(0.1, 0.3, 1.0), synth_tokens=200_000, rule_tokens=110_000,
        synth_epochs=5, synth_eval_tokens=22_000, lags=(5, 10), truncations=(5, 10, 20), k1_k2=((5, 20),),
        eval_lengths=(10, 20, 40, 80, 160), eval_splits=("val",), measure_ts=(10, 20, 40, 80, 160),
        measure_hidden=200, measure_repeats=3,
        contest_cores=("tied", "share5", "soft_tied", "mixture", "time_varying", "untied"), wide_ptb=False,
        rule_cores=("tied", "share5", "soft_tied", "mixture", "time_varying", "untied", "tied_wide"),
    ),
    "full": Budget(
        name="full", seeds=(0, 1, 2), ptb_steps=None, ptb_val_every=None, ptb_limit_val=None, ptb_limit_test=None,
        ptb_test_batch=None, ptb_constant_lr=False, fractions=(0.1, 0.3, 1.0), synth_tokens=200_000,
        rule_tokens=110_000, synth_epochs=10, synth_eval_tokens=40_000, lags=(2, 5, 10, 20),
        truncations=(5, 10, 20, 40),
        k1_k2=((5, 20), (10, 40)), eval_lengths=(10, 20, 40, 80, 160), eval_splits=("val", "test"),
        measure_ts=(10, 20, 40, 80, 160), measure_hidden=200, measure_repeats=10,
        contest_cores=("tied", "share5", "soft_tied", "mixture", "time_varying", "untied"), wide_ptb=True,
        rule_cores=("tied", "share5", "soft_tied", "mixture", "time_varying", "untied", "tied_wide"),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class RunSpec:
    """One ``lrnn fit`` run: ``experiment`` + ``overrides`` (dotted key -> value) + ``seed``.

    ``claims``: the claims whose tables use it (the first is its W&B group); ``core``: the core's short name (a W&B
    tag, the legend); ``factors``: the run's coordinates in its claim's table (fraction, lag, k, ...);
    ``evaluate``: also run ``lrnn evaluate`` (lengths ``eval_lengths``); ``tokens``: training tokens (estimate)."""

    claims: tuple[str, ...]
    core: str
    experiment: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int
    factors: tuple[tuple[str, Any], ...] = ()
    evaluate: bool = False
    tokens: int = 0
    cost: float = 1.0  # relative cost per token (tied 2x200 on PTB = 1), for the time estimate

    @property
    def key(self) -> str:
        """Cache key: hash of the resolved inputs (YAML text, defaults, overrides, seed)."""
        payload = {
            "experiment": (EXPERIMENTS / f"{self.experiment}.yaml").read_text(),
            "defaults": DEFAULTS.read_text(),
            "overrides": [[k, v] for k, v in sorted(self.overrides)],
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        parts = [self.core, *(f"{k}={v}" for k, v in self.factors), f"s{self.seed}"]
        return "-".join(str(p) for p in parts)

    @property
    def name(self) -> str:
        """The run's unique name in tables: ``<claim>-<core>-<factors>-s<seed>``."""
        return f"{self.claims[0]}-{self.label}"

    @property
    def experiment_name(self) -> str:
        """``lrnn fit --name``: the name without the seed (the run folder; W&B adds ``-s<seed>``)."""
        return self.name.rsplit("-s", 1)[0]

    def fit_args(self) -> list[str]:
        """``lrnn fit`` arguments (without output, W&B and progress-bar flags)."""
        args = ["fit", "--config", str(EXPERIMENTS / f"{self.experiment}.yaml"), "--seed_everything", str(self.seed)]
        for k, v in self.overrides:
            args += [f"--{k}", _cli_value(v)]
        return args

    def factor(self, name: str, default: Any = None) -> Any:
        return dict(self.factors).get(name, default)


def _cli_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


# ---- cores ------------------------------------------------------------------------------------------------------
# PTB, tied_ptb_dropout's recipe (the contest): core short name -> experiment YAML (+ core init_args overrides)
PTB_DROPOUT = {
    "tied": ("tied_ptb_dropout", {}),
    "share5": ("untied_ptb_dropout", {"share_every": 5}),
    "soft_tied": ("soft_tied_ptb_rank8", {}),
    "mixture": ("mixture_ptb", {}),
    "time_varying": ("time_varying_ptb_dropout", {}),
    "untied": ("untied_ptb_dropout", {}),
}
CORE_ORDER = ("tied", "tied_wide", "share5", "soft_tied", "mixture", "time_varying", "untied", "untied_narrow")
POSITION_PERIOD = 10  # position_rule: P symbols behind a marker -> max_len P + 1


def position_rule_core(core: str, hidden: int = 64) -> dict[str, Any]:
    """The ``model.core`` spec of the position-rule task for a core short name (1 layer, input 32)."""
    base = {"input_size": 32, "hidden_size": hidden, "num_layers": 1}
    max_len = POSITION_PERIOD + 1
    specs = {
        "tied": ("lrnn.TiedLSTM", {}),
        "tied_wide": ("lrnn.TiedLSTM", {}),
        "share5": ("lrnn.UntiedLSTM", {"max_len": max_len, "share_every": 5}),
        "soft_tied": ("lrnn.SoftTiedLSTM", {"max_len": max_len, "penalty": 1.0e-4}),
        "mixture": ("lrnn.MixtureLSTM", {"max_len": max_len, "num_sets": 4}),
        "time_varying": ("lrnn.TimeVaryingLSTM", {"num_bases": 4, "period": float(max_len)}),
        "untied": ("lrnn.UntiedLSTM", {"max_len": max_len}),
    }
    class_path, extra = specs[core]
    return {"class_path": class_path, "init_args": {**base, **extra}}


def core_parameters(spec: dict[str, Any], vocab: int) -> int:
    """Total parameters of ``RNNLM(vocab, core)`` for a ``model.core`` spec (built on the meta device: no memory)."""
    return _core_parameters(json.dumps(spec, sort_keys=True), vocab)


@functools.lru_cache(maxsize=4096)
def _core_parameters(spec_json: str, vocab: int) -> int:
    import importlib

    import torch

    from lrnn.rnnlm import RNNLM

    spec = json.loads(spec_json)
    module, name = spec["class_path"].rsplit(".", 1)
    with torch.device("meta"):
        core = getattr(importlib.import_module(module), name)(**spec["init_args"])
        return RNNLM(vocab, core).num_parameters()["total"]


def matched_width(
    spec: dict[str, Any],
    vocab: int,
    target: int,
    keys: tuple[str, ...] = ("input_size", "hidden_size"),
    lo: int = 4,
    hi: int = 2048,
) -> int:
    """The width H (set in ``keys``) whose total parameter count is closest to ``target``."""

    def total(h: int) -> int:
        return core_parameters({**spec, "init_args": {**spec["init_args"], **dict.fromkeys(keys, h)}}, vocab)

    while hi - lo > 1:  # parameter counts grow with H
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(mid) <= target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(total(h) - target))


def _yaml_core(experiment: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())["model"]["core"]


# ---- profile-specific overrides --------------------------------------------------------------------------------
def tiny_corpus(folder: Path | None = None, lines: int = 2000, vocab: int = 300) -> Path:
    """A small word-level corpus (train/valid/test.txt) with some structure to learn: each word is the previous
    one's successor (a fixed permutation) half of the time, else drawn from a Zipf-like distribution. Deterministic;
    written once under ``runs/paper-tiny-corpus``."""
    import random

    folder = folder or ROOT / "runs" / "paper-tiny-corpus"
    if (folder / "test.txt").is_file():
        return folder
    rng = random.Random(0)
    successor = list(range(vocab))
    rng.shuffle(successor)
    weights = [1 / (i + 1) for i in range(vocab)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", lines), ("valid", lines // 10), ("test", lines // 10)):
        out = []
        for _ in range(n):
            words = [rng.choices(range(vocab), weights)[0]]
            for _ in range(rng.randint(4, 14)):
                words.append(successor[words[-1]] if rng.random() < 0.5 else rng.choices(range(vocab), weights)[0])
            out.append(" ".join(f"w{w}" for w in words))
        (folder / f"{split}.txt").write_text("\n".join(out) + "\n")
    return folder


def _ptb_overrides(b: Budget, fraction: float = 1.0) -> list[tuple[str, Any]]:
    o: list[tuple[str, Any]] = []
    if b.tiny_corpus:
        o.append(("data.init_args.dataset", str(tiny_corpus())))
    if b.ptb_steps is not None:
        o += [("trainer.max_steps", b.ptb_steps), ("trainer.max_epochs", -1)]
    if b.ptb_val_every is not None:
        o += [("trainer.val_check_interval", b.ptb_val_every), ("trainer.check_val_every_n_epoch", None)]
    if fraction != 1.0:
        o.append(("trainer.limit_train_batches", fraction))
    if b.ptb_limit_val is not None:
        o.append(("trainer.limit_val_batches", b.ptb_limit_val))
    if b.ptb_limit_test is not None:
        o.append(("trainer.limit_test_batches", b.ptb_limit_test))
    if b.ptb_test_batch is not None:
        o.append(("data.init_args.test_batch_size", b.ptb_test_batch))
    if b.ptb_constant_lr:
        o.append(("model.lr_decay", 1.0))
    return o


def _ptb_tokens(b: Budget, experiment: str, fraction: float = 1.0) -> int:
    if b.ptb_steps is not None:
        return b.ptb_steps * 400
    import yaml

    epochs = yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())["trainer"]["max_epochs"]
    return int(PTB_TRAIN_TOKENS * fraction * epochs)


def _synth_overrides(b: Budget, tokens: int) -> list[tuple[str, Any]]:
    return [
        ("data.init_args.length", tokens),
        ("data.init_args.eval_length", b.synth_eval_tokens),
        ("trainer.max_epochs", b.synth_epochs),
    ]


# Relative cost per training token (tied 2x200 PTB = 1); measured on this CPU, one thread, used only for estimates.
COST = {"tied": 1.0, "untied": 1.7, "share5": 1.1, "soft_tied": 1.6, "mixture": 1.5, "time_varying": 2.0}
RULE_COST, RECALL_COST = 0.2, 0.12  # 1x64 synthetic runs per token (measured 10.5k / 22.5k tokens/s, tied 1x64)


# ---- the grid ---------------------------------------------------------------------------------------------------
def build_grid(profile: str) -> list[RunSpec]:
    """Every run of a profile, deduplicated by cache key (a run several claims use is listed once, claims merged)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    b = PROFILES[profile]
    runs: list[RunSpec] = []
    add = runs.append

    # C4 (+ C2, C9, C10 at fraction 1): Zaremba-small without dropout, tied vs untied, PTB fractions
    for fraction in b.fractions:
        for core, experiment in (("tied", "tied_ptb"), ("untied", "untied_ptb")):
            for seed in b.seeds:
                full = fraction == 1.0
                add(
                    RunSpec(
                        claims=("C4", "C2", "C9", "C10") if full else ("C4",),
                        core=core,
                        experiment=experiment,
                        overrides=tuple(_ptb_overrides(b, fraction)),
                        seed=seed,
                        factors=(("fraction", fraction),),
                        evaluate=full,
                        tokens=_ptb_tokens(b, experiment, fraction),
                        cost=COST[core],
                    )
                )

    # contest (+ C3's text half, C7 at equal parameters, C8): every core at the tied model's parameter count
    target = core_parameters(_yaml_core("tied_ptb_dropout"), PTB_VOCAB)
    for core in b.contest_cores:
        experiment, extra = PTB_DROPOUT[core]
        spec = _yaml_core(experiment)
        spec = {**spec, "init_args": {**spec["init_args"], **extra}}
        width = spec["init_args"]["hidden_size"] if core == "tied" else matched_width(spec, PTB_VOCAB, target)
        spec["init_args"].update(input_size=width, hidden_size=width)
        claims = ("contest", "C3", "C7", "C8") if core in ("tied", "untied") else ("contest", "C3", "C8")
        for seed in b.seeds:
            add(
                RunSpec(
                    claims=claims,
                    core=core,
                    experiment=experiment,
                    overrides=(("model.core", spec), *_ptb_overrides(b)),
                    seed=seed,
                    factors=(("width", width),),
                    evaluate=True,
                    tokens=_ptb_tokens(b, experiment),
                    cost=COST[core] * (width / 200) ** 2 + 0.3,
                )
            )

    # C7 on PTB at the untied model's size: tied_ptb_wide (17M parameters) vs untied 2x200 (full profile only)
    if b.wide_ptb:
        for core, experiment in (("tied_wide", "tied_ptb_wide"), ("untied", "untied_ptb_dropout")):
            for seed in b.seeds:
                add(
                    RunSpec(
                        claims=("C7",),
                        core=core,
                        experiment=experiment,
                        overrides=tuple(_ptb_overrides(b)),
                        seed=seed,
                        factors=(("size", "untied"),),
                        tokens=_ptb_tokens(b, experiment),
                        cost=4.0,
                    )
                )

    # C3 (position-dependent rules) and C7 (a wider tied LSTM at the untied one's parameter count)
    untied_params = core_parameters(position_rule_core("untied"), 9)
    wide = matched_width(position_rule_core("tied"), 9, untied_params, keys=("hidden_size",))
    for core in b.rule_cores:
        spec = position_rule_core(core, hidden=wide if core == "tied_wide" else 64)
        claims = ("C7",) if core == "tied_wide" else ("C3", "C7") if core in ("tied", "untied") else ("C3",)
        for seed in b.seeds:
            add(
                RunSpec(
                    claims=claims,
                    core=core,
                    experiment="position_rule_untied",
                    overrides=(("model.core", spec), *_synth_overrides(b, b.rule_tokens)),
                    seed=seed,
                    factors=(("task", "rule"),),
                    tokens=b.rule_tokens * b.synth_epochs,
                    cost=RULE_COST,
                )
            )

    # C6: delayed recall, lag D x truncation k (k1 = k2 = k, and k1 < k2), tied and untied
    for lag in b.lags:  # k1 < k2 only at the longest lag (k1 <= D < k2: does k2 or k1 decide?)
        cells = [(k, k) for k in b.truncations] + (list(b.k1_k2) if lag == max(b.lags) else [])
        for k1, k2 in cells:
            for core in ("tied", "untied"):
                for seed in b.seeds:
                    core_spec = {"class_path": "lrnn.TiedLSTM", "init_args": {"input_size": 32, "hidden_size": 64}}
                    if core == "untied":  # offsets count within the k2-step gradient segment
                        core_spec = {
                            "class_path": "lrnn.UntiedLSTM",
                            "init_args": {"input_size": 32, "hidden_size": 64, "max_len": k2},
                        }
                    add(
                        RunSpec(
                            claims=("C6",),
                            core=core,
                            experiment="recall_tied_k10",
                            overrides=(
                                ("model.core", core_spec),
                                ("model.k1", k1),
                                ("model.k2", k2),
                                ("data.init_args.lag", lag),
                                ("data.init_args.seq_len", k2),
                                *_synth_overrides(b, b.synth_tokens),
                            ),
                            seed=seed,
                            factors=(("D", lag), ("k1", k1), ("k2", k2)),
                            tokens=b.synth_tokens * b.synth_epochs * k2 // k1,
                            cost=RECALL_COST,
                        )
                    )

    return dedupe(runs)


def dedupe(runs: Iterable[RunSpec]) -> list[RunSpec]:
    """One spec per cache key, in first-seen order; the claims of duplicates are merged."""
    out: dict[str, RunSpec] = {}
    for r in runs:
        if r.key in out:
            merged = tuple(dict.fromkeys(out[r.key].claims + r.claims))
            out[r.key] = replace(out[r.key], claims=merged, evaluate=out[r.key].evaluate or r.evaluate)
        else:
            out[r.key] = r
    return list(out.values())


def estimate_minutes(run: RunSpec, tied_tokens_per_s: float = 2000.0, startup_s: float = 20.0) -> float:
    """Rough minutes for one run on one CPU thread (tied 2x200 PTB: ``tied_tokens_per_s``), evaluation included."""
    seconds = startup_s + run.tokens * run.cost / tied_tokens_per_s
    if any(k == "trainer.val_check_interval" for k, _ in run.overrides):  # PTB validation passes (73k tokens each)
        steps = dict(run.overrides).get("trainer.max_steps") or 0
        seconds += steps // dict(run.overrides)["trainer.val_check_interval"] * 25_000 * run.cost / tied_tokens_per_s
    if run.evaluate:  # lrnn evaluate, 5 lengths x carried/reset on PTB val (measured: untied 2x200 ~210 s, loaded CPU)
        seconds += 60.0 + 80.0 * run.cost
    return seconds / 60.0
