"""`rollwise compare`: variants of one configuration, over seeds, side by side.

    rollwise compare --out-dir runs/cmp --steps 50 --seeds 0 1 2 --parallel 2 \\
        --variant uniform: --variant mopps:selector=mopps --variant dynamic:filter=dynamic
    rollwise compare --config compare.yaml          # base:, variants:, seeds: (preset:, target:, parallel:, out_dir:)
    rollwise compare --preset scratchpad --variant uniform: --variant mopps:selector=mopps

Every run starts from the same initial policy (built once, before any run is launched) and lives in
OUT/VARIANT/seed-N/, one process per run. Rerunning the same command finishes only what is missing:
a run is done when its summary.json exists and is not interrupted; a started one is resumed from its
last checkpoint. At the end OUT holds summary.json, report.md, report.html and the figures (see
rollwise.evidence.report); the first variant is the baseline of the ratios.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

import yaml

import rollwise
from rollwise.store import safefiles
from rollwise.store.checkpoint import list_checkpoints
from rollwise.config import RunConfig, coerce, load_yaml
from rollwise.evidence.report import SPEC_FILE, write_report
from rollwise.store.rundir import holds_a_run
from rollwise.track import read_metrics

Launcher = Callable[[RunConfig, bool], Path]  # (config, resume) -> run dir
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
PER_RUN_KEYS = ("seed", "out_dir")  # set by compare for every run
# Settings that change how a run executes, not what it computes: a rerun may differ in them.
EXECUTION_KEYS = {"out_dir", "progress", "threads"}
SPEC_KEYS = {"base", "variants", "seeds", "target", "parallel", "out_dir", "metric", "preset"}
STOP_POLL_SECONDS = 5.0  # how often a run launched with a stop step has its metrics read


@dataclasses.dataclass
class PlannedRun:
    variant: str
    seed: int
    config: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def name(self) -> str:
        return f"{self.variant}/seed-{self.seed}"


def run_compare(base: dict, variants: dict[str, dict], seeds: list[int], out_dir: str, parallel: int = 1,
                target: float | None = None, launcher: Launcher | None = None, *,
                prepare: Callable | None = None, metric: str = "eval_temp_acc", log=print,
                seed_by_seed: bool = False, stop_at_step: int | None = None) -> dict:
    """Run every variant x seed that is not done yet, then write the report; returns the summary.

    launcher(config, resume) runs one training run and returns its directory; the default launches
    `python -m rollwise.cli train` in a subprocess. prepare(config) builds the initial policy once
    before any launch; it defaults to rollwise.policy.models.prepare_policy with the default launcher, and to
    nothing with a custom one (a fake launcher in tests needs no model).

    seed_by_seed: launch the variants of one seed side by side (`parallel` at a time) and the next seed's
    only when they are done, so that the runs compared with each other share the machine's load.
    stop_at_step: stop each run once its metrics reach that step (SIGTERM: it checkpoints, and a later call
    without it resumes the run to the end of its budget) instead of at the end of its budget; a run there
    counts as finished for this call and is not launched again.
    """
    root = Path(out_dir)
    plan, typed = plan_runs(base, variants, seeds, root, parallel)
    statuses = {run.name: run_status(run.run_dir) for run in plan}
    for run in plan:
        if statuses[run.name] != "new":
            check_same_config(run)
    root.mkdir(parents=True, exist_ok=True)
    spec = {"base": typed["base"], "variants": typed["variants"], "seeds": list(seeds), "target": target,
            "metric": metric}
    safefiles.write_atomic(root / SPEC_FILE, yaml.safe_dump(spec, sort_keys=False).encode())
    pending = [run for run in plan if statuses[run.name] != "done" and not reached(run.run_dir, stop_at_step)]
    log(f"compare: {len(plan)} runs in {root}: {len(plan) - len(pending)} done"
        + ("" if stop_at_step is None else f" (or at step {stop_at_step})") + ", "
        f"{sum(statuses[r.name] == 'resume' for r in pending)} to resume, "
        f"{sum(statuses[r.name] == 'new' for r in pending)} to start")
    if pending:
        _prepare_policies(pending, prepare, launcher, typed["base"].get("threads"), log)
        if launcher is None:
            launcher = functools.partial(launch_subprocess, stop_at_step=stop_at_step)
        groups = [[run for run in pending if run.seed == seed] for seed in seeds] if seed_by_seed else [pending]
        failures = []
        for group in (g for g in groups if g):
            failures += launch_all(group, statuses, launcher, parallel, log, stop_at_step)
        if failures:
            raise RuntimeError(f"{len(failures)} of {len(pending)} runs did not finish:\n  " + "\n  ".join(failures)
                               + "\nfinished runs are kept: rerun the same command to retry the others")
    runs = {name: [run.run_dir for run in plan if run.variant == name] for name in variants}
    return write_report(root, runs, target, metric)


def plan_runs(base: dict, variants: dict[str, dict], seeds: list[int], root: Path, parallel: int = 1):
    """Every run's validated config, built before anything runs so a typo fails in a second.

    Returns the planned runs and the typed base and variant overrides (for compare.yaml).
    """
    if not variants:
        raise ValueError("no variants: give at least one (--variant NAME: runs the base configuration)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={list(seeds)}: need at least one seed, each once")
    if parallel < 1:
        raise ValueError(f"parallel={parallel}: must be at least 1")
    base = {k: v for k, v in base.items() if k not in PER_RUN_KEYS}
    typed_base = _typed(base)
    plan, typed_variants = [], {}
    for name, overrides in variants.items():
        if not VARIANT_NAME.match(name):
            raise ValueError(f"variant name {name!r}: use letters, digits and _ . + - (it names a directory)")
        overrides = {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
        clash = sorted(set(overrides) & set(PER_RUN_KEYS))
        if clash:
            raise ValueError(f"variant {name}: {', '.join(clash)} is set per run by compare (use the seeds list)")
        typed_variants[name] = _typed(overrides)
        for seed in seeds:
            values = {**base, **overrides, "seed": int(seed), "out_dir": str(root / name / f"seed-{seed}"),
                      "progress": False}
            if parallel > 1:
                values["threads"] = 1  # K runs on K cores: more threads each would only contend
            plan.append(PlannedRun(name, int(seed), RunConfig.from_dict(values)))
    return plan, {"base": typed_base, "variants": typed_variants}


def _typed(values: dict) -> dict:
    """Overrides coerced to their fields' types (compare.yaml records 50, not '50'); unknown keys fail.

    Only whole run configs are validated: a base alone may be incomplete until a variant completes it.
    """
    types = RunConfig.field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
    return {k: coerce(k, v, types[k]) for k, v in values.items()}


def run_status(run_dir: Path) -> str:
    """'done' (summary.json, not interrupted), 'resume' (has a checkpoint) or 'new' (a run killed before its
    first checkpoint starts again; its partial files are moved aside, never deleted)."""
    summary = Path(run_dir) / "summary.json"
    if summary.is_file():
        try:
            if not json.loads(summary.read_text()).get("interrupted", False):
                return "done"
        except (json.JSONDecodeError, AttributeError):
            pass
    return "resume" if list_checkpoints(run_dir) else "new"


def last_step(run_dir: Path) -> int:
    """The step of a run's last metrics row (-1: none yet)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = read_metrics(path) if path.is_file() else []
    return rows[-1]["step"] if rows else -1


