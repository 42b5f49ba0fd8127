"""NetHack environment helpers shared by the heuristic bot and evaluation rollouts (nle 1.3.0).

Measured behaviour of `NetHackChallenge-v0` that shaped this module:
  * `gym.make(..., max_episode_steps=N)` is consumed by gymnasium's `TimeLimit` wrapper, not by
    NLE: at step N the wrapper reports `truncated=True` but NetHack itself never ends the game,
    so no xlogfile line is written and `nle.dataset` silently skips that game's ttyrec.
    `finish_game` quits such a game through NetHack's own path (M-q, y, the end screens), which
    writes the xlogfile line and closes the ttyrec normally. Those few keys are recorded in the
    ttyrec like any other (ESC, QUIT, `y`, SPACE: all are NLE actions).
  * NLE's own abort (`no_progress_timeout`) runs NLE's `_quit_game`, which can fail silently
    ("smooth quitting of game failed"); `finish_game` also completes those games.
  * NetHackChallenge refuses every seed call, including reading them through the public method;
    `game_seeds` reads them from the underlying NetHack object. NetHack reseeds itself from
    system randomness during play (`reseed=True`), so the seeds identify a game's start but
    do not replay it.
  * With `savedir`, ttyrecs are `nle.<pid>.<n>.ttyrec3.bz2` and the xlogfile is
    `nle.<pid>.xlogfile`: two environments of one process must not share a savedir.
"""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import nle  # noqa: F401  (registers the NetHack environments with gymnasium)
from nle import nethack

# The paper's character: a neutral male human monk.
CHARACTER = "mon-hum-neu-mal"
ENV_ID = "NetHackChallenge-v0"
# What a policy sees (the terminal); the bot asks for more through `observation_keys`.
OBSERVATION_KEYS = ("tty_chars", "tty_colors", "tty_cursor", "blstats")
DEFAULT_MAX_EPISODE_STEPS = 100_000  # the paper's evaluation cap

# blstats indices (NLE's nleobs.h), named once here.
BL_X = nethack.NLE_BL_X
BL_Y = nethack.NLE_BL_Y
BL_SCORE = nethack.NLE_BL_SCORE
BL_HP = nethack.NLE_BL_HP
BL_HPMAX = nethack.NLE_BL_HPMAX
BL_DEPTH = nethack.NLE_BL_DEPTH
BL_GOLD = nethack.NLE_BL_GOLD
BL_AC = nethack.NLE_BL_AC
BL_XP = nethack.NLE_BL_XP  # experience level
BL_EXP = nethack.NLE_BL_EXP  # experience points
BL_TIME = nethack.NLE_BL_TIME  # in-game turns
BL_HUNGER = nethack.NLE_BL_HUNGER  # 0 satiated, 1 not hungry, 2 hungry, 3 weak, 4 fainting
BL_DNUM = nethack.NLE_BL_DNUM  # dungeon branch
BL_DLEVEL = nethack.NLE_BL_DLEVEL  # level number within the branch
BL_CONDITION = nethack.NLE_BL_CONDITION

# Keys that finish_game sends (raw keys, each also an NLE action).
_ESC = 27
_SPACE = ord(" ")
_QUIT = nethack.M("q")
_YES = ord("y")

# The `internal` observation NLE always computes: yn question, text line, --More--/end screens.
_IN_YN, _IN_GETLIN, _XWAITFORSPACE = 1, 2, 3
_MENU_MARK = re.compile(rb"\((end|\d+ of \d+)\)")


class GameNotFinished(RuntimeError):
    """NetHack did not end the game after the quit sequence; its xlogfile line would be lost."""


def make_env(character: str = CHARACTER, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
             savedir: str | Path | None = None, observation_keys=OBSERVATION_KEYS, **kwargs) -> gym.Env:
    """A NetHackChallenge environment; with `savedir`, every game is recorded there as a ttyrec.

    `observation_keys` always include the terminal (tty_chars, tty_colors, tty_cursor) and
    blstats. Games cut at `max_episode_steps` (truncated) must be ended with `finish_game`.
    """
    keys = list(dict.fromkeys([*OBSERVATION_KEYS, *observation_keys]))
    if savedir is not None:
        Path(savedir).mkdir(parents=True, exist_ok=True)
        kwargs.update(save_ttyrec_every=1, savedir=str(savedir))
    return gym.make(ENV_ID, character=character, max_episode_steps=max_episode_steps,
                    observation_keys=tuple(keys), **kwargs)


