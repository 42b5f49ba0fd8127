import json

import numpy as np
import pytest
import torch

from ilscaling.data.atari import Demonstrations, split_episodes, write_demonstrations
from ilscaling.io import DataFileError


def test_round_trip(tmp_path, demos):
    demos.save(tmp_path / "d.npz")
    loaded = Demonstrations.load(tmp_path / "d.npz")
    for name in ("frames", "actions", "rewards", "episode_starts", "episode_ids", "episode_returns", "expert_probs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(demos, name))
    assert loaded.expert_probs.dtype == np.float32 and loaded.expert_probs.shape == (len(demos), 4)
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
        self.policies = [demos.expert_probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
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
            np.testing.assert_array_equal(split.expert_probs[a:b], demos.expert_probs[lo:hi])
    on_disk = json.loads((tmp_path / "card.json").read_text())
    assert on_disk["expert_mean_return"] == pytest.approx(np.mean(demos.episode_returns))
    assert on_disk["bytes"] > 0 and sum(on_disk["action_counts"]) == len(demos)
    assert "expert_probs" in on_disk["arrays"] and "one-hot" in on_disk["arrays"]["expert_probs"]


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


# --- the expert's action distribution ----------------------------------------------------------

def test_a_file_without_the_expert_distribution_is_named(tmp_path, demos):
    """Demonstrations recorded before the distribution was stored cannot give a KL: a clear error."""
    np.savez(tmp_path / "old.npz", **{name: getattr(demos, name) for name in
                                       ("frames", "actions", "rewards", "episode_starts", "episode_ids",
                                        "episode_returns")})
    with pytest.raises(DataFileError, match=r"old.npz lacks arrays \['expert_probs'\].*record the demonstrations"):
        Demonstrations.load(tmp_path / "old.npz")


def test_a_distribution_that_does_not_fit_the_frames_is_named(tmp_path, demos):
    for name, probs in (("short.npz", demos.expert_probs[:-1]), ("unnormalised.npz", 2 * demos.expert_probs),
                        ("narrow.npz", demos.expert_probs[:, :2] / demos.expert_probs[:, :2].sum(1, keepdims=True))):
        Demonstrations(**{**{k: getattr(demos, k) for k in ("frames", "actions", "rewards", "episode_starts",
                                                            "episode_ids", "episode_returns")},
                          "expert_probs": probs}).save(tmp_path / name)
        with pytest.raises(DataFileError, match=name):
            Demonstrations.load(tmp_path / name)


class _SeededLogits:
    """A real (if random) policy: seeded logits for each observation batch, every batch kept."""

    def __init__(self, num_actions: int, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.num_actions = num_actions
        self.logits = []

    def __call__(self, observations):
        logits = 2 * torch.randn(len(observations), self.num_actions, generator=self.generator)
        self.logits.append(logits)
        return logits


@pytest.mark.parametrize("greedy", [True, False])
def test_recorded_demonstrations_keep_the_policy_played(tmp_path, greedy):
    """The real recording path (ALE Breakout, record_demonstrations, write_demonstrations): every frame
    on disk carries the distribution its action was drawn from; one-hot on the recorded action when greedy."""
    from ilscaling.games.atari_demonstrations import record_demonstrations

    policy = _SeededLogits(4, seed=5)
    episodes = record_demonstrations("Breakout", policy, 120, seed=0, num_envs=1, max_episode_steps=60,
                                     greedy=greedy)
    write_demonstrations(episodes, tmp_path, heldout_fraction=0.5, seed=0, game="Breakout", greedy=greedy)
    splits = [Demonstrations.load(tmp_path / f"{name}.npz") for name in ("train", "heldout")]
    # One env plays its games back to back: the kept steps are the first ones the policy saw.
    played = torch.softmax(torch.cat(policy.logits)[: episodes.num_frames], dim=1).numpy()
    recorded = np.concatenate(episodes.policies)
    for split in splits:
        assert split.expert_probs.shape == (len(split), 4) and split.expert_probs.dtype == np.float32
        if greedy:
            np.testing.assert_array_equal(split.expert_probs, np.eye(4, dtype=np.float32)[split.actions])
        else:
            assert (split.expert_probs[np.arange(len(split)), split.actions] > 0).all()
    if greedy:
        np.testing.assert_array_equal(np.concatenate(episodes.actions), played.argmax(1))
    else:
        np.testing.assert_array_equal(recorded, played)
    assert sum(len(split) for split in splits) == len(recorded)


# --- held-out cross entropy and KL ---------------------------------------------------------------

def _small_model(num_actions=4, seed=0):
    from ilscaling.models.atari import WidthCNN

    torch.manual_seed(seed)
    return WidthCNN(2, num_actions).eval()


def _with_probs(demos, probs):
    return Demonstrations(**{**{k: getattr(demos, k) for k in ("frames", "actions", "rewards", "episode_starts",
                                                               "episode_ids", "episode_returns")},
                             "expert_probs": np.asarray(probs, np.float32)})


def _model_log_probs(model, demos):
    with torch.inference_mode():
        logits = model(torch.from_numpy(demos.stacked(np.arange(len(demos)))))
    logits = logits.double().numpy()
    return logits - logits.max(1, keepdims=True) - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                                                                                                         keepdims=True))


def test_kl_equals_the_cross_entropy_exactly_for_greedy_demonstrations(demos):
    from ilscaling.evaluate import heldout_loss

    greedy = _with_probs(demos, np.eye(4)[demos.actions])
    losses = heldout_loss(_small_model(), greedy, batch_size=37)  # several batches, one of them partial
    assert losses.kl == losses.cross_entropy > 0


def test_kl_matches_a_direct_computation_and_is_not_negative(demos):
    from ilscaling.evaluate import heldout_loss

    probs = demos.expert_probs.astype(np.float64)
    probs[::3, 1] = 0.0  # actions the expert never plays contribute nothing
    probs /= probs.sum(1, keepdims=True)
    expert = _with_probs(demos, probs)
    model = _small_model()
    log_model = _model_log_probs(model, expert)
    p = expert.expert_probs.astype(np.float64)
    p /= p.sum(1, keepdims=True)
    safe = np.where(p > 0, p, 1.0)
    direct_kl = np.mean(np.sum(np.where(p > 0, p * (np.log(safe) - log_model), 0.0), axis=1))
    direct_ce = np.mean(-log_model[np.arange(len(expert)), expert.actions])
    losses = heldout_loss(model, expert, batch_size=64)
    assert losses.kl == pytest.approx(direct_kl, rel=1e-6) and losses.kl > 0
    assert losses.cross_entropy == pytest.approx(direct_ce, rel=1e-6)


def test_kl_of_a_model_equal_to_the_expert_is_zero(demos):
    from ilscaling.evaluate import heldout_loss

    model = _small_model(seed=3)
    expert = _with_probs(demos, np.exp(_model_log_probs(model, demos)))
    losses = heldout_loss(model, expert)
    assert abs(losses.kl) < 1e-6 and losses.cross_entropy > 1.0  # about log(4): a random small model
    assert heldout_loss(_small_model(seed=4), expert).kl > 1e-4  # another model is measurably away
