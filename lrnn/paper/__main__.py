"""``make paper`` / ``python -m lrnn.paper``: run the grid of a profile, then write the report.

python -m lrnn.paper run    [--profile converged|smoke|full] [--out paper] [--jobs N] [--threads N] [--wandb MODE]
python -m lrnn.paper render [--profile ...] [--out ...]        # from finished runs only, no training
python -m lrnn.paper list   [--profile ...]                    # the grid and its time estimate
python -m lrnn.paper sweep  [--profile ...] [--out ...]        # W&B sweep YAML (method: grid) for `wandb agent`
python -m lrnn.paper report [--profile ...] [--out ...]        # W&B Report (online) or how to publish it
python -m lrnn.paper exec   --profile ... --paper_run KEY      # one run (the sweep's command)
python -m lrnn.paper throughput [--steps 200] [--repeats 3]     # C10's tokens/s, one job at a time (idle machine)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lrnn.paper.grid import DEFAULT_PROFILE, PROFILES, ROOT, Budget, RunSpec, build_grid, estimate_minutes


def _physical_cores() -> int:
    from lrnn.launch import physical_cores

    return physical_cores()


def _gpus(arg: str | None) -> list[str]:
    if arg is not None:
        return [g for g in arg.split(",") if g.strip()]
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        return []


def select(grid: list[RunSpec], claims: list[str] | None, names: list[str] | None = None) -> list[RunSpec]:
    """The runs of ``claims`` (all if empty) whose name contains one of ``names`` (all if empty)."""
    return [
        r
        for r in grid
        if (not claims or set(r.claims) & set(claims)) and (not names or any(n in r.name for n in names))
    ]


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def plan(grid: list[RunSpec], runs: Path) -> str:
    """The plan: per section (a run's first claim) runs done / left / waiting for tuning and the estimated
    core-hours left (one thread per run)."""
    from lrnn.paper.runner import finished_version

    rows: dict[str, list[float]] = {}
    for r in grid:
        row = rows.setdefault(r.claims[0], [0, 0, 0, 0.0, 0.0])  # done, left, waiting, hours left, hours total
        hours = estimate_minutes(r) / 60
        row[4] += hours
        if finished_version(runs, r) is not None:
            row[0] += 1
        else:
            row[2 if r.waiting else 1] += 1
            row[3] += hours
    lines = [
        f"{'section':<9} {'runs':>5} {'done':>5} {'left':>5} {'waiting':>8} {'core-h left':>12} {'core-h all':>11}"
    ]
    for name, (done, left, waiting, h_left, h_all) in rows.items():
        total = done + left + waiting
        lines.append(f"{name:<9} {total:>5} {done:>5} {left:>5} {waiting:>8} {h_left:>12.1f} {h_all:>11.1f}")
    t = [sum(r[i] for r in rows.values()) for i in range(5)]
    lines.append(f"{'all':<9} {t[0] + t[1] + t[2]:>5} {t[0]:>5} {t[1]:>5} {t[2]:>8} {t[3]:>12.1f} {t[4]:>11.1f}")
    lines.append("(estimates: one thread per run on this 2-core CPU; waiting = its core's lr tuning has not finished)")
    return "\n".join(lines)


def estimate(grid: list[RunSpec], jobs: int) -> str:
    total = sum(estimate_minutes(r) for r in grid)
    return (
        f"{len(grid)} runs, ~{total / 60:.1f} core-hours; with {jobs} at a time "
        f"~{total / max(jobs, 1) / 60:.1f} h wall (estimate; finished runs are reused)"
    )


def measure_table(budget: Budget, runs: Path, say=print):
    """C1/C5 measurements, cached in ``runs/measure-<settings>.csv``."""
    import pandas as pd

    name = f"measure-H{budget.measure_hidden}-T{'-'.join(map(str, budget.measure_ts))}-r{budget.measure_repeats}.csv"
    path = runs / name
    if path.is_file():
        return pd.read_csv(path)
    from lrnn.paper.measure import measure

    say(f"measuring parameters / memory / tokens/s vs T ({name})")
    df = pd.DataFrame(measure(budget.measure_ts, budget.measure_hidden, budget.measure_repeats))
    runs.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return df


def render_all(args, grid: list[RunSpec], budget: Budget, runs: Path, provenance: dict, say=print) -> Path:
    from lrnn.paper.collect import collect
    from lrnn.paper.figures import make_figures
    from lrnn.paper.render import render
    from lrnn.paper.verdicts import all_verdicts

    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    tables = collect(grid, runs)
    measure = measure_table(budget, runs, say)
    for name, df in tables.items():
        df.to_csv(out / "results" / f"{name}.csv", index=False)
    measure.to_csv(out / "results" / "measure.csv", index=False)
    verdicts = all_verdicts(tables, measure, budget.min_seeds)
    import pandas as pd

    pd.DataFrame(
        [
            {
                "claim": v.claim,
                "verdict": v.verdict,
                "effect": v.effect,
                "rule": " ".join(v.rule.split()),
                "figure": v.figure,
                "size": v.size,
                "interval": v.interval,
                "n": v.n,
                "converged": "" if v.converged is None else "yes" if v.converged else "no",
            }
            for v in verdicts
        ]
    ).to_csv(out / "results" / "verdicts.csv", index=False)
    for v in verdicts:
        if not v.table.empty:
            v.table.to_csv(out / "results" / f"{v.claim}.csv", index=False)
    make_figures(tables, measure, out / "figures", budget.name)
    runs_df = tables["runs"]
    provenance["run_wall_s"] = float(runs_df["wall_s"].fillna(0).sum()) if "wall_s" in runs_df else 0.0
    provenance["seeds"] = sorted({r.seed for r in grid})
    (out / "results" / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    path = render(out, verdicts, tables, budget, provenance)
    say(f"wrote {path}")
    if out.resolve() == (ROOT / "paper").resolve():
        from lrnn.paper.render import update_top_readme
        from lrnn.paper.verdicts import untying_kinds

        kinds, _ = untying_kinds(tables)
        if update_top_readme(ROOT / "README.md", out, verdicts, budget.name, provenance.get("commit"), kinds):
            say("updated the verdict table at the top of README.md")
    for v in verdicts:
        say(f"  {v.claim:<8} {v.verdict:<12} {v.effect[:110]}")
    return path


PAPER_EXTRA = {"run": ("pandas",), "render": ("pandas",), "report": ("pandas", "wandb_workspaces")}


def missing_extra(command: str) -> str | None:
    """The first module of the ``paper`` extra that ``command`` needs and this environment lacks, if any."""
    import importlib.util

    return next((m for m in PAPER_EXTRA.get(command, ()) if importlib.util.find_spec(m) is None), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrnn.paper", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command", nargs="?", default="run", choices=["run", "render", "list", "sweep", "report", "exec", "throughput"]
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"{' | '.join(PROFILES)} (default {DEFAULT_PROFILE})"
    )
    parser.add_argument("--out", default="paper", help="report folder (default paper/)")
    parser.add_argument("--runs", default=None, help="run folders (default runs/paper-<profile>)")
    parser.add_argument(
        "--jobs", type=int, default=None, help="runs at a time (default: physical cores; GPUs: one each)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU ids (default: all visible); '' for none")
    parser.add_argument("--wandb", default="auto", choices=["auto", "online", "offline", "off"])
    parser.add_argument("--claims", nargs="+", default=None, help="only the runs of these claims (e.g. C6 C9)")
    parser.add_argument("--filter", nargs="+", default=None, help="only runs whose name contains one of these")
    parser.add_argument("--paper_run", default=None, help="exec: the cache key of one run (W&B sweep parameter)")
    parser.add_argument("--steps", type=int, default=200, help="throughput: training updates per timing fit")
    parser.add_argument("--repeats", type=int, default=3, help="throughput: rounds (cores alternate in each)")
    args = parser.parse_args(argv)
    if args.profile not in PROFILES:
        print(f"error: unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    missing = missing_extra(args.command)
    if missing:
        need = f"pip install 'lrnn[paper]'; {missing} is not installed"
        print(f"error: python -m lrnn.paper {args.command} needs lrnn's paper extra ({need})", file=sys.stderr)
        return 1
    budget = PROFILES[args.profile]
    runs = Path(args.runs or ROOT / "runs" / f"paper-{args.profile}")

    def current_grid() -> list[RunSpec]:
        return select(build_grid(args.profile, runs), args.claims, args.filter)

    grid = current_grid()
    gpus = _gpus(args.gpus) if args.command == "run" else []
    cores = _physical_cores()
    jobs = len(gpus) if gpus else (args.jobs or cores)
    threads = args.threads or max(1, cores // jobs)

    if args.command == "throughput":  # C10's seconds per token, measured one job at a time
        from lrnn.paper.throughput import measure_throughput, timing_specs, write_rows

        if args.steps < 1 or args.repeats < 2:
            print("error: --steps must be >= 1 and --repeats >= 2 (an interval needs two)", file=sys.stderr)
            return 2
        try:
            specs = timing_specs(build_grid(args.profile, runs))
            rows = measure_throughput(specs, args.steps, args.repeats, threads=args.threads or 1)
        except (ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        write_rows(rows, runs / "throughput.csv")
        busy = sum(not r["quiet"] for r in rows)
        print(
            f"wrote {_relative(runs / 'throughput.csv')}"
            + (f" ({busy} rows NOT quiet: C10 ignores them)" if busy else "")
        )
        return 0

    if args.command == "list":
        from lrnn.paper.runner import finished_version

        for r in grid:
            done = "done" if finished_version(runs, r) else "wait" if r.waiting else "todo"
            print(f"{done}  {r.key}  {estimate_minutes(r):6.1f} min  {r.name}  [{' '.join(r.claims)}]")
        print(plan(grid, runs))
        print(estimate(grid, jobs))
        return 0
    if args.command == "sweep":
        from lrnn.paper.sweep import write_sweep

        path = write_sweep(grid, Path(args.out) / "sweep.yaml", args.profile, runs)
        print(
            f"wrote {path}: `wandb sweep {path}` then `wandb agent <sweep id>` on every machine; afterwards "
            f"`make paper PROFILE={args.profile}` renders from the finished runs (sync their runs/ folders here)"
        )
        return 0
    if args.command == "exec":  # one run of the grid (what a W&B sweep agent calls)
        from lrnn.paper.runner import DevicePool, execute

        match = [r for r in grid if r.key == args.paper_run]
        if not match:
            print(f"error: no run {args.paper_run!r} in profile {args.profile}", file=sys.stderr)
            return 2
        state = execute(
            match[0],
            runs,
            profile=args.profile,
            wandb=args.wandb,
            threads=threads,
            devices=DevicePool([]),
            eval_lengths=budget.eval_lengths,
            eval_splits=budget.eval_splits,
        )
        return 0 if state.version is not None else 1
    if args.command == "report":
        from lrnn.paper.report import main as report_main

        return report_main(Path(args.out), args.profile, runs=runs)

    from lrnn.loggers import git_commit
    from lrnn.paper.runner import GridInterrupted, machine, run_lanes

    t0 = time.time()
    provenance = {
        "command": " ".join(["make paper", f"PROFILE={args.profile}", f"OUT={args.out}"])
        if args.command == "run"
        else f"python -m lrnn.paper render --profile {args.profile} --out {args.out}",
        "argv": ["python -m lrnn.paper", *sys.argv[1:]],
        "commit": git_commit(("lrnn", "pyproject.toml")),  # the code: a render rewrites paper/ and runs/
        "machine": machine(),
        "profile": args.profile,
        "jobs": jobs,
        "threads": threads,
        "gpus": gpus,
        "runs_dir": _relative(runs),
    }
    reused = 0
    if args.command == "run":
        print(f"profile {args.profile}: {estimate(grid, jobs)}\n{plan(grid, runs)}", flush=True)
        print(f"runs in {runs}; {jobs} lane(s), {threads} thread(s) each" + (f", GPUs {gpus}" if gpus else ""))
        try:
            states = run_lanes(
                current_grid,
                runs,
                profile=args.profile,
                jobs=jobs,
                threads=threads,
                gpus=gpus,
                wandb=args.wandb,
                eval_lengths=budget.eval_lengths,
                eval_splits=budget.eval_splits,
                say=lambda m: print(m, flush=True),
            )
        except GridInterrupted as e:
            print(f"interrupted: {e}", file=sys.stderr)
            return 128 + e.signum
        grid = current_grid()  # the tuned contest runs, now that tuning has finished
        reused = len(grid) - sum(not s.reused for s in states)
        failed = [s for s in states if s.version is None]
        if failed:
            print(f"{len(failed)} run(s) did not finish: {', '.join(s.spec.name for s in failed[:8])} ...")
    provenance.update(
        reused=reused, wall_s=round(time.time() - t0, 1), finished_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    render_all(args, grid, budget, runs, provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
