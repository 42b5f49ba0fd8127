"""The sweep grid of a study: the widths each budget trains, and the runs (width, seed) that train them.

A grid is the config's (`<family>.sweep.grid`) or proposed around the expected compute-optimal
size (`propose_grid`); runs of one width train once to their largest budget and checkpoint at each
smaller one. Batched groups (atari.bc.batched) gather runs of one width into one process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ilscaling.families import family_of, games_of
from ilscaling.flops import budget_label


def training_frames_bound(config: dict, game: str) -> tuple[float, str] | None:
    """Training frames a game's data will hold, known before any job, and the config key that sets
    it; None where only the data can tell (NLD-AA on disk)."""
    return family_of(game).training_frames_bound(config)


def propose_grid(budgets: list[float], sizes: dict[int, tuple[int, float]], *, samples_per_step: int,
                 sizes_per_budget: int = 5, samples_per_param: float = 20.0, min_steps: int = 20,
                 max_samples: float = math.inf) -> dict[str, list[int]]:
    """Per budget, the `sizes_per_budget` widths nearest (in log params) the expected optimum.

    `sizes` maps each width to (parameters, training FLOPs per sample). The expected optimum is
    where samples = samples_per_param x params (a Chinchilla-style prior, refined by the study's
    own fit); a width is eligible for a budget only if the budget buys it at least `min_steps`
    gradient steps of `samples_per_step` samples, so every checkpoint has actually trained, and
    at most `max_samples` samples (the data times bc.max_epochs), so no run repeats its data more.
    """
    sizes = dict(sorted(sizes.items()))
    grid = {}
    for budget in sorted(budgets):
        eligible = [w for w, (_, fps) in sizes.items() if min_steps * samples_per_step <= budget / fps <= max_samples]
        if not eligible:
            continue
        # Expected optimum: budget = flops_per_sample(N) * samples_per_param * N; pick the width closest.
        gap = {w: abs(math.log(budget / (fps * samples_per_param * params))) for w, (params, fps) in sizes.items()}
        centre = min(eligible, key=gap.get)
        ordered = sorted(eligible)
        k = ordered.index(centre)
        lo = max(0, min(k - sizes_per_budget // 2, len(ordered) - sizes_per_budget))
        grid[budget_label(budget)] = ordered[lo: lo + sizes_per_budget]
    return grid


@dataclass(frozen=True)
class Run:
    """One BC training run and the budgets it checkpoints at."""

    game: str
    width: int
    seed: int
    budgets: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"w{self.width}-s{self.seed}"


def model_sizes(config: dict, game: str) -> dict[int, tuple[int, float]]:
    """(parameters, training FLOPs per sample) of every width the game's sweep may use."""
    family = family_of(game)
    return family.model_sizes(config, game, config[family.section]["sweep"]["widths"])


def proposed_grid(config: dict, game: str, budgets, sizes_per_budget: int) -> dict[str, list[int]]:
    """propose_grid at `budgets` with the game's models, batch and sweep prior."""
    section = config[family_of(game).section]
    sweep = section["sweep"]
    bound = training_frames_bound(config, game)
    return propose_grid(budgets, model_sizes(config, game),
                        samples_per_step=family_of(game).samples_per_step(section["bc"]),
                        sizes_per_budget=sizes_per_budget, samples_per_param=sweep["samples_per_param"],
                        min_steps=sweep["min_steps"],
                        max_samples=math.inf if bound is None else bound[0] * section["bc"]["max_epochs"])


def proposed_grids_yaml(config: dict) -> str:
    """Each game's proposed grid as YAML to paste into its sweep section (a grid the config has is ignored)."""
    import yaml

    blocks = []
    for game in games_of(config):
        section = family_of(game).section
        sweep = config[section]["sweep"]
        grid = proposed_grid(config, game, sweep["budgets"], sweep["sizes_per_budget"])
        blocks.append(f"# {game}: proposed {section}.sweep.grid (budget -> widths)\n"
                      + yaml.safe_dump({"grid": grid}, default_flow_style=None, sort_keys=False))
    return "\n".join(blocks)


def sweep_grid(config: dict, game: str) -> dict[str, list[int]]:
    """The grid of a game: the explicit one from config, else the proposed one."""
    sweep = config[family_of(game).section]["sweep"]
    if "grid" in sweep:
        return sweep["grid"]
    return proposed_grid(config, game, sweep["budgets"], sweep["sizes_per_budget"])


def sweep_runs(config: dict, game: str) -> list[Run]:
    """Every (width, seed) run of a game, each with the budgets the grid assigns it."""
    grid = sweep_grid(config, game)
    budgets_of = {}
    for label, widths in grid.items():
        for width in widths:
            budgets_of.setdefault(width, []).append(float(label))
    return [Run(game, width, seed, tuple(sorted(budgets)))
            for width, budgets in sorted(budgets_of.items()) for seed in config[family_of(game).section]["bc"]["seeds"]]


@dataclass(frozen=True)
class BatchedGroup:
    """Atari sweep runs of one width trained in one process (atari.bc.batched; train_batched.py)."""

    width: int
    index: int
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        return f"w{self.width}-g{self.index}"


def batched_groups(config: dict) -> list[BatchedGroup]:
    """The Atari runs up to atari.bc.batched.max_width grouped by width (across games and seeds, in
    config order), at most atari.bc.batched.max_models per group; none when batched training is off."""
    atari = config.get("atari", {})
    batched = atari.get("bc", {}).get("batched", {})
    if not atari.get("games") or not batched.get("enabled"):
        return []
    by_width: dict[int, list[Run]] = {}
    for game in atari["games"]:
        for run in sweep_runs(config, game):
            if run.width <= batched["max_width"]:
                by_width.setdefault(run.width, []).append(run)
    size = batched["max_models"]
    return [BatchedGroup(width, k // size, tuple(runs[k: k + size]))
            for width, runs in sorted(by_width.items()) for k in range(0, len(runs), size)]
