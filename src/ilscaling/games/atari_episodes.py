"""Full-game Atari episodes as the players return them, and the per-env buffers that record them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episodes:
    """Full-game episodes. Per-step arrays are filled only when recording.

    frames[i] (T, 84, 84) uint8 holds the newest frame of each observation the agent acted on;
    the observation at step t is frames[t-3..t] with zeros before the episode's first step.
    """

    returns: np.ndarray  # (E,) float64, unclipped game score
    lengths: np.ndarray  # (E,) int64, agent steps
    truncated: np.ndarray  # (E,) bool, hit the episode step cap
    frames: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # (T,) uint8
    rewards: list[np.ndarray] = field(default_factory=list)  # (T,) float32, unclipped
    # (T, A) float32: the action distribution the agent played at each step (record_demonstrations
    # only): the softmax it sampled from, or the one-hot on the argmax when greedy.
    policies: list[np.ndarray] = field(default_factory=list)
    setup_s: float = 0.0  # creating and resetting the envs
    play_s: float = 0.0  # stepping: agent steps / play_s is the rollout speed

    def __len__(self) -> int:
        return len(self.returns)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    @classmethod
    def concatenate(cls, parts: list["Episodes"]) -> "Episodes":
        return cls(
            returns=np.concatenate([p.returns for p in parts]),
            lengths=np.concatenate([p.lengths for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            frames=[f for p in parts for f in p.frames],
            actions=[a for p in parts for a in p.actions],
            rewards=[r for p in parts for r in p.rewards],
            policies=[q for p in parts for q in p.policies],
            setup_s=sum(p.setup_s for p in parts),
            play_s=sum(p.play_s for p in parts),
        )


class EpisodeRecorder:
    """Per-env buffers of the running episode; closing one turns it into arrays."""

    def __init__(self, num_envs: int):
        self.frames = [[] for _ in range(num_envs)]
        self.actions = [[] for _ in range(num_envs)]
        self.rewards = [[] for _ in range(num_envs)]

    def add(self, envs: np.ndarray, observations, actions, rewards) -> None:
        # A Python loop over envs, but only when recording: copying each newest frame is
        # needed anyway, and N is small (tens).
        for env in envs:
            self.frames[env].append(observations[env, -1].copy())
            self.actions[env].append(actions[env])
            self.rewards[env].append(rewards[env])

    def add_rows(self, envs: np.ndarray, observations, actions, rewards) -> None:
        """Like add, with observations, actions and rewards given for `envs` only (row k: envs[k])."""
        for k, env in enumerate(envs):
            self.frames[env].append(observations[k, -1].copy())
            self.actions[env].append(actions[k])
            self.rewards[env].append(rewards[k])

    def close(self, env: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        episode = (
            np.stack(self.frames[env]),
            np.asarray(self.actions[env], dtype=np.uint8),
            np.asarray(self.rewards[env], dtype=np.float32),
        )
        self.frames[env], self.actions[env], self.rewards[env] = [], [], []
        return episode
