"""Run the grid: each ``RunSpec`` is an ``lrnn fit`` subprocess (then ``lrnn evaluate`` where asked), cached.

Layout: ``<runs>/<key>/<name>/version_<k>/`` (the normal run folder: config.yaml, metrics.csv, checkpoints,
results.json) plus ``paper.json`` (this runner's record: command, wall time, threads, machine, exit code). A version
whose ``results.json`` says ``completed`` (or, before ``status`` existed, any results.json) or ``diverged`` is
finished and reused. One that was ``interrupted`` (or is still ``running``: killed) with a ``last.ckpt`` is continued
with ``lrnn fit --resume`` in its folder; anything else (failed, no checkpoint) is left as it is and the run starts
again in a new ``version_<k+1>``. So an interrupted ``make paper`` loses at most the steps since the runs in flight
last saved a checkpoint.

Stopping: Ctrl-C or SIGTERM to ``make paper`` starts no new run and sends SIGTERM to the runs in flight, which save
``last.ckpt`` after their current batch and exit; the runner waits for them (``subprocess.run`` would kill them
after 0.25 s, before their checkpoint is written) and then raises `GridInterrupted`.

Parallelism (``run_lanes``): ``jobs`` lanes, one run each at a time. On CPU each run gets ``threads`` torch threads;
with GPUs each run gets one device (``CUDA_VISIBLE_DEVICES``), from a pool so two runs never share a device.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrnn.launch import lrnn_command, resume_argv
from lrnn.loggers import portable
from lrnn.paper.grid import ROOT, RunSpec

FINISHED = ("completed", "diverged")
STOP_WAIT_S = 600.0  # how long a stopping run may take to save its checkpoint before it is killed


class GridInterrupted(Exception):
    """The grid was stopped by a signal; the runs in flight saved a checkpoint (``make paper`` again continues)."""

    def __init__(self, signum: int, stopped: int) -> None:
        self.signum, self.stopped = signum, stopped
        name = signal.Signals(signum).name
        super().__init__(f"{name}: stopped {stopped} run(s) in flight after their checkpoint; run it again to continue")


class _Children:
    """The ``lrnn`` subprocesses in flight, so that a signal to the runner can stop them gracefully."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def run(self, cmd: list[str], env: dict[str, str], out: Any) -> int:
        with self.lock:
            if self.stopping.is_set():
                return 128 + signal.SIGTERM
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
            self.live.add(proc)
        try:
            return proc.wait()
        finally:
            with self.lock:
                self.live.discard(proc)

    def stop(self, timeout: float = STOP_WAIT_S) -> int:
        """SIGTERM every child (harmless if a terminal's Ctrl-C already reached it) and wait; kill after timeout."""
        with self.lock:
            self.stopping.set()
            procs = list(self.live)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return len(procs)


_CHILDREN = _Children()


@dataclass
class RunState:
    spec: RunSpec
    version: Path | None  # the finished version folder, if any
    status: str  # completed | diverged | failed | interrupted | missing | ...
    reused: bool = False
    wall_s: float | None = None


def spec_root(runs: Path, spec: RunSpec) -> Path:
    return runs / spec.key / spec.experiment_name


def read_status(version: Path) -> str:
    """A version folder's status: results.json's ``status`` (``completed`` if it has none), else ``incomplete``."""
    path = version / "results.json"
    if not path.is_file():
        return "incomplete"
    try:
        return str(json.loads(path.read_text()).get("status", "completed"))
    except (json.JSONDecodeError, OSError):
        return "unreadable"


def versions(root: Path) -> list[Path]:
    found = [p for p in root.glob("version_*") if p.is_dir() and p.name.split("_")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("_")[-1]))


def finished_version(runs: Path, spec: RunSpec) -> Path | None:
    """The newest finished version folder of a spec (``None``: it has to run). Looked up by the cache key only
    (``<runs>/<key>/*/version_*``), so renaming a run's label keeps its results."""
    found = [v for root in sorted((runs / spec.key).glob("*/")) for v in versions(root)]
    for version in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        if read_status(version) in FINISHED:
            return version
    return None


def resumable_version(runs: Path, spec: RunSpec) -> Path | None:
    """The newest version if it stopped part-way with a checkpoint to continue from: ``results.json`` says
    ``interrupted`` (Ctrl-C, SIGTERM) or still ``running`` (killed). A run that failed, or whose resume failed, is
    not resumed: it starts again in a new version."""
    found = [v for root in sorted((runs / spec.key).glob("*/")) for v in versions(root)]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    ok = read_status(newest) in ("interrupted", "running") and (newest / "checkpoints" / "last.ckpt").is_file()
    return newest if ok else None


def resume_command(version: Path, wandb: str, python: str = sys.executable) -> list[str]:
    """``lrnn fit --resume <version>``: the run's own config.yaml, same folder and W&B run (issue #8)."""
    return lrnn_command(
        resume_argv(_arg_path(version), "--wandb", wandb, "--trainer.enable_progress_bar", "false"), python
    )


