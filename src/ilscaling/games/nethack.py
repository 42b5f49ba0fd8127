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
    `nle.<pid>.xlogfile`: two environments of one process must not share a savedir. NLE does not
    create NetHack's `nle.<pid>.logfile` and `.record`, so every game ended with "Cannot open file
    ..." (path and pid) in its ttyrec; `make_env` creates them.

The clock. NetHack reads the wall clock at game start: the moon phase and Friday the 13th
(Luck, and a --More-- that NLE's reset answers with a recorded key), night and midnight, and
`u.ubirthday`. Two environment kinds:
  * `challenge`: NetHackChallenge-v0 as it is (the paper's evaluation): unseeded games on the
    wall clock, so a game depends on the day it is played and cannot be replayed.
  * `seeded`: the Challenge's settings (character, options, the full action set, yes/no and
    menu handling, step limit), each game started from seeds that the caller derives from the
    study seed (`game_seeds_of`), NetHack's reseeding off and NLE's `fix_moon_phase` (moon, Friday
    the 13th, night and midnight from the seeds). `fix_moon_phase` leaves `u.ubirthday` on the
    wall clock (NetHack-LE/nle#129), and it names the shopkeepers: two recordings of the same
    seeds made minutes apart differed at the first shop ("Gweebarra's" against "Kinnegad's
    second-hand bookstore"). So a seeded game runs only in a process whose clock is pinned:
    libfaketime (the `libfaketime` package's library) preloaded at `PINNED_TIME`, frozen, with
    the monotonic clock left real (timers and progress rates stay true). `pinned_clock()`
    starts processes that way; `make_env("seeded")` refuses to run anywhere else.
"""

from __future__ import annotations

import bz2
import calendar
import contextlib
import os
import re
import struct
import time
from pathlib import Path

import gymnasium as gym
import nle  # noqa: F401  (registers the NetHack environments with gymnasium)
import numpy as np
from nle import nethack
from nle.env.base import NLE
from nle.env.tasks import NetHackChallenge

# The paper's character: a neutral male human monk.
CHARACTER = "mon-hum-neu-mal"
ENV_ID = "NetHackChallenge-v0"
SEEDED_ENV_ID = "ilscaling/NetHackChallengeSeeded-v0"
ENV_KINDS = ("seeded", "challenge")
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


class ClockNotPinned(RuntimeError):
    """A seeded NetHack game was asked for in a process whose clock is not pinned."""


class SeededNetHackChallenge(NetHackChallenge):
    """NetHackChallenge with seeds: `seed(core, disp)` before a reset fixes that one game.

    The Challenge replaces NetHack's seed methods by guards that raise; this task removes them
    again and turns on NLE's `fix_moon_phase`. Everything else is the Challenge's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, fix_moon_phase=True, **kwargs)
        for name in ("set_initial_seeds", "set_current_seeds", "get_current_seeds"):
            vars(self.nethack).pop(name)  # the Challenge's guards (instance attributes)

    def seed(self, core=None, disp=None, reseed=False, lgen=None):
        return NLE.seed(self, core, disp, reseed, lgen)


gym.register(SEEDED_ENV_ID, entry_point=SeededNetHackChallenge)

# ------------------------------------------------------------------------------------ the clock

# A plain day (no full or new moon, not a Friday the 13th), in UTC; frozen in seeded game processes.
PINNED_TIME = "2000-01-03 12:00:00"
PINNED_EPOCH = float(calendar.timegm(time.strptime(PINNED_TIME, "%Y-%m-%d %H:%M:%S")))
CLOCK_MODES = {"seeded": f"pinned at {PINNED_TIME} UTC (libfaketime)", "challenge": "wall clock"}


def libfaketime_path() -> Path:
    """The libfaketime shared library shipped in the `libfaketime` package (a dependency)."""
    import libfaketime

    path = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not path.is_file():
        raise ClockNotPinned(f"libfaketime's library is missing at {path}: reinstall the `libfaketime` package")
    return path


def faked_clock_environment(when: str, frozen: bool = True) -> dict[str, str]:
    """Environment variables that start a process with its wall clock at `when` (UTC).

    frozen=True stops the clock there (a pinned clock); False lets it run from `when` (a faked
    day, as the date tests use). The monotonic clock stays real either way, and file times too.
    """
    return {"LD_PRELOAD": str(libfaketime_path()), "FAKETIME": when if frozen else f"@{when}", "TZ": "UTC",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}


def clock_is_pinned() -> bool:
    """Whether this process runs on the pinned clock (its wall clock frozen at PINNED_TIME UTC)."""
    return time.time() == PINNED_EPOCH and os.environ.get("TZ") == "UTC"


@contextlib.contextmanager
def pinned_clock():
    """Processes started inside (multiprocessing's spawn) run on the pinned clock.

    spawn starts a new interpreter with this process's environment, so the variables are set
    for the duration of the block and restored after.
    """
    saved = {key: os.environ.get(key) for key in faked_clock_environment(PINNED_TIME)}
    os.environ.update(faked_clock_environment(PINNED_TIME))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def clock_context(kind: str):
    """The context to start the game processes of environment `kind` in."""
    return pinned_clock() if kind == "seeded" else contextlib.nullcontext()


# Every NetHack random stream of a study, by purpose: the dungeons of the bot's games and of the
# evaluation games (different dungeons), and the bot's own choices.
SEED_STREAMS = {"bot": 0, "evaluation": 1, "bot_choices": 2}


def game_seeds_of(seed: int, stream: str, index: int) -> tuple[int, int]:
    """NetHack's (core, disp) seeds of game `index` of `stream` ("bot" or "evaluation") of a study seed."""
    core, disp = np.random.SeedSequence([seed, SEED_STREAMS[stream], index]).generate_state(2, dtype=np.uint64)
    return int(core >> np.uint64(1)), int(disp >> np.uint64(1))  # NetHack reads them as signed 64-bit


def bot_generator(seed: int, index: int) -> np.random.Generator:
    """The generator of the bot's own choices in its game `index`."""
    return np.random.default_rng([seed, SEED_STREAMS["bot_choices"], index])


def make_env(kind: str, character: str = CHARACTER, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
             savedir: str | Path | None = None, observation_keys=OBSERVATION_KEYS, **kwargs) -> gym.Env:
    """A NetHack environment of `kind` (ENV_KINDS); with `savedir`, every game is recorded there.

    `observation_keys` always include the terminal (tty_chars, tty_colors, tty_cursor) and
    blstats. Games cut at `max_episode_steps` (truncated) must be ended with `finish_game`.
    A `seeded` environment starts each game with `start_game(env, seeds)` and runs only on the
    pinned clock (ClockNotPinned otherwise).
    """
    if kind not in ENV_KINDS:
        raise ValueError(f"NetHack environment kind must be one of {ENV_KINDS}, got {kind!r}")
    if kind == "seeded" and not clock_is_pinned():
        raise ClockNotPinned(f"a seeded NetHack game needs the pinned clock ({CLOCK_MODES['seeded']}), but this "
                             f"process reads {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: start it "
                             "inside games.nethack.pinned_clock()")
    keys = list(dict.fromkeys([*OBSERVATION_KEYS, *observation_keys]))
    if savedir is not None:
        Path(savedir).mkdir(parents=True, exist_ok=True)
        kwargs.update(save_ttyrec_every=1, savedir=str(savedir))
        # NetHack appends to <prefix>logfile and <prefix>record at each game's end and prints an error
        # with the path and pid into the ttyrec when they are missing.
        for name in ("logfile", "record"):
            (Path(savedir) / f"nle.{os.getpid()}.{name}").touch()
    env_id = SEEDED_ENV_ID if kind == "seeded" else ENV_ID
    return gym.make(env_id, character=character, max_episode_steps=max_episode_steps,
                    observation_keys=tuple(keys), **kwargs)


def start_game(env: gym.Env, seeds: tuple[int, int] | None = None):
    """Reset `env` into a new game: the game of `seeds` (core, disp) in a seeded environment."""
    if seeds is not None:
        env.unwrapped.seed(*seeds, reseed=False)  # consumed by the next reset only
    return env.reset()


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

    Read right after `reset` they identify how the game started (with reseed=True, the
    challenge's, they do not replay it). NetHackChallenge blocks its public seed methods, so the
    values come from the NetHack object itself.
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


# ------------------------------------------------------------------------------------- ttyrecs

_TTYREC_HEADER = struct.Struct("<iiiB")  # seconds, microseconds, length, channel (ttyrec3)
_INPUT = 1  # the channel of a key pressed
# What NetHack says at a game's start when the (real or fixed) date is special.
_START_MESSAGES = {"full_moon": b"Full moon tonight", "new_moon": b"New moon tonight",
                   "friday_13th": b"Friday the 13th"}


def read_ttyrec(path: str | Path) -> list[tuple[int, bytes]]:
    """The records of an NLE ttyrec3 file as (channel, bytes): terminal output (0), a key (1), ...

    The records' timestamps are left out: they are the wall clock of the recording.
    """
    data = bz2.BZ2File(path).read()
    records, at = [], 0
    while at < len(data):
        _, _, length, channel = _TTYREC_HEADER.unpack_from(data, at)
        at += _TTYREC_HEADER.size
        records.append((channel, data[at:at + length]))
        at += length
    return records


def game_start(path: str | Path) -> dict:
    """How a recorded game started, read from its ttyrec.

    reset_keys: the keys NLE's reset pressed (SPACE) to reach the first move, past a --More--
    after the welcome (a full moon's announcement, or "There is a staircase up here." and an
    object on the first square); full_moon, new_moon, friday_13th: what NetHack announced.
    The player never presses SPACE as its first key (the bot answers --More-- with Enter).
    """
    records = read_ttyrec(path)
    keys = [i for i, (channel, data) in enumerate(records) if channel == _INPUT]
    reset = 0
    while reset < len(keys) and records[keys[reset]][1] == b" ":
        reset += 1
    shown = b"".join(data for channel, data in records[:keys[reset] if reset < len(keys) else len(records)]
                     if channel != _INPUT)
    return {"reset_keys": reset, **{name: text in shown for name, text in _START_MESSAGES.items()}}
