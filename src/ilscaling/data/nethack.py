"""NetHack demonstrations through `nle.dataset`: the NLD database, a seeded split, sequence batches.

The same code reads the workflow's own bot recordings and the paper's NLD-AA: both are NLE
ttyrec3 directories (`<root>/*/*.xlogfile` + `*.ttyrec3.bz2`) that `add_nledata_directory`
indexes into an sqlite database. A split file names the database, the dataset, the filter and
the train and held-out game ids (whole games, seeded), with their frame counts.

Labels: `keypress[t]` is the key pressed in answer to frame t; it maps to an NLE action index
through `nle.nethack.ACTIONS` (see `KEY_TO_ACTION`). Batches are (B, T) sequences from
`TtyrecDataset`: each row plays its games back to back, so the recurrent state is carried from
one unroll to the next and reset where a new game starts (`done`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ilscaling.data import split_episodes
from ilscaling.io import DataFileError, read_json, write_json

# The paper's filter on NLD-AA: human monks.
HUMAN_MONK_SQL = "role='Mon' AND race='Hum'"
# A game cut by the step limit is ended by the recorder through NetHack's quit path (so that its
# xlogfile line exists): Escape, M-q, y, then the end-of-game screens. Those keys are the recorder's,
# not the player's, so in a game that ended with death "quit" the frames from the last M-q on (and
# the Escapes right before it) are not labels. Tested on the bot's recordings.
QUIT_KEY, ESCAPE_KEY = 0x80 | ord("q"), 27
# The previous action fed to the model at a game's first frame (no action yet): index 0, MORE
# (the Enter key that starts every game). Rollouts use the same convention.
START_ACTION = 0


class DatasetError(ValueError):
    """The demonstrations cannot be used as configured; the message names the cause."""


def _key_to_action() -> np.ndarray:
    """(256,) int16: the NLE action index of each keypress, -1 where no action sends that key.

    Three keys are bound to two actions each: `"` (SEEAMULET and the text QUOTE), `$` (SEEGOLD,
    DOLLAR) and `+` (SEESPELLS, PLUS). Both actions of a pair send NetHack the same key, so
    either index replays the game identically; the rule is that the command (the lower index,
    the key's top-level meaning) wins.
    """
    from nle.nethack import ACTIONS

    table = np.full(256, -1, dtype=np.int16)
    for index, action in enumerate(ACTIONS):
        if table[int(action)] < 0:
            table[int(action)] = index
    return table


KEY_TO_ACTION = _key_to_action()
NUM_ACTIONS = 121


def keys_to_actions(keypresses: np.ndarray, valid: np.ndarray, where: str = "") -> np.ndarray:
    """Action indices of `keypresses` (int64); -1 where not `valid` (padding).

    A valid frame whose key no NLE action sends is an error, never a silent action 0.
    """
    actions = KEY_TO_ACTION[keypresses].astype(np.int64)
    bad = valid & (actions < 0)
    if bad.any():
        keys = sorted({int(k) for k in keypresses[bad]})
        shown = ", ".join(f"{k} ({chr(k)!r})" for k in keys[:10])
        raise DatasetError(f"keypresses outside the NLE action set{where}: {shown}; "
                           f"{int(bad.sum())} frames. Every label must be one of nle.nethack.ACTIONS")
    actions[~valid] = -1
    return actions


def build_database(root: str | Path, db_path: str | Path, name: str) -> int:
    """Index the ttyrec directory `root` into a new NLD database; returns its number of games."""
    import nle.dataset as nld

    root, db_path = Path(root).resolve(), Path(db_path)
    if not root.is_dir():
        raise DatasetError(f"ttyrec directory {root} does not exist")
    if not any(root.glob("*/*.xlogfile")):
        raise DatasetError(f"ttyrec directory {root} holds no games (no {root}/*/*.xlogfile)")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.unlink(missing_ok=True)
    nld.db.create(str(db_path))
    nld.add_nledata_directory(str(root), name, str(db_path))
    conn = nld.db.connect(str(db_path))
    try:
        count = nld.db.count_games(name, conn=conn)
    finally:
        conn.close()
    if count == 0:
        raise DatasetError(f"ttyrec directory {root} holds no games that nle.dataset can read")
    return count


def select_games(db_path: str | Path, name: str, where: str | None = None) -> list[int]:
    """Game ids of dataset `name` that have ttyrecs, optionally filtered by an SQL condition."""
    query = ("SELECT DISTINCT games.gameid FROM games JOIN datasets ON games.gameid = datasets.gameid "
             "JOIN ttyrecs ON games.gameid = ttyrecs.gameid WHERE datasets.dataset_name = ?")
    if where:
        query += f" AND ({where})"
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            rows = conn.execute(query + " ORDER BY games.gameid", (name,)).fetchall()
    except sqlite3.Error as err:
        raise DatasetError(f"cannot select games of {name!r} in {db_path} where {where!r}: {err}") from err
    return [row[0] for row in rows]


@dataclass
class Split:
    """The split file: which database, dataset and games each part uses."""

    db: str
    dataset: str
    train: list[int]
    heldout: list[int]
    train_frames: int
    heldout_frames: int
    play_frames: dict[int, int]
    """frames before the recorder's quit keys, for the games that have them (see QUIT_KEY)"""

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        data = read_json(path, "NetHack split")
        try:
            split = cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except KeyError as err:
            raise DataFileError(f"NetHack split {path} lacks {err}") from None
        split.play_frames = {int(g): n for g, n in split.play_frames.items()}
        if not Path(split.db).is_file():
            raise DataFileError(f"NLD database {split.db} named by {path} does not exist")
        return split


def make_split(db_path: str | Path, name: str, out_path: str | Path, *, heldout_fraction: float, seed: int,
               where: str | None = None, expected_games: int | None = None, min_train_games: int = 1,
               log=print) -> dict:
    """Seeded split of whole games into train and held-out; writes the split file and returns it."""
    games = select_games(db_path, name, where)
    if not games:
        raise DatasetError(f"the game filter {where!r} selects no games of {name!r} in {db_path}")
    if expected_games is not None and len(games) != expected_games:
        raise DatasetError(f"{db_path} holds {len(games)} games of {name!r} but {expected_games} were played: "
                           "recordings were lost (a game cut without an xlogfile line?)")
    if len(games) < 2:
        raise DatasetError(f"the game filter {where!r} selects {len(games)} game of {name!r}: a split needs "
                           "at least 2 (one train, one held out)")
    train_index, heldout_index = split_episodes(len(games), heldout_fraction, seed)
    train, heldout = [games[i] for i in train_index], [games[i] for i in heldout_index]
    if len(train) < min_train_games:
        raise DatasetError(f"the split leaves {len(train)} training games, fewer than the batch size "
                           f"{min_train_games}: every row of a batch needs its own game")
    limits, frames = {}, {}
    for part, ids in (("train", train), ("heldout", heldout)):
        part_limits, frames[part] = play_frames_of(db_path, name, ids)
        limits.update(part_limits)
    split = {"db": str(Path(db_path).resolve()), "dataset": name, "filter": where, "seed": seed,
             "heldout_fraction": heldout_fraction, "train": train, "heldout": heldout,
             "train_frames": frames["train"], "heldout_frames": frames["heldout"],
             "play_frames": {str(g): n for g, n in sorted(limits.items())}}
    write_json(split, out_path)
    log(f"{name}: {len(train)} train games ({frames['train']} frames), "
        f"{len(heldout)} held-out games ({frames['heldout']} frames)")
    return split


def sequence_batches(db_path: str | Path, name: str, gameids: list[int], *, batch_size: int, seq_length: int,
                     play_frames: dict[int, int] | None = None, threadpool=None) -> Iterator[dict[str, np.ndarray]]:
    """One pass over `gameids` in the given order as (B, T) numpy batches.

    Row i plays games gameids[i::B] back to back; `done` marks the first frame of each game
    after the row's first; `valid` is False on the padding after a row runs out, and on the
    frames of a game past its `play_frames` (the recorder's quit keys, see `QUIT_KEY`). Each
    batch holds copies (the loader reuses its arrays) of: tty_chars, tty_colors, tty_cursor,
    done, valid, action (-1 where not valid) and prev_action (START_ACTION at a game's first frame).
    """
    import nle.dataset as nld

    if not gameids:
        raise DatasetError(f"no games of {name!r} to read")
    if batch_size > len(gameids):
        raise DatasetError(f"batch size {batch_size} is larger than the {len(gameids)} games of {name!r}: "
                           "every row of a batch needs its own game")
    dataset = nld.TtyrecDataset(name, batch_size=batch_size, seq_length=seq_length, dbfilename=str(db_path),
                                gameids=list(gameids), shuffle=False, loop_forever=False, threadpool=threadpool)
    if dataset._ttyrec_version < 2:  # no public accessor in nle 1.3
        raise DatasetError(f"dataset {name!r} has no keypresses (ttyrec version {dataset._ttyrec_version}): "
                           "it cannot give behaviour-cloning labels")
    last_action = np.full(batch_size, START_ACTION, dtype=np.int64)
    row_game = np.zeros(batch_size, dtype=np.int64)  # the game each row was reading, and its frame index
    row_index = np.zeros(batch_size, dtype=np.int64)
    # Per-frame limits by sorted lookup, built once (not a Python call per frame on the hot path).
    limited_games = np.array(sorted(play_frames or {}), dtype=np.int64)
    limits = np.array([play_frames[g] for g in limited_games], dtype=np.int64)
    for raw in dataset:
        valid = raw["gameids"] != 0
        if len(limited_games):
            index, row_game, row_index = _frame_index(raw["gameids"], row_game, row_index)
            slot = np.minimum(np.searchsorted(limited_games, raw["gameids"]), len(limited_games) - 1)
            limited = limited_games[slot] == raw["gameids"]
            valid &= ~limited | (index < limits[slot])
        action = keys_to_actions(raw["keypresses"], valid, f" in games {sorted(set(raw['gameids'][valid].tolist()))}")
        # A game's first frame follows no action: `done` marks it, except for a row's first game,
        # whose first frame is the first frame of the whole pass (handled by last_action's start).
        starts = raw["done"].astype(bool)
        prev = np.concatenate([last_action[:, None], action[:, :-1]], axis=1)
        prev[starts | (prev < 0)] = START_ACTION
        last_action = np.where(action[:, -1] >= 0, action[:, -1], START_ACTION)
        yield {
            "tty_chars": raw["tty_chars"].copy(),
            "tty_colors": raw["tty_colors"].copy(),
            "tty_cursor": raw["tty_cursor"].astype(np.uint8),
            "done": starts,
            "valid": valid,
            "action": action,
            "prev_action": prev,
        }


def _frame_index(gameids: np.ndarray, row_game: np.ndarray, row_index: np.ndarray):
    """Index of each frame within its game, (B, T), carried across batches by (row_game, row_index)."""
    previous = np.concatenate([row_game[:, None], gameids[:, :-1]], axis=1)
    position = np.arange(gameids.shape[1])[None, :]
    last_start = np.maximum.accumulate(np.where(gameids != previous, position, -1), axis=1)
    index = np.where(last_start >= 0, position - last_start, row_index[:, None] + position)
    return index, gameids[:, -1].astype(np.int64), index[:, -1] + 1


def play_frames_of(db_path: str | Path, name: str, gameids: list[int], seq_length: int = 4096
                   ) -> tuple[dict[int, int], int]:
    """Per game, its frames before the recorder's quit keys (only games that ended by "quit").

    Returns ({gameid: play frames}, total play frames of `gameids`). Reads every game once,
    which also checks every label.
    """
    quit_games = set(select_games(db_path, name, "games.death = 'quit'"))
    limits, total = {}, 0
    for gameid in gameids:
        keys = np.concatenate([batch["keys"] for batch in _raw_games(db_path, name, [gameid], seq_length)])
        frames = len(keys)
        if gameid in quit_games:
            quits = np.flatnonzero(keys == QUIT_KEY)
            if len(quits):
                frames = int(quits[-1])
                while frames > 0 and keys[frames - 1] == ESCAPE_KEY:
                    frames -= 1
                limits[gameid] = frames
        keys_to_actions(keys[:frames], np.ones(frames, dtype=bool), f" in game {gameid}")
        total += frames
    return limits, total


def _raw_games(db_path, name, gameids, seq_length):
    """The keypresses of `gameids` read one row at a time (no labels checked)."""
    import nle.dataset as nld

    dataset = nld.TtyrecDataset(name, batch_size=1, seq_length=seq_length, dbfilename=str(db_path),
                                gameids=list(gameids), shuffle=False, loop_forever=False)
    for raw in dataset:
        valid = raw["gameids"][0] != 0
        yield {"keys": raw["keypresses"][0][valid].copy()}


def dataset_card(split: dict, bot_card: dict | None, out_path: str | Path) -> dict:
    """The data card of the study's NetHack demonstrations: the split, plus the expert's card."""
    card = {"game": "NetHack", "dataset": split["dataset"], "filter": split["filter"],
            "games": len(split["train"]) + len(split["heldout"]), "train_games": len(split["train"]),
            "heldout_games": len(split["heldout"]), "train_frames": split["train_frames"],
            "heldout_frames": split["heldout_frames"], "frames": split["train_frames"] + split["heldout_frames"]}
    if bot_card:
        card["expert"] = bot_card
        card["expert_mean_return"] = bot_card.get("expert_mean_return")
        # How the games were made: the environment, its clock, and what NetHack announced at the
        # games' starts (the whole per-game record is in card["expert"]).
        for key in ("env", "clock", "start_announcements"):
            card[key] = bot_card.get(key)
    write_json(card, out_path)
    return card
