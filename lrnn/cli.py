"""``lrnn`` command line: LightningCLI (jsonargparse) with lrnn's defaults, loggers and fit-then-test.

    lrnn fit --config experiments/tied_ptb.yaml [--name tied_ptb] [--wandb auto|online|offline|off]
    lrnn test --config experiments/tied_ptb.yaml --ckpt_path runs/tied_ptb/version_0/checkpoints/best.ckpt
    lrnn evaluate runs/tied_ptb/version_0 [--ckpt best|last|PATH] [--lengths 10 20 40] [--out DIR]

Every config is layered on ``lrnn/configs/defaults.yaml``. ``fit`` evaluates the best-validation checkpoint on the
test split when it finishes (``--test_after_fit false`` to skip) and writes ``results.json`` beside the metrics.

``model.bptt: tbptt`` and ``full`` train with manual optimization, where Lightning forbids
``trainer.gradient_clip_val`` and ``trainer.accumulate_grad_batches``: the CLI moves them to ``model.grad_clip``
(+ ``grad_clip_algorithm``) and ``model.accumulate_grad_batches`` (an explicit ``model.grad_clip`` wins), so every
config and ``--trainer.gradient_clip_val`` mean the same in every mode. The saved ``config.yaml`` shows the result.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lrnn.lightning.lm import LanguageModel
from lrnn.loggers import git_commit, make_loggers

DEFAULTS = Path(__file__).parent / "configs" / "defaults.yaml"


class LogConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` to the run folder and logs the full config and git commit to every logger."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": json.loads(config), "git_commit": git_commit()})


class LRNNCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.add_argument("--name", type=str | None, default=None, help="experiment name (default: config stem)")
        parser.add_argument("--wandb", type=str, default="auto", help="auto | online | offline | off")
        parser.add_argument("--wandb_group", type=str | None, default=None, help="W&B group (default: the name)")
        parser.add_argument("--wandb_tags", type=list[str] | None, default=None, help="W&B tags, e.g. [core:tied]")
        parser.add_argument("--out_dir", type=str, default="runs", help="folder for metrics, checkpoints, W&B runs")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="fit: test the best checkpoint")

    def _run_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        move_manual_optimization_args(self._run_config())

    def _experiment_name(self) -> str:
        config = self._run_config()
        if config.get("name"):
            return config["name"]
        paths = [p for p in (config.get("config") or []) if p is not None]
        return Path(str(paths[-1])).stem if paths else "lrnn"

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._run_config()
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(
                self._experiment_name(),
                config.get("seed_everything"),
                config["out_dir"],
                config["wandb"],
                group=config.get("wandb_group"),
                tags=config.get("wandb_tags"),
            )
        callbacks = trainer_config.get("callbacks") or []
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            kwargs["callbacks"] = [
                *callbacks,
                ModelCheckpoint(monitor="val/loss", mode="min", save_top_k=1, save_last=True, filename="best"),
            ]
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        self._t0 = time.time()

    def after_fit(self) -> None:
        trainer = self.trainer
        results: dict[str, Any] = {"name": self._experiment_name(), "seed": self._run_config().get("seed_everything")}
        results["fit"] = _scalars(trainer.callback_metrics)
        results["fit_seconds"] = round(time.time() - self._t0, 1)
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.best_model_score is not None:
            results["best_val_loss"] = float(ckpt.best_model_score)
            results["best_checkpoint"] = ckpt.best_model_path
        if self._run_config()["test_after_fit"] and not trainer.fast_dev_run and not trainer.interrupted:
            ckpt_path = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
            results["test"] = _scalars(trainer.callback_metrics, prefix="test/")
        if isinstance(self.model, LanguageModel):
            results["params"] = self.model.model.num_parameters()
        results["git_commit"] = git_commit()
        results["argv"] = sys.argv[1:]
        log_dir = trainer.log_dir
        if trainer.is_global_zero and log_dir is not None:
            path = Path(log_dir) / "results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"results: {path}\n{json.dumps(results, indent=2)}")


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


def main(args: list[str] | None = None) -> LRNNCLI:
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["evaluate"]:  # `lrnn evaluate RUN ...`: its own argparse (lrnn/evaluate.py)
        from lrnn.evaluate import main as evaluate_main

        raise SystemExit(evaluate_main(argv[1:]))
    default_files = {"default_config_files": [str(DEFAULTS)]}
    return LRNNCLI(
        LanguageModel,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=LogConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={sub: default_files for sub in ("fit", "validate", "test", "predict")},
        args=args,
    )


if __name__ == "__main__":
    main()
