# Config validation (before any job starts), paths and input functions.
import sys

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from ilscaling.config import NETHACK, games_of, validate_config, sweep_runs
from ilscaling.flops import budget_label
from ilscaling.games.atari import num_actions
from ilscaling.plots import FIGURE_STEMS


validate_config(config)

ATARI = config.get("atari", {})
NH = config.get("nethack", {})
GAMES = games_of(config)
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
NH_DIR = RES + "/nethack"


wildcard_constraints:
    game="[A-Za-z0-9]+",
    width="[0-9]+",
    seed="[0-9]+",
    budget="[0-9.]+e[0-9]+",


# The sweep grid of every game, computed once for the whole DAG.
RUNS = {game: sweep_runs(config, game) for game in GAMES}


def run_of(wildcards, game):
    """The sweep run (width, seed, budgets) a job of `game` belongs to."""
    for run in RUNS[game]:
        if run.width == int(wildcards.width) and run.seed == int(wildcards.seed):
            return run
    raise ValueError(f"w{wildcards.width}-s{wildcards.seed} is not in the sweep grid of {game}")


def game_dir(game):
    return NH_DIR if game == NETHACK else f"{RES}/atari/{game}"


def eval_files(game):
    return [
        f"{game_dir(game)}/eval/{run.name}-c{budget_label(budget)}.json"
        for run in RUNS[game]
        for budget in run.budgets
    ]


def card_files():
    """The data card of every game (expert return, and for Atari the expert's loss floor)."""
    return [f"{game_dir(game)}/{'data' if game == NETHACK else 'demos'}/card.json" for game in GAMES]


def nethack_ttyrecs(wildcards):
    """The ttyrec root the NetHack dataset indexes: the bot's recordings, or an existing directory."""
    dataset = NH["dataset"]
    return NH_DIR + "/bot" if dataset["source"] == "bot" else dataset["path"]


def figure_files(ext):
    return expand(RES + "/figures/{game}/{stem}.{ext}", game=GAMES, stem=FIGURE_STEMS, ext=ext)


def all_outputs():
    return [
        RES + "/scaling/results.nc",
        RES + "/scaling/fits.nc",
        RES + "/scaling/summary.md",
        *figure_files("png"),
        *figure_files("pdf"),
        *forecast_outputs(),  # forecast.smk: the forecast agent's verdicts, when forecast.enabled
    ]