def reached(run_dir: Path, stop_at_step: int | None) -> bool:
    """Whether a run launched with a stop step has got there (never, without one)."""
    return stop_at_step is not None and last_step(run_dir) >= stop_at_step


def check_same_config(run: PlannedRun) -> None:
    """Refuse to mix runs of another configuration into this comparison (e.g. a changed --steps)."""
    saved_path = run.run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = load_yaml(saved_path)
    planned = run.config.to_dict()
    differ = [k for k in planned if k in saved and k not in EXECUTION_KEYS and saved[k] != planned[k]]
    if differ:
        shown = ", ".join(f"{k}: {saved[k]!r} there, {planned[k]!r} now" for k in differ[:5])
        raise ValueError(f"{run.run_dir} was run with another configuration ({shown}); use another --out-dir, "
                         f"or delete that run directory to redo it")


def _prepare_policies(pending: list[PlannedRun], prepare, launcher, threads: int | None, log) -> None:
    """Build each distinct initial policy once, here, rather than in K racing run processes."""
    if prepare is None and launcher is not None:
        return
    if prepare is None:
        from rollwise.policy.models import prepare_policy as prepare
    done = set()
    for run in pending:
        key = json.dumps({k: v for k, v in run.config.to_dict().items() if k not in ("seed", "out_dir")},
                         sort_keys=True)
        if key not in done:
            done.add(key)
            # the warm-up runs alone here: give it the threads asked for, not the 1 of parallel runs
            prepare(run.config.replace(threads=threads) if threads else run.config, log=log)


