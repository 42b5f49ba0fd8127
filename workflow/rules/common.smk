# Config validation (before any job starts), paths and input functions.
import sys

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from ilscaling.config import validate_config, sweep_runs
from ilscaling.flops import budget_label
from ilscaling.games.atari import num_actions
from ilscaling.plots import FIGURE_STEMS


validate_config(config)

ATARI = config["atari"]
GAMES = ATARI["games"]
# The jobs run the package of the interpreter snakemake runs in (the venv), or of the rule's
# conda environment under `--sdm conda`.
ILSCALING = (
    "python -m ilscaling"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else f"{sys.executable} -m ilscaling"
)
CONDA_ENV = "../../envs/ilscaling.yaml"

RES = "results"
GAME_DIR = RES + "/atari/{game}"


wildcard_constraints:
    game="[A-Za-z0-9]+",
    width="[0-9]+",
    seed="[0-9]+",
    budget="[0-9.]+e[0-9]+",


# The sweep grid of every game, computed once for the whole DAG.
RUNS = {game: sweep_runs(config, game) for game in GAMES}


def run_of(wildcards):
    """The sweep run (width, seed, budgets) a job belongs to."""
    for run in RUNS[wildcards.game]:
        if run.width == int(wildcards.width) and run.seed == int(wildcards.seed):
            return run
    raise ValueError(f"w{wildcards.width}-s{wildcards.seed} is not in the sweep grid of {wildcards.game}")


def eval_files(game):
    return [
        f"{RES}/atari/{game}/eval/{run.name}-c{budget_label(budget)}.json"
        for run in RUNS[game]
        for budget in run.budgets
    ]


def figure_files(ext):
    return expand(RES + "/figures/{game}/{stem}.{ext}", game=GAMES, stem=FIGURE_STEMS, ext=ext)


def all_outputs():
    return [
        RES + "/scaling/results.nc",
        RES + "/scaling/fits.nc",
        RES + "/scaling/summary.md",
        *figure_files("png"),
        *figure_files("pdf"),
    ]
