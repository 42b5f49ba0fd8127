"""Atari environment, playing, recording and PPO against the real ale-py (no mocks)."""

import numpy as np
import pytest
import torch

from ilscaling.data.atari import Demonstrations
from ilscaling.games.atari import check_game, num_actions
from ilscaling.games.atari_demonstrations import record_demonstrations
from ilscaling.games.atari_play import play_episodes
from ilscaling.games.sampling import ActionSampler
from ilscaling.ppo import PPOArgs, load_expert_policy, train_expert


class RandomLogitsPolicy:
    """Seeded random logits; keeps a copy of every observation batch it is shown."""

    def __init__(self, num_actions: int, seed: int = 0):
        self.num_actions = num_actions
        self.generator = torch.Generator().manual_seed(seed)
        self.seen: list[np.ndarray] = []
        self.logits: list[np.ndarray] = []

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        assert observations.dtype == torch.uint8 and observations.shape[1:] == (4, 84, 84)
        self.seen.append(observations.numpy().copy())
        logits = torch.randn(len(observations), self.num_actions, generator=self.generator)
        self.logits.append(logits.numpy().copy())
        return logits


def test_check_game_maps_camel_case_names_to_ale_ids():
    assert check_game("Breakout") == "breakout"
    assert check_game("SpaceInvaders") == "space_invaders"
    assert check_game("BattleZone") == "battle_zone"
    assert check_game("NameThisGame") == "name_this_game"


def test_check_game_rejects_unknown_names_with_suggestions():
    with pytest.raises(ValueError, match="Breakoutt") as error:
        check_game("Breakoutt")
    assert "Breakout" in str(error.value).split("did you mean")[1]
    with pytest.raises(ValueError, match="breakout"):
        check_game("breakout")  # ALE ids are not accepted: the config speaks CamelCase


def test_num_actions_is_the_minimal_action_set():
    assert num_actions("Breakout") == 4
    assert num_actions("SpaceInvaders") == 6


def test_play_episodes_returns_one_first_game_per_episode():
    episodes = play_episodes(
        "Breakout", RandomLogitsPolicy(4), 3, seed=0, greedy=False, max_episode_steps=60, max_envs=2
    )
    assert len(episodes) == 3 and episodes.returns.dtype == np.float64
    assert np.all(episodes.lengths >= 1) and np.all(episodes.lengths <= 60)
    assert episodes.frames == []  # not recorded


class FixedPolicy:
    """A policy of the observation alone (no hidden state): the same logits for the same frames."""

    def __init__(self, num_actions: int):
        self.weight = torch.randn(4 * 84 * 84, num_actions, generator=torch.Generator().manual_seed(5)) * 0.01

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        return observations.flatten(1).float() @ self.weight


def test_quota_games_do_not_depend_on_grouping_and_are_deterministic():
    policy = FixedPolicy(4)
    kwargs = dict(seed=7, greedy=False, max_episode_steps=80, envs=2)
    one = play_episodes("Breakout", policy, 5, groups=1, **kwargs)
    two = play_episodes("Breakout", policy, 5, groups=2, **kwargs)
    again = play_episodes("Breakout", policy, 5, groups=2, **kwargs)
    # 5 games on 2 envs: quotas 3 and 2 fixed up front, whatever the games' lengths.
    assert len(one) == 5 and one.play_s > 0 and one.setup_s > 0
    for other in (two, again):
        np.testing.assert_array_equal(one.returns, other.returns)
        np.testing.assert_array_equal(one.lengths, other.lengths)
    # Env i is seeded seed + i: its first game is the one a single env with that seed plays first.
    alone = play_episodes("Breakout", policy, 1, seed=8, greedy=False, max_episode_steps=80)
    assert one.lengths[3] == alone.lengths[0] and one.returns[3] == alone.returns[0]


