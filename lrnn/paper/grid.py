"""The grid: which ``lrnn fit`` runs each claim needs, per profile.

A run is an experiment YAML (``lrnn/experiments/<name>.yaml``) plus LightningCLI dotted-key overrides and a seed. Its
identity (the cache key) is a hash of the *resolved* config: ``lrnn/configs/defaults.yaml``, the YAML and the
overrides merged into one nested dict, the way LightningCLI layers them (a ``class_path`` that changes replaces its
``init_args``). So the same settings give the same run folder however the YAMLs are laid out, a finished run is
reused, and a changed budget makes a new run. W&B group/tags and output paths are not part of the key.

Profiles (``Budget``): ``converged`` (the default: every PTB run trains on a real schedule until its curve has
flattened, one thread per run on the 2-core CPU), ``smoke`` (every section on tiny budgets, minutes: tests the
pipeline, not the numbers) and ``full`` (GPUs: the converged schedule with more seeds and Zaremba's batch-1 test).

The PTB contest is run two ways: at *equal width* (every core 2x200, the seed's literal question) and at *equal
parameters* (the core's width solved so that core + projection have tied 2x200's parameter count, embedding and
softmax fixed at 200 dims). Each core's lr (and its regularization strength, where it has one) is chosen first on a
short budget (``tune``: one epoch at a constant lr, seed ``tune_seed``); a contest run waits until its core's
tuning runs have finished, then uses the setting with the lowest validation loss.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lrnn.configs import DEFAULTS, EXTENDS, config_chain
from lrnn.launch import fit_argv
from lrnn.paper.claims import CLAIM_LIST, CLAIMS  # noqa: F401 (CLAIMS re-exported)
from lrnn.paper.cores import CONTEST, CORE_ORDER, CORES, PTB_WIDTH, Core, Variant  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "lrnn" / "experiments"
PTB_VOCAB = 10_000  # PTB's vocabulary (tested in tests/data/test_corpora.py)
PTB_TRAIN_TOKENS = 929_589
PTB_VALID_TOKENS = 73_760
RECIPE = "tied_ptb_dropout"  # every PTB run: this YAML's recipe with the core swapped (model.core)


@dataclass(frozen=True)
class Budget:
    """What a profile spends. PTB runs: ``ptb_epochs`` epochs, lr constant for ``ptb_decay_after`` epochs then x
    ``ptb_decay`` per epoch, validation every ``ptb_val_interval`` of an epoch, early stopping after
    ``ptb_patience`` validations without a new best."""

    name: str
    seeds: tuple[int, ...]
    ptb_epochs: int
    ptb_decay: float
    ptb_decay_after: int
    ptb_val_interval: float  # trainer.val_check_interval (fraction of an epoch)
    ptb_patience: int  # EarlyStopping(patience) in validations
    ptb_limit_train: float | int | None  # trainer.limit_train_batches (smoke only)
    ptb_limit_val: float | int | None  # trainer.limit_val_batches
    ptb_limit_test: float | int | None  # trainer.limit_test_batches
    ptb_test_batch: int | None  # data.test_batch_size (None: the YAML's 1, Zaremba's protocol)
    tune_lrs: tuple[float, ...]  # the lr grid of every core (tuning: one epoch at a constant lr)
    tune_epochs: int
    tune_seed: int
    matchings: tuple[str, ...]  # "width" (every core 2x200) and/or "params" (tied 2x200's parameter count)
    width_cores: tuple[str, ...]  # the contest at equal width
    params_cores: tuple[str, ...]  # the contest at equal parameters
    fractions: tuple[float, ...]  # C4: fractions of the PTB training stream (tied and untied at equal width)
    eval_lengths: tuple[int, ...]  # C2/C8/C9: window lengths for lrnn evaluate
    eval_splits: tuple[str, ...]
    measure_ts: tuple[int, ...]  # C1/C5
    measure_hidden: int
    measure_repeats: int
    wide_ptb: bool  # C7: also the 17M-parameter tied_ptb_wide vs untied_ptb (expensive)
    min_seeds: int = 3  # fewer seeds than this: a difference is "inconclusive"
    tiny_corpus: bool = False  # "PTB" runs read a small generated corpus instead (smoke: fast, no mirror needed)


WIDTH_CONTEST = ("tied", "untied", "lexical", "soft_tied")
PROFILES: dict[str, Budget] = {
    "converged": Budget(
        name="converged", seeds=(0, 1, 2), ptb_epochs=8, ptb_decay=0.5, ptb_decay_after=2, ptb_val_interval=0.5,
        ptb_patience=3, ptb_limit_train=None, ptb_limit_val=None, ptb_limit_test=None, ptb_test_batch=20,
        tune_lrs=(0.5, 1.0, 2.0), tune_epochs=1, tune_seed=0, matchings=("width", "params"),
        width_cores=WIDTH_CONTEST, params_cores=CONTEST,
        fractions=(0.1, 0.3, 1.0), eval_lengths=(10, 20, 40, 80, 160), eval_splits=("val",),
        measure_ts=(10, 20, 40, 80, 160),
        measure_hidden=200, measure_repeats=3, wide_ptb=False,
    ),
    "smoke": Budget(
        name="smoke", seeds=(0, 1), min_seeds=2, tiny_corpus=True, ptb_epochs=2, ptb_decay=0.5, ptb_decay_after=1,
        ptb_val_interval=0.5, ptb_patience=3, ptb_limit_train=6, ptb_limit_val=4, ptb_limit_test=4,
        ptb_test_batch=20, tune_lrs=(1.0,), tune_epochs=1, tune_seed=0, matchings=("width", "params"),
        width_cores=("tied", "untied"), params_cores=("tied", "time_varying", "untied"), fractions=(0.5, 1.0),
        eval_lengths=(20, 40), eval_splits=("val",), measure_ts=(10, 20, 40),
        measure_hidden=32, measure_repeats=1, wide_ptb=False,
    ),
    "full": Budget(
        name="full", seeds=(0, 1, 2, 3, 4), ptb_epochs=8, ptb_decay=0.5, ptb_decay_after=2, ptb_val_interval=0.5,
        ptb_patience=3, ptb_limit_train=None, ptb_limit_val=None, ptb_limit_test=None, ptb_test_batch=None,
        tune_lrs=(0.5, 1.0, 2.0), tune_epochs=1, tune_seed=0, matchings=("width", "params"),
        width_cores=WIDTH_CONTEST, params_cores=CONTEST,
        fractions=(0.1, 0.3, 1.0), eval_lengths=(10, 20, 40, 80, 160), eval_splits=("val", "test"),
        measure_ts=(10, 20, 40, 80, 160), measure_hidden=200, measure_repeats=10, wide_ptb=True,
    ),
}  # fmt: skip
DEFAULT_PROFILE = "converged"


def _merge(base: Any, top: Any) -> Any:
    """LightningCLI's layering of two config levels: dicts merge key by key; a dict whose ``class_path`` differs
    from the base's replaces it whole (its ``init_args`` do not inherit); anything else replaces."""
    if not (isinstance(base, dict) and isinstance(top, dict)):
        return top
    if "class_path" in top and base.get("class_path") not in (None, top["class_path"]):
        return dict(top)
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if k in out else v
    return out


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    head, *rest = key.split(".")
    if not rest:
        return _merge(config, {head: value})
    inner = config.get(head) if isinstance(config.get(head), dict) else {}
    return {**config, head: _set_dotted(inner, ".".join(rest), value)}


