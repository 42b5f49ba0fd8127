"""Atari environment, playing, recording and PPO against the real ale-py (no mocks)."""

import numpy as np
import pytest
import torch

from ilscaling.data.atari import Demonstrations
from ilscaling.games.atari import check_game, num_actions, play_episodes, record_demonstrations
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
    demos = Demonstrations.from_episodes(episodes.frames, episodes.actions, episodes.rewards, [0])
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
