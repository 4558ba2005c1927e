"""Loggers for lrnn runs: a local CSV (always) and Weights & Biases (online, offline or off)."""

from __future__ import annotations

import netrc
import os
import socket
import subprocess
from pathlib import Path
from typing import Literal
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


def git_commit() -> str | None:
    """The current commit of the working directory's repository (with ``-dirty`` for local changes), if any."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def make_loggers(
    name: str,
    seed: int | None,
    out_dir: str = "runs",
    wandb: str = "auto",
    group: str | None = None,
    tags: list[str] | None = None,
) -> list[Logger]:
    """``[CSVLogger, WandbLogger?]``. The CSV logger comes first, so checkpoints and ``config.yaml`` land in
    ``<out_dir>/<name>/version_<k>/``; each run gets a new version folder and never overwrites an earlier one.
    The W&B run is named ``<name>-s<seed>``, in ``group`` (default: ``name``) with ``tags``."""
    loggers: list[Logger] = [CSVLogger(save_dir=out_dir, name=name)]
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
            )
        )
    return loggers