def test_action_sampler_streams_are_per_slot_and_follow_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(6, 1)
    together = ActionSampler(6, seed=3, greedy=False)
    apart = ActionSampler(6, seed=3, greedy=False)
    slots = np.arange(6)
    for _ in range(40):  # the same numbers whichever slots share a call
        both = together(logits, slots)
        np.testing.assert_array_equal(both[:2], apart(logits[:2], slots[:2]))
        np.testing.assert_array_equal(both[2:], apart(logits[2:], slots[2:]))
    sampler = ActionSampler(1, seed=0, greedy=False)
    draws = np.concatenate([sampler(logits[:1], np.array([0])) for _ in range(4000)])
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(frequencies, torch.softmax(logits[0], 0).numpy(), atol=0.03)
    assert ActionSampler(2, seed=0, greedy=True)(logits[:2], np.arange(2)).tolist() == [2, 2]


def test_recorded_newest_frames_rebuild_the_stacks_the_policy_saw():
    policy = RandomLogitsPolicy(4, seed=1)
    # A random Breakout game lasts ~150-300 steps: long enough to cross life losses.
    episodes = play_episodes(
        "Breakout", policy, 1, seed=3, greedy=False, max_episode_steps=400, record=True
    )
    length = int(episodes.lengths[0])
    seen = np.concatenate(policy.seen)  # one env: one observation per call
    assert seen.shape == (length, 4, 84, 84)
    assert episodes.frames[0].shape == (length, 84, 84) and episodes.actions[0].shape == (length,)
    assert episodes.rewards[0].sum() == episodes.returns[0]
    # The stack at reset holds zeros in its older slots; the loader must rebuild exactly that.
    assert not seen[0, :3].any() and seen[0, 3].any()
    one_hot = [np.eye(4, dtype=np.float32)[a] for a in episodes.actions]  # play_episodes keeps no policy
    demos = Demonstrations.from_episodes(episodes.frames, episodes.actions, episodes.rewards, [0], one_hot)
    np.testing.assert_array_equal(demos.stacked(np.arange(length)), seen)


def test_record_demonstrations_keeps_only_whole_greedy_games():
    policy = RandomLogitsPolicy(4, seed=2)
    episodes = record_demonstrations(
        "Breakout", policy, 150, seed=0, num_envs=1, max_episode_steps=100
    )
    assert episodes.num_frames >= 150
    for frames, actions, rewards, ret in zip(
        episodes.frames, episodes.actions, episodes.rewards, episodes.returns
    ):
        assert len(frames) == len(actions) == len(rewards)
        assert rewards.sum() == ret
    # One env plays its games back to back: the kept actions are the argmax of the logits,
    # in order, and every kept game starts from a reset (older stack slots zero).
    greedy = np.concatenate(policy.logits).argmax(axis=1)
    np.testing.assert_array_equal(np.concatenate(episodes.actions), greedy[: episodes.num_frames])
    seen = np.concatenate(policy.seen)
    starts = np.concatenate([[0], np.cumsum(episodes.lengths)[:-1]])
    assert not seen[starts, :3].any()


