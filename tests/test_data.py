import json

import numpy as np
import pytest

from ilscaling.data.atari import Demonstrations, split_episodes, write_demonstrations
from ilscaling.io import DataFileError


def test_round_trip(tmp_path, demos):
    demos.save(tmp_path / "d.npz")
    loaded = Demonstrations.load(tmp_path / "d.npz")
    for name in ("frames", "actions", "rewards", "episode_starts", "episode_ids", "episode_returns"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(demos, name))
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_stacks_rebuild_with_zeros_before_episode_start(demos):
    start = int(demos.episode_starts[1])
    stacks = demos.stacked(np.array([start, start + 1, start + 3, start + 10]))
    assert (stacks[0, :3] == 0).all() and (stacks[0, 3] == demos.frames[start]).all()
    assert (stacks[1, :2] == 0).all() and (stacks[1, 2:] == demos.frames[start: start + 2]).all()
    np.testing.assert_array_equal(stacks[2], demos.frames[start: start + 4])
    np.testing.assert_array_equal(stacks[3], demos.frames[start + 7: start + 11])


def test_missing_and_truncated_files_are_named(tmp_path, demos):
    with pytest.raises(DataFileError, match="nothere.npz"):
        Demonstrations.load(tmp_path / "nothere.npz")
    demos.save(tmp_path / "d.npz")
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match="cut.npz"):
        Demonstrations.load(tmp_path / "cut.npz")


def test_split_is_seeded_disjoint_and_whole():
    train, heldout = split_episodes(20, 0.1, seed=3)
    assert len(heldout) == 2 and len(train) == 18
    assert set(train).isdisjoint(heldout) and set(train) | set(heldout) == set(range(20))
    again = split_episodes(20, 0.1, seed=3)
    np.testing.assert_array_equal(heldout, again[1])
    assert not np.array_equal(heldout, split_episodes(20, 0.1, seed=4)[1])
    assert len(split_episodes(3, 0.01, seed=0)[1]) == 1  # never an empty held-out set
    with pytest.raises(ValueError, match="at least 2 episodes"):
        split_episodes(1, 0.1, seed=0)


class _Episodes:
    def __init__(self, demos):
        bounds = demos.episode_starts
        self.frames = [demos.frames[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.actions = [demos.actions[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.rewards = [demos.rewards[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.returns = [float(r.sum()) for r in self.rewards]


def test_write_demonstrations_splits_whole_episodes(tmp_path, demos):
    card = write_demonstrations(_Episodes(demos), tmp_path, heldout_fraction=0.34, seed=0, game="Breakout")
    train, heldout = Demonstrations.load(tmp_path / "train.npz"), Demonstrations.load(tmp_path / "heldout.npz")
    assert len(train) + len(heldout) == len(demos) == card["frames"]
    assert train.num_episodes + heldout.num_episodes == demos.num_episodes == card["episodes"]
    for split in (train, heldout):
        for i, episode in enumerate(split.episode_ids):
            a, b = split.episode_starts[i], split.episode_starts[i + 1]
            lo, hi = demos.episode_starts[episode], demos.episode_starts[episode + 1]
            np.testing.assert_array_equal(split.frames[a:b], demos.frames[lo:hi])
    on_disk = json.loads((tmp_path / "card.json").read_text())
    assert on_disk["expert_mean_return"] == pytest.approx(np.mean(demos.episode_returns))
    assert on_disk["bytes"] > 0 and sum(on_disk["action_counts"]) == len(demos)


def test_outputs_get_the_usual_file_mode_not_mkstemps(tmp_path, demos):
    """Written through a temporary file, yet readable like any file (0644 under umask 022): a
    shared cluster folder's group can read the results."""
    import os
    import stat

    from ilscaling.io import FILE_MODE, save_torch, write_json

    mask = os.umask(0)
    os.umask(mask)
    write_json({"a": 1}, tmp_path / "a.json")
    save_torch({"b": 2}, tmp_path / "b.pt")
    demos.save(tmp_path / "c.npz")
    for name in ("a.json", "b.pt", "c.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == FILE_MODE == 0o666 & ~mask, name