@functools.lru_cache(maxsize=256)
def _yaml(path: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def resolved_config(experiment: str, overrides: Iterable[tuple[str, Any]], seed: int) -> dict[str, Any]:
    """defaults.yaml <- the YAMLs the experiment extends <- lrnn/experiments/<experiment>.yaml <- dotted overrides
    <- seed, merged as LightningCLI does (``extends`` itself is not a setting)."""
    config = _yaml(str(DEFAULTS))
    for path in config_chain(EXPERIMENTS / f"{experiment}.yaml"):
        config = _merge(config, {k: v for k, v in _yaml(str(path)).items() if k != EXTENDS})
    for k, v in overrides:
        config = _set_dotted(config, k, v)
    return {**config, "seed_everything": seed}


@dataclass(frozen=True)
class RunSpec:
    """One ``lrnn fit`` run: ``experiment`` + ``overrides`` (dotted key -> value) + ``seed``.

    ``claims``: the claims whose tables use it (its W&B tags ``claim:<c>``); ``core``: the core's short name (a W&B
    tag and config key, the legend); ``factors``: the run's coordinates in its claims' tables (matching, fraction,
    lag, k, lr, ...); ``evaluate``: also run ``lrnn evaluate`` (lengths ``eval_lengths``); ``tokens``: training
    tokens (estimate); ``waiting``: why it cannot run yet (its core's lr tuning is not finished), else ''."""

    claims: tuple[str, ...]
    core: str
    experiment: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int
    factors: tuple[tuple[str, Any], ...] = ()
    evaluate: bool = False
    train_eval: bool = False  # also eval-mode train perplexity at the best checkpoint (C4's gap: evaluate --train)
    tokens: int = 0
    cost: float = 1.0  # relative cost per token (tied 2x200 on PTB = 1), for the time estimate
    val_tokens: int = 0  # validation tokens over the whole run (estimate)
    waiting: str = ""

    @property
    def key(self) -> str:
        """Cache key: hash of the resolved config (defaults + YAML + overrides + seed), not of any file's text."""
        config = resolved_config(self.experiment, self.overrides, self.seed)
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]

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
        """``lrnn fit`` arguments (without output, W&B and progress-bar flags); paths relative to the repository."""
        config = (EXPERIMENTS / f"{self.experiment}.yaml").relative_to(ROOT)
        args = fit_argv(config, "--seed_everything", str(self.seed))
        for k, v in self.overrides:
            args += [f"--{k}", _cli_value(v)]
        return args

    def factor(self, name: str, default: Any = None) -> Any:
        return dict(self.factors).get(name, default)

    @property
    def variant(self) -> Variant:
        """The structure variant it tries: its factors named like one of its core's ``variants`` init_args."""
        core = CORES.get(self.core)
        names = {k for v in core.variants for k, _ in v} if core is not None else set()
        return tuple((k, v) for k, v in self.factors if k in names)


