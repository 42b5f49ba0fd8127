# Config validation (before any job starts), input functions and each job's arguments.
import json
import os
import sys
import sysconfig
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from ilscaling import job_resources, jobs
from ilscaling.config import (
    ConfigError,
    forecast_budget,
    forecast_episodes,
    forecast_games,
    missing_data,
    validate_config,
)
from ilscaling.families import family_of, games_of
from ilscaling.flops import budget_label
from ilscaling.forecast import format_sizes
from ilscaling.plots import FIGURE_STEMS, OVERVIEW_STEM
from ilscaling.published import list_games
from ilscaling.sweep import batched_groups, model_sizes, sweep_runs

validate_config(config)
# Data this machine must hold. A dry run (a cluster's config planned on a workstation, `ilscaling
# scale-check`) plans without them and says so; a run stops in `onstart`, before any job.
MISSING_DATA = missing_data(config)
if MISSING_DATA:
    print(
        MISSING_DATA,
        "(a dry run plans without it; a run stops before any job)",
        file=sys.stderr,
    )


onstart:
    if MISSING_DATA:
        raise ConfigError(MISSING_DATA)


GAMES = games_of(config)
FORECAST_GAMES = forecast_games(
    config
)  # the games whose compute-optimal agent is trained (forecast.smk)


# The jobs' `ilscaling` is the one of the interpreter snakemake runs in (the venv, activated or
# not), or under `--sdm conda` the rule's environment's, which conda puts first on the PATH.
envvars:
    "PATH",


if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    os.environ["PATH"] = os.pathsep.join(
        [sysconfig.get_path("scripts"), os.environ.get("PATH", "")]
    )
CONDA_ENV = "../../envs/ilscaling.yaml"
# Every game's outputs: results/<game>/{expert,data,runs,eval,unfinished} (families/).


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
    raise ValueError(
        f"w{wildcards.width}-s{wildcards.seed} is not in the sweep grid of {game}"
    )


# What each job asks the scheduler for (ilscaling.job_resources: runtime and mem_mb from the
# job's model, FLOP budget and games, grown with the attempt number; gpu from resources.gpus).
# A rule's `resources:` names one of the estimates below per key, e.g.
# `runtime=requested(bc_request, "runtime")`; a profile's set-resources overrides any rule.
def requested(estimate, key):
    """A resource of a rule: field `key` (runtime, mem_mb, gpu) of `estimate(wildcards, input, attempt)`."""
    return lambda wildcards, input, attempt: getattr(
        estimate(wildcards, input, attempt), key
    )


def bc_request(wildcards, input, attempt):
    """A sweep run (train_bc): its width, to its largest budget."""
    run = run_of(wildcards, wildcards.game)
    return job_resources.training(
        config, wildcards.game, run.width, max(run.budgets), attempt
    )


def evaluation_request(wildcards, input, attempt):
    """A checkpoint's evaluation (evaluate_checkpoint)."""
    return job_resources.evaluation(
        config, wildcards.game, int(wildcards.width), attempt=attempt
    )


def forecast_width(game):
    """The forecast agent's width: from its forecast.json, or before that exists (the DAG build)
    the width the sweep's prior expects at C*."""
    path = Path(f"results/forecast/{game}/forecast.json")
    if path.exists():
        return int(json.loads(path.read_text())["width"])
    return job_resources.expected_width(config, game, forecast_budget(config, game))


def forecast_training_request(wildcards, input, attempt):
    game = wildcards.game
    return job_resources.training(
        config, game, forecast_width(game), forecast_budget(config, game), attempt
    )


def forecast_evaluation_request(wildcards, input, attempt):
    game = wildcards.game
    return job_resources.evaluation(
        config, game, forecast_width(game), forecast_episodes(config, game), attempt
    )


def expert_request(wildcards, input, attempt):
    return family_of(wildcards.game).expert_request(config, attempt)


def dataset_request(wildcards, input, attempt):
    return family_of(wildcards.game).dataset_request(config, attempt)


def small_request(wildcards, input, attempt):
    return job_resources.small(config, attempt)


# The resources of the rules that read and write result files (job_resources.small).
SMALL_JOB = {key: requested(small_request, key) for key in ("runtime", "mem_mb", "gpu")}


# atari.bc.batched: the Atari runs trained in groups of one width, one process per group
# (train.smk: train_bc_batched_w<W>_g<k>, which take precedence over train_bc for their runs).
BATCHED_GROUPS = batched_groups(config)


