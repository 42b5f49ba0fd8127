# Config validation (before any job starts), paths and input functions.
import json
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from ilscaling import job_resources, jobs
from ilscaling.config import (ConfigError, batched_groups, forecast_budget, forecast_episodes, forecast_games, missing_data,
                              sweep_runs, validate_config)
from ilscaling.families import family_of, games_of
from ilscaling.flops import budget_label
from ilscaling.plots import FIGURE_STEMS, OVERVIEW_STEM


validate_config(config)
# Data this machine must hold. A dry run (a cluster's config planned on a workstation, `ilscaling
# scale-check`) plans without them and says so; a run stops in `onstart`, before any job.
MISSING_DATA = missing_data(config)
if MISSING_DATA:
    print(f"{MISSING_DATA} (a dry run plans without it; a run stops before any job)", file=sys.stderr)


onstart:
    if MISSING_DATA:
        raise ConfigError(MISSING_DATA)


GAMES = games_of(config)
FORECAST_GAMES = forecast_games(config)  # the games whose compute-optimal agent is trained (forecast.smk)
# The jobs run the package of the interpreter snakemake runs in (the venv), or of the rule's
# conda environment under `--sdm conda`.
ILSCALING = (
    "python -m ilscaling"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    else f"{sys.executable} -m ilscaling"
)
CONDA_ENV = "../../envs/ilscaling.yaml"

RES = "results"
GAME_DIR = RES + "/{game}"  # every game's expert/, data/, runs/, eval/ and unfinished/ (families/)


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


# What each job asks the scheduler for (ilscaling.job_resources: runtime and mem_mb from the
# job's model, FLOP budget and games, grown with the attempt number; gpu from resources.gpus).
# A rule's `resources:` names one of the estimates below per key, e.g.
# `runtime=requested(bc_request, "runtime")`; a profile's set-resources overrides any rule.
def requested(estimate, key):
    """A rule resource: field `key` (runtime, mem_mb, gpu) of `estimate(wildcards, input, attempt)`."""
    return lambda wildcards, input, attempt: getattr(estimate(wildcards, input, attempt), key)


def bc_request(wildcards, input, attempt):
    """A sweep run (train_bc): its width, to its largest budget."""
    run = run_of(wildcards, wildcards.game)
    return job_resources.training(config, wildcards.game, run.width, max(run.budgets), attempt)


def evaluation_request(wildcards, input, attempt):
    """A checkpoint's evaluation (evaluate_checkpoint)."""
    return job_resources.evaluation(config, wildcards.game, int(wildcards.width), attempt=attempt)


def forecast_width(game):
    """The forecast agent's width: from its forecast.json, or before that exists (the DAG build)
    the width the sweep's prior expects at C*."""
    path = Path(f"{RES}/forecast/{game}/forecast.json")
    if path.exists():
        return int(json.loads(path.read_text())["width"])
    return job_resources.expected_width(config, game, forecast_budget(config, game))


def forecast_training_request(wildcards, input, attempt):
    game = wildcards.game
    return job_resources.training(config, game, forecast_width(game), forecast_budget(config, game), attempt)


def forecast_evaluation_request(wildcards, input, attempt):
    game = wildcards.game
    return job_resources.evaluation(config, game, forecast_width(game), forecast_episodes(config, game), attempt)


def expert_request(wildcards, input, attempt):
    return family_of(wildcards.game).expert_request(config, attempt)


def dataset_request(wildcards, input, attempt):
    return family_of(wildcards.game).dataset_request(config, attempt)


# atari.bc.batched: the Atari runs trained in groups of one width, one process per group
# (train.smk: train_bc_batched_w<W>_g<k>, which take precedence over train_bc for their runs).
BATCHED_GROUPS = batched_groups(config)


def batched_job(group):
    """The group's (shared spec, speed, members) as `ilscaling train-bc-batched` takes them: each
    member its own spec and the folders train_bc would give its run (members and speed hidden from
    the params trigger: jobs.batched_training)."""
    shared, speed, specs = jobs.batched_training(config, group.runs)
    members = [{**spec, "train": data_file(run.game, "train"), "out_dir": f"{RES}/{run.game}/runs/{run.name}",
                "work_dir": f"{RES}/{run.game}/unfinished/{run.name}"} for run, spec in zip(group.runs, specs)]
    return shared, speed, jobs.Speed(json.dumps(members))


def batched_request(group):
    """A batched group's estimate (job_resources.batched_training)."""
    return lambda wildcards, input, attempt: job_resources.batched_training(config, group.runs, attempt)


def batched_resources(group):
    """The group's resources: the estimates above, and whatever the profile's set-resources gives
    train_bc (e.g. profiles/slurm's --signal for preemption), which the group's jobs replace; a
    profile cannot name them, their rule names are made per group."""
    profile = workflow.resource_settings.overwrite_resources.get("train_bc", {})
    return {**{key: requested(batched_request(group), key) for key in ("runtime", "mem_mb", "gpu")},
            **{name: getattr(value, "raw", value) for name, value in profile.items()}}


def report_if_made(paths, games=None, **options):
    """`report(paths, **options)` once every file of `paths` exists for every game of the study (or of
    `games`; looked at when the workflow is read), else `paths` unflagged: `snakemake --report` on an
    unfinished study then reports what is done instead of failing on the first missing file."""
    patterns = [paths] if isinstance(paths, str) else list(paths)
    made = all(Path(pattern.format(game=game)).exists() for pattern in patterns for game in (games or GAMES))
    return report(paths, **options) if made else paths


def data_file(game, role):
    """A game's data file of `role` (train, heldout, card; families/: data_files)."""
    return f"{RES}/{game}/data/{family_of(game).data_files[role]}"


def eval_files(game):
    return [
        f"{RES}/{game}/eval/{run.name}-c{budget_label(budget)}.json"
        for run in RUNS[game]
        for budget in run.budgets
    ]


def card_files():
    return [data_file(game, "card") for game in GAMES]


def figure_files(ext):
    return expand(RES + "/figures/{game}/{stem}.{ext}", game=GAMES, stem=(OVERVIEW_STEM, *FIGURE_STEMS), ext=ext)


def all_outputs():
    return [
        RES + "/scaling/results.nc",
        RES + "/scaling/fits.nc",
        RES + "/scaling/summary.md",
        RES + "/report/headline_laws.rst",  # report.smk: the front page's table of laws
        *figure_files("png"),
        *figure_files("pdf"),
        *forecast_outputs(),  # forecast.smk: the forecast agent's verdicts, when forecast.enabled
    ]
