"""`ilscaling scale-check`: what a configuration asks a cluster for, before anything is submitted.

Builds the DAG with `snakemake -n` (timed) under a profile (default profiles/slurm, as
`snakemake --profile` takes it), in an empty working directory unless told otherwise (so the whole
study counts, not what is left of it), reads every job's resources from the dry run's output and prints the job count per rule,
the requested job-hours and GPU-hours (gpu x runtime, summed over jobs), and the training FLOPs
of the configuration with the GPU-hours they take at the assumed throughput.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

JOB_HEADER = re.compile(r"^(local)?rule (\w+):$")
RESOURCES = re.compile(r"^\s+resources: (.*)$")
RESOURCE = re.compile(r"(\w+)=(.*?)(?=, \w+=|$)")
STATS_TOTAL = re.compile(r"^total\s+(\d+)$", re.MULTILINE)
GENERATED = re.compile(r"_w\d+_g\d+$")   # rules made per group (train.smk: train_bc_batched_w<W>_g<k>)


@dataclass
class RuleTotals:
    jobs: int = 0
    job_hours: float = 0.0       # sum of runtime (the time limits requested)
    gpu_hours: float = 0.0       # sum of gpu x runtime
    max_runtime: int = 0         # minutes
    max_mem_mb: int = 0
    gpus: set = field(default_factory=set)


def parse_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a `snakemake -n` printed; a local rule's job (run by
    Snakemake itself, never submitted) gets no resources."""
    jobs = []
    local = False
    for line in text.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            local = bool(header.group(1))
            jobs.append((header.group(2), {}))
            continue
        found = RESOURCES.match(line)
        if found and jobs and not local:
            jobs[-1][1].update(RESOURCE.findall(found.group(1)))
    return jobs


def _number(value: str | None) -> int:
    """A resource value as a number; a missing, string or <TBD> value counts as 0."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def totals(jobs: list[tuple[str, dict[str, str]]]) -> dict[str, RuleTotals]:
    """Per rule (the rules generated per batched group as one): jobs, requested job-hours and
    GPU-hours, the largest runtime and memory (a missing or unparsable value counts as 0)."""
    per_rule: dict[str, RuleTotals] = {}
    for rule, resources in jobs:
        entry = per_rule.setdefault(GENERATED.sub("_*", rule), RuleTotals())
        runtime, gpu = _number(resources.get("runtime")), _number(resources.get("gpu"))
        entry.jobs += 1
        entry.job_hours += runtime / 60
        entry.gpu_hours += gpu * runtime / 60
        entry.max_runtime = max(entry.max_runtime, runtime)
        entry.max_mem_mb = max(entry.max_mem_mb, _number(resources.get("mem_mb")))
        entry.gpus.add(gpu)
    return per_rule


def training_flops(config: dict) -> dict[str, float]:
    """Training FLOPs per game: every sweep run to its largest budget, plus the forecast agent's C*."""
    from ilscaling.config import forecast_budget, forecast_games
    from ilscaling.families import games_of
    from ilscaling.sweep import sweep_runs

    flops = {}
    for game in games_of(config):
        flops[game] = sum(max(run.budgets) for run in sweep_runs(config, game))
        if game in forecast_games(config):
            flops[game] += forecast_budget(config, game)
    return flops