def _arg_path(path: Path) -> str:
    """A path as the runs' command lines name it: relative to the repository (their working directory) if inside."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def needs_evaluation(spec: RunSpec, version: Path) -> bool:
    """A completed run still missing the evaluation its spec asks for (``length.csv``; ``train.csv`` for C4)."""
    if read_status(version) != "completed":
        return False
    missing = spec.evaluate and not (version / "evaluation/length.csv").is_file()
    return missing or (spec.train_eval and not (version / "evaluation/train.csv").is_file())


def fit_command(spec: RunSpec, runs: Path, profile: str, wandb: str, python: str = sys.executable) -> list[str]:
    """The ``lrnn fit`` command line of a spec (what the W&B sweep runs too, with the same dotted keys)."""
    tags = [f"core:{spec.core}", f"profile:{profile}", *(f"claim:{c}" for c in spec.claims)]
    paper_config = {"paper/core": spec.core, "paper/profile": profile, **{f"paper/{k}": v for k, v in spec.factors}}
    return lrnn_command(
        [
            *spec.fit_args(),
            "--name", spec.experiment_name,
            "--out_dir", _arg_path(runs / spec.key),
            "--wandb", wandb,
            "--wandb_group", spec.claims[0],
            "--wandb_tags", json.dumps(tags),
            "--wandb_config", json.dumps(paper_config),
            "--trainer.enable_progress_bar", "false",
        ],
        python,
    )  # fmt: skip


def evaluate_command(
    version: Path,
    lengths: Sequence[int],
    splits: Sequence[str],
    device: str = "cpu",
    python: str = sys.executable,
    train: bool = False,
) -> list[str]:
    """``lrnn evaluate`` into ``<version>/evaluation`` (replacing a partial one); ``splits`` empty with ``train``:
    the training-stream perplexity only."""
    args = ["evaluate", _arg_path(version), "--lengths", *map(str, lengths), "--splits", *splits]
    args += ["--train"] if train else []
    args += ["--device", device, "--no-plots", "--out", _arg_path(version / "evaluation"), "--overwrite"]
    return lrnn_command(args, python)


def machine() -> dict[str, Any]:
    """What ran it (no hostname: records are committed)."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


QUIET_MARGIN = 0.5  # a fit is timed "quiet" when the load never exceeded its own threads + this


class LoadSampler:
    """Samples the 1-minute load average every ``every_s`` while a fit runs (``max``: the highest), so that the
    records say whether its wall time was measured alone on the machine (C10 uses only such timings)."""

    def __init__(self, every_s: float = 20.0) -> None:
        self.every_s, self.max = every_s, None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while True:
            try:
                load = os.getloadavg()[0]
            except OSError:
                return
            self.max = load if self.max is None else max(self.max, load)
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class DevicePool:
    """Hands out GPU ids (one run per device) or nothing on CPU."""

    def __init__(self, gpus: Sequence[str]) -> None:
        self.free: queue.Queue[str | None] = queue.Queue()
        for g in gpus or [None]:
            self.free.put(g)
        self.gpus = list(gpus)

    def acquire(self) -> str | None:
        return self.free.get() if self.gpus else None

    def release(self, gpu: str | None) -> None:
        if self.gpus:
            self.free.put(gpu)


