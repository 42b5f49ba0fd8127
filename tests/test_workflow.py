"""End to end: the real Snakemake workflow on configs/smoke.yaml in a temporary folder."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def snakemake(workdir, *args, timeout=900):
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.e2e
def test_smoke_study_end_to_end(tmp_path):
    run = snakemake(tmp_path, "--configfile", str(ROOT / "configs/smoke.yaml"), "--cores", "2")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    results = tmp_path / "results"
    for path in ["atari/Breakout/expert/expert.pt", "atari/Breakout/expert/summary.json",
                 "atari/Breakout/demos/train.npz", "atari/Breakout/demos/heldout.npz",
                 "atari/Breakout/demos/card.json", "scaling/results.nc", "scaling/results.csv",
                 "scaling/fits.nc", "scaling/summary.md"]:
        assert (results / path).is_file(), path
    from ilscaling.plots import FIGURE_STEMS

    for stem in FIGURE_STEMS:
        for ext in ("png", "pdf"):
            assert (results / "figures/Breakout" / f"{stem}.{ext}").stat().st_size > 1000, stem
    # 3 widths x 3 budgets, each evaluated
    assert len(list((results / "atari/Breakout/eval").glob("*.json"))) == 9
    assert len(list((results / "benchmarks").rglob("*.tsv"))) >= 2 + 3 + 9

    with xr.open_dataset(results / "scaling/results.nc") as data:
        assert set(data.dims) >= {"game", "flops", "params", "seed"}
        assert int(data["loss"].count()) == 9 and float(data["loss"].min()) > 0
        assert int(data["return"].count()) == 9
    with xr.open_dataset(results / "scaling/fits.nc") as fits:
        slopes = fits["law"].sel(game="Breakout", stat="slope")
        assert all(math.isfinite(float(s)) for s in slopes.sel(quantity=["n_opt", "d_opt", "l_min"]))

    # A finished study is up to date: nothing left to run.
    dry = snakemake(tmp_path, "--configfile", str(ROOT / "configs/smoke.yaml"), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs/smoke.yaml").read_text().replace("games: [Breakout]", "games: [Breakout]\n  gmaes: []"))
    run = snakemake(tmp_path, "--configfile", str(bad), "--cores", "1")
    assert run.returncode != 0
    assert "atari.gmaes" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


def test_paper_dag_builds(tmp_path):
    run = snakemake(tmp_path, "--configfile", str(ROOT / "configs/paper-atari.yaml"), "-n", "--quiet", "rules")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "train_bc" in run.stdout + run.stderr
