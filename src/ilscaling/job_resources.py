"""What each job asks the scheduler for: runtime (minutes), memory (MB) and GPUs.

Estimated from the job's size (its model, its FLOP budget, its games) at the throughput the
config's `resources` section assumes for the device the job gets (workflow/schemas), times a
safety factor, and grown with the attempt number for retries: attempt x the runtime (a run cut at
its time limit resumes in the retry) and (1 + (attempt - 1) / 2) x the memory. The rules'
`resources:` call these through workflow/rules/common.smk; a profile's set-resources overrides
any rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ilscaling.sweep import model_sizes, proposed_grid
from ilscaling.families import family_of
from ilscaling.families.atari import FRAME_BYTES

MB = 2**20
# Slurm sends the resumable training jobs SIGUSR1 five minutes before their time limit: the trainer
# writes its resume state and exits 1, and the retry resumes (train.py). A resource of those rules
# (slurm_extra, the slurm executor's); a local run ignores it.
PREEMPTION_SIGNAL = "--signal=USR1@300"
BYTES_PER_PARAM_TRAINING = 32   # fp32 weights, gradients, Adam's two moments, and a checkpoint copy
BYTES_PER_PARAM_INFERENCE = 8


@dataclass(frozen=True)
class Request:
    """One job's resources, as Snakemake names them."""

    runtime: int   # minutes
    mem_mb: int
    gpu: int


def _section(config: dict) -> dict:
    return config["resources"]


def _throughput(config: dict, gpu: bool) -> dict:
    """The throughput assumptions of a job with (`gpu`) or without a GPU."""
    return _section(config)["throughput"]["gpu" if gpu else "cpu"]


def _speeds(config: dict, stage: str) -> dict:
    """The throughput assumptions of the device a job of `stage` (bc, evaluation, expert) gets."""
    return _throughput(config, bool(_section(config)["gpus"][stage]))


def _capped(config: dict, minutes: int) -> int:
    """`minutes` at most resources.max_runtime (the partition's time limit), when set."""
    cap = _section(config)["max_runtime"]
    return minutes if cap is None else min(minutes, cap)


def _request(config: dict, stage: str | None, seconds: float, mem_mb: float, attempt: int) -> Request:
    """`seconds` and `mem_mb` (beyond base_mem_mb) as a request; the GPUs of `stage` (None: no GPU)."""
    resources = _section(config)
    minutes = _capped(config, max(resources["min_runtime"], math.ceil(resources["safety_factor"] * seconds / 60)) * attempt)
    memory = math.ceil((resources["base_mem_mb"] + mem_mb) * (1 + (attempt - 1) / 2))
    return Request(runtime=int(minutes), mem_mb=memory, gpu=resources["gpus"][stage] if stage else 0)


def model_size(config: dict, game: str, width: int) -> tuple[int, float]:
    """(parameters, training FLOPs per sample) of one of the sweep's widths (cached by the model modules)."""
    return model_sizes(config, game)[width]


def training_seconds(config: dict, game: str, width: int, flops: float) -> float:
    """Seconds a run of `width` takes to spend `flops` training FLOPs: FLOP-bound for large
    models, bound by the samples/s of the step overhead and the loader for small ones."""
    speeds = _speeds(config, "bc")
    threads = 1 if _section(config)["gpus"]["bc"] else config[family_of(game).section]["bc"]["threads"]
    _, flops_per_sample = model_size(config, game, width)
    return max(flops / speeds["train_flops_per_s"], flops / flops_per_sample / speeds["train_samples_per_s"]) / threads


def training(config: dict, game: str, width: int, flops: float, attempt: int = 1) -> Request:
    """A BC run (sweep or forecast) of `width` to `flops` training FLOPs (its largest budget)."""
    params, _ = model_size(config, game, width)
    data_mb = family_of(game).data_load(config).training_mb
    return _request(config, "bc", training_seconds(config, game, width, flops),
                    data_mb + BYTES_PER_PARAM_TRAINING * params / MB, attempt)


def batched_training(config: dict, runs, attempt: int = 1) -> Request:
    """A batched group (train_batched.py) of sweep runs: their runs' requests one after another (an
    upper bound: the point of the group is to be faster), each game's demonstrations once."""
    requests = [training(config, run.game, run.width, max(run.budgets), attempt) for run in runs]
    return Request(runtime=_capped(config, sum(r.runtime for r in requests)),
                   mem_mb=max(r.mem_mb for r in requests) * len({run.game for run in runs}), gpu=requests[0].gpu)


def expected_width(config: dict, game: str, flops: float) -> int:
    """The width the sweep's prior (samples_per_param) expects to be compute-optimal at `flops`:
    the forecast agent's width before its forecast.json exists."""
    grid = proposed_grid(config, game, [flops], sizes_per_budget=1)
    return next(iter(grid.values()))[0] if grid else min(config[family_of(game).section]["sweep"]["widths"])


