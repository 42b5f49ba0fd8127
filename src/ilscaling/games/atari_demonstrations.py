"""Expert demonstrations on Atari: whole games played by an expert policy until they hold enough
frames, with the action distribution played at each step."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ilscaling.games.atari import Policy, make_vector_env
from ilscaling.games.atari_episodes import EpisodeRecorder, Episodes


def _choose_actions(
    policy: Policy, observations: np.ndarray, *, greedy: bool, generator: torch.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """One batched policy call -> int64 actions and the (N, A) float32 distribution they were
    drawn from: the softmax when sampling, the one-hot on the argmax when greedy (what was played).
    record_demonstrations: one shared generator."""
    with torch.inference_mode():
        logits = policy(torch.from_numpy(observations))
        if greedy:
            actions = logits.argmax(dim=1)
            played = torch.nn.functional.one_hot(actions, logits.shape[1]).float()
        else:
            played = torch.softmax(logits.float(), dim=1)
            actions = torch.multinomial(played, 1, generator=generator)[:, 0]
    return actions.numpy().astype(np.int64), played.numpy()


def record_demonstrations(
    game: str,
    policy: Policy,
    num_frames: int,
    *,
    seed: int,
    num_envs: int,
    max_episode_steps: int | None,
    num_threads: int = 0,
    greedy: bool = True,
    log: Callable[[str], None] | None = None,
) -> Episodes:
    """Expert play until complete episodes hold at least `num_frames` frames (`log`, when given,
    hears of each episode kept).

    greedy=True takes the argmax action (the paper); greedy=False samples from the policy
    (seeded by `seed`), for experts too weak to play well deterministically. Each kept step
    also keeps the distribution played (`policies`: softmax, or one-hot when greedy), against
    which a BC model's KL is measured.

    Envs auto-reset and keep playing, so every env contributes many episodes in the order they
    finish. Games still in progress when the target is reached are discarded, so every
    returned episode is a whole game from reset to game over (or to the step cap, flagged in
    `truncated`). The last finished episode may push the total past `num_frames`.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    env, observations, _ = make_vector_env(
        game, num_envs, seed=seed, num_threads=num_threads, max_episode_steps=max_episode_steps
    )
    all_envs = np.arange(num_envs)
    running_returns = np.zeros(num_envs)
    recorder = EpisodeRecorder(num_envs)
    running_policies = [[] for _ in range(num_envs)]  # the played distributions of each running game
    returns, truncated, frames, actions_kept, rewards_kept, policies_kept = [], [], [], [], [], []
    collected = 0
    generator = torch.Generator().manual_seed(seed)
    try:
        while collected < num_frames:
            actions, played = _choose_actions(policy, observations, greedy=greedy, generator=generator)
            next_observations, rewards, terminated, truncations, _ = env.step(actions)
            recorder.add(all_envs, observations, actions, rewards)
            for i in all_envs:
                running_policies[i].append(played[i])
            running_returns += rewards
            for i in np.flatnonzero(terminated | truncations):
                episode_frames, episode_actions, episode_rewards = recorder.close(i)
                frames.append(episode_frames)
                actions_kept.append(episode_actions)
                rewards_kept.append(episode_rewards)
                policies_kept.append(np.stack(running_policies[i]))
                running_policies[i] = []
                returns.append(running_returns[i])
                truncated.append(bool(truncations[i]))
                running_returns[i] = 0.0
                collected += len(episode_actions)
                if log is not None:
                    log(f"episode {len(returns)}: return {returns[-1]:g}, {len(episode_actions)} frames; "
                        f"{min(collected, num_frames)}/{num_frames} frames")
            observations = next_observations
    finally:
        env.close()
    return Episodes(
        returns=np.asarray(returns, dtype=np.float64),
        lengths=np.asarray([len(a) for a in actions_kept], dtype=np.int64),
        truncated=np.asarray(truncated, dtype=bool),
        frames=frames,
        actions=actions_kept,
        rewards=rewards_kept,
        policies=policies_kept,
    )