def _cli_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


# ---- cores (lrnn/paper/cores.py) ---------------------------------------------------------------------------
def core_parameters(spec: dict[str, Any], vocab: int, output_size: int | None = None) -> int:
    """Total parameters of ``RNNLM(vocab, core, output_size=...)`` for a ``model.core`` spec (built on the meta
    device: no memory)."""
    return _core_parameters(json.dumps(spec, sort_keys=True), vocab, output_size)


@functools.lru_cache(maxsize=4096)
def _core_parameters(spec_json: str, vocab: int, output_size: int | None) -> int:
    import importlib

    import torch

    from lrnn.rnnlm import RNNLM

    spec = json.loads(spec_json)
    module, name = spec["class_path"].rsplit(".", 1)
    with torch.device("meta"):
        core = getattr(importlib.import_module(module), name)(**spec["init_args"])
        return RNNLM(vocab, core, output_size=output_size).num_parameters()["total"]


def matched_width(
    spec: dict[str, Any],
    vocab: int,
    target: int,
    keys: tuple[str, ...] = ("input_size", "hidden_size"),
    lo: int = 4,
    hi: int = 2048,
    output_size: int | None = None,
) -> int:
    """The width H (set in ``keys``) whose total parameter count is closest to ``target``."""

    def total(h: int) -> int:
        spec_h = {**spec, "init_args": {**spec["init_args"], **dict.fromkeys(keys, h)}}
        return core_parameters(spec_h, vocab, output_size)

    while hi - lo > 1:  # parameter counts grow with H
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(mid) <= target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(total(h) - target))


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


