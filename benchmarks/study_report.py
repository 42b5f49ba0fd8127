"""Print the wall time, peak memory and disk of a finished study, per stage.

Reads Snakemake's benchmark files (results/benchmarks/**/*.tsv: one per job) and the
.snakemake log of the run, so the figures come from the run itself, not from a timed test.

    python benchmarks/study_report.py [results]
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from machine import describe

STAGES = ("make_expert", "make_dataset", "train_bc", "evaluate", "gather", "fit", "plot")


def stage_of(path: Path) -> str:
    for stage in STAGES:
        if stage in path.parts or path.stem.startswith(stage):
            return stage
    return path.stem


def main(results: Path) -> None:
    wall, cpu, jobs, peak_rss = defaultdict(float), defaultdict(float), defaultdict(int), defaultdict(float)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        with tsv.open() as handle:
            row = list(csv.DictReader(handle, delimiter="\t"))[-1]
        stage = stage_of(tsv.relative_to(results / "benchmarks"))
        wall[stage] += float(row["s"])
        cpu[stage] += float(row.get("cpu_time", 0) or 0)
        jobs[stage] += 1
        peak_rss[stage] = max(peak_rss[stage], float(row.get("max_rss", 0) or 0))
    disk = sum(f.stat().st_size for f in results.rglob("*") if f.is_file())
    print(describe())
    print(f"{'stage':24s} {'jobs':>5s} {'job wall s (sum)':>17s} {'cpu s':>9s} {'peak RSS MB':>12s}")
    for stage in wall:
        print(f"{stage:24s} {jobs[stage]:5d} {wall[stage]:17.1f} {cpu[stage]:9.1f} {peak_rss[stage]:12.0f}")
    print(f"{'total':24s} {sum(jobs.values()):5d} {sum(wall.values()):17.1f} {sum(cpu.values()):9.1f} "
          f"{max(peak_rss.values(), default=0):12.0f}")
    print(f"disk used by {results}: {disk / 1e9:.2f} GB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
