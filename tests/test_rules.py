"""The workflow's files as the snakemake-workflows catalog holds them: `snakemake --lint` finds
nothing, and Snakefile and the rule files are as snakefmt writes them."""

import subprocess
import sys
from pathlib import Path

from test_workflow import ROOT, snakemake


def test_snakemake_lint_finds_nothing(tmp_path):
    for config in ("config.yaml", "configs/smoke.yaml", "configs/paper-atari.yaml"):
        run = snakemake(tmp_path, "--lint", "--configfile", str(ROOT / config))
        assert run.returncode == 0, (config, run.stdout[-5000:] + run.stderr[-3000:])


def test_snakefile_and_rules_are_snakefmt_formatted():
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
    run = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", *map(str, files)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert Path(ROOT / "Snakefile").read_text().count("min_version(") == 1