def _ptb_common(b: Budget) -> list[tuple[str, Any]]:
    o: list[tuple[str, Any]] = []
    if b.tiny_corpus:
        o.append(("data.init_args.dataset", str(tiny_corpus().relative_to(ROOT))))
    if b.ptb_limit_val is not None:
        o.append(("trainer.limit_val_batches", b.ptb_limit_val))
    if b.ptb_limit_test is not None:
        o.append(("trainer.limit_test_batches", b.ptb_limit_test))
    if b.ptb_test_batch is not None:
        o.append(("data.init_args.test_batch_size", b.ptb_test_batch))
    return o


def early_stopping(patience: int) -> dict[str, Any]:
    return {
        "class_path": "lightning.pytorch.callbacks.EarlyStopping",
        "init_args": {"monitor": "val/loss", "mode": "min", "patience": patience},
    }


def _ptb_overrides(b: Budget, lr: float, fraction: float = 1.0) -> list[tuple[str, Any]]:
    """The converged schedule. A fraction f < 1 of the training stream keeps the same schedule *in updates*
    (epochs / f, decay after ``ptb_decay_after`` / f epochs, decay**f per epoch) but validates after every pass over
    its data: a small fraction overfits within a few passes, and early stopping, which decides when it ends, must see
    its best point (validating every half of a full epoch's updates, 5 passes at 10%, missed it)."""
    o = _ptb_common(b) + [("model.optimizer.init_args.lr", lr)]
    if fraction == 1.0:
        o += [
            ("trainer.max_epochs", b.ptb_epochs),
            ("model.lr_decay", b.ptb_decay),
            ("model.lr_decay_after", b.ptb_decay_after),
            ("trainer.val_check_interval", b.ptb_val_interval),
        ]
        if b.ptb_limit_train is not None:
            o.append(("trainer.limit_train_batches", b.ptb_limit_train))
    else:
        limit = fraction if b.ptb_limit_train is None else max(1, round(b.ptb_limit_train * fraction))
        o += [
            ("trainer.limit_train_batches", limit),
            ("trainer.max_epochs", math.ceil(b.ptb_epochs / fraction)),
            ("model.lr_decay", round(b.ptb_decay**fraction, 6)),
            ("model.lr_decay_after", round(b.ptb_decay_after / fraction)),
            ("trainer.check_val_every_n_epoch", 1),
        ]
    return [*o, ("trainer.callbacks", [early_stopping(b.ptb_patience)])]


def _tune_overrides(b: Budget, lr: float) -> list[tuple[str, Any]]:
    """Tuning: ``tune_epochs`` at a constant lr, validated every half epoch, no test."""
    o = _ptb_common(b) + [
        ("model.optimizer.init_args.lr", lr),
        ("trainer.max_epochs", b.tune_epochs),
        ("model.lr_decay", 1.0),
        ("trainer.val_check_interval", b.ptb_val_interval),
        ("test_after_fit", False),
    ]
    if b.ptb_limit_train is not None:
        o.append(("trainer.limit_train_batches", b.ptb_limit_train))
    return o


# ---- PTB: tuning, the contest at equal width and at equal parameters, C4 ---------------------------------------
def contest_width(core: str, matching: str, variant: Variant = ()) -> int:
    """The core's hidden width: 200 at equal width; at equal parameters the width whose total parameter count
    (embedding and softmax at 200, core, projection to 200) is closest to tied 2x200's."""
    if matching == "width" or core == "tied":
        return PTB_WIDTH
    target = core_parameters(CORES["tied"].spec(PTB_WIDTH), PTB_VOCAB)
    spec = CORES[core].spec(PTB_WIDTH, variant=variant)
    return matched_width(spec, PTB_VOCAB, target, keys=("hidden_size",), output_size=PTB_WIDTH)


