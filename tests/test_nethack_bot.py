"""The NetHack expert: ending cut games properly, the bot, and its recordings read by nle.dataset."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nle")

from ilscaling.games import nethack as nh  # noqa: E402
from ilscaling.games.nethack_bot import KEY_INDEX, record_bot_games  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# Keys a game may be cut after: a plain search, a menu (inventory), a y/n question (eat), the
# extended-command line, a half-typed count, a direction question (kick).
@pytest.mark.parametrize("last_key", [ord("s"), ord("i"), ord("e"), ord("#"), ord("2"), nh.nethack.C("d")])
def test_finish_game_writes_the_xlogfile_line_of_a_truncated_game(tmp_path, last_key):
    env = nh.make_env("challenge", max_episode_steps=6, savedir=tmp_path)
    try:
        env.reset()
        keys = [ord("s")] * 5 + [last_key]
        for key in keys:
            _, _, terminated, truncated, _ = env.step(KEY_INDEX[key])
        assert truncated and not terminated
        assert not nh.game_over(env)
        assert nh.xlogfile_games(tmp_path) == []  # the trap: NetHack has not ended the game
        assert nh.finish_game(env) is True
        assert nh.game_over(env)
        assert nh.finish_game(env) is False  # already over: nothing to do
        lines = nh.xlogfile_games(tmp_path)
        assert len(lines) == 1 and lines[0]["death"] == "quit"
        assert lines[0]["role"] == "Mon" and lines[0]["race"] == "Hum"
        env.reset()  # the next game starts normally
    finally:
        env.close()
    assert len(list(tmp_path.glob("*.ttyrec3.bz2"))) == 2


def test_read_xlogfile_parses_fields(tmp_path):
    path = tmp_path / "x.xlogfile"
    path.write_text("version=3.6.7\tpoints=1234\tmaxlvl=5\tdeathlev=4\tturns=987\tdeath=killed by a jackal\t"
                    "conduct=0xfff\n\npoints=-1\tdeath=quit\n")
    first, second = nh.read_xlogfile(path)
    assert first == {"version": "3.6.7", "points": 1234, "maxlvl": 5, "deathlev": 4, "turns": 987,
                     "death": "killed by a jackal", "conduct": "0xfff"}
    assert second == {"points": -1, "death": "quit"}


def test_make_env_keeps_the_terminal_and_game_seeds_are_reported():
    env = nh.make_env("challenge", max_episode_steps=10, observation_keys=("glyphs",))
    try:
        obs, _ = env.reset()
        assert {"tty_chars", "tty_colors", "tty_cursor", "blstats", "glyphs"} <= set(obs)
        seeds = nh.game_seeds(env)
        assert seeds is None or (isinstance(seeds["core"], int) and isinstance(seeds["disp"], int))
        with pytest.raises(RuntimeError):
            env.unwrapped.seed(1, 2)  # NetHackChallenge refuses seeds: we only record them
    finally:
        env.close()


def test_a_seeded_game_runs_only_on_the_pinned_clock():
    assert not nh.clock_is_pinned()  # this test process reads the real (or a faked) day
    with pytest.raises(nh.ClockNotPinned, match="pinned clock"):
        nh.make_env("seeded")
    with pytest.raises(ValueError, match="kind must be one of"):
        nh.make_env("seeded-v0")


def test_game_seeds_differ_per_game_and_stream_and_fit_in_signed_64_bits():
    seeds = {nh.game_seeds_of(0, stream, g) for stream in ("bot", "evaluation") for g in range(50)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for pair in seeds for s in pair)
    assert nh.game_seeds_of(0, "bot", 3) == nh.game_seeds_of(0, "bot", 3) != nh.game_seeds_of(1, "bot", 3)


ANNOUNCEMENTS = ("full_moon", "new_moon", "friday_13th")


def _moon_and_friday(now: time.struct_time) -> dict:
    """What NetHack 3.6 announces at a game's start on local time `now` (hacklib.c's
    phase_of_the_moon and friday_13th, written again here to predict the wall clock's effect)."""
    golden = (now.tm_year - 1900) % 19 + 1
    epact = (11 * golden + 18) % 30
    if (epact == 25 and golden > 11) or epact == 24:
        epact += 1
    phase = ((((now.tm_yday - 1 + epact) * 6) + 11) % 177) // 22 & 7
    return {"full_moon": phase == 4, "new_moon": phase == 0,
            "friday_13th": now.tm_wday == 4 and now.tm_mday == 13}


@pytest.mark.parametrize("day, expected", [
    ("2026-11-24", "full_moon"), ("2026-12-09", "new_moon"), ("2026-02-13", "friday_13th"), ("2026-11-29", None)])
def test_the_moon_rule_matches_what_nle_was_seen_to_announce(day, expected):
    announced = _moon_and_friday(time.strptime(day + " 12:00", "%Y-%m-%d %H:%M"))
    assert [name for name, shown in announced.items() if shown] == ([expected] if expected else [])


