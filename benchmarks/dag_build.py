"""Time `snakemake -n` (DAG build, no jobs) on the paper-scale configs and print the job count.

    python benchmarks/dag_build.py [configs/paper-atari.yaml ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(configs: list[str]) -> None:
    for config in configs:
        with tempfile.TemporaryDirectory() as workdir:
            started = time.perf_counter()
            run = subprocess.run(
                [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", workdir,
                 "--configfile", str(ROOT / config), "-n", "--quiet", "rules"],
                capture_output=True, text=True,
            )
            elapsed = time.perf_counter() - started
        if run.returncode != 0:
            sys.exit(f"{config}: snakemake -n failed\n{run.stderr[-2000:]}")
        total = re.search(r"^total\s+(\d+)", run.stdout + run.stderr, re.M)
        print(f"{config}: DAG of {total.group(1) if total else '?'} jobs built in {elapsed:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:] or ["configs/paper-atari.yaml"])
