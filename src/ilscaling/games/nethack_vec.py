"""Rollouts of a NetHack policy: many games in worker processes, one batched forward per step.

Each worker process owns several environments and steps them all on one message from the
parent; the parent runs the model once per step on the observations of every environment still
playing (batch = those environments, T = 1, their recurrent state rows carried). Every
environment plays a fixed quota of games decided in advance, so short games are not
over-represented; an environment whose quota is done leaves the batch.

Observations travel through shared memory: the workers write each environment's terminal
(tty_chars, tty_colors, tty_cursor) into one array per key shared with the parent, which reads
them as tensors without pickling or copying; the pipes carry only the actions and small
per-game records. The policy's forward dominates a step (about 6.6 MFLOP per observation for
the reduced encoders, against ~20 us of NLE per step), so the speed of a rollout is bounded by
the forward; benchmarks/rollouts.py measures how close it gets.

Games are numbered 0..games-1 and each environment plays a fixed block of them. In a `seeded`
environment (games/nethack.py) game g starts from the seeds game_seeds_of(seed, "evaluation", g),
on the pinned clock; the policy samples game g's actions from g's own stream of uniform numbers
(games/sampling.py). So every checkpoint evaluated with one seed plays the same dungeons with
the same random numbers (paired evaluation), and a game's outcome does not depend on `envs` or
`processes`. `challenge` games cannot be seeded: each is recorded as it was (NLE's seeds and,
when kept, the ttyrec).
"""

from __future__ import annotations

import contextlib
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
from ilscaling.games.sampling import ActionSampler

OBSERVATION_KEYS = ("tty_chars", "tty_colors", "tty_cursor", "blstats")
# What the policy reads, with its shape per environment and dtype (NLE's own dtypes).
POLICY_INPUTS = {"tty_chars": ((24, 80), np.uint8), "tty_colors": ((24, 80), np.int8), "tty_cursor": ((2,), np.uint8)}


@dataclass
class Games:
    """Per game, in game order: the in-game score, the deepest level reached, turns, steps, how it
    ended, its seeds and what NetHack announced at its start (moon phase, Friday the 13th)."""

    scores: list[int] = field(default_factory=list)
    max_depths: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    game_seeds: list = field(default_factory=list)
    starts: list = field(default_factory=list)
    xlogfile: list = field(default_factory=list)
    env_steps: int = 0
    wall_s: float = 0.0
    setup_s: float = 0.0  # starting the worker processes and their environments (part of wall_s)
    play_s: float = 0.0  # the stepping loop alone (part of wall_s; closing the environments is not)


def _shared_views(buffers: dict, envs: int) -> dict[str, np.ndarray]:
    """numpy views (envs, *shape) of the shared observation buffers."""
    return {key: np.frombuffer(buffers[key], dtype=dtype).reshape(envs, *shape)
            for key, (shape, dtype) in POLICY_INPUTS.items()}


class _EnvBlock:
    """Environments that step together, writing their observations to rows `rows` of `shared`.

    Environment i plays the games `games[i]` in order (their seeds in a seeded environment).
    """

    def __init__(self, kind: str, character: str, max_episode_steps: int, savedirs: list[str],
                 games: list[list[int]], seed: int, shared: dict[str, np.ndarray], rows: list[int]):
        self.shared, self.rows, self.games, self.kind, self.seed = shared, rows, games, kind, seed
        self.envs = [nh.make_env(kind, character=character, max_episode_steps=max_episode_steps, savedir=savedir,
                                 observation_keys=OBSERVATION_KEYS) for savedir in savedirs]
        n = len(self.envs)
        self.played, self.steps, self.depth = [0] * n, [0] * n, [0] * n
        self.live = [None] * n  # blstats of the last frame of a running game (NLE zeroes them at death)
        for i in range(n):
            self._start(i)

    def _start(self, i):
        game = self.games[i][self.played[i]]
        seeds = nh.game_seeds_of(self.seed, "evaluation", game) if self.kind == "seeded" else None
        obs, _ = nh.start_game(self.envs[i], seeds)
        self._observe(i, obs)

    def _observe(self, i, obs):
        if obs["blstats"].any():
            self.live[i] = obs["blstats"].copy()
            self.depth[i] = max(self.depth[i], int(self.live[i][nh.BL_DEPTH]))
        for key, view in self.shared.items():
            view[self.rows[i]] = obs[key]

    def step(self, actions) -> tuple[list[dict], list[int], list[bool], int]:
        """Step every environment with games left -> (finished games, local indices that started a
        new game, whether each environment's games are done, steps taken)."""
        finished, starts, stepped = [], [], 0
        for i, env in enumerate(self.envs):
            if self.played[i] >= len(self.games[i]):
                continue  # this environment's games are done; the parent no longer reads its row
            obs, _reward, terminated, truncated, _info = env.step(int(actions[i]))
            stepped += 1
            self.steps[i] += 1
            self._observe(i, obs)  # at a game's end: the last frame's blstats
            if terminated or truncated:
                if truncated:
                    nh.finish_game(env)  # so NetHack writes the game's xlogfile line
                blstats = self.live[i]
                finished.append({"env": i, "game": self.games[i][self.played[i]], "score": int(blstats[nh.BL_SCORE]),
                                 "max_depth": self.depth[i], "turns": int(blstats[nh.BL_TIME]),
                                 "steps": self.steps[i], "truncated": bool(truncated), "seeds": nh.game_seeds(env)})
                self.played[i] += 1
                self.steps[i], self.depth[i] = 0, 0
                if self.played[i] < len(self.games[i]):
                    self._start(i)
                    starts.append(i)
        return finished, starts, [p >= len(g) for p, g in zip(self.played, self.games)], stepped

    def close(self) -> None:
        for env in self.envs:
            env.close()