def _core_overrides(core: str, matching: str, reg: float | None, variant: Variant = ()) -> list[tuple[str, Any]]:
    width = contest_width(core, matching, variant)
    o: list[tuple[str, Any]] = [("model.core", CORES[core].spec(width, reg, variant))]
    if width != PTB_WIDTH:
        o.append(("model.output_size", PTB_WIDTH))
    return o


def _cost(core: str, width: int) -> float:
    """Training cost per token relative to tied 2x200: the softmax part (~0.4) stays, the core part scales ~H^2."""
    return 0.4 + (CORES[core].cost - 0.4) * (width / PTB_WIDTH) ** 2


def tuning_runs(b: Budget, core: str, matching: str, runs_dir: Path | None = None) -> list[RunSpec]:
    """The short-budget grid of one core: every lr x every regularization strength (if it has one). With
    ``runs_dir``, an edge choice is extended: once the grid has finished, if the best lr is the largest (smallest)
    tried, the grid gains 2x (0.5x) that lr at the best strength, up to ``MAX_LR_EXTENSIONS`` times, so no core's
    lr is chosen at the edge of what was tried. Then, for a core with ``variants``, each variant at the chosen lr
    and strength (a second stage: structure is tuned after the optimizer, not crossed with it)."""
    regs = CORES[core].reg[1] if CORES[core].reg else (None,)
    out = [_tuning_spec(b, core, matching, lr, reg) for lr, reg in itertools.product(b.tune_lrs, regs)]
    if runs_dir is None:
        return out
    for _ in range(MAX_LR_EXTENSIONS):
        scores = _tuning_scores(out, runs_dir)
        if scores is None:
            return out
        lrs = sorted({s[1] for s in scores})
        _, best_lr, best_reg = min(scores, key=lambda s: s[0])
        if len(lrs) < 2 or lrs[0] < best_lr < lrs[-1]:
            break
        out.append(_tuning_spec(b, core, matching, best_lr * 2 if best_lr == lrs[-1] else best_lr / 2, best_reg))
    scores = _tuning_scores(out, runs_dir)
    if scores is not None and CORES[core].variants:
        _, best_lr, best_reg = min(scores, key=lambda s: s[0])
        out += [_tuning_spec(b, core, matching, best_lr, best_reg, v) for v in CORES[core].variants]
    return out


MAX_LR_EXTENSIONS = 2


def _tuning_spec(b: Budget, core: str, matching: str, lr: float, reg: float | None, variant: Variant = ()) -> RunSpec:
    width = contest_width(core, matching, variant)
    factors = (("matching", matching), ("lr", lr)) + ((("reg", reg),) if reg is not None else ()) + variant
    return RunSpec(
        claims=("tune",), core=core, experiment=RECIPE, seed=b.tune_seed, factors=factors,
        overrides=(*_core_overrides(core, matching, reg, variant), *_tune_overrides(b, lr)),
        tokens=int(PTB_TRAIN_TOKENS * b.tune_epochs * _train_fraction(b)),
        val_tokens=int(PTB_VALID_TOKENS * b.tune_epochs / b.ptb_val_interval), cost=_cost(core, width),
    )  # fmt: skip


def _train_fraction(b: Budget) -> float:
    return 1.0 if b.ptb_limit_train is None else min(1.0, b.ptb_limit_train * 400 / PTB_TRAIN_TOKENS)


