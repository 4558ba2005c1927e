"""Loggers for lrnn runs: a local CSV (always) and Weights & Biases (online, offline or off)."""

from __future__ import annotations

import netrc
import os
import socket
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

WandbMode = Literal["auto", "online", "offline", "off"]


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def _has_api_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_wandb_mode(requested: str = "auto") -> Literal["online", "offline", "off"]:
    """``auto``: ``$WANDB_MODE`` if set; else online when an API key is configured and the server answers, else
    offline (the run is kept under ``<out_dir>/wandb`` for ``wandb sync``)."""
    if requested not in ("auto", "online", "offline", "off"):
        raise ValueError(f"wandb must be one of auto, online, offline, off; got {requested!r}")
    if requested != "auto":
        return requested  # type: ignore[return-value]
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("disabled", "off"):
        return "off"
    if env in ("offline", "dryrun"):
        return "offline"
    host = _wandb_host()
    if env == "online":
        return "online"
    return "online" if _has_api_key(host) and _reachable(host) else "offline"


def git_commit(paths: Sequence[str] = ()) -> str | None:
    """The current commit of the working directory's repository, with ``-dirty`` for local changes to tracked files
    (only those under ``paths`` when given: a render that rewrites ``paper/`` is still made by clean code), if any."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # tracked files only: run folders written into the checkout do not change the code
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
            capture_output=True, text=True, timeout=5,
        ).stdout  # fmt: skip
        return commit + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def portable(value: Any, roots: tuple[Path, ...] | None = None) -> Any:
    """``value`` (nested dicts, lists, strings) with paths under the working directory written relative to it, so
    that records committed from one checkout name no other machine's folders."""
    roots = roots or (Path.cwd().resolve(), Path.cwd())
    if isinstance(value, dict):
        return {k: portable(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(f"{root}/", "")
        return value
    return value


def make_loggers(
    name: str,
    seed: int | None,
    out_dir: str = "runs",
    wandb: str = "auto",
    group: str | None = None,
    tags: list[str] | None = None,
    version: int | None = None,
    wandb_id: str | None = None,
    extra_config: dict[str, Any] | None = None,
) -> list[Logger]:
    """``[CSVLogger, WandbLogger?]``. The CSV logger comes first, so checkpoints and ``config.yaml`` land in
    ``<out_dir>/<name>/version_<k>/``; each run gets a new version folder and never overwrites an earlier one.
    The W&B run is named ``<name>-s<seed>``, in ``group`` (default: ``name``) with ``tags``.
    ``version`` and ``wandb_id`` continue an existing run (``--resume``): the CSV rows are appended to its
    ``metrics.csv`` and W&B resumes the run with that id. ``extra_config`` goes into the W&B run's config (the paper
    logs ``paper/core`` there, so reports group lines by core)."""
    if version is not None:  # CSVLogger warns that metrics.csv "will be deleted": it is put back below
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    csv_logger = CSVLogger(save_dir=out_dir, name=name, version=version)
    metrics = Path(csv_logger.log_dir) / "metrics.csv"
    if version is not None and metrics.exists():
        # Lightning's CSV writer deletes an existing metrics.csv when it starts: put the earlier rows back and
        # append to them
        earlier = metrics.read_bytes()
        writer = csv_logger.experiment
        metrics.write_bytes(earlier)
        writer.metrics_keys = [k for k in earlier.decode().split("\n", 1)[0].strip().split(",") if k]
    loggers: list[Logger] = [csv_logger]
    mode = resolve_wandb_mode(wandb)
    if mode != "off":
        run_name = name if seed is None else f"{name}-s{seed}"
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        loggers.append(
            WandbLogger(
                project=os.environ.get("WANDB_PROJECT", "lrnn"),
                name=run_name,
                group=group or name,
                tags=list(tags) if tags else None,
                save_dir=out_dir,
                offline=mode == "offline",
                log_model=False,
                id=wandb_id or new_run_id(),  # known before the run starts: results.json records it
                resume="allow",
                **({"config": extra_config} if extra_config else {}),
            )
        )
        if loggers[-1]._wandb_init.get("anonymous", 0) is None:  # wandb warns about the unset setting itself
            del loggers[-1]._wandb_init["anonymous"]
    return loggers


def new_run_id() -> str:
    """A W&B-style run id (8 lowercase letters / digits), from the OS's randomness: the seeded RNGs stay untouched."""
    import random
    import string

    return "".join(random.SystemRandom().choices(string.ascii_lowercase + string.digits, k=8))


def wandb_run_info(loggers: list[Logger]) -> dict[str, Any] | None:
    """The W&B run of these loggers: id, mode, project, and the local folder (``wandb sync`` it when offline)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            info: dict[str, Any] = {"id": logger.version, "mode": "offline" if logger._offline else "online"}
            info["project"] = logger.name
            run = logger._experiment
            if run is not None and getattr(run, "dir", None):
                info["folder"] = str(Path(run.dir).parent)
                if not logger._offline and getattr(run, "url", None):
                    info["url"] = run.url
            return info
    return None


def quiet_known_noise() -> None:
    """Silence messages a user can do nothing about; every other warning stays.

    The litlogger tip and the wandb 'anonymous' warning are printed by those libraries' loggers; the rest are
    Python warnings: our loaders are IterableDatasets with an exact ``__len__`` and no workers, and Lightning still
    calls a torch ``_pytree`` API that torch deprecated.

    The ``lrnn`` command calls it (``lrnn.cli.main``); importing lrnn does not, so a program that uses lrnn as a
    library keeps its own warning filters (call this to get the command's quiet)."""
    import logging

    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r".*does not have many workers")

    class _Drop(logging.Filter):
        def __init__(self, *needles: str) -> None:
            super().__init__()
            self.needles = needles

        def filter(self, record: logging.LogRecord) -> bool:
            return not any(n in record.getMessage() for n in self.needles)

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_Drop("💡 Tip"))  # the litlogger / litmodels advertisements
