"""Time `snakemake -n` (DAG build, no jobs) on the paper-scale configs, with the job counts and
GPU-hours they ask for: `ilscaling scale-check` (src/ilscaling/scalecheck.py) after the machine.

    python benchmarks/dag_build.py [configs/paper-atari.yaml ...]
"""

from __future__ import annotations

import sys

from machine import describe

from ilscaling.scalecheck import main

if __name__ == "__main__":
    print(describe(), end="\n\n")
    main(sys.argv[1:] or ["configs/paper-atari.yaml", "configs/paper-nethack.yaml"])