def _scored(tuning: list[RunSpec], runs_dir: Path) -> list[tuple[float, RunSpec]] | None:
    """(best val loss, spec) of every tuning run (diverged: +inf); ``None`` until all of them have finished."""
    from lrnn.paper.runner import finished_version

    scores = []
    for spec in tuning:
        version = finished_version(runs_dir, spec)
        if version is None:
            return None
        results = json.loads((version / "results.json").read_text())
        loss = results.get("best_val_loss") if results.get("status") == "completed" else None
        scores.append((math.inf if loss is None else float(loss), spec))
    return scores


def _tuning_scores(tuning: list[RunSpec], runs_dir: Path) -> list[tuple[float, float, float | None]] | None:
    """(best val loss, lr, reg) of the lr x strength stage (variants are not scored here: see ``tuned``);
    ``None`` until all of them have finished."""
    scored = _scored([spec for spec in tuning if not spec.variant], runs_dir)
    return None if scored is None else [(loss, spec.factor("lr"), spec.factor("reg")) for loss, spec in scored]


def tuned(tuning: list[RunSpec], runs_dir: Path) -> tuple[float, float | None, Variant] | None:
    """(lr, reg, variant) of the tuning run with the lowest best validation loss (diverged: +inf); ``None`` until
    all of them (variants included) have finished."""
    scored = _scored(tuning, runs_dir)
    if not scored:
        return None
    best = min(scored, key=lambda s: s[0])[1]
    return best.factor("lr"), best.factor("reg"), best.variant


def ptb_runs(b: Budget, runs_dir: Path) -> list[RunSpec]:
    """PTB, in the order that answers the seed first: per matching (equal width, then equal parameters) the tuning
    runs and then the contest runs (equal width: + C2, C9, C10 from tied and untied; equal parameters: + C3's text
    half, C7, C8); then C4's smaller data fractions (tied and untied at equal width, their tuned lr), smallest
    fraction first and tied/untied paired by seed, so that C4's rule (smallest fraction vs the whole stream) can
    decide before the middle fractions are in."""
    contest: list[RunSpec] = []
    fractions: list[RunSpec] = []
    both = "tied" in b.width_cores and "tied" in b.params_cores and "width" in b.matchings and "params" in b.matchings
    for matching in b.matchings:
        cores = b.width_cores if matching == "width" else b.params_cores
        tuning = {core: tuning_runs(b, core, matching, runs_dir) for core in cores}
        contest += [r for core in cores for r in tuning[core]]
        for core in cores:
            choice = tuned(tuning[core], runs_dir)
            lr, reg, variant = choice if choice is not None else (b.tune_lrs[0], None, ())
            width = contest_width(core, matching, variant)
            claims = ["contest"]
            if matching == "width" and core in ("tied", "untied"):
                claims += ["C4", "C2", "C9", "C10"]
            if matching == "params" or (core == "tied" and both):
                claims += ["C3", "C8"] + (["C7"] if core in ("tied", "untied") else [])
            factors = [("matching", "both" if core == "tied" and both else matching), ("width", width), ("lr", lr)]
            factors += ([("reg", reg)] if reg is not None else []) + list(variant)
            for fraction in b.fractions if matching == "width" and core in ("tied", "untied") else (1.0,):
                for seed in b.seeds:
                    spec = RunSpec(
                        claims=tuple(claims) if fraction == 1.0 else ("C4",), core=core, experiment=RECIPE,
                        overrides=(*_core_overrides(core, matching, reg, variant), *_ptb_overrides(b, lr, fraction)),
                        seed=seed,
                        factors=tuple(factors) + ((("fraction", fraction),) if fraction != 1.0 else ()),
                        evaluate=fraction == 1.0,
                        train_eval="C4" in claims or fraction != 1.0,
                        tokens=int(PTB_TRAIN_TOKENS * b.ptb_epochs * _train_fraction(b)),
                        val_tokens=int(PTB_VALID_TOKENS * b.ptb_epochs / b.ptb_val_interval),
                        cost=_cost(core, width),
                        waiting="" if choice is not None else f"tuning of {core} at equal {matching}",
                    )  # fmt: skip
                    (contest if fraction == 1.0 else fractions).append(spec)
    out = contest + sorted(fractions, key=lambda s: (dict(s.factors)["fraction"], s.seed))  # stable: tied first
    if b.wide_ptb:  # C7 on PTB at the untied model's size: tied_ptb_wide (17M parameters) vs untied 2x200
        for core, experiment in (("tied_wide", "tied_ptb_wide"), ("untied", "untied_ptb_dropout")):
            for seed in b.seeds:
                out.append(
                    RunSpec(
                        claims=("C7",), core=core, experiment=experiment,
                        overrides=tuple(_ptb_overrides(b, 1.0)), seed=seed, factors=(("size", "untied"),),
                        tokens=PTB_TRAIN_TOKENS * b.ptb_epochs, cost=4.0,
                    )
                )  # fmt: skip
    return out


