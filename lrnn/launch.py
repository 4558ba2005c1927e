"""``make experiment NAME=...``: run ``lrnn fit`` (then test) on ``lrnn/experiments/<NAME>.yaml``.

Every run starts as ``python -m lrnn fit ...`` (``lrnn.cli``, LightningCLI); this module holds the one place that
builds those command lines (`lrnn_command`, `fit_argv`, `resume_argv`), used here and by the paper's runner.

python -m lrnn.launch NAME [--gpus N] [--nodes M] [--wandb auto|online|offline|off] [--threads N] [-- extra args]
python -m lrnn.launch [NAME] --resume runs/NAME/version_K [-- extra args]   # continue that run
python -m lrnn.launch --list
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lrnn.argerrors import ArgumentParser

# shipped inside the package (lrnn/experiments/), so an installed lrnn runs them by name from any folder
EXPERIMENTS = Path(os.environ.get("LRNN_EXPERIMENTS", Path(__file__).resolve().parent / "experiments"))


def available() -> dict[str, str]:
    """Experiment name -> its one-line description (the YAML's first comment)."""
    out = {}
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        first = path.read_text().splitlines()[:1]
        out[path.stem] = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
    return out


def listing() -> str:
    names = available()
    width = max((len(n) for n in names), default=0)
    return "\n".join(f"  {n:<{width}}  {d}" for n, d in names.items())


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once); os.cpu_count() if unknown."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, cpu, ids = set(), None, {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                cpu, ids = int(value), {}
            elif key in ("physical id", "core id"):
                ids[key] = value
                if len(ids) == 2 and cpu in allowed:
                    cores.add((ids["physical id"], ids["core id"]))
    except (OSError, ValueError):
        pass
    return len(cores) or len(allowed) or 1


def thread_count(threads: str, ranks: int = 1) -> tuple[int, str]:
    """The torch thread count per process for THREADS= (empty: the physical cores shared out over the ``ranks``
    processes of this machine, at least 1) and how it was chosen."""
    if not threads:
        if ranks > 1:
            return max(1, physical_cores() // ranks), f"physical cores / {ranks} processes; THREADS=N to change"
        return physical_cores(), "one per physical core; THREADS=N to change"
    n = int(threads) if threads.strip().isdigit() else 0
    if n < 1:
        raise ValueError(f"THREADS must be a positive integer, got {threads!r}")
    return n, "THREADS"


def positive(value: str, what: str) -> int:
    n = int(value) if value.strip().isdigit() else 0
    if n < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return n


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def lrnn_command(argv: Sequence[str], python: str = sys.executable) -> list[str]:
    """The command line that runs ``lrnn <argv>`` (``fit``, ``evaluate``, ...) in a new Python process."""
    return [python, "-m", "lrnn", *argv]


def fit_argv(config: str | Path, *options: str) -> list[str]:
    """``lrnn fit`` arguments for a config file, then further options (``--name``, dotted keys, ...)."""
    return ["fit", "--config", str(config), *options]


def resume_argv(folder: str | Path, *options: str) -> list[str]:
    """``lrnn fit --resume <run folder>``: the run continues in its folder from its own config.yaml (the CLI adds
    ``--config <folder>/config.yaml``) and its ``last.ckpt``."""
    return ["fit", "--resume", str(folder), *options]


def build_argv(
    name: str, gpus: str = "", wandb: str = "auto", extra: list[str] | None = None, nodes: str = ""
) -> list[str]:
    """``lrnn fit`` arguments. ``GPUS=N``: N processes per machine, one per GPU (on a machine without a CUDA GPU:
    N CPU processes, DDP over gloo); ``NODES=M``: M machines (``trainer.num_nodes``), N processes each."""
    argv = fit_argv(EXPERIMENTS / f"{name}.yaml", "--name", name, "--wandb", wandb)
    n = positive(gpus, "GPUS") if gpus else 1
    m = positive(nodes, "NODES") if nodes else 1
    if gpus:
        argv += ["--trainer.accelerator", "gpu" if cuda_available() else "cpu", "--trainer.devices", str(n)]
    if nodes:
        argv += ["--trainer.num_nodes", str(m)]
    if n * m > 1:
        argv += ["--trainer.strategy", "ddp"]
    return argv + list(extra or [])


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m lrnn.launch", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", default="")
    parser.add_argument("--gpus", default="", help="number of GPUs (DDP when > 1); empty: CPU or auto")
    parser.add_argument("--wandb", default="auto", choices=["auto", "online", "offline", "off"])
    parser.add_argument("--nodes", default="", help="number of machines (trainer.num_nodes; GPUS processes each)")
    parser.add_argument(
        "--threads", default="", help="torch threads per process; empty: physical cores / processes per machine"
    )
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--resume", default="", help="continue the run in this folder (runs/NAME/version_K)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.list:
        print(listing())
        return 0
    try:
        threads, why = thread_count(args.threads, positive(args.gpus, "GPUS") if args.gpus else 1)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # torch reads OMP_NUM_THREADS at start-up (every DDP rank inherits it). More threads than physical cores, or
    # threads competing with another busy process, can be many times slower than one thread per core.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    print(f"threads: {threads} ({why})", flush=True)
    if args.resume:
        folder = Path(args.resume)
        if args.name and folder.parent.name != args.name:
            print(f"error: RESUME={args.resume} is not a run of NAME={args.name}", file=sys.stderr)
            return 2
        if not (folder / "config.yaml").is_file():
            print(f"error: RESUME={args.resume}: no run folder with a config.yaml there", file=sys.stderr)
            return 2
        argv = resume_argv(folder, *extra)
        print("lrnn " + " ".join(argv), flush=True)
        os.execv(sys.executable, lrnn_command(argv))
    if args.name not in available():
        problem = "no experiment given" if not args.name else f"unknown experiment {args.name!r}"
        print(f"error: {problem}. Use NAME=<one of>:\n{listing()}", file=sys.stderr)
        return 2
    try:
        argv = build_argv(args.name, args.gpus, args.wandb, extra, args.nodes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.gpus and "cpu" in argv:
        print(f"no CUDA GPU here: GPUS={args.gpus} runs {args.gpus} CPU processes (DDP over gloo)", flush=True)
    print("lrnn " + " ".join(argv), flush=True)
    # exec rather than call: Lightning's DDP launcher re-runs this very command line on every rank
    os.execv(sys.executable, lrnn_command(argv))


if __name__ == "__main__":
    sys.exit(main())
