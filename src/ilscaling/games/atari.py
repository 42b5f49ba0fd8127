"""The Arcade Learning Environment (ale-py): game names and the paper's vector environments.

Playing them lives apart: `ilscaling.games.atari_play` (evaluation games) and
`ilscaling.games.atari_demonstrations` (expert demonstrations), both returning
`ilscaling.games.atari_episodes.Episodes`.

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

import difflib
import functools
import re
from types import MappingProxyType
from typing import Callable

import torch

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