def _run_logged(cmd: list[str], env: dict[str, str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return _CHILDREN.run(cmd, env, f)


def execute(
    spec: RunSpec,
    runs: Path,
    *,
    profile: str,
    wandb: str,
    threads: int,
    devices: DevicePool,
    eval_lengths: Sequence[int],
    eval_splits: Sequence[str],
    say: Callable[[str], None] = print,
) -> RunState:
    """Run one spec unless a finished version exists; evaluate it if asked. Never deletes an earlier version."""
    if _CHILDREN.stopping.is_set():
        return RunState(spec, None, "stopped")
    version = finished_version(runs, spec)
    reused = version is not None
    wall = None
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    gpu = devices.acquire()
    try:
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        if version is None:
            root = spec_root(runs, spec)
            before = {p.name for p in versions(root)}
            paused = resumable_version(runs, spec)
            if paused is not None:  # interrupted (or killed) with a checkpoint: continue it in its folder
                cmd = resume_command(paused, wandb)
                say(f"resume {spec.name} [{spec.key}] from {paused}")
            else:
                cmd = fit_command(spec, runs, profile, wandb)
                say(f"start  {spec.name} [{spec.key}]")
            t0 = time.time()
            with LoadSampler() as load:
                rc = _run_logged(cmd, env, runs / spec.key / "fit.log")
            wall = round(time.time() - t0, 1)
            new = [p for p in versions(root) if p.name not in before]
            version = paused if paused is not None else new[-1] if new else None
            if version is not None:
                record = {
                    "command": ["python", *cmd[1:]],
                    "returncode": rc,
                    "wall_s": wall,
                    "load_max": load.max,  # the machine's 1-minute load average, highest seen during the fit
                    "quiet": load.max is not None and load.max <= threads + QUIET_MARGIN,
                    "threads": threads,
                    "gpu": gpu,
                    "machine": machine(),
                    "profile": profile,
                    "claims": list(spec.claims),
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                (version / "paper.json").write_text(json.dumps(portable(record, (ROOT,)), indent=2) + "\n")
            status = read_status(version) if version is not None else "failed"
            if rc != 0 and status == "completed":
                status = "failed"  # a results.json without a clean exit: do not trust it
            say(f"{status:<6} {spec.name} in {wall:.0f} s (exit {rc}; log {runs / spec.key / 'fit.log'})")
            if status not in FINISHED:
                return RunState(spec, None, status, wall_s=wall)
        if needs_evaluation(spec, version):
            device = "cpu" if gpu is None else "cuda"  # the run's one visible device
            splits = eval_splits if spec.evaluate else ()
            rc = _run_logged(
                evaluate_command(version, eval_lengths, splits, device, train=spec.train_eval), env,
                version / "evaluate.log",
            )  # fmt: skip
            if rc != 0:
                say(f"evaluate failed for {spec.name} (log {version / 'evaluate.log'})")
        return RunState(spec, version, read_status(version), reused=reused, wall_s=wall)
    finally:
        devices.release(gpu)


def claim(runs: Path, spec: RunSpec) -> bool:
    """Take ``<runs>/<key>/.lane.lock`` for this process (atomic create), so that several ``make paper`` processes
    (lanes) never run the same spec; a lock left by a process that is gone is taken over."""
    lock = runs / spec.key / ".lane.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)
                return False  # a live lane has it
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # its process is gone: take it over
                continue
            except PermissionError:
                return False  # alive, another user's
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(runs: Path, spec: RunSpec) -> None:
    (runs / spec.key / ".lane.lock").unlink(missing_ok=True)


def runnable(spec: RunSpec, runs: Path) -> bool:
    """Not waiting for tuning, and not finished (or finished but its evaluation is missing)."""
    if spec.waiting:
        return False
    version = finished_version(runs, spec)
    return version is None or needs_evaluation(spec, version)


def run_lanes(
    build: Callable[[], Sequence[RunSpec]],
    runs: Path,
    *,
    profile: str,
    jobs: int,
    threads: int,
    gpus: Sequence[str] = (),
    wandb: str = "off",
    eval_lengths: Sequence[int] = (),
    eval_splits: Sequence[str] = ("val",),
    say: Callable[[str], None] = print,
    poll_s: float = 60.0,
) -> list[RunState]:
    """Lanes: ``jobs`` workers (one GPU each where ``gpus``), each taking the first runnable spec of ``build()``
    (rebuilt before every pick, so that runs waiting for their core's tuning join once it has finished), claimed
    with a lock file so that other ``make paper`` processes on the same runs folder take other specs. A worker
    with nothing runnable waits while other lanes may still unblock something, then stops."""
    runs.mkdir(parents=True, exist_ok=True)
    devices = DevicePool(gpus)
    jobs = max(1, len(gpus)) if gpus else max(1, jobs)
    lock = threading.Lock()
    states: list[RunState] = []
    active = [0]
    failed: set[str] = set()  # keys that failed in this process: not retried until the next make paper

    def locked_say(msg: str) -> None:
        with lock:
            say(msg)

    def others_running(specs: Sequence[RunSpec]) -> bool:
        return active[0] > 0 or any((runs / s.key / ".lane.lock").is_file() for s in specs)

    def lane() -> None:
        while not _CHILDREN.stopping.is_set():
            with lock:
                specs = list(build())
                spec = next((s for s in specs if s.key not in failed and runnable(s, runs) and claim(runs, s)), None)
                if spec is None:
                    waiting = any(s.waiting for s in specs)
                    if not (waiting and others_running(specs)):
                        return
                else:
                    active[0] += 1
            if spec is None:
                _CHILDREN.stopping.wait(poll_s)
                continue
            try:
                try:
                    state = execute(
                        spec, runs, profile=profile, wandb=wandb, threads=threads, devices=devices,
                        eval_lengths=eval_lengths, eval_splits=eval_splits, say=locked_say,
                    )  # fmt: skip
                except Exception as e:  # noqa: BLE001 - one broken run must not stop the lane
                    locked_say(f"failed {spec.name}: {type(e).__name__}: {e}")
                    state = RunState(spec, None, "failed")
                with lock:  # before the lock file goes: another lane must not pick a failed run up again
                    states.append(state)
                    if state.version is None or needs_evaluation(spec, state.version):
                        failed.add(spec.key)  # failed, or its evaluation did: not retried until the next make paper
            finally:
                with lock:
                    active[0] -= 1
                release(runs, spec)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise GridInterrupted(signum, 0)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    workers = [threading.Thread(target=lane, daemon=True) for _ in range(jobs)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            while w.is_alive():
                w.join(0.5)
        return states
    except (KeyboardInterrupt, GridInterrupted) as e:
        signum = e.signum if isinstance(e, GridInterrupted) else signal.SIGINT
        locked_say(f"{signal.Signals(signum).name}: stopping the runs in flight (each saves a checkpoint first) ...")
        stopped = _CHILDREN.stop()
        for w in workers:
            w.join()
        raise GridInterrupted(signum, stopped) from None
    finally:
        _CHILDREN.stopping.clear()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