def batched_job(group):
    """The group's (shared spec, speed, members) as `ilscaling train-bc-batched` takes them: each
    member its own spec and the folders train_bc would give its run (members and speed hidden from
    the params trigger: jobs.batched_training)."""
    shared, speed, specs = jobs.batched_training(config, group.runs)
    members = [
        {
            **spec,
            "train": data_file(run.game, "train"),
            "out_dir": f"results/{run.game}/runs/{run.name}",
            "work_dir": f"results/{run.game}/unfinished/{run.name}",
        }
        for run, spec in zip(group.runs, specs)
    ]
    return shared, speed, jobs.Speed(json.dumps(members))


def batched_request(group):
    """A batched group's estimate (job_resources.batched_training)."""
    return lambda wildcards, input, attempt: job_resources.batched_training(
        config, group.runs, attempt
    )


def batched_resources(group):
    """The group's resources: as train_bc's (its estimate, resumable), and whatever a profile's
    set-resources gives train_bc, whose runs the group's jobs train (a profile cannot name the
    groups' rules: they are made per group)."""
    profile = workflow.resource_settings.overwrite_resources.get("train_bc", {})
    return {
        **{
            key: requested(batched_request(group), key)
            for key in ("runtime", "mem_mb", "gpu")
        },
        "slurm_extra": job_resources.PREEMPTION_SIGNAL,
        **{name: getattr(value, "raw", value) for name, value in profile.items()},
    }


def report_if_made(paths, games=None, **options):
    """`report(paths, **options)` once every file of `paths` exists for every game of the study (or of
    `games`; looked at when the workflow is read), else `paths` unflagged: `snakemake --report` on an
    unfinished study then reports what is done instead of failing on the first missing file.
    """
    patterns = [paths] if isinstance(paths, str) else list(paths)
    made = all(
        Path(pattern.format(game=game)).exists()
        for pattern in patterns
        for game in (games or GAMES)
    )
    return report(paths, **options) if made else paths


def data_file(game, role):
    """A game's data file of `role` (train, heldout, card; families/: data_files)."""
    return f"results/{game}/data/{family_of(game).data_files[role]}"


def eval_files(game):
    return [
        f"results/{game}/eval/{run.name}-c{budget_label(budget)}.json"
        for run in RUNS[game]
        for budget in run.budgets
    ]


def card_files():
    return [data_file(game, "card") for game in GAMES]


def figure_files(ext):
    return expand(
        "results/figures/{game}/{stem}.{ext}",
        game=GAMES,
        stem=(OVERVIEW_STEM, *FIGURE_STEMS),
        ext=ext,
    )


def all_outputs():
    return [
        "results/scaling/results.nc",
        "results/scaling/fits.nc",
        "results/scaling/summary.md",
        "results/report/headline_laws.rst",  # report.smk: the front page's table of laws
        *figure_files("png"),
        *figure_files("pdf"),
        *forecast_outputs(),  # forecast.smk: the forecast agent's verdicts, when forecast.enabled
    ]


def dataset_source(wildcards):
    """The expert stage's folder, or the game's data already on disk (none while missing: a dry run)."""
    source = family_of(wildcards.game).dataset_source(
        config, wildcards.game, f"results/{wildcards.game}/expert"
    )
    return (
        [] if MISSING_DATA and source != f"results/{wildcards.game}/expert" else source
    )


# The forecast agent (forecast.smk), per game of FORECAST_GAMES.
FORECAST = config["forecast"]


def forecast_label(game):
    return budget_label(forecast_budget(config, game))


def forecast_outputs():
    if not FORECAST["enabled"]:
        return []
    return [
        *expand(
            "results/forecast/{game}/{name}",
            game=FORECAST_GAMES,
            name=("forecast.json", "verdict.json", "forecast.png", "forecast.pdf"),
        ),
        "results/forecast/verdict.md",
        "results/report/headline_forecast.rst",  # report.smk: the front page's table of verdicts
    ]


# Published results to re-fit (published.smk), from --config published={path: ...}.
PUBLISHED_PATH = config.get("published", {}).get("path")
PUBLISHED_GAMES = list_games(PUBLISHED_PATH) if PUBLISHED_PATH else []


def published_path(wildcards):
    if not PUBLISHED_PATH:
        raise ValueError(
            "target `published` needs --config 'published={path: <experiment_data folder or .csv>}'"
        )
    return PUBLISHED_PATH
