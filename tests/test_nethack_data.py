"""NetHack demonstrations: keypress labels, the NLD database, the split and sequence batches.

The recordings are real: a few short games of the workflow's bot, indexed with nle.dataset.
"""

import json

import numpy as np
import pytest
from nle.nethack import ACTIONS

from ilscaling.data.nethack import (
    KEY_TO_ACTION, QUIT_KEY, START_ACTION, play_frames_of, DatasetError, Split, build_database, keys_to_actions, make_split,
    select_games, sequence_batches,
)
from ilscaling.games.nethack import ENV_KINDS


def test_every_action_key_maps_back_to_an_action_sending_that_key():
    for index, action in enumerate(ACTIONS):
        mapped = KEY_TO_ACTION[int(action)]
        assert int(ACTIONS[mapped]) == int(action)
        # The documented rule for the three keys bound to two actions: the command (lower index) wins.
        assert mapped <= index
    doubles = {k for k in range(256) if sum(int(a) == k for a in ACTIONS) == 2}
    assert {chr(k) for k in doubles} == {'"', "$", "+"}


def test_keys_outside_the_action_set_are_an_error_not_action_zero():
    keys = np.array([[ord("k"), ord("j")], [0xFF, ord("k")]], dtype=np.uint8)
    valid = np.ones_like(keys, dtype=bool)
    with pytest.raises(DatasetError, match="outside the NLE action set.*255"):
        keys_to_actions(keys, valid, " in game 7")
    valid[1, 0] = False  # padding is never checked, and is labelled -1
    actions = keys_to_actions(keys, valid)
    assert actions[1, 0] == -1 and actions[0, 0] == KEY_TO_ACTION[ord("k")]


def _every_game_cut(card) -> bool:
    return all(steps == card["max_episode_steps"] for steps in card["steps"])


def _check_play_frames(play: int, card) -> None:
    """Play frames = the bot's steps + NLE's reset keys where every game hit the step limit (the
    seeded recording, on any day); an unseeded `challenge` game may die first, and then its frames
    also hold the keys NLE answers NetHack's end-of-game questions with."""
    expected = card["frames"] + sum(card["reset_keys"])
    assert play == expected if _every_game_cut(card) else play >= expected


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_split_is_seeded_by_whole_games_and_counts_every_frame(recordings, tmp_path, kind):
    root, db, card = recordings(kind)
    split = make_split(db, "bot", tmp_path / "split.json", heldout_fraction=0.25, seed=0, expected_games=4,
                       log=lambda *_: None)
    assert len(split["heldout"]) == 1 and len(split["train"]) == 3
    assert sorted(split["train"] + split["heldout"]) == select_games(db, "bot")
    # Every frame before the recorder's quit keys: the bot's steps and the keys NLE's reset pressed
    # (past a --More-- when NetHack announced a full or new moon or a Friday the 13th).
    _check_play_frames(split["train_frames"] + split["heldout_frames"], card)
    again = make_split(db, "bot", tmp_path / "again.json", heldout_fraction=0.25, seed=0, log=lambda *_: None)
    assert again["heldout"] == split["heldout"]
    assert Split.load(tmp_path / "split.json").train == split["train"]


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_batches_carry_games_across_unrolls(recordings, kind):
    _, db, card = recordings(kind)
    games = select_games(db, "bot")
    limits, play = play_frames_of(db, "bot", games)
    # Each of these games hit the step limit: its frames are NLE's reset keys (read from the
    # recording: one where the welcome ended in --More--), the bot's steps, then the recorder's
    # quit keys, which are not labels.
    _check_play_frames(play, card)
    assert set(limits) == set(games) if _every_game_cut(card) else set(limits) < set(games)
    batches = list(sequence_batches(db, "bot", games, batch_size=2, seq_length=16, play_frames=limits))
    frames = sum(int(b["valid"].sum()) for b in batches)
    assert frames == play
    everything = sum(int(b["valid"].sum()) for b in sequence_batches(db, "bot", games, batch_size=2, seq_length=16))
    assert everything > frames  # the quit keys are there, and masked
    quit_action = KEY_TO_ACTION[QUIT_KEY]
    assert not any((b["action"] == quit_action).any() for b in batches)
    first = batches[0]
    assert first["tty_chars"].shape == (2, 16, 24, 80) and first["tty_cursor"].dtype == np.uint8
    assert (first["action"][first["valid"]] >= 0).all()
    # prev_action is the previous frame's action within a game, START_ACTION at a game's start.
    flat_prev = np.concatenate([b["prev_action"][0] for b in batches])
    flat_action = np.concatenate([b["action"][0] for b in batches])
    flat_done = np.concatenate([b["done"][0] for b in batches])
    assert flat_prev[0] == START_ACTION
    for t in range(1, len(flat_action)):
        if flat_action[t] < 0:
            break
        assert flat_prev[t] == (START_ACTION if flat_done[t] else flat_action[t - 1])
    assert flat_done.sum() == 1  # row 0 plays two games back to back: one reset where the second starts


def test_bad_datasets_are_named(recorded, tmp_path):
    _, db, _ = recorded
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no games"):
        build_database(tmp_path / "empty", tmp_path / "x.db", "x")
    with pytest.raises(DatasetError, match="does not exist"):
        build_database(tmp_path / "missing", tmp_path / "x.db", "x")
    with pytest.raises(DatasetError, match="filter .*selects no games"):
        make_split(db, "bot", tmp_path / "s.json", heldout_fraction=0.25, seed=0, where="role='Val'")
    with pytest.raises(DatasetError, match="recordings were lost"):
        make_split(db, "bot", tmp_path / "s.json", heldout_fraction=0.25, seed=0, expected_games=5)
    with pytest.raises(DatasetError, match="leaves 3 training games, fewer than the batch size 4"):
        make_split(db, "bot", tmp_path / "s.json", heldout_fraction=0.25, seed=0, min_train_games=4)
    with pytest.raises(DatasetError, match="batch size 5 is larger than the 4 games"):
        next(sequence_batches(db, "bot", select_games(db, "bot"), batch_size=5, seq_length=8))


def test_the_papers_human_monk_filter_selects_the_bots_games(recorded, tmp_path):
    _, db, _ = recorded
    split = make_split(db, "bot", tmp_path / "split.json", heldout_fraction=0.25, seed=1,
                       where="role='Mon' AND race='Hum'", log=lambda *_: None)
    assert len(split["train"]) + len(split["heldout"]) == 4
    assert json.loads((tmp_path / "split.json").read_text())["filter"] == "role='Mon' AND race='Hum'"