def test_tiny_ppo_run_returns_documented_keys():
    args = PPOArgs(
        total_steps=64, num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1,
        seed=0, num_threads=1, eval_episodes=2, max_episode_steps=50, log_every_updates=0,
    )
    result = train_expert("Breakout", args, log=lambda line: None)
    assert set(result) >= {
        "state_dict", "config", "learning_curve", "eval_returns", "eval_mean_return",
        "steps", "wall_s", "steps_per_s",
    }
    assert result["steps"] == 64
    assert result["config"]["game"] == "Breakout" and result["config"]["num_actions"] == 4
    assert len(result["eval_returns"]) == 2
    for point in result["learning_curve"]:
        assert set(point) == {"step", "episode_return", "wall_s"}
    policy = load_expert_policy(result)
    with torch.inference_mode():
        logits = policy(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (3, 4)


def _atari_checkpoint(tmp_path, demos):
    from ilscaling.flops import budget_label
    from ilscaling.models.atari import WidthCNN
    from ilscaling.train import BCArgs, train_bc

    demos.save(tmp_path / "train.npz")
    budget = WidthCNN(2, 4).train_flops_per_sample() * 16 * 2
    args = BCArgs(game="Breakout", width=2, num_actions=4, batch_size=16, budgets=[budget], device="cpu")
    train_bc(args, tmp_path / "train.npz", tmp_path / "run", tmp_path / "work", log=lambda *_: None)
    return tmp_path / "run" / f"c{budget_label(budget)}.pt", tmp_path / "train.npz"


def test_evaluation_records_device_and_rollout_speed(tmp_path, demos):
    from ilscaling.evaluate import EvalArgs, evaluate_checkpoint

    checkpoint, heldout = _atari_checkpoint(tmp_path, demos)
    logged = []
    result = evaluate_checkpoint(checkpoint, heldout, tmp_path / "eval.json", EvalArgs(episodes=3, seed=0,
                                 max_episode_steps=30, device="cpu"), log=logged.append)
    # Progress as it goes: the loss, then each game, then the summary (was: one line at the end).
    assert logged[0].startswith("held-out loss") and [line.split(":")[0] for line in logged[1:4]] == [
        "game 1/3", "game 2/3", "game 3/3"] and len(logged) == 5
    assert result["device"] == "cpu" and result["device_name"] == "cpu" and result["autocast"] is None
    assert result["rollout_steps_per_s"] > 0 and result["rollout_play_steps_per_s"] >= result["rollout_steps_per_s"]
    assert len(result["episode_returns"]) == 3 and result["heldout_loss_precision"] == "float32 logits, float64 log-softmax"
    assert np.isfinite(result["kl"]) and result["kl"] > 0  # KL to the demos' (random) expert distribution
    auto = evaluate_checkpoint(checkpoint, heldout, tmp_path / "auto.json", EvalArgs(episodes=3, seed=0,
                               max_episode_steps=30), log=lambda *_: None)
    assert auto["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    if auto["device"] == "cpu":  # same device, same seed: the same games and loss
        assert auto["episode_returns"] == result["episode_returns"] and auto["loss"] == result["loss"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluation_on_cuda_without_cuda_fails_clearly(tmp_path, demos):
    from ilscaling.evaluate import EvalArgs, evaluate_checkpoint

    checkpoint, heldout = _atari_checkpoint(tmp_path, demos)
    with pytest.raises(ValueError, match="CUDA is not available"):
        evaluate_checkpoint(checkpoint, heldout, tmp_path / "eval.json", EvalArgs(episodes=1, seed=0,
                            max_episode_steps=10, device="cuda"), log=lambda *_: None)
    assert not (tmp_path / "eval.json").exists()


def test_evaluation_names_what_it_was_given_wrongly(tmp_path, demos):
    """The expert's checkpoint, another game's demonstrations, a split file for an Atari model: each
    is an error naming the file and the cause, and no evaluation is written."""
    import dataclasses

    from ilscaling.evaluate import EvalArgs, evaluate_checkpoint
    from ilscaling.io import DataFileError, save_torch

    checkpoint, heldout = _atari_checkpoint(tmp_path, demos)

    def evaluate(checkpoint_path, heldout_path):
        evaluate_checkpoint(checkpoint_path, heldout_path, tmp_path / "eval.json", EvalArgs(episodes=1, seed=0,
                            max_episode_steps=10, device="cpu"), log=lambda *_: None)

    args = PPOArgs(total_steps=32, num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1, seed=0,
                   num_threads=1, eval_episodes=1, max_episode_steps=20, log_every_updates=0)
    save_torch(train_expert("Breakout", args, log=lambda line: None), tmp_path / "expert.pt")
    with pytest.raises(DataFileError, match=r"expert\.pt is not a BC checkpoint .* the PPO expert's"):
        evaluate(tmp_path / "expert.pt", heldout)   # was: KeyError 'width'
    shifted = np.zeros((len(demos), 13), np.float32)
    shifted[np.arange(len(demos)), demos.actions + 9] = 1.0
    dataclasses.replace(demos, actions=demos.actions + 9, expert_probs=shifted).save(tmp_path / "qbert.npz")  # 9..12
    with pytest.raises(DataFileError, match=r"qbert\.npz has actions up to 12 and an expert policy over 13 actions, but the model .* has 4"):
        evaluate(checkpoint, tmp_path / "qbert.npz")   # was: IndexError Target 13 is out of bounds
    (tmp_path / "split.json").write_text("{}")
    with pytest.raises(DataFileError, match=r"Breakout checkpoint, so the held-out data must be its heldout\.npz"):
        evaluate(checkpoint, tmp_path / "split.json")
    assert not (tmp_path / "eval.json").exists()