# ---- the grid ---------------------------------------------------------------------------------------------------
def _ptb_section(profile: str, runs_dir: Path) -> list[RunSpec]:
    return ptb_runs(PROFILES[profile], runs_dir)


def _rule_section(profile: str, runs_dir: Path) -> list[RunSpec]:
    from lrnn.paper.tasks import TASK_BUDGETS, rule_runs

    return rule_runs(TASK_BUDGETS[profile])


def _recall_section(profile: str, runs_dir: Path) -> list[RunSpec]:
    from lrnn.paper.tasks import TASK_BUDGETS, recall_runs

    return recall_runs(TASK_BUDGETS[profile])


# The runs a claim can read (its ``runs`` in lrnn/paper/claims.py): PTB (tuning, the contest, C4's fractions, the
# evaluations), the position-rule task and delayed recall (lrnn/paper/tasks.py).
SECTIONS = {"ptb": _ptb_section, "rule": _rule_section, "recall": _recall_section}


def build_grid(profile: str, runs_dir: Path | str | None = None) -> list[RunSpec]:
    """Every run of a profile in the order to run them: each grid section a claim reads, in the order of the claims,
    deduplicated by cache key (a run several claims use is listed once, claims merged). Contest runs whose core's
    tuning is not finished in ``runs_dir`` (default ``runs/paper-<profile>``) are listed with ``waiting`` set."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs" / f"paper-{profile}"
    sections = dict.fromkeys(section for claim in CLAIM_LIST for section in claim.runs)
    return dedupe(run for section in sections for run in SECTIONS[section](profile, runs_dir))


def dedupe(runs: Iterable[RunSpec]) -> list[RunSpec]:
    """One spec per cache key, in first-seen order; the claims of duplicates are merged."""
    out: dict[str, RunSpec] = {}
    for r in runs:
        if r.key in out:
            merged = tuple(dict.fromkeys(out[r.key].claims + r.claims))
            out[r.key] = replace(
                out[r.key], claims=merged, evaluate=out[r.key].evaluate or r.evaluate,
                train_eval=out[r.key].train_eval or r.train_eval,
            )  # fmt: skip
        else:
            out[r.key] = r
    return list(out.values())


TIED_TOKENS_PER_S = 3500.0  # tied 2x200 PTB training, one thread of this 2-core CPU with the other core busy


def estimate_minutes(run: RunSpec, tied_tokens_per_s: float = TIED_TOKENS_PER_S, startup_s: float = 20.0) -> float:
    """Rough minutes for one run on one CPU thread, validation and evaluation included (evaluation runs ~3x faster
    per token than training). An upper bound for runs that stop early."""
    seconds = startup_s + (run.tokens + run.val_tokens / 3) * run.cost / tied_tokens_per_s
    if run.evaluate:  # lrnn evaluate, 5 lengths x carried/reset on PTB val (measured: untied 2x200 ~210 s, loaded CPU)
        seconds += 60.0 + 80.0 * run.cost
    return seconds / 60.0