class _LocalBlock:
    """An _EnvBlock in this process behind the worker's pipe protocol (no process, no IPC)."""

    def __init__(self, *args):
        self.block = _EnvBlock(*args)
        self.reply = "ready"

    def send(self, actions) -> None:
        self.reply = self.block.step(actions) if actions is not None else None

    def recv(self):
        return self.reply


def _worker(conn, kind: str, character: str, max_episode_steps: int, savedirs: list[str], games: list[list[int]],
            seed: int, buffers: dict, total_envs: int, rows: list[int]):
    """Step this worker's environments on each action message until all their games are played."""
    try:
        block = _EnvBlock(kind, character, max_episode_steps, savedirs, games, seed,
                          _shared_views(buffers, total_envs), rows)
    except Exception as err:  # e.g. ClockNotPinned: the parent fails with the cause
        conn.send(f"{type(err).__name__}: {err}")
        return
    conn.send("ready")
    while True:
        actions = conn.recv()
        if actions is None:
            break
        conn.send(block.step(actions))
    block.close()
    conn.close()


@torch.inference_mode()
def play_games(model: torch.nn.Module, games: int, *, envs: int, processes: int, max_episode_steps: int,
               kind: str, seed: int, character: str = nh.CHARACTER, savedir: str | Path | None = None,
               bf16: bool = False, log=print) -> Games:
    """Play `games` games of the sampled policy; ttyrecs go to `savedir` when given (else discarded).

    `kind`: the NetHack environment (games/nethack.py ENV_KINDS). `envs` environments play at
    once, in `processes` worker processes. processes=1 steps them in this process when its
    clock allows (challenge, or a process already on the pinned clock): that saves a round trip
    through a pipe per step and costs nothing in parallelism, as the parent waits for a lone
    worker anyway.

    The model runs on its own device (bf16 autocast on CUDA when `bf16`; logits and sampling
    float32). `seed` fixes the seeded games and every game's stream of sampling numbers.
    """
    envs = max(1, min(envs, games))
    processes = max(1, min(processes, envs))
    assignments = [[int(g) for g in block] for block in np.array_split(np.arange(games), envs)]
    keep = savedir is not None
    root = Path(savedir) if keep else Path(tempfile.mkdtemp(prefix="nethack-eval-"))
    owners = np.array_split(np.arange(envs), processes)
    context = mp.get_context("spawn")  # NLE is not fork-safe once torch threads exist
    buffers = {key: context.RawArray("B", envs * int(np.prod(shape)) * np.dtype(dtype).itemsize)
               for key, (shape, dtype) in POLICY_INPUTS.items()}
    shared = _shared_views(buffers, envs)
    device = next(model.parameters()).device
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda"
                else contextlib.nullcontext())
    sampler = ActionSampler(games, seed, greedy=False, device=device)
    # Zero-copy tensors over the shared buffers, as (envs, T=1, ...) inputs.
    inputs = {key: torch.from_numpy(view).unsqueeze(1) for key, view in shared.items()}
    in_process = processes == 1 and (kind == "challenge" or nh.clock_is_pinned())

    result = Games()
    started = time.perf_counter()
    pipes, workers, local = [], [], None
    try:
        if in_process:
            local = _LocalBlock(kind, character, max_episode_steps, [str(root / f"env{i:04d}") for i in owners[0]],
                                assignments, seed, shared, [int(i) for i in owners[0]])
            pipes.append(local)
        with nh.clock_context(kind):
            for members in owners if local is None else ():
                parent, child = context.Pipe()
                dirs = [str(root / f"env{i:04d}") for i in members]
                worker = context.Process(target=_worker, daemon=True,
                                         args=(child, kind, character, max_episode_steps, dirs,
                                               [assignments[i] for i in members], seed, buffers, envs,
                                               [int(i) for i in members]))
                worker.start()
                child.close()
                pipes.append(parent)
                workers.append(worker)
        for pipe in pipes:
            reply = pipe.recv()
            if reply != "ready":
                raise RuntimeError(f"a NetHack worker failed to start: {reply}")
        result.setup_s = time.perf_counter() - started
        state = model.initial_state(envs, device)
        prev_action = torch.full((envs,), START_ACTION, dtype=torch.long)
        done = torch.ones(envs, dtype=torch.bool)  # every environment starts a game
        active = np.ones(envs, dtype=bool)
        playing = np.array([block[0] for block in assignments])  # the game each environment plays
        position = np.zeros(envs, dtype=np.int64)
        actions = np.zeros(envs, dtype=np.int16)
        records = []
        while active.any():
            rows = np.flatnonzero(active)
            everyone = len(rows) == envs
            index = None if everyone else torch.from_numpy(rows)
            pick = (lambda t: t) if everyone else (lambda t: t.index_select(0, index.to(t.device)))
            prev_action[done] = START_ACTION
            with autocast:
                logits, new_state = model(
                    pick(inputs["tty_chars"]).to(device), pick(inputs["tty_colors"]).to(device),
                    pick(inputs["tty_cursor"]).to(device), pick(prev_action)[:, None].to(device),
                    pick(done)[:, None].to(device), tuple(pick(s) for s in state))
            if everyone:
                state = new_state
            else:
                for old, new in zip(state, new_state):
                    old.index_copy_(0, index.to(old.device), new.to(old.dtype))
            action = torch.from_numpy(sampler(logits[:, 0], playing[rows]))
            prev_action[rows] = action
            actions[rows] = action.numpy()
            done[:] = False
            for pipe, members in zip(pipes, owners):
                pipe.send(actions[members])
            for pipe, members in zip(pipes, owners):
                finished, starts, complete, stepped = pipe.recv()
                result.env_steps += stepped
                for i in members[starts]:
                    position[i] += 1
                    playing[i] = assignments[i][position[i]]
                done[torch.as_tensor(members[starts], dtype=torch.long)] = True
                for record in finished:
                    record["env"] = int(members[record["env"]])
                    records.append(record)
                    log(f"game {len(records)}/{games} (#{record['game']}): score {record['score']}, depth "
                        f"{record['max_depth']}, {record['steps']} steps{' (step limit)' if record['truncated'] else ''}")
                active[members] = ~np.asarray(complete)
        result.play_s = time.perf_counter() - started - result.setup_s
        for pipe in pipes:
            pipe.send(None)
        for worker in workers:
            worker.join(timeout=60)
    finally:
        if local is not None:
            local.block.close()
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
    result.wall_s = time.perf_counter() - started

    # Death causes from each environment's xlogfile, in the order that environment played.
    per_env = {i: [r for r in records if r["env"] == i] for i in range(envs)}
    for i in range(envs):
        folder = root / f"env{i:04d}"
        lines = nh.xlogfile_games(folder)
        if len(lines) != len(per_env[i]):
            raise RuntimeError(f"environment {i} played {len(per_env[i])} games but its xlogfile has {len(lines)}")
        for episode, (record, line) in enumerate(zip(per_env[i], lines)):
            if not str(line.get("ttyrecname", "")).endswith(f".{episode}.ttyrec3.bz2"):
                raise RuntimeError(f"environment {i}'s game {episode} does not match its xlogfile line "
                                   f"({line.get('ttyrecname')!r})")
            record["death"] = line.get("death", "")
            # NetHack's own counts: the last live frame misses turns spent in a command still running
            # at death or at the quit that ends a truncated game (a count, a search, helplessness),
            # and a level entered on the last step (NLE zeroes the bottom line at death).
            record["turns"] = int(line["turns"])
            record["max_depth"] = int(line["maxlvl"])
            record["xlogfile"] = {key: line.get(key) for key in ("points", "turns", "maxlvl", "deathlev", "ttyrecname")}
            start = nh.game_start(folder / str(line["ttyrecname"]))
            record["start"] = {name: start[name] for name in ("full_moon", "new_moon", "friday_13th")}
    for record in sorted(records, key=lambda r: r["game"]):
        result.scores.append(record["score"])
        result.max_depths.append(record["max_depth"])
        result.turns.append(record["turns"])
        result.steps.append(record["steps"])
        result.deaths.append(record["death"])
        result.truncated.append(record["truncated"])
        result.seeds.append(record["seeds"])
        seeded = kind == "seeded"
        result.game_seeds.append(list(nh.game_seeds_of(seed, "evaluation", record["game"])) if seeded else None)
        result.starts.append(record["start"])
        result.xlogfile.append(record["xlogfile"])
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return result
