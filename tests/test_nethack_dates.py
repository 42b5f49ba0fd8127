"""NetHack on any date: the tests hold on special days, and seeded games do not see the day.

NetHack reads the wall clock at a game's start (moon phase, Friday the 13th: Luck, and a
--More-- that NLE's reset answers with a recorded key; night, midnight; the shopkeepers' names).
These tests run the NetHack tests, and the bot's recorder, in processes whose clock libfaketime
starts on chosen days (the same library that pins the clock of seeded games).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


from ilscaling.games import nethack as nh

ROOT = Path(__file__).resolve().parents[1]
# Days NLE was seen to greet differently (first screen line after reset, NetHackChallenge-v0).
DAYS = {"full moon": "2026-11-24 12:00:00", "new moon": "2026-12-09 12:00:00",
        "Friday the 13th": "2026-02-13 12:00:00", "an ordinary day": "2026-11-29 12:00:00"}
NETHACK_TESTS = ["tests/test_nethack_bot.py", "tests/test_nethack_data.py", "tests/test_nethack_train.py"]


def _on_day(day: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """Run this interpreter with `args` in the repository, its wall clock starting at `day` (UTC)."""
    env = {**os.environ, **nh.faked_clock_environment(day, frozen=False)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_nethack_tests_pass_on_special_days():
    for day in DAYS.values():  # the faked day is the one a process reads
        shown = _on_day(day, ["-c", "import time; print(time.strftime('%Y-%m-%d %Z'))"], 60).stdout.strip()
        assert shown == day.split()[0] + " UTC", (day, shown)

    def run(name):
        return name, _on_day(DAYS[name], ["-m", "pytest", "-q", "-p", "no:cacheprovider", *NETHACK_TESTS], 900)

    with ThreadPoolExecutor(2) as pool:  # two days at a time on two cores
        results = dict(pool.map(run, DAYS))
    failed = {name: result.stdout[-3000:] + result.stderr[-2000:] for name, result in results.items()
              if result.returncode != 0}
    assert not failed, "\n\n".join(f"--- on {name} ({DAYS[name]}):\n{out}" for name, out in failed.items())
    for name, result in results.items():
        assert " passed" in result.stdout.splitlines()[-1], (name, result.stdout[-500:])


RECORD = """
import sys
from ilscaling.games.nethack_bot import record_bot_games
record_bot_games(sys.argv[1], games=4, processes=int(sys.argv[2]), max_episode_steps=400, seed=3,
                 log=lambda *_: None)
"""


def test_seeded_bot_recordings_are_identical_on_any_day(tmp_path):
    """Same seed, two days (a full moon, a Friday the 13th), one and two processes: the same games,
    frame for frame and key for key."""
    first, second = tmp_path / "full-moon", tmp_path / "friday"
    for out, day, processes in ((first, DAYS["full moon"], 2), (second, DAYS["Friday the 13th"], 1)):
        result = _on_day(day, ["-c", RECORD, str(out), str(processes)], 300)
        assert result.returncode == 0, result.stderr[-3000:]
    games = sorted(p.name for p in first.iterdir() if p.is_dir())
    assert games == sorted(p.name for p in second.iterdir() if p.is_dir()) and len(games) == 4
    shops = 0
    for game in games:
        (a,), (b,) = (list((out / game).glob("*.ttyrec3.bz2")) for out in (first, second))
        frames_a, frames_b = nh.read_ttyrec(a), nh.read_ttyrec(b)
        assert frames_a == frames_b, f"game {game}: the recordings differ"
        shops += any(b"Welcome to" in data for _, data in frames_a)
    assert all(_xlogfile_line(first, game) == _xlogfile_line(second, game) for game in games)
    card_a, card_b = (json.loads((out / "card.json").read_text()) for out in (first, second))
    for key in ("scores", "steps", "turns", "seeds", "reset_keys", "game_starts", "action_histogram"):
        assert card_a[key] == card_b[key], key
    # A shopkeeper's name follows NetHack's birthday clock: with these seeds the bot enters a shop,
    # so the pinned clock is what keeps these recordings equal.
    assert shops >= 1


def _xlogfile_line(out: Path, game: str) -> dict:
    (line,) = nh.read_xlogfile(next((out / game).glob("*xlogfile")))
    line.pop("ttyrecname")  # nle.<pid>.0.ttyrec3.bz2: the recording process's pid
    return line