def launch_all(pending: list[PlannedRun], statuses: dict, launcher: Launcher, parallel: int, log,
               stop_at_step: int | None = None) -> list[str]:
    """Run the pending runs, `parallel` at a time; returns a line per run that did not finish.

    A failed run does not stop the others. Ctrl-C cancels the runs not yet started (the running
    ones checkpoint and stop on the same signal) and propagates. One at a time runs in this thread.
    """
    failures, start = [], time.perf_counter()

    def record(i: int, run: PlannedRun, outcome: str) -> None:
        if outcome != "done" and not reached(run.run_dir, stop_at_step):
            failures.append(f"{run.name}: {outcome}")
        log(f"[{i}/{len(pending)}] {run.name}: {outcome} ({time.perf_counter() - start:.0f} s elapsed)")

    if parallel == 1:
        for i, run in enumerate(pending, 1):
            record(i, run, _attempt(launcher, run, statuses[run.name] == "resume", stop_at_step))
        return failures
    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        futures = {pool.submit(_attempt, launcher, run, statuses[run.name] == "resume", stop_at_step): run
                   for run in pending}
        for i, future in enumerate(as_completed(futures), 1):
            record(i, futures[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


def _attempt(launcher: Launcher, run: PlannedRun, resume: bool, stop_at_step: int | None = None) -> str:
    """'done', or why not: a launcher error, or a run that returned without finishing (stopped by a signal)
    and short of the stop step, if any."""
    try:
        launcher(run.config, resume)
    except Exception as exc:  # noqa: BLE001 - one failed run is reported with the others, not fatal
        return f"failed: {exc}"
    if run_status(run.run_dir) == "done":
        return "done"
    return f"at step {stop_at_step}" if reached(run.run_dir, stop_at_step) else "stopped before the end"


def launch_subprocess(cfg: RunConfig, resume: bool, stop_at_step: int | None = None) -> Path:
    """One run as `python -m rollwise.cli train --config RUN/config.yaml`, output in RUN/train.log; with
    stop_at_step, asked to stop (SIGTERM: it checkpoints after the current step) once its metrics reach it."""
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    cmd = [sys.executable, "-m", "rollwise.cli", "train", "--config", str(run_dir / "config.yaml")]
    cmd += ["--resume"] if resume else (["--overwrite"] if holds_a_run(run_dir) else [])
    package_root = str(Path(rollwise.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads),
           "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    log_path = run_dir / "train.log"
    with safefiles.open_append(log_path) as handle:  # never through a link in the run directory
        handle.write(f"$ {' '.join(cmd)}\n")
        handle.flush()
        if stop_at_step is None:
            code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
        else:
            process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
            code = _stop_at(process, run_dir, stop_at_step)
    if code != 0:
        tail = "\n    ".join(log_path.read_text().splitlines()[-5:])
        raise RuntimeError(f"exit status {code}; end of {log_path}:\n    {tail}")
    return run_dir


def _stop_at(process: subprocess.Popen, run_dir: Path, step: int) -> int:
    """Wait for a run's process; once its metrics reach `step`, ask it to stop. Returns its exit status."""
    while process.poll() is None:
        time.sleep(STOP_POLL_SECONDS)
        if reached(run_dir, step):
            process.send_signal(signal.SIGTERM)
            return process.wait()
    return process.returncode


# ------------------------------------------------------------------------------------ command line