def game_over(env: gym.Env) -> bool:
    """Whether NetHack itself has ended the current game (so its xlogfile line is written)."""
    return bool(env.unwrapped.nethack._pynethack.done())


def finish_game(env: gym.Env, max_keys: int = 400) -> bool:
    """End the current game through NetHack's own quit path, so the xlogfile line is written.

    Call it when a game stops without NetHack having ended it (`truncated`); it does nothing
    when the game is already over. Returns True when it had to quit the game. Raises
    GameNotFinished if NetHack is still playing after `max_keys` keys.
    """
    unwrapped = env.unwrapped
    game = unwrapped.nethack
    if game_over(env):
        return False
    obs = unwrapped.last_observation  # NLE's live observation buffers (all keys, incl. internal)
    keys_left = max_keys

    def press(key):
        nonlocal obs, keys_left
        keys_left -= 1
        obs, done = game.step(key)
        return done

    cursor_index = unwrapped._observation_keys.index("tty_cursor")

    def state():
        internal = obs[unwrapped._internal_index]
        message = bytes(obs[unwrapped._message_index])
        return internal, message

    def prompting():
        # A question, a text line, --More--, or any prompt that keeps the cursor on the top
        # line (the extended-command line `#` is none of the flagged ones).
        internal, _ = state()
        return internal[_IN_YN] or internal[_IN_GETLIN] or internal[_XWAITFORSPACE] or obs[cursor_index][0] == 0

    while keys_left > 0:
        # Back to the command loop: ESC closes --More--, menus, y/n questions, text prompts and a
        # pending count (a text line needs two: the first one clears what was typed). It is
        # harmless when nothing is open.
        for _ in range(20):
            if press(_ESC):
                return True
            if not prompting():
                break
        if press(_QUIT):
            return True
        internal, message = state()
        if not (internal[_IN_YN] and b"quit" in message.lower()):
            continue  # the key did not reach the command loop; escape again and retry
        if press(_YES):
            return True
        # The end screens (inventory, attributes, conduct, dungeon overview, "Goodbye"): all are
        # disclosed without questions (NLE's `disclose:+i +a +v +g +c +o`); page through them.
        while keys_left > 0:
            internal, _ = state()
            key = _ESC if (internal[_IN_YN] or internal[_IN_GETLIN]) else _SPACE
            if press(key):
                return True
    raise GameNotFinished(f"NetHack was still playing after {max_keys} keys of the quit sequence")


def game_seeds(env: gym.Env) -> dict | None:
    """NetHack's current seeds {core, disp, reseed, lgen}, or None where NLE cannot tell.

    Read right after `reset` they identify how the game started. NetHackChallenge blocks its
    public seed methods (it refuses seeding), so the values come from the NetHack object itself.
    """
    try:
        core, disp, reseed, lgen = env.unwrapped.nethack._pynethack.get_seeds()
    except Exception:  # an NLE without get_seeds, or a closed environment
        return None
    return {"core": int(core), "disp": int(disp), "reseed": bool(reseed),
            "lgen": None if lgen is None else int(lgen)}


_INT = re.compile(r"-?\d+")


def read_xlogfile(path: str | Path) -> list[dict]:
    """One dict per game (line) of an xlogfile: its `key=value` fields, integers as int.

    Fields include points, maxlvl (deepest level), deathlev, turns, hp, maxhp, role, race,
    death (e.g. "killed by a jackal", "quit") and ttyrecname.
    """
    games = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        fields = {}
        for item in line.split("\t"):
            key, sep, value = item.partition("=")
            if sep:
                fields[key] = int(value) if _INT.fullmatch(value) else value
        games.append(fields)
    return games


def xlogfile_games(folder: str | Path) -> list[dict]:
    """Every game NLE recorded in `folder` (its xlogfile lines, in the order they were played)."""
    return [game for path in sorted(Path(folder).glob("*xlogfile")) for game in read_xlogfile(path)]


def screen_has_menu(tty_chars) -> bool:
    """Whether a tty menu or text window is open ("(end)" or "(1 of 2)" on screen)."""
    return _MENU_MARK.search(tty_chars.tobytes()) is not None
