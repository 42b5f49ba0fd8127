"""Everything that knows about the Arcade Learning Environment (ale-py) lives here.

Environments follow the paper's expert setup (Stable-Baselines3 `make_atari_env` on
`<Game>Deterministic-v0` with sticky actions): frame skip 4 with max-pooling, sticky actions
0.25, up to 30 no-ops and FIRE at reset, 84x84 grayscale frames, a 4-frame stack. The stacking
and preprocessing run in C++ inside `ale_py.vector_env.AtariVectorEnv`.

Measured behaviour of AtariVectorEnv (ale-py 0.12.1) that shaped this module:
  * Its `episodic_life=True` does not continue the game after a life loss: it resets the whole
    game, so an agent trained with it only ever sees the first life. SB3's `EpisodicLifeEnv`
    instead ends the *learning* episode on a life loss and keeps playing. We therefore never
    enable it; the PPO learner derives life losses from `info["lives"]` itself.
  * `terminated`/`truncated` then mark the end of the full game. With autoreset mode
    "SameStep" the observation returned with them is already the first observation of the
    next game (stack slots before the game's first frame are zeros), so no step is wasted.
  * `max_num_frames_per_episode` counts emulator frames from the first agent step: a cap of
    steps * frame_skip truncates after exactly `steps` agent steps (measured).
  * `info` holds `env_id`, `lives`, `frame_number`, `episode_frame_number`
    (and `final_obs` on steps that ended an episode or lost a life).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import re
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

import numpy as np
import torch

from ilscaling.games.sampling import ActionSampler

# Keyword arguments of AtariVectorEnv that reproduce the paper's expert environment.
PAPER_SETTINGS = MappingProxyType(
    {
        "repeat_action_probability": 0.25,  # sticky actions
        "frameskip": 4,
        "maxpool": True,  # max over the last two skipped frames, as SB3's MaxAndSkipEnv
        "noop_max": 30,
        "use_fire_reset": True,
        "img_height": 84,
        "img_width": 84,
        "grayscale": True,
        "stack_num": 4,
        "full_action_space": False,  # minimal action set, e.g. 4 actions in Breakout
    }
)
FRAME_SKIP = PAPER_SETTINGS["frameskip"]
STACK = PAPER_SETTINGS["stack_num"]
# ALE's default episode cap: 108,000 frames = 27,000 agent steps (30 minutes of play).
DEFAULT_MAX_EPISODE_STEPS = 27_000

Policy = Callable[[torch.Tensor], torch.Tensor]
"""uint8 observations (N, 4, 84, 84) -> action logits (N, A)."""


# ----------------------------------------------------------------------------- game names


def _rom_id(game: str) -> str:
    """CamelCase paper name -> ALE ROM id: "SpaceInvaders" -> "space_invaders"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()


def _camel_case(rom_id: str) -> str:
    return "".join(part.capitalize() for part in rom_id.split("_"))


@functools.lru_cache(maxsize=1)
def available_games() -> tuple[str, ...]:
    """CamelCase names of every ROM bundled with ale-py."""
    from ale_py import roms

    return tuple(sorted(_camel_case(rom) for rom in roms.get_all_rom_ids()))


