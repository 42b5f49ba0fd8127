"""Every job's arguments, resolved from the study's config: the one place the rules get them.

A rule hands its job two JSON objects (`ilscaling <command> --spec ... --speed ...`): the spec,
what the job computes, and the speed, how fast it runs or what it keeps on the side (threads,
device, resume interval, compilation, worker processes, kept ttyrecs) and the guards that stop a
job before it starts (max_epochs). Snakemake reruns a job whose params changed, comparing their
repr; the speed's repr (`Speed`) leaves its value out, so changing a speed setting on a finished
study reruns nothing (tests/test_workflow.py).
"""

from __future__ import annotations

import json

from ilscaling.config import forecast_budget, forecast_episodes
from ilscaling.families import family_of
from ilscaling.flops import budget_label

# BCArgs fields that set how fast a run goes or guard it, not what it computes: they may differ
# between a run and its resume (or the rerun of a finished run; train.config_differences).
SPEED_FIELDS = frozenset({"num_threads", "device", "resume_every_s", "log_every", "compile", "channels_last",
                          "vectorize", "max_epochs"})
# BCArgs fields of the config's bc section that set what a run computes, where the config has them.
TRAINING_KEYS = ("lr", "lr_reference_width", "max_grad_norm", "batch_size")
# What each run of a batched group has of its own (the rest its group shares: train_batched.SHARED).
MEMBER_FIELDS = ("game", "seed", "num_actions", "width", "budgets")


class Speed(str):
    """A job's speed settings as JSON: a str whose repr hides its value from Snakemake's params trigger."""

    def __repr__(self):
        return "Speed()"


def as_json(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


def _training_spec(config: dict, game: str, width: int | None, seed: int | None, budgets) -> dict:
    family = family_of(game)
    bc = config[family.section]["bc"]
    spec = {"game": game, **family.model_config(config, game),
            **{key: bc[key] for key in TRAINING_KEYS if bc.get(key) is not None},
            "seed": bc["seeds"][0] if seed is None else seed}
    if width is not None:
        spec.update(width=width, budgets=[float(budget_label(b)) for b in budgets])
    return spec


def _training_speed(config: dict, game: str) -> dict:
    bc = config[family_of(game).section]["bc"]
    return {key: bc[key] for key in SPEED_FIELDS if key in bc}


def training(config: dict, game: str, width: int | None = None, seed: int | None = None,
             budgets=()) -> tuple[str, Speed]:
    """A BC run's (spec, speed): the game's family's model, the bc section's optimiser, and the run.

    Without width and budgets, the spec every run of the game shares (the forecast agent's, whose
    width and budget come from its forecast)."""
    return as_json(_training_spec(config, game, width, seed, budgets)), Speed(as_json(_training_speed(config, game)))


def batched_training(config: dict, runs) -> tuple[str, Speed, list[dict]]:
    """A batched group's (shared spec, speed, each member's own spec: MEMBER_FIELDS) (train_batched.py).

    Which runs share a process (atari.bc.batched.max_models) sets the speed, not a run's results."""
    specs = [_training_spec(config, run.game, run.width, run.seed, run.budgets) for run in runs]
    shared = {key: value for key, value in specs[0].items() if key not in MEMBER_FIELDS}
    bc = config[family_of(runs[0].game).section]["bc"]
    speed = {**_training_speed(config, runs[0].game), "vectorize": bc["batched"]["vectorize"]}
    return as_json(shared), Speed(as_json(speed)), [{key: spec[key] for key in MEMBER_FIELDS} for spec in specs]


def training_threads(config: dict, game: str) -> int:
    return config[family_of(game).section]["bc"]["threads"]


def evaluation(config: dict, game: str, forecast: bool = False, ttyrec_dir: str | None = None
               ) -> tuple[str, Speed]:
    """A checkpoint's evaluation (spec, speed); `forecast`: the forecast agent's, with its number of games."""
    family = family_of(game)
    section = config[family.section]["evaluation"]
    computed, speed = family.evaluation_args(config)
    episodes = forecast_episodes(config, game) if forecast else section["episodes"]
    if ttyrec_dir is not None and section.get("keep_ttyrecs"):
        speed = {**speed, "ttyrec_dir": ttyrec_dir}
    return as_json({**computed, "episodes": episodes, "seed": config["seed"]}), Speed(as_json(speed))


def evaluation_threads(config: dict, game: str) -> int:
    """The evaluation job's threads: PyTorch's, and the worker processes where the family has them."""
    _, speed = family_of(game).evaluation_args(config)
    return max(speed["threads"], speed.get("processes", 1))


def fit(config: dict, games=(), loss_metric: str | None = None) -> str:
    """The fit's spec (fit.FitConfig): the config's fit section, C* of each of `games` as the forecast
    stage trains it (forecast_budget: its one source), and `loss_metric` where given (published
    results hold only cross entropy). In the study's order of games (fits.nc records it so)."""
    spec = {key: value for key, value in config["fit"].items() if value is not None}
    if loss_metric is not None:
        spec["loss_metric"] = loss_metric
    if games:
        spec["forecast_budgets"] = {game: forecast_budget(config, game) for game in games}
    return json.dumps(spec)


def _data_stage_args(config: dict, game: str, stage: str) -> tuple[dict, dict]:
    family = family_of(game)
    return (family.expert_args if stage == "expert" else family.dataset_args)(config, game)


def data_stage(config: dict, game: str, stage: str) -> tuple[str, Speed]:
    """The (spec, speed) of a game's expert or dataset stage (`stage`)."""
    computed, speed = _data_stage_args(config, game, stage)
    return as_json(computed), Speed(as_json(speed))


def data_stage_threads(config: dict, game: str, stage: str) -> int:
    return _data_stage_args(config, game, stage)[1]["threads"]
