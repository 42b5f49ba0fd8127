"""The README's commands as a user types them: from the repository root, with the study's config
given by --configfile and overrides by --config (dry runs: nothing is computed)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ilscaling.config import ConfigError, load_config
from ilscaling.sweep import sweep_runs
from ilscaling.scalecheck import check

ROOT = Path(__file__).resolve().parents[1]
JOB_COUNT = re.compile(r"^(\w+)\s+(\d+)$", re.MULTILINE)


def dry_run(*args: str) -> tuple[dict[str, int], str]:
    """`snakemake -n --quiet rules ARGS` in the repository root -> (jobs per rule, its output)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    return {rule: int(n) for rule, n in JOB_COUNT.findall(out)}, out


def test_a_configfile_is_the_whole_study_not_merged_into_config_yaml():
    jobs, _ = dry_run("--configfile", "configs/smoke.yaml")
    smoke = load_config(ROOT / "configs/smoke.yaml")
    evals = {game: sum(len(run.budgets) for run in sweep_runs(smoke, game)) for game in ("Breakout", "NetHack")}
    assert jobs["evaluate_checkpoint"] == evals["Breakout"] + evals["NetHack"]
    assert jobs["make_expert"] == 2  # Breakout's and the NetHack bot's; the default study's Qbert is not in it
    atari, _ = dry_run("--configfile", "configs/paper-atari.yaml")
    assert jobs["make_dataset"] == 2 and atari["make_dataset"] == len(load_config(ROOT / "configs/paper-atari.yaml")["atari"]["games"])
    # scale-check (its own dry run, in an empty folder, under the Slurm profile) counts the same jobs.
    assert f"DAG of {atari['total']:,} jobs" in check("configs/paper-atari.yaml", "profiles/slurm", None, [])


@pytest.mark.parametrize("override, key, value", [
    ("resources={max_runtime: 2880}", ("resources", "max_runtime"), 2880),  # README: Cluster resources
    ("nethack={bc: {unroll: 80}}", ("nethack", "bc", "unroll"), 80),
])
def test_the_readmes_config_overrides_work_from_the_root(override, key, value):
    jobs, _ = dry_run("--config", override)
    assert jobs["total"] > 0
    # The same override, as Snakemake hands it over (texts), is read by the schema's types.
    from snakemake.cli import parse_config

    config = load_config(ROOT / "config.yaml", parse_config([override]))
    for part in key[:-1]:
        config = config[part]
    assert config[key[-1]] == value and type(config[key[-1]]) is type(value)


def test_texts_are_read_by_the_declared_type_and_bad_ones_still_name_their_key():
    config = load_config(ROOT / "configs/smoke.yaml", {"nethack": {"bc": {"lr": "3e-4", "max_grad_norm": "null"},
                                                                   "evaluation": {"keep_ttyrecs": "true"}},
                                                       "atari": {"sweep": {"widths": ["1", "2", "4"]}}})
    assert config["nethack"]["bc"]["lr"] == 3e-4 and config["nethack"]["bc"]["max_grad_norm"] is None
    assert config["nethack"]["evaluation"]["keep_ttyrecs"] is True and config["atari"]["sweep"]["widths"] == [1, 2, 4]
    assert config["atari"]["sweep"]["budgets"] == [1e9, 3e9, 1e10]  # budget labels, read as before
    with pytest.raises(ConfigError, match=r"config key nethack\.bc\.unroll: 'eighty'"):
        load_config(ROOT / "configs/smoke.yaml", {"nethack": {"bc": {"unroll": "eighty"}}})


def test_check_config_names_the_file_line_and_key(tmp_path):
    """`ilscaling check-config`: what Snakemake's own reading of --configfile does not say."""
    def check(*files):
        return subprocess.run([sys.executable, "-m", "ilscaling", "check-config", *map(str, files)],
                              capture_output=True, text=True, timeout=120)

    ok = check(ROOT / "configs/smoke.yaml")
    assert ok.returncode == 0 and "valid; BC runs per game: Breakout 3, NetHack 3" in ok.stdout, ok.stderr
    (tmp_path / "bad.yaml").write_text("atari:\n  games: [Qbert\n  seeds: 1\n")
    bad = check(tmp_path / "bad.yaml")
    assert bad.returncode != 0 and "bad.yaml is not valid YAML" in bad.stderr and "line 2" in bad.stderr
    missing = check(tmp_path / "missing.yaml")
    assert missing.returncode != 0 and "missing.yaml does not exist" in missing.stderr
    both = check(ROOT / "configs/smoke.yaml", ROOT / "configs/paper-nethack.yaml")  # merged in order
    assert both.returncode != 0 and "config key nethack.sweep.grid.1e10: budget is not in nethack.sweep.budgets" in both.stderr