def check_game(game: str) -> str:
    """Validate a CamelCase game name ("Breakout") and return its ALE id ("breakout").

    Raises ValueError naming the game and the closest bundled names when it is unknown.
    """
    from ale_py import roms

    rom_id = _rom_id(game)
    if _camel_case(rom_id) == game and rom_id in roms.get_all_rom_ids():
        return rom_id
    close = difflib.get_close_matches(game, available_games(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown Atari game {game!r} (expected a CamelCase ALE game name such as "
        f"'Breakout' or 'SpaceInvaders'){hint}"
    )


@functools.lru_cache(maxsize=None)
def num_actions(game: str) -> int:
    """Size of the game's minimal action set (Breakout: 4)."""
    import ale_py
    from ale_py import roms

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(str(roms.get_rom_path(check_game(game))))
    return len(ale.getMinimalActionSet())


# ----------------------------------------------------------------------------- environments


def episode_frame_limit(max_episode_steps: int | None) -> int:
    """Agent steps -> ALE's frame cap; ALE then truncates after exactly that many agent steps."""
    steps = DEFAULT_MAX_EPISODE_STEPS if max_episode_steps is None else max_episode_steps
    if steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {steps}")
    return steps * FRAME_SKIP


def make_vector_env(
    game: str,
    num_envs: int,
    *,
    seed: int,
    num_threads: int = 0,
    max_episode_steps: int | None = None,
):
    """Create `num_envs` paper-setting games and reset them with seeds seed, seed+1, ...

    Returns (env, observations (N, 4, 84, 84) uint8, info). The env always plays full games
    (no episodic life, see module docstring), auto-resets in the same step, and never clips
    rewards, so returns are the unclipped game scores; training code clips and splits
    episodes at life losses itself. num_threads=0 lets ALE use one thread per core.
    """
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(
        check_game(game),
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=episode_frame_limit(max_episode_steps),
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        autoreset_mode="SameStep",
        **PAPER_SETTINGS,
    )
    observations, info = env.reset(seed=seed)
    return env, observations, info


# ----------------------------------------------------------------------------- playing


@dataclass
class Episodes:
    """Full-game episodes. Per-step arrays are filled only when recording.

    frames[i] (T, 84, 84) uint8 holds the newest frame of each observation the agent acted on;
    the observation at step t is frames[t-3..t] with zeros before the episode's first step.
    """

    returns: np.ndarray  # (E,) float64, unclipped game score
    lengths: np.ndarray  # (E,) int64, agent steps
    truncated: np.ndarray  # (E,) bool, hit the episode step cap
    frames: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # (T,) uint8
    rewards: list[np.ndarray] = field(default_factory=list)  # (T,) float32, unclipped
    # (T, A) float32: the action distribution the agent played at each step (record_demonstrations
    # only): the softmax it sampled from, or the one-hot on the argmax when greedy.
    policies: list[np.ndarray] = field(default_factory=list)
    setup_s: float = 0.0  # creating and resetting the envs
    play_s: float = 0.0  # stepping: agent steps / play_s is the rollout speed

    def __len__(self) -> int:
        return len(self.returns)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    @classmethod
    def concatenate(cls, parts: list["Episodes"]) -> "Episodes":
        return cls(
            returns=np.concatenate([p.returns for p in parts]),
            lengths=np.concatenate([p.lengths for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            frames=[f for p in parts for f in p.frames],
            actions=[a for p in parts for a in p.actions],
            rewards=[r for p in parts for r in p.rewards],
            policies=[q for p in parts for q in p.policies],
            setup_s=sum(p.setup_s for p in parts),
            play_s=sum(p.play_s for p in parts),
        )


class _EpisodeRecorder:
    """Per-env buffers of the running episode; closing one turns it into arrays."""

    def __init__(self, num_envs: int):
        self.frames = [[] for _ in range(num_envs)]
        self.actions = [[] for _ in range(num_envs)]
        self.rewards = [[] for _ in range(num_envs)]

    def add(self, envs: np.ndarray, observations, actions, rewards) -> None:
        # A Python loop over envs, but only when recording: copying each newest frame is
        # needed anyway, and N is small (tens).
        for env in envs:
            self.frames[env].append(observations[env, -1].copy())
            self.actions[env].append(actions[env])
            self.rewards[env].append(rewards[env])

    def add_rows(self, envs: np.ndarray, observations, actions, rewards) -> None:
        """Like add, with observations, actions and rewards given for `envs` only (row k: envs[k])."""
        for k, env in enumerate(envs):
            self.frames[env].append(observations[k, -1].copy())
            self.actions[env].append(actions[k])
            self.rewards[env].append(rewards[k])

    def close(self, env: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        episode = (
            np.stack(self.frames[env]),
            np.asarray(self.actions[env], dtype=np.uint8),
            np.asarray(self.rewards[env], dtype=np.float32),
        )
        self.frames[env], self.actions[env], self.rewards[env] = [], [], []
        return episode


def _choose_actions(
    policy: Policy, observations: np.ndarray, *, greedy: bool, generator: torch.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """One batched policy call -> int64 actions and the (N, A) float32 distribution they were
    drawn from: the softmax when sampling, the one-hot on the argmax when greedy (what was played).
    record_demonstrations: one shared generator."""
    with torch.inference_mode():
        logits = policy(torch.from_numpy(observations))
        if greedy:
            actions = logits.argmax(dim=1)
            played = torch.nn.functional.one_hot(actions, logits.shape[1]).float()
        else:
            played = torch.softmax(logits.float(), dim=1)
            actions = torch.multinomial(played, 1, generator=generator)[:, 0]
    return actions.numpy().astype(np.int64), played.numpy()


class _EnvGroup:
    """One synchronous AtariVectorEnv holding the game slots `slots` (global env indices)."""

    def __init__(self, game, slots: np.ndarray, *, seed, num_threads, max_episode_steps):
        self.slots = slots
        self.env, self.observations, _ = make_vector_env(
            game, len(slots), seed=seed + int(slots[0]), num_threads=num_threads,
            max_episode_steps=max_episode_steps,
        )
        self.actions = np.zeros(len(slots), dtype=np.int64)  # NOOP for rows whose quota is done
        self.acted = np.empty(0, dtype=np.int64)  # local rows that acted in the step in flight
        self.in_flight = False

    def send(self, rows: np.ndarray, actions: np.ndarray) -> None:
        self.actions[:] = 0
        self.actions[rows] = actions
        self.acted = rows
        self.env.send(self.actions)
        self.in_flight = True

    def recv(self):
        observations, rewards, terminated, truncated, info = self.env.recv()
        self.in_flight = False
        order = np.asarray(info["env_id"])
        if not np.array_equal(order, np.arange(len(self.slots))):  # sync mode keeps the order; be sure
            perm = np.argsort(order)
            observations, rewards, terminated, truncated = (
                observations[perm], rewards[perm], terminated[perm], truncated[perm])
        previous, self.observations = self.observations, observations
        return previous, rewards, terminated, truncated

    def close(self) -> None:
        if self.in_flight:  # leave no step running in the C++ workers
            self.env.recv()
        self.env.close()


def play_episodes(
    game: str,
    policy: Policy,
    num_episodes: int,
    *,
    seed: int,
    greedy: bool,
    max_episode_steps: int | None,
    num_threads: int = 0,
    record: bool = False,
    generator: torch.Generator | None = None,
    max_envs: int = 8,
    envs: int | None = None,
    groups: int | None = None,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    log: Callable[[str], None] | None = None,
) -> Episodes:
    """Play `num_episodes` full games with batched inference and return their scores (`log`, when
    given, hears of each game as it ends).

    Unbiased by construction: `envs` environments (default min(max_envs, num_episodes)) each
    play a quota of games fixed up front (num_episodes // envs, one more for the first
    num_episodes % envs), back to back; an env whose quota is done steps with NOOP and is not
    shown to the policy. Which games count never depends on how long they last. Env i is reset
    with seed `seed + i`; its games are returned in the order it played them, env by env.
    Few envs by default (8): creating one and its seeded reset reload the ROM twice (~0.1-0.3 s,
    about as long as playing one or two short games), and with one ALE thread a larger batch
    gains little; 16 games on 8 envs ran ~1.3x faster end to end than on 16 (benchmarks/rollouts.py).

    Pipelining: the envs are split into `groups` (default 2 when there are at least 2 envs)
    synchronous vector envs; while one group's emulators step (in ALE's C++ threads) the policy
    runs its forward for the other group, so the env and the network overlap. A group stops
    stepping once all its games are done. `num_threads` (0: ALE's default) is split over the
    groups.

    Actions: greedy=True takes the argmax; otherwise softmax sampling with one seeded stream of
    uniform numbers per env (see ActionSampler): the stream's seed is `seed`, or a number drawn
    from `generator` when one is given. The result is the same for any `groups` and device
    (up to float rounding of the logits). `policy` maps uint8 (n, 4, 84, 84) observations on
    `device` to logits; it runs under torch.inference_mode (and bf16 autocast on CUDA when
    `bf16`; the softmax is float32). record=True also keeps frames, actions and rewards.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    num_envs = min(num_episodes, envs if envs is not None else max_envs)
    if num_envs < 1:
        raise ValueError(f"envs must be >= 1, got {envs}")
    num_groups = min(num_envs, groups if groups is not None else 2)
    if num_groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    device = torch.device(device)
    quotas = np.array([num_episodes // num_envs + (i < num_episodes % num_envs) for i in range(num_envs)])
    stream_seed = seed if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
    sampler = ActionSampler(num_envs, stream_seed, greedy=greedy, device=device)
    threads = 0 if num_threads <= 0 else max(1, num_threads // num_groups)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda"
                else contextlib.nullcontext())

    returns = np.zeros(num_envs)
    lengths = np.zeros(num_envs, dtype=np.int64)
    played = np.zeros(num_envs, dtype=np.int64)
    active = quotas > 0
    finished: list[list[tuple]] = [[] for _ in range(num_envs)]
    recorder = _EpisodeRecorder(num_envs) if record else None

    def act(group: _EnvGroup) -> None:
        rows = np.flatnonzero(active[group.slots])
        observations = group.observations if len(rows) == len(group.slots) else group.observations[rows]
        with autocast:
            logits = policy(torch.from_numpy(observations).to(device, non_blocking=True))
        group.send(rows, sampler(logits, group.slots[rows]))

    started = time.perf_counter()
    pool = []
    try:
        for slots in np.array_split(np.arange(num_envs), num_groups):
            pool.append(_EnvGroup(game, slots, seed=seed, num_threads=threads,
                                  max_episode_steps=max_episode_steps))
        setup_s = time.perf_counter() - started
        with torch.inference_mode():
            for group in pool:
                act(group)
            running = list(pool)
            while running:
                for group in list(running):
                    observations, rewards, terminated, truncations = group.recv()
                    rows, slots = group.acted, group.slots[group.acted]
                    if recorder is not None:
                        recorder.add_rows(slots, observations[rows], group.actions[rows], rewards[rows])
                    returns[slots] += rewards[rows]
                    lengths[slots] += 1
                    for row, slot in zip(rows, slots):
                        if terminated[row] or truncations[row]:
                            episode = recorder.close(slot) if recorder is not None else ()
                            finished[slot].append((returns[slot], lengths[slot], bool(truncations[row]), *episode))
                            if log is not None:
                                done = sum(len(f) for f in finished)
                                log(f"game {done}/{num_episodes}: return {returns[slot]:g}, {lengths[slot]} steps"
                                    f"{' (step limit)' if truncations[row] else ''}")
                            returns[slot], lengths[slot] = 0.0, 0
                            played[slot] += 1
                            active[slot] = played[slot] < quotas[slot]
                    if active[group.slots].any():
                        act(group)
                    else:
                        running.remove(group)
    finally:
        for group in pool:
            group.close()
    games = [game_ for per_env in finished for game_ in per_env]
    result = Episodes(
        returns=np.array([g[0] for g in games], dtype=np.float64),
        lengths=np.array([g[1] for g in games], dtype=np.int64),
        truncated=np.array([g[2] for g in games], dtype=bool),
        setup_s=setup_s,
        play_s=time.perf_counter() - started - setup_s,
    )
    if record:
        result.frames, result.actions, result.rewards = (list(x) for x in zip(*(g[3:] for g in games)))
    return result


def record_demonstrations(
    game: str,
    policy: Policy,
    num_frames: int,
    *,
    seed: int,
    num_envs: int,
    max_episode_steps: int | None,
    num_threads: int = 0,
    greedy: bool = True,
    log: Callable[[str], None] | None = None,
) -> Episodes:
    """Expert play until complete episodes hold at least `num_frames` frames (`log`, when given,
    hears of each episode kept).

    greedy=True takes the argmax action (the paper); greedy=False samples from the policy
    (seeded by `seed`), for experts too weak to play well deterministically. Each kept step
    also keeps the distribution played (`policies`: softmax, or one-hot when greedy), against
    which a BC model's KL is measured.

    Envs auto-reset and keep playing, so every env contributes many episodes in the order they
    finish. Games still in progress when the target is reached are discarded, so every
    returned episode is a whole game from reset to game over (or to the step cap, flagged in
    `truncated`). The last finished episode may push the total past `num_frames`.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    env, observations, _ = make_vector_env(
        game, num_envs, seed=seed, num_threads=num_threads, max_episode_steps=max_episode_steps
    )
    all_envs = np.arange(num_envs)
    running_returns = np.zeros(num_envs)
    recorder = _EpisodeRecorder(num_envs)
    running_policies = [[] for _ in range(num_envs)]  # the played distributions of each running game
    returns, truncated, frames, actions_kept, rewards_kept, policies_kept = [], [], [], [], [], []
    collected = 0
    generator = torch.Generator().manual_seed(seed)
    try:
        while collected < num_frames:
            actions, played = _choose_actions(policy, observations, greedy=greedy, generator=generator)
            next_observations, rewards, terminated, truncations, _ = env.step(actions)
            recorder.add(all_envs, observations, actions, rewards)
            for i in all_envs:
                running_policies[i].append(played[i])
            running_returns += rewards
            for i in np.flatnonzero(terminated | truncations):
                episode_frames, episode_actions, episode_rewards = recorder.close(i)
                frames.append(episode_frames)
                actions_kept.append(episode_actions)
                rewards_kept.append(episode_rewards)
                policies_kept.append(np.stack(running_policies[i]))
                running_policies[i] = []
                returns.append(running_returns[i])
                truncated.append(bool(truncations[i]))
                running_returns[i] = 0.0
                collected += len(episode_actions)
                if log is not None:
                    log(f"episode {len(returns)}: return {returns[-1]:g}, {len(episode_actions)} frames; "
                        f"{min(collected, num_frames)}/{num_frames} frames")
            observations = next_observations
    finally:
        env.close()
    return Episodes(
        returns=np.asarray(returns, dtype=np.float64),
        lengths=np.asarray([len(a) for a in actions_kept], dtype=np.int64),
        truncated=np.asarray(truncated, dtype=bool),
        frames=frames,
        actions=actions_kept,
        rewards=rewards_kept,
        policies=policies_kept,
    )
