"""``lrnn`` command line: LightningCLI (jsonargparse) with lrnn's defaults, loggers and fit-then-test.

    lrnn fit --config lrnn/experiments/tied_ptb.yaml [--name tied_ptb] [--wandb auto|online|offline|off]
    lrnn test --config lrnn/experiments/tied_ptb.yaml --ckpt_path runs/tied_ptb/version_0/checkpoints/best.ckpt
    lrnn evaluate runs/tied_ptb/version_0 [--ckpt best|last|PATH] [--lengths 10 20 40] [--out DIR]
    lrnn generate runs/tied_ptb/version_0 --prompt "the market" [--max_tokens 50] [--temperature 1] [--seed 0]
    lrnn score runs/tied_ptb/version_0 FILE [--json]

    lrnn fit --resume runs/tied_ptb/version_0   # continue an interrupted run in its folder and W&B run

Every config is layered on ``lrnn/configs/defaults.yaml``, and on the configs its ``extends:`` names (``lrnn.configs``).
``fit`` evaluates the best-validation checkpoint on the test split when it finishes (``--test_after_fit false`` to skip)
and writes ``results.json`` beside the metrics, with ``"status"``: ``running`` while it trains, then ``completed``,
``interrupted`` (Ctrl-C / SIGTERM: a checkpoint of the current step was saved; exit status 130 / 143), ``diverged`` (a
non-finite training loss; exit status 3) or ``failed`` (with the error; exit status 1). Bad arguments or data: a
one-line error and exit status 2.

``model.bptt: tbptt`` and ``full`` train with manual optimization, where Lightning forbids
``trainer.gradient_clip_val`` and ``trainer.accumulate_grad_batches``: the CLI moves them to ``model.grad_clip``
(+ ``grad_clip_algorithm``) and ``model.accumulate_grad_batches`` (an explicit ``model.grad_clip`` wins), so every
config and ``--trainer.gradient_clip_val`` mean the same in every mode. The saved ``config.yaml`` shows the result.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lrnn.argerrors import unknown_option
from lrnn.configs import DEFAULTS, EXTENDS, ConfigError, expand_config_args
from lrnn.lightning.interrupts import MidEpochCheckpoint, RunInterrupted
from lrnn.lightning.lm import LitLanguageModel, TrainingDiverged
from lrnn.loggers import git_commit, make_loggers, portable, quiet_known_noise, wandb_run_info
from lrnn.progress import LMProgressBar

EVALUATE_HELP = "Length generalization, per-position loss and state reset of a run (lrnn evaluate RUN --help)"


class LogConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` to the run folder and logs the full config and git commit to every logger."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir
        if log_dir is not None and (Path(log_dir) / self.config_filename).exists():
            # a resumed run: keep the first config, add this one beside it
            n = len(list(Path(log_dir).glob("config*.yaml")))
            self.config_filename = f"config.resume{n}.yaml"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": json.loads(config), "git_commit": git_commit()})


class LRNNArgumentParser(LightningArgumentParser):
    """Options by their full names only (see :mod:`lrnn.argerrors`); an unknown option is one line naming the
    closest valid one, and exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if self.exit_on_error:
            unknown_option(message, getattr(ex, "subcommand_parser", None) or self)
        return super().error(message, ex)


class LRNNCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.add_argument("--name", type=str | None, default=None, help="experiment name (default: config stem)")
        parser.add_argument(  # read by lrnn.configs.expand_config_args before parsing; here so a config may name it
            f"--{EXTENDS}", type=str | list[str] | None, default=None, help="configs this one is layered on (first)"
        )
        parser.add_argument("--wandb", type=str, default="auto", help="auto | online | offline | off")
        parser.add_argument("--wandb_group", type=str | None, default=None, help="W&B group (default: the name)")
        parser.add_argument("--wandb_tags", type=list[str] | None, default=None, help="W&B tags, e.g. [core:tied]")
        parser.add_argument("--wandb_config", type=dict[str, Any] | None, default=None, help="extra W&B config keys")
        parser.add_argument("--out_dir", type=str, default="runs", help="folder for metrics, checkpoints, W&B runs")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="fit: test the best checkpoint")
        parser.add_argument(
            "--resume", type=str | None, default=None, help="fit: continue the run in this runs/<name>/version_<k>"
        )
        parser.add_argument(
            "--checkpoint_every_minutes", type=float, default=30.0, help="fit: mid-epoch last.ckpt interval (0: off)"
        )
        parser.add_argument(
            "--wandb_log_model", type=bool, default=False, help="fit: upload best.ckpt to W&B as a model artifact"
        )

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        # `lrnn evaluate` has its own argparse (main() hands it over before this parser runs); list it in --help
        evaluate = LRNNArgumentParser(description=EVALUATE_HELP)
        parser._subcommands_action.add_subcommand("evaluate", evaluate, help=EVALUATE_HELP)

    def _run_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._run_config()
        config[EXTENDS] = None  # the bases were read before this config (main); the saved config.yaml is complete
        move_manual_optimization_args(config)
        self._resume: dict[str, Any] | None = None
        if self.subcommand != "fit":  # evaluating a checkpoint in a new run folder: nothing of its folder is reused
            warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
        if self.subcommand == "fit" and not config.get("resume"):  # a requeued SLURM job continues its own run
            requeued = slurm_run_to_resume(Path(config["out_dir"]) / self._experiment_name())
            if requeued is not None:
                print(f"SLURM job {slurm_job_key()} was requeued: resuming {requeued}", file=sys.stderr)
                config["resume"] = str(requeued)
        if self.subcommand == "fit" and config.get("resume"):
            self._resume = resume_target(config["resume"], config.get("trainer"))
            config["ckpt_path"] = self._resume["checkpoint"]
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # ours

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if self.subcommand == "fit" and isinstance(self.model, LitLanguageModel):
            # build the optimizer once now: a bad setting (e.g. a negative lr) is an argument error, reported
            # before any run folder exists, not a failed run
            try:
                self.model.configure_optimizers()
            except ValueError as err:
                raise ValueError(f"model.optimizer: {err}") from None
        if self.subcommand == "fit" and self._resume is not None:
            check_resume_processes(self._run_config()["resume"], self._resume["processes"], self.trainer.world_size)

    def _experiment_name(self) -> str:
        config = self._run_config()
        if getattr(self, "_resume", None):
            return self._resume["name"]
        if config.get("name"):
            return config["name"]
        paths = [p for p in (config.get("config") or []) if p is not None]
        return Path(str(paths[-1])).stem if paths else "lrnn"

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._run_config()
        trainer_config = self._get(self.config_init, "trainer", default={})
        resume = getattr(self, "_resume", None)
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(
                self._experiment_name(),
                config.get("seed_everything"),
                resume["out_dir"] if resume else config["out_dir"],
                config["wandb"],
                group=config.get("wandb_group"),
                tags=config.get("wandb_tags"),
                extra_config=config.get("wandb_config"),
                version=resume["version"] if resume else None,
                wandb_id=resume["wandb_id"] if resume else None,
            )
        callbacks = list(trainer_config.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            # fast_dev_run: Lightning still writes last.ckpt at train end, into the working directory (no logger)
            save_last = not trainer_config.get("fast_dev_run")
            callbacks.append(
                ModelCheckpoint(monitor="val/loss", mode="min", save_top_k=1, save_last=save_last, filename="best")
            )
        if self.subcommand == "fit" and not any(isinstance(c, MidEpochCheckpoint) for c in callbacks):
            callbacks.append(MidEpochCheckpoint(every_minutes=config.get("checkpoint_every_minutes")))
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            callbacks.append(LMProgressBar())
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    # ---- fit: a results.json that always says how the run ended ----------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand != "fit":
            return super()._run_subcommand(subcommand)
        try:
            super()._run_subcommand(subcommand)
        except RunInterrupted as err:
            self._write_results("interrupted", error=str(err), extra={"checkpoint": err.checkpoint})
            resume = self.trainer.log_dir
            print(
                f"interrupted: {err}. Resume: make experiment RESUME={resume}  (or: lrnn fit --resume {resume})",
                file=sys.stderr,
            )
            self.exit_code = 128 + err.signum
        except TrainingDiverged as err:
            diverged = {"step": err.step, "loss": str(err.loss), "lr": err.lr}
            self._write_results("diverged", error=str(err), extra={"diverged": diverged})
            print(f"error: {err}", file=sys.stderr)
            self.exit_code = 3
        except (KeyboardInterrupt, SystemExit) as err:  # a second Ctrl-C, or Lightning's own SIGTERM exit
            self.exit_code = 128 + signal.SIGINT
            if self._remove_if_nothing_to_resume():
                return
            self._write_results("interrupted", error=f"{type(err).__name__} (no checkpoint of the current step)")
        except Exception as err:
            self._write_results("failed", error=f"{type(err).__name__}: {err}")
            raise

    def _remove_if_nothing_to_resume(self) -> bool:
        """Interrupted before the first checkpoint of a new run (e.g. Ctrl-C during start-up): remove its folder,
        which holds nothing to resume from, and say so. A resumed run's folder is always kept."""
        log_dir = self.trainer.log_dir if getattr(self, "trainer", None) is not None else None
        if getattr(self, "_resume", None) or not self.trainer.is_global_zero or log_dir is None:
            return False
        folder = Path(log_dir)
        if not folder.is_dir() or any(folder.glob("checkpoints/*.ckpt")):
            return False
        shutil.rmtree(folder)
        print(f"interrupted before the first checkpoint: removed {folder} (nothing to resume); start the run again")
        return True

    def before_fit(self) -> None:
        self._t0 = time.time()
        self._fit_seconds: float | None = None
        self._write_results("running")

    def after_fit(self) -> None:
        trainer = self.trainer
        self._fit_seconds = time.time() - self._t0
        extra: dict[str, Any] = {"fit": fit_summary(trainer.callback_metrics)}
        ckpt = trainer.checkpoint_callback
        model = self.model
        if (
            isinstance(ckpt, ModelCheckpoint)
            and isinstance(model, LitLanguageModel)
            and model.last_val_step != trainer.global_step
            and trainer.limit_val_batches
            and not trainer.fast_dev_run
        ):  # fit ended mid-epoch (max_steps, max_time): validate the final weights so best.ckpt covers them
            trainer.validate(model, datamodule=self.datamodule, verbose=False)
            save_if_best(trainer, ckpt)
        if self._run_config()["test_after_fit"] and not trainer.fast_dev_run:
            ckpt_path = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
            t0 = time.time()
            trainer.test(model, datamodule=self.datamodule, ckpt_path=ckpt_path, weights_only=False)  # our own file
            extra["test_seconds"] = round(time.time() - t0, 1)
            extra["test"] = _scalars(trainer.callback_metrics, prefix="test/")
            extra["tested_checkpoint"] = ckpt_path or "the final weights (no validation checkpoint)"
        self._write_results("completed", extra=extra)
        if trainer.is_global_zero:
            publish_to_wandb(trainer, extra, log_model=bool(self._run_config().get("wandb_log_model")))

    def _write_results(self, status: str, error: str | None = None, extra: dict[str, Any] | None = None) -> None:
        trainer = self.trainer
        log_dir = trainer.log_dir
        if not trainer.is_global_zero or log_dir is None:
            return
        path = Path(log_dir) / "results.json"
        if status == "running":  # a resumed run keeps the records of its earlier attempts
            self._history = previous_attempts(path)
            for logger in trainer.loggers:  # create the CSV folder first (it warns about non-empty folders)
                if isinstance(logger, CSVLogger):
                    _ = logger.experiment
        results: dict[str, Any] = {
            "name": self._experiment_name(),
            "status": status,
            "seed": self._run_config().get("seed_everything"),
        }
        if error:
            results["error"] = error
        if slurm_job_key():
            results["slurm_job_id"] = slurm_job_key()
        resume = getattr(self, "_resume", None)
        if resume:
            results["resumed_from"] = {"checkpoint": resume["checkpoint"], "step": resume["step"]}
        if status != "running":
            # two names, no bare "epoch": how many epochs finished (a 2-epoch run: 2), and the index of the last
            # epoch that trained, 0-based like Lightning's bar, the "epoch N:" lines and metrics.csv (then: 1)
            progress = trainer.fit_loop.epoch_progress.current
            results["epochs_completed"] = progress.completed
            results["last_epoch"] = progress.started - 1 if progress.started else None
            results["global_step"] = trainer.global_step
            results["fit"] = fit_summary(trainer.callback_metrics)  # after_fit passes the pre-test values
            fit_seconds = getattr(self, "_fit_seconds", None)  # set when fit ended; the test pass is not fit time
            results["fit_seconds"] = round(fit_seconds if fit_seconds is not None else time.time() - self._t0, 1)
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_score is not None:
            results["best_val_loss"] = float(ckpt.best_model_score)
            results["best_checkpoint"] = ckpt.best_model_path
        results.update(extra or {})
        if isinstance(self.model, LitLanguageModel):
            results["params"] = self.model.model.num_parameters()
        results["wandb"] = wandb_run_info(trainer.loggers)
        results["git_commit"] = git_commit()
        results["argv"] = sys.argv[1:]
        if getattr(self, "_history", None):
            results["earlier_attempts"] = self._history
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(finite_json(portable(results)), indent=2, allow_nan=False)
        tmp = path.with_name(f".results.{os.getpid()}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
        if status != "running":
            print(f"results: {path}\n{text}")


def move_manual_optimization_args(config: Any) -> None:
    """For ``model.bptt`` other than ``window``: move the trainer's clipping / accumulation to the model (in place)."""
    model, trainer = config.get("model"), config.get("trainer")
    if model is None or trainer is None or (model.get("bptt") or "window") == "window":
        return
    clip = trainer.get("gradient_clip_val")
    if clip:
        if model.get("grad_clip") is None:
            model["grad_clip"] = float(clip)
            model["grad_clip_algorithm"] = trainer.get("gradient_clip_algorithm") or "norm"
        trainer["gradient_clip_val"] = None
    accumulate = trainer.get("accumulate_grad_batches") or 1
    if accumulate != 1:
        if (model.get("accumulate_grad_batches") or 1) == 1:
            model["accumulate_grad_batches"] = accumulate
        trainer["accumulate_grad_batches"] = 1


def _scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


# step-level values that callback_metrics keeps from whichever step logged them last (stale at the end of fit)
_STEP_KEYS = ("train/grad_norm",)


def fit_summary(metrics: dict[str, Any]) -> dict[str, float]:
    """The last epoch's train / validation metrics (epoch-level values only)."""
    return {k: v for k, v in _scalars(metrics).items() if k.split("/")[0] in ("train", "val") and k not in _STEP_KEYS}


def finite_json(value: Any) -> Any:
    """``value`` with NaN / inf floats replaced by None, so strict JSON parsers accept the file."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def previous_attempts(path: Path) -> list[dict[str, Any]]:
    """The records of earlier attempts of a run (a resumed run appends its own; nothing is lost)."""
    if not path.exists():
        return []
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return [{"unreadable_results": path.read_text(errors="replace")[:2000]}]
    history = earlier.pop("earlier_attempts", [])
    return [*history, earlier]


def resume_target(run_dir: str, trainer: Any = None) -> dict[str, Any]:
    """What ``--resume runs/<name>/version_<k>`` continues: folder parts, checkpoint, step, W&B run id.

    A run that completed is refused (ValueError, before anything is touched) unless ``trainer`` (the resumed
    command's trainer config) raises its budget: a larger ``max_epochs``, ``max_steps`` or ``max_time`` than the
    run's last config."""
    folder = Path(run_dir).expanduser()
    match = re.fullmatch(r"version_(\d+)", folder.name)
    if not folder.is_dir() or match is None:
        raise ValueError(f"--resume {run_dir}: expected an existing run folder like runs/<name>/version_<k>")
    checkpoint = folder / "checkpoints" / "last.ckpt"
    if not checkpoint.exists():
        raise ValueError(f"--resume {run_dir}: no checkpoints/last.ckpt (the run stopped before its first checkpoint)")
    record: dict[str, Any] = {}
    results = folder / "results.json"
    if results.exists():
        try:
            record = json.loads(results.read_text())
        except ValueError:
            pass
    if record.get("status") == "completed" and not _budget_raised(folder, trainer):
        raise ValueError(
            f"--resume {run_dir}: that run completed (results.json); nothing to resume and nothing was changed. "
            "To train it further raise --trainer.max_epochs or --trainer.max_steps; else start a new run"
        )
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    wandb_id = (record.get("wandb") or {}).get("id")
    return {
        "out_dir": str(folder.parent.parent),
        "name": folder.parent.name,
        "version": int(match.group(1)),
        "checkpoint": str(checkpoint),
        "step": saved.get("global_step"),
        "wandb_id": wandb_id,
        "processes": mid_epoch_processes(saved),
    }


def mid_epoch_processes(checkpoint: dict[str, Any]) -> int | None:
    """How many processes must resume ``checkpoint``: the number that wrote it when it was taken in the middle of an
    epoch (each process carries the hidden state of its own streams), None at an epoch's end (any number)."""
    ranks = checkpoint.get("lrnn_rank_train_states")
    if ranks is not None:
        return len(ranks["states"]) if ranks.get("mid_epoch") else None
    single = checkpoint.get("lrnn_train_state")
    return 1 if single is not None and single.get("mid_epoch", True) else None


def check_resume_processes(run_dir: str, needed: int | None, world_size: int) -> None:
    """Refuse (ValueError, before the run folder is touched) to resume a mid-epoch checkpoint with another number of
    processes than the one that wrote it."""
    if needed is not None and needed != world_size:
        raise ValueError(
            f"--resume {run_dir}: its last.ckpt was taken in the middle of an epoch by {needed} process"
            f"{'es' if needed > 1 else ''}, each carrying the hidden state of its own streams; resume it with {needed} "
            f"(--trainer.devices x --trainer.num_nodes), not {world_size}. Nothing was changed"
        )


def _budget_raised(folder: Path, trainer: Any) -> bool:
    """Whether ``trainer`` allows more training than the run's last saved config (config.yaml, config.resumeN.yaml)."""
    import yaml

    configs = sorted(folder.glob("config*.yaml"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if trainer is None or not configs:
        return False
    try:
        saved = yaml.safe_load(configs[-1].read_text()).get("trainer") or {}
    except (OSError, ValueError, AttributeError):
        return False
    for key in ("max_epochs", "max_steps", "max_time"):
        old, new = saved.get(key), trainer.get(key)
        if new != old and new not in (None, -1) and (old in (None, -1) or not isinstance(new, int) or new > old):
            return True
    return False


def publish_to_wandb(trainer: Trainer, extra: dict[str, Any], log_model: bool = False) -> None:
    """Put the best validation loss / perplexity and the test numbers into the W&B run summary (the table of runs
    shows them), and with ``log_model`` the best checkpoint as a ``model`` artifact (aliases ``best``, ``latest``).
    The artifact goes through ``run.log_artifact`` rather than ``WandbLogger(log_model=...)``, which Lightning refuses
    in offline mode, lrnn's default without an API key: offline the file is kept for ``wandb sync``."""
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_score if isinstance(ckpt, ModelCheckpoint) else None
    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        run = logger.experiment
        summary: dict[str, Any] = {f"test/{k.split('/', 1)[1]}": v for k, v in (extra.get("test") or {}).items()}
        if best is not None and math.isfinite(float(best)):
            summary |= {"best/val_loss": float(best), "best/val_ppl": math.exp(float(best))}
        summary["status"] = "completed"
        run.summary.update(summary)
        path = getattr(ckpt, "best_model_path", "")
        if log_model and path and Path(path).is_file():
            import wandb

            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={**summary, "path": path})
            artifact.add_file(path, name="best.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])


def slurm_job_key() -> str | None:
    """This SLURM job (``<array job>_<task>`` for array tasks), None outside SLURM."""
    array_id, task_id = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_id}_{task_id}" if array_id and task_id else os.environ.get("SLURM_JOB_ID") or None


def slurm_run_to_resume(experiment_dir: Path) -> Path | None:
    """The unfinished run folder of this SLURM job (a requeued job runs its command again): its ``results.json``
    names the job and it has a ``last.ckpt``. None outside SLURM or on the job's first start."""
    job = slurm_job_key()
    if job is None or not experiment_dir.is_dir():
        return None
    for folder in sorted(experiment_dir.glob("version_*"), reverse=True):
        try:
            results = json.loads((folder / "results.json").read_text())
        except (OSError, ValueError):
            continue
        if results.get("slurm_job_id") == job and results.get("status") != "completed":
            return folder if (folder / "checkpoints" / "last.ckpt").is_file() else None
    return None


def save_if_best(trainer: Trainer, ckpt: ModelCheckpoint) -> None:
    """After an extra validation at the end of fit: write ``best.ckpt`` if these weights are the best so far."""
    score = trainer.callback_metrics.get(ckpt.monitor or "val/loss")
    if score is None or not math.isfinite(float(score)) or ckpt.dirpath is None:
        return
    best = ckpt.best_model_score
    if best is None or float(score) < float(best):
        path = str(Path(ckpt.dirpath) / f"{ckpt.filename or 'best'}{ckpt.FILE_EXTENSION}")
        ckpt.best_model_path, ckpt.best_model_score = path, score.detach().clone()  # saved with the checkpoint
        ckpt.best_k_models = {path: ckpt.best_model_score}
        trainer.save_checkpoint(path)


# Errors a user causes (bad numbers, paths, data): print the cause, not a traceback
USER_ERRORS = (ValueError, FileNotFoundError, UnicodeDecodeError, NotADirectoryError, IsADirectoryError)


def root_cause(err: BaseException) -> BaseException | None:
    """The first user error in ``err``'s chain (jsonargparse wraps constructor errors in Union-type noise)."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        e = stack.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, USER_ERRORS) and type(e).__module__ == "builtins" and _raised_by_lrnn(e):
            return e
        stack += [c for c in (e.__cause__, e.__context__) if c is not None]
    return None


def _raised_by_lrnn(err: BaseException) -> bool:
    tb = err.__traceback__
    frames = traceback.extract_tb(tb) if tb is not None else []
    package = str(Path(__file__).parent)
    return bool(frames) and frames[-1].filename.startswith(package)  # raised in lrnn's own code


def main(args: list[str] | None = None) -> int:
    """The ``lrnn`` command; returns the exit status (0 on success)."""
    quiet_known_noise()
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["evaluate"]:  # `lrnn evaluate RUN ...`: its own argparse (lrnn/evaluate.py)
        from lrnn.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    if argv[:1] in (["generate"], ["score"]):  # `lrnn generate RUN --prompt ...`, `lrnn score RUN FILE` (lrnn/use.py)
        from lrnn import use

        return (use.generate_main if argv[0] == "generate" else use.score_main)(argv[1:])
    if "--resume" in argv and "--config" not in argv and "-c" not in argv:
        i = argv.index("--resume")
        if i + 1 < len(argv):  # the run's own saved config
            argv[i:i] = ["--config", str(Path(argv[i + 1]) / "config.yaml")]
    try:
        argv = expand_config_args(argv)  # `extends:` in a config: its bases first, as more --config files
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args is None:  # LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv[1:], argv = argv, None
    default_files = {"default_config_files": [str(DEFAULTS)]}
    if argv is not None:  # called from Python with explicit args: LightningCLI warns that sys.argv is ignored
        warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within")
    try:
        cli = LRNNCLI(
            LitLanguageModel,
            L.LightningDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={sub: default_files for sub in ("fit", "validate", "test", "predict")},
            parser_class=LRNNArgumentParser,
            args=argv,
        )
    except SystemExit:
        raise
    except KeyboardInterrupt:  # Ctrl-C while parsing / building the model and data: no run folder yet
        print("interrupted during start-up (no run folder was made)", file=sys.stderr)
        return 128 + signal.SIGINT
    except MisconfigurationException as err:  # e.g. --trainer.accelerator gpu where there is none
        if os.environ.get("LRNN_DEBUG"):
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:
        cause = root_cause(err)
        if cause is None or os.environ.get("LRNN_DEBUG"):
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    return getattr(cli, "exit_code", 0)


if __name__ == "__main__":
    sys.exit(main())
