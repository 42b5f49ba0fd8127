"""Rollouts of a NetHack policy: many games in worker processes, one batched forward per step.

Each worker process owns several environments and steps them all on one message from the
parent; the parent runs the model once per step on every environment's observation (batch =
all environments, T = 1, the recurrent state carried). Every environment plays a fixed quota
of games decided in advance, so short games are not over-represented.

NetHackChallenge cannot be seeded: each game is recorded as it was (NLE's seeds where NLE
reports them, and the ttyrec when kept), and the policy's sampling is seeded.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ilscaling.data.nethack import START_ACTION
from ilscaling.games import nethack as nh

OBSERVATION_KEYS = ("tty_chars", "tty_colors", "tty_cursor", "blstats")


@dataclass
class Games:
    """Per game: the in-game score, the deepest level reached, turns, steps, how it ended."""

    scores: list[int] = field(default_factory=list)
    max_depths: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    xlogfile: list = field(default_factory=list)
    env_steps: int = 0
    wall_s: float = 0.0


def _worker(conn, character: str, max_episode_steps: int, savedirs: list[str], quotas: list[int]):
    """Step this worker's environments on each action message until every quota is played."""
    envs = [nh.make_env(character=character, max_episode_steps=max_episode_steps, savedir=savedir,
                        observation_keys=OBSERVATION_KEYS) for savedir in savedirs]
    played = [0] * len(envs)
    steps = [0] * len(envs)
    depth = [0] * len(envs)
    last = [None] * len(envs)
    live = [None] * len(envs)  # blstats of the last frame of a running game (NLE zeroes them at death)

    def observe(i, obs):
        if obs["blstats"].any():
            live[i] = obs["blstats"].copy()
            depth[i] = max(depth[i], int(live[i][nh.BL_DEPTH]))
        last[i] = obs

    for i, env in enumerate(envs):
        obs, _ = env.reset()
        observe(i, obs)
    conn.send(_stack(last, [True] * len(envs)))
    while True:
        actions = conn.recv()
        if actions is None:
            break
        finished, starts, stepped = [], [False] * len(envs), 0
        for i, env in enumerate(envs):
            if played[i] >= quotas[i]:
                continue  # this environment's games are done; the parent ignores its row
            obs, _reward, terminated, truncated, _info = env.step(int(actions[i]))
            stepped += 1
            steps[i] += 1
            observe(i, obs)
            if terminated or truncated:
                if truncated:
                    nh.finish_game(env)  # so NetHack writes the game's xlogfile line
                blstats = live[i]
                finished.append({"env": i, "score": int(blstats[nh.BL_SCORE]), "max_depth": depth[i],
                                 "turns": int(blstats[nh.BL_TIME]), "steps": steps[i], "truncated": bool(truncated),
                                 "seeds": nh.game_seeds(env)})
                played[i] += 1
                steps[i], depth[i] = 0, 0
                if played[i] < quotas[i]:
                    obs, _ = env.reset()
                    observe(i, obs)
                    starts[i] = True
        conn.send((_stack(last, starts), finished, [p >= q for p, q in zip(played, quotas)], stepped))
    for env in envs:
        env.close()
    conn.close()


def _stack(observations, starts):
    return {key: np.stack([obs[key] for obs in observations]) for key in ("tty_chars", "tty_colors", "tty_cursor")
            } | {"start": np.asarray(starts)}


@torch.inference_mode()
def play_games(model: torch.nn.Module, games: int, *, envs: int, processes: int, max_episode_steps: int,
               character: str = nh.CHARACTER, generator: torch.Generator | None = None,
               savedir: str | Path | None = None, log=print) -> Games:
    """Play `games` games of the sampled policy; ttyrecs go to `savedir` when given (else discarded)."""
    envs = max(1, min(envs, games))
    processes = max(1, min(processes, envs))
    quotas = [games // envs + (i < games % envs) for i in range(envs)]
    keep = savedir is not None
    root = Path(savedir) if keep else Path(tempfile.mkdtemp(prefix="nethack-eval-"))
    owners = np.array_split(np.arange(envs), processes)
    context = mp.get_context("spawn")  # NLE is not fork-safe once torch threads exist
    pipes, workers = [], []
    for p, members in enumerate(owners):
        parent, child = context.Pipe()
        dirs = [str(root / f"env{i:04d}") for i in members]
        for d in dirs:
            Path(d).mkdir(parents=True, exist_ok=True)
        worker = context.Process(target=_worker, daemon=True,
                                 args=(child, character, max_episode_steps, dirs, [quotas[i] for i in members]))
        worker.start()
        child.close()
        pipes.append(parent)
        workers.append(worker)

    result = Games()
    started = time.perf_counter()
    device = next(model.parameters()).device
    try:
        first = [pipe.recv() for pipe in pipes]
        obs = {key: np.concatenate([f[key] for f in first]) for key in first[0]}
        state = model.initial_state(envs, device)
        prev_action = torch.full((envs,), START_ACTION, dtype=torch.long)
        active = np.ones(envs, dtype=bool)
        records = []
        while active.any():
            done = torch.from_numpy(obs["start"])
            prev_action[done] = START_ACTION
            logits, state = model(
                torch.from_numpy(obs["tty_chars"])[:, None].to(device),
                torch.from_numpy(obs["tty_colors"])[:, None].to(device),
                torch.from_numpy(obs["tty_cursor"].astype(np.uint8))[:, None].to(device),
                prev_action[:, None].to(device), done[:, None].to(device), state)
            probs = torch.softmax(logits[:, 0].float(), dim=-1).cpu()
            action = torch.multinomial(probs, 1, generator=generator)[:, 0]
            prev_action = action.clone()
            for pipe, members in zip(pipes, owners):
                pipe.send(action[members].numpy())
            replies = [pipe.recv() for pipe in pipes]
            obs = {key: np.concatenate([r[0][key] for r in replies]) for key in replies[0][0]}
            for members, (_, finished, complete, stepped) in zip(owners, replies):
                result.env_steps += stepped
                for record in finished:
                    record["env"] = int(members[record["env"]])
                    records.append(record)
                    log(f"game {len(records)}/{games}: score {record['score']}, depth {record['max_depth']}, "
                        f"{record['steps']} steps{' (step limit)' if record['truncated'] else ''}")
                active[members] = ~np.asarray(complete)
        for pipe in pipes:
            pipe.send(None)
        for worker in workers:
            worker.join(timeout=60)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
    result.wall_s = time.perf_counter() - started

    # Death causes from each environment's xlogfile, in the order that environment played.
    per_env = {i: [r for r in records if r["env"] == i] for i in range(envs)}
    for i in range(envs):
        lines = nh.xlogfile_games(root / f"env{i:04d}")
        if len(lines) != len(per_env[i]):
            raise RuntimeError(f"environment {i} played {len(per_env[i])} games but its xlogfile has {len(lines)}")
        for record, line in zip(per_env[i], lines):
            record["death"] = line.get("death", "")
            record["xlogfile"] = {key: line.get(key) for key in ("points", "turns", "maxlvl", "deathlev")}
    for record in sorted(records, key=lambda r: (r["env"])):
        result.scores.append(record["score"])
        result.max_depths.append(record["max_depth"])
        result.turns.append(record["turns"])
        result.steps.append(record["steps"])
        result.deaths.append(record["death"])
        result.truncated.append(record["truncated"])
        result.seeds.append(record["seeds"])
        result.xlogfile.append(record["xlogfile"])
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return result