def test_challenge_games_see_todays_date_and_seeded_games_do_not(recordings):
    """Under the date tests (test_nethack_dates.py) this runs on a full moon, a new moon, a Friday
    the 13th and an ordinary day: challenge games announce that day, seeded ones their seed's."""
    before = _moon_and_friday(time.localtime())
    challenge = recordings("challenge")[2]
    after = _moon_and_friday(time.localtime())
    for start in challenge["game_starts"]:
        shown = {name: start[name] for name in before}
        assert shown in (before, after)  # (midnight may pass while the games are recorded)
        # NLE's reset answers the --More-- that ends a welcome with an announcement (or one for what
        # lies on the first square: "There is a staircase up here." and an object).
        assert start["reset_keys"] >= int(any(shown.values()))
    seeded = recordings("seeded")[2]
    assert seeded["env"] == "seeded" and seeded["clock"].startswith("pinned")
    assert seeded["seeds"] == [{"core": core, "disp": disp, "reseed": False, "lgen": None}
                               for core, disp in (nh.game_seeds_of(0, "bot", g) for g in range(4))]
    assert all(start["reset_keys"] >= any(start[name] for name in ANNOUNCEMENTS) for start in seeded["game_starts"])


def test_bot_plays_with_balanced_actions(tmp_path):
    card = record_bot_games(tmp_path, games=1, processes=1, max_episode_steps=400, seed=0, log=lambda *_: None)
    counts = card["action_histogram"]  # of a seeded game: the same on every run
    assert card["steps"] == [card["frames"]] and sum(counts.values()) == card["frames"] > 0
    assert card["max_depths"][0] >= 1 and card["turns"][0] > 0
    assert counts.get("SEARCH", 0) <= 0.4 * card["frames"], counts
    assert len(counts) >= 4  # it moves in several directions, not one key forever


def test_record_bot_games_writes_games_card_and_loads_with_nle_dataset(tmp_path):
    import nle.dataset as nld

    from ilscaling.data.nethack import KEY_TO_ACTION

    out = tmp_path / "rec"
    logged = []
    card = record_bot_games(out, games=3, processes=2, max_episode_steps=150, seed=1, log=logged.append)

    assert len(_xlog_lines_all(out)) == 3
    assert len(list(out.glob("*/*.ttyrec3.bz2"))) == 3
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00000", "00001", "00002"]  # a folder per game
    assert card["env"] == "seeded" and card["clock"] == nh.CLOCK_MODES["seeded"]
    assert len(card["reset_keys"]) == len(card["game_starts"]) == 3
    assert json.loads((out / "card.json").read_text()) == json.loads(json.dumps(card))
    assert card["games"] == 3 and len(card["scores"]) == 3
    assert card["expert_mean_return"] == pytest.approx(np.mean(card["scores"]))
    assert card["frames"] == sum(card["steps"]) == sum(card["action_histogram"].values())
    assert sum(card["max_depth_counts"].values()) == 3
    assert sum(card["death_counts"].values()) == 3
    assert card["games_truncated"] == card["death_counts"].get("quit", 0)  # cut games were quit
    assert 0 < card["most_common_action_fraction"] < 1
    assert card["bytes"] > 0 and card["steps_per_s_per_process"] > 0
    assert len(card["seeds"]) == 3 and card["provenance"]["versions"]["nle"]
    assert sum("game " in line for line in logged) == 3

    with pytest.raises(FileExistsError):
        record_bot_games(out, games=1, processes=1, max_episode_steps=10, log=logged.append)

    db = str(tmp_path / "nld.db")
    nld.db.create(db)
    nld.add_nledata_directory(str(out), "bot", db)
    conn = nld.db.connect(db)
    try:
        assert nld.db.count_games("bot", conn=conn) == 3
    finally:
        conn.close()
    dataset = nld.TtyrecDataset("bot", batch_size=1, seq_length=64, dbfilename=db, shuffle=False,
                                loop_forever=False)
    batch = next(iter(dataset))
    keys = batch["keypresses"][batch["gameids"] != 0]
    assert keys.size > 0 and (keys != 0).any()
    assert (KEY_TO_ACTION[keys] >= 0).all()  # every recorded key is an NLE action


def _xlog_lines_all(out):
    return [line for path in sorted(out.glob("*/*xlogfile")) for line in nh.read_xlogfile(path)]


def test_the_expert_stage_of_nethack_is_the_bot_as_the_config_says():
    """The workflow's make-expert job for NetHack: its spec and speed from the config (ilscaling.jobs),
    read back by the command as the bot's arguments."""
    from ilscaling.cli import parse
    from ilscaling.commands import MakeExpert
    from ilscaling.config import load_config
    from ilscaling.jobs import data_stage, data_stage_threads

    config = load_config(ROOT / "configs/smoke.yaml")
    spec, speed = data_stage(config, "NetHack", "expert")
    command = parse(["make-expert", "--game", "NetHack", "--spec", spec, "--speed", speed, "--out-dir", "x"])
    assert isinstance(command, MakeExpert)
    bot = config["nethack"]["bot"]
    assert command.values() == {"games": bot["games"], "max_episode_steps": bot["max_episode_steps"],
                                "env": bot["env"], "character": config["nethack"]["character"],
                                "seed": config["seed"], "threads": bot["processes"]}
    assert data_stage_threads(config, "NetHack", "expert") == bot["processes"]