def dry_run(configfile: Path, workdir: Path, profile: str | None, extra: list[str]) -> tuple[str, float]:
    """The output of `snakemake -n` (every job with its resources) and the seconds it took."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(configfile), "-n", *(["--profile", profile] if profile else []), *extra]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{configfile}: snakemake -n failed\n{(run.stdout + run.stderr)[-3000:]}")
    return run.stdout + run.stderr, seconds


def report(name: str, text: str, seconds: float, config: dict) -> str:
    """The table a user reads before submitting: jobs, requested hours, training FLOPs."""
    jobs = parse_jobs(text)
    per_rule = totals(jobs)
    stated = STATS_TOTAL.search(text)
    if stated and int(stated.group(1)) != len(jobs):
        raise ValueError(f"{name}: parsed {len(jobs)} jobs, snakemake's job stats say {stated.group(1)}")
    lines = [f"{name}: DAG of {len(jobs):,} jobs built by `snakemake -n` in {seconds:.1f} s",
             f"{'rule':<28} {'jobs':>6} {'GPUs/job':>8} {'job-hours':>10} {'GPU-hours':>10} "
             f"{'max runtime':>12} {'max mem':>8}"]
    for rule, entry in per_rule.items():
        gpus = "/".join(str(g) for g in sorted(entry.gpus))
        lines.append(f"{rule:<28} {entry.jobs:>6,} {gpus:>8} {entry.job_hours:>10,.1f} {entry.gpu_hours:>10,.1f} "
                     f"{entry.max_runtime / 60:>11,.1f}h {entry.max_mem_mb / 1000:>6,.1f}GB")
    job_hours = sum(e.job_hours for e in per_rule.values())
    gpu_hours = sum(e.gpu_hours for e in per_rule.values())
    lines.append(f"{'total':<28} {len(jobs):>6,} {'':>8} {job_hours:>10,.1f} {gpu_hours:>10,.1f}")
    resources = config["resources"]
    lines.append(f"(requested: the jobs' time limits, {resources['safety_factor']:g}x the estimates at "
                 "resources.throughput, first attempt; retries ask for more)")
    flops = training_flops(config)
    rate = resources["throughput"]["gpu"]["train_flops_per_s"]
    lines.append(f"training FLOPs (sweep runs to their largest budget + forecast agents): {sum(flops.values()):.3g} = "
                 + ", ".join(f"{game} {value:.3g}" for game, value in flops.items()))
    lines.append(f"  = {sum(flops.values()) / rate / 3600:,.1f} GPU-hours at {rate:.3g} training FLOP/s per GPU "
                 "(resources.throughput.gpu.train_flops_per_s; no safety factor, no small-model overhead)")
    return "\n".join(lines)


def config_overrides(extra: list[str]) -> dict:
    """The `--config key=value ...` items among snakemake's extra arguments, parsed by Snakemake's
    own parser, so the FLOP summary counts the configuration the DAG is built from."""
    from snakemake.cli import parse_config

    entries, reading = [], False
    for arg in extra:
        if arg.startswith("-"):
            reading = arg in ("--config", "-C")
        elif reading:
            entries.append(arg)
    try:
        return parse_config(entries)
    except ValueError as err:
        raise SystemExit(f"--config {' '.join(entries)}: {err}") from None


def in_repository(path: str | None) -> str | None:
    """A path as given, else the repository's (configs/..., profiles/slurm from any directory)."""
    if path is None or Path(path).exists() or not (ROOT / path).exists():
        return path
    return str(ROOT / path)


def check(configfile: str, profile: str | None, workdir: str | None, extra: list[str]) -> str:
    """The report of one configuration (its `snakemake -n` under `profile`)."""
    from ilscaling.config import load_config, missing_data

    name, configfile, profile = configfile, in_repository(configfile), in_repository(profile)
    config = load_config(Path(configfile), config_overrides(extra))
    missing = missing_data(config)  # data a cluster holds: the dry run plans without them (common.smk)
    note = f"{missing}; planned without it" if missing else None
    with tempfile.TemporaryDirectory(prefix="scale-check-") as scratch:
        text, seconds = dry_run(Path(configfile), Path(workdir or Path(scratch) / "work"), profile, extra)
    out = report(name, text, seconds, config)
    return out + (f"\nnote: {note}" if note else "")


def main(configfiles: list[str], profile: str | None = "profiles/slurm", workdir: str | None = None,
         extra: list[str] = ()) -> None:
    for configfile in configfiles:
        print(check(configfile, profile, workdir, list(extra)), flush=True)
        print()


if __name__ == "__main__":   # python -m ilscaling.scalecheck CONFIG... (the CLI: ilscaling scale-check)
    main(sys.argv[1:] or ["configs/paper-atari.yaml", "configs/paper-nethack.yaml"])

