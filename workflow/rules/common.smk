# Config validation (before any job starts), paths and input functions.
import json
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from ilscaling import job_resources
from ilscaling.config import (NETHACK, ConfigError, batched_groups, forecast_budget, forecast_episodes, forecast_games, games_of,
                              missing_data, validate_config, sweep_runs)
from ilscaling.flops import budget_label
from ilscaling.games.atari import num_actions
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


ATARI = config.get("atari", {})
NH = config.get("nethack", {})
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


# What each job asks the scheduler for (ilscaling.job_resources: runtime and mem_mb from the
# job's model, FLOP budget and games, grown with the attempt number; gpu from resources.gpus).
# A rule's `resources:` names one of the estimates below per key, e.g.
# `runtime=requested(bc_request, "runtime")`; a profile's set-resources overrides any rule.
def requested(estimate, key):
    """A rule resource: field `key` (runtime, mem_mb, gpu) of `estimate(wildcards, input, attempt)`."""
    return lambda wildcards, input, attempt: getattr(estimate(wildcards, input, attempt), key)


def bc_request(wildcards, input, attempt):
    """A sweep run (train_bc, train_nethack_bc): its width, to its largest budget."""
    game = getattr(wildcards, "game", NETHACK)
    run = run_of(wildcards, game)
    return job_resources.training(config, game, run.width, max(run.budgets), attempt)


def evaluation_request(wildcards, input, attempt):
    """A checkpoint's evaluation (evaluate_checkpoint, evaluate_nethack_checkpoint)."""
    return job_resources.evaluation(config, getattr(wildcards, "game", NETHACK), int(wildcards.width), attempt=attempt)


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
    return job_resources.expert(config, attempt)


def demonstrations_request(wildcards, input, attempt):
    return job_resources.demonstrations(config, attempt)


def nethack_dataset_request(wildcards, input, attempt):
    return job_resources.nethack_dataset(config, attempt)


def grad_clip_flag(bc):
    """--max-grad-norm of a family's bc section, when it clips (no default is filled in, so a
    study that does not clip keeps its bc params, and its finished runs, as they were)."""
    return "" if bc.get("max_grad_norm") is None else f"--max-grad-norm {bc['max_grad_norm']}"


def lr_flags(bc):
    """--lr of a family's bc section, and --lr-reference-width where the lr scales with the width."""
    reference = bc.get("lr_reference_width")
    return f"--lr {bc['lr']}" + ("" if reference is None else f" --lr-reference-width {reference}")


class SpeedFlags(str):
    """Command-line flags that set how fast a job runs or what it keeps on the side, never what it
    computes: device, resume interval, compilation, worker processes, games played at once.

    Snakemake reruns a job whose params changed, comparing their repr; this repr leaves the values
    out, so changing a speed flag on a finished study reruns nothing (tests/test_workflow.py).
    Threads need no such care: the `threads:` directive is not compared.
    """

    def __repr__(self):
        return "SpeedFlags()"


def training_speed(section):
    """A family's training speed flags (atari or nethack section; train_bc, the batched groups, the forecast
    agent), and its max_epochs guard (it stops a run before its first step, never changes one)."""
    bc = section["bc"]
    switches = [f"--{'' if bc[key] else 'no-'}{key.replace('_', '-')}" for key in ("channels_last", "compile") if key in bc]
    flags = f"--resume-every-s {bc['resume_every_s']} --device {bc['device']} --max-epochs {bc['max_epochs']}"
    return SpeedFlags(" ".join([flags, *switches]))


def evaluation_speed(section):
    """A family's evaluation speed flags: the device, and for NetHack the workers, the games played
    at once (seeded games do not depend on either) and where the games' ttyrecs are kept."""
    evaluation = section["evaluation"]
    flags = f"--device {evaluation['device']}"
    if section is NH:  # torch's threads; the job's threads also cover the worker processes
        flags += (f" --threads {evaluation['threads']} --processes {evaluation['processes']}"
                  + (f" --envs {evaluation['envs']}" if evaluation["envs"] else ""))
    return SpeedFlags(flags)


def ttyrec_flag(folder):
    """--ttyrec-dir `folder` when nethack.evaluation.keep_ttyrecs (a speed flag: what is kept, not what is computed)."""
    return SpeedFlags(f"--ttyrec-dir {folder}" if NH["evaluation"]["keep_ttyrecs"] else "")


# atari.bc.batched: the Atari runs trained in groups of one width, one process per group
# (train.smk: train_bc_batched_w<W>_g<k>, which take precedence over train_bc for their runs).
BATCHED_GROUPS = batched_groups(config)


def batched_members(group):
    """The group's runs as `ilscaling train-bc-batched --members` takes them (JSON)."""
    return json.dumps([{"game": run.game, "seed": run.seed, "num_actions": num_actions(run.game),
                        "budgets": [budget_label(b) for b in run.budgets],
                        "train": f"{RES}/atari/{run.game}/demos/train.npz",
                        "out_dir": f"{RES}/atari/{run.game}/runs/{run.name}",
                        "work_dir": f"{RES}/atari/{run.game}/unfinished/{run.name}"} for run in group.runs])


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


def game_dir(game):
    return NH_DIR if game == NETHACK else f"{RES}/atari/{game}"


def eval_files(game):
    return [
        f"{game_dir(game)}/eval/{run.name}-c{budget_label(budget)}.json"
        for run in RUNS[game]
        for budget in run.budgets
    ]


def card_file(game):
    """A game's data card (its data's size, the expert's return, and for Atari the expert's loss floor)."""
    return f"{game_dir(game)}/{'data' if game == NETHACK else 'demos'}/card.json"


def card_files():
    return [card_file(game) for game in GAMES]


def nethack_ttyrecs(wildcards):
    """The ttyrec root the NetHack dataset indexes: the bot's recordings, or an existing directory."""
    dataset = NH["dataset"]
    if dataset["source"] == "bot":
        return NH_DIR + "/bot"
    return [] if MISSING_DATA else dataset["path"]


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