def evaluation_gets_gpu(config: dict, game: str, width: int) -> bool:
    """Whether an evaluation of `width` asks for GPUs: the stage has some and the model is not
    below resources.evaluation_gpu_min_params."""
    resources = _section(config)
    return bool(resources["gpus"]["evaluation"]) and model_size(config, game, width)[0] >= resources[
        "evaluation_gpu_min_params"]


def evaluation_seconds(config: dict, game: str, width: int, episodes: int, gpu: bool) -> float:
    """The held-out loss pass (forward FLOPs over the held-out frames; NLD's size is unknown before
    indexing, so only the bot's is counted) and `episodes` games of at most max_episode_steps each,
    at the slower of the env's and the policy's pace, with (`gpu`) or without a GPU."""
    speeds = _throughput(config, gpu)
    evaluation = config[family_of(game).section]["evaluation"]
    load = family_of(game).data_load(config)
    flops_per_s = speeds["train_flops_per_s"] * (1 if gpu else evaluation["threads"])
    _, flops_per_sample = model_size(config, game, width)
    forward = flops_per_sample / 3
    steps = episodes * evaluation["max_episode_steps"]
    step_seconds = max(1 / (speeds["rollout_steps_per_s"] * load.evaluation_workers), forward / flops_per_s)
    return load.heldout_frames * forward / flops_per_s + steps * step_seconds


def evaluation(config: dict, game: str, width: int, episodes: int | None = None, attempt: int = 1) -> Request:
    """A checkpoint's evaluation: the sweep's, or the forecast agent's with its `episodes`."""
    section = config[family_of(game).section]
    gpu = evaluation_gets_gpu(config, game, width)
    seconds = evaluation_seconds(config, game, width, episodes or section["evaluation"]["episodes"], gpu)
    params, _ = model_size(config, game, width)
    data_mb = family_of(game).data_load(config).evaluation_mb
    return _request(config, "evaluation" if gpu else None, seconds, data_mb + BYTES_PER_PARAM_INFERENCE * params / MB, attempt)


def expert(config: dict, attempt: int = 1) -> Request:
    """PPO for atari.expert.total_steps agent steps, then its greedy evaluation games."""
    section = config["atari"]["expert"]
    speeds = _speeds(config, "expert")
    seconds = (section["total_steps"] / (speeds["expert_steps_per_s"] * section["threads"])
               + section["eval_episodes"] * section["max_episode_steps"] / (speeds["rollout_steps_per_s"] * section["threads"]))
    return _request(config, "expert", seconds, 3000, attempt)


def demonstrations(config: dict, attempt: int = 1) -> Request:
    """The expert's play: atari.demonstrations.frames in whole episodes (at most one episode more),
    counted at one rollout worker's pace."""
    section = config["atari"]["demonstrations"]
    speeds = _speeds(config, "expert")
    seconds = (section["frames"] + section["max_episode_steps"]) / speeds["rollout_steps_per_s"]
    return _request(config, "expert", seconds, 1000 + section["frames"] * FRAME_BYTES * 3 / MB, attempt)


def bot_games(config: dict, attempt: int = 1) -> Request:
    """The NetHack bot's games, each at most bot.max_episode_steps, by bot.processes workers at the
    rollout pace (the bot thinks less per step than a network), on the CPU."""
    bot = config["nethack"]["bot"]
    seconds = bot["games"] * bot["max_episode_steps"] / (_throughput(config, False)["rollout_steps_per_s"] * bot["processes"])
    return _request(config, None, seconds, 500 * bot["processes"], attempt)


def small(config: dict, attempt: int = 1) -> Request:
    """A job that reads and writes result files (gather, fits, figures, the forecast's plan and
    verdict, the report's tables): an hour and 2 GB, grown with the attempt as every estimate."""
    return Request(runtime=_capped(config, 60 * attempt), mem_mb=math.ceil(2000 * (1 + (attempt - 1) / 2)), gpu=0)


def nethack_dataset(config: dict, attempt: int = 1) -> Request:
    """Indexing the ttyrecs and reading every game once for the split (~50k frames/s, one thread):
    the bot's games at most games x max_episode_steps frames; an NLD directory's size is unknown
    before indexing, so a day (NLD-AA's billions of frames take hours)."""
    section = config["nethack"]
    if section["dataset"]["source"] == "bot":
        seconds = section["bot"]["games"] * section["bot"]["max_episode_steps"] / 50_000
    else:
        seconds = 24 * 3600 / _section(config)["safety_factor"]
    return _request(config, None, seconds, 1000, attempt)
