"""PPO expert for Atari in one file, following CleanRL's `ppo_atari` (Huang et al. 2022).

Clipped surrogate objective, GAE, orthogonal init, Adam with a linearly annealed learning rate,
advantage normalisation, clipped value loss, global gradient clipping.

Training-only tricks of the paper's SB3 experts, done here in the learner so the environment
itself always plays full, unclipped games (see `ilscaling.games.atari`):
  * episodic life: a life loss ends the learning episode (no bootstrapping across it) while the
    game goes on; life losses are read from `info["lives"]`;
  * reward clipping: the learner trains on sign(reward).
The learning curve records the unclipped score of every full game (game over or step cap).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ilscaling.games.atari import Policy, check_game, make_vector_env, num_actions
from ilscaling.games.atari_play import play_episodes
from ilscaling.models.nature_cnn import NatureCNNActorCritic

# Evaluation games use seeds far from the training envs' seeds (seed .. seed + num_envs - 1).
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class PPOArgs:
    total_steps: int = 10_000_000
    """Agent steps summed over all envs (one step = 4 emulator frames)."""
    num_envs: int = 8
    """Parallel games in the vector env."""
    num_steps: int = 128
    """Steps per env per rollout; a batch holds num_envs * num_steps transitions."""
    lr: float = 2.5e-4
    """Adam learning rate at the start; annealed linearly to 0 when anneal_lr."""
    anneal_lr: bool = True
    """Linearly decay the learning rate to 0 over training."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 4
    """Minibatches per epoch over the rollout batch."""
    update_epochs: int = 4
    """Passes over each rollout batch."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    clip_coef: float = 0.1
    """PPO ratio clipping range (also used for the clipped value loss)."""
    clip_vloss: bool = True
    """Clip the value loss around the old value estimates."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clipping."""
    seed: int = 0
    """Seeds python, numpy, torch and the env resets."""
    num_threads: int = 0
    """Torch intra-op threads and ALE worker threads; 0 keeps the libraries' defaults."""
    eval_episodes: int = 8
    """Full games of greedy play used to measure the trained expert."""
    max_episode_steps: int = 27_000
    """Agent-step cap of one game in training and evaluation (27,000 = ALE's 108k frames)."""
    log_every_updates: int = 10
    """Print a progress line every this many updates (0: never)."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)


def seed_everything(seed: int) -> None:
    """The one place that seeds the global generators (env resets get `seed` explicitly)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _FullGameTracker:
    """Unclipped score of each env's running game; emits learning-curve points at game ends."""

    def __init__(self, num_envs: int, start_time: float):
        self.running = np.zeros(num_envs)
        self.start_time = start_time
        self.curve: list[dict] = []

    def update(self, rewards: np.ndarray, game_over: np.ndarray, step: int) -> None:
        self.running += rewards
        for env in np.flatnonzero(game_over):
            self.curve.append(
                {
                    "step": step,
                    "episode_return": float(self.running[env]),
                    "wall_s": time.perf_counter() - self.start_time,
                }
            )
            self.running[env] = 0.0


def _compute_gae(rewards, values, dones, next_value, next_done, gamma, gae_lambda):
    """Generalised advantage estimates; dones[t] marks obs[t] as the first of a new episode."""
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            next_nonterminal, next_values = 1.0 - next_done, next_value
        else:
            next_nonterminal, next_values = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_values * next_nonterminal - values[t]
        last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def _ppo_update(model, optimizer, batch: dict, args: PPOArgs) -> dict:
    """update_epochs passes of clipped-objective minibatch SGD over one rollout batch."""
    batch_size = len(batch["actions"])
    clip_fractions, stats = [], {}
    for _ in range(args.update_epochs):
        order = torch.randperm(batch_size)
        for start in range(0, batch_size, args.minibatch_size):
            index = order[start : start + args.minibatch_size]
            logits, new_values = model(batch["obs"][index])
            distribution = torch.distributions.Categorical(logits=logits)
            new_logprobs = distribution.log_prob(batch["actions"][index])
            log_ratio = new_logprobs - batch["logprobs"][index]
            ratio = log_ratio.exp()

            advantages = batch["advantages"][index]
            if args.norm_adv:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            policy_loss = torch.max(
                -advantages * ratio,
                -advantages * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef),
            ).mean()

            returns, old_values = batch["returns"][index], batch["values"][index]
            if args.clip_vloss:
                clipped_values = old_values + (new_values - old_values).clamp(-args.clip_coef, args.clip_coef)
                value_loss = 0.5 * torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2).mean()
            else:
                value_loss = 0.5 * ((new_values - returns) ** 2).mean()

            entropy = distribution.entropy().mean()
            loss = policy_loss - args.ent_coef * entropy + args.vf_coef * value_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()

            with torch.no_grad():
                clip_fractions.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                stats = {
                    "policy_loss": policy_loss.item(),
                    "value_loss": value_loss.item(),
                    "entropy": entropy.item(),
                    "approx_kl": ((ratio - 1) - log_ratio).mean().item(),
                }
    stats["clip_fraction"] = float(np.mean(clip_fractions))
    return stats


def train_expert(game: str, args: PPOArgs, log: Callable[[str], None] = print) -> dict:
    """Train a PPO expert on `game`, then measure its greedy full-game score.

    Returns {"state_dict", "config" (args + game + num_actions), "learning_curve" (one
    {step, episode_return, wall_s} per finished full game, unclipped), "eval_returns",
    "eval_mean_return", "steps" (agent steps trained), "wall_s" (training + evaluation),
    "steps_per_s" (agent steps per second of the training loop alone)}.
    """
    check_game(game)
    if args.batch_size % args.num_minibatches:
        raise ValueError(f"num_envs * num_steps ({args.batch_size}) must divide into {args.num_minibatches} minibatches")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    seed_everything(args.seed)
    actions_n = num_actions(game)
    config = {**asdict(args), "game": game, "num_actions": actions_n}

    model = NatureCNNActorCritic(actions_n)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-5)
    env, next_obs, info = make_vector_env(
        game, args.num_envs, seed=args.seed, num_threads=args.num_threads,
        max_episode_steps=args.max_episode_steps,
    )
    S, N = args.num_steps, args.num_envs
    obs_buffer = torch.zeros((S, N) + next_obs.shape[1:], dtype=torch.uint8)
    actions = torch.zeros((S, N), dtype=torch.int64)
    logprobs, rewards, dones, values = (torch.zeros((S, N)) for _ in range(4))

    start = time.perf_counter()
    tracker = _FullGameTracker(N, start)
    lives = info["lives"].copy()
    next_done = torch.zeros(N)
    global_step = 0
    try:
        for update in range(1, args.num_updates + 1):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = args.lr * (1.0 - (update - 1.0) / args.num_updates)

            for step in range(S):
                global_step += N
                obs_tensor = torch.from_numpy(next_obs)
                obs_buffer[step] = obs_tensor
                dones[step] = next_done
                with torch.inference_mode():
                    logits, value = model(obs_tensor)
                    distribution = torch.distributions.Categorical(logits=logits)
                    action = distribution.sample()
                    logprobs[step] = distribution.log_prob(action)
                values[step] = value
                actions[step] = action

                next_obs, reward, terminated, truncated, info = env.step(action.numpy())
                game_over = terminated | truncated
                # Episodic life for learning only: a lost life ends the learning episode.
                # After a game over `lives` already belongs to the next game, so compare only
                # within a game.
                life_lost = info["lives"] < lives
                lives = info["lives"].copy()
                next_done = torch.from_numpy((game_over | life_lost).astype(np.float32))
                rewards[step] = torch.from_numpy(np.sign(reward).astype(np.float32))
                tracker.update(reward, game_over, global_step)

            with torch.inference_mode():
                next_value = model.value(torch.from_numpy(next_obs))
            advantages, returns = _compute_gae(
                rewards, values, dones, next_value, next_done, args.gamma, args.gae_lambda
            )
            batch = {
                "obs": obs_buffer.reshape((-1,) + obs_buffer.shape[2:]),
                "actions": actions.reshape(-1),
                "logprobs": logprobs.reshape(-1),
                "advantages": advantages.reshape(-1),
                "returns": returns.reshape(-1),
                "values": values.reshape(-1),
            }
            stats = _ppo_update(model, optimizer, batch, args)

            if args.log_every_updates and (update % args.log_every_updates == 0 or update == args.num_updates):
                recent = [p["episode_return"] for p in tracker.curve[-20:]]
                elapsed = time.perf_counter() - start
                log(
                    f"[ppo {game}] update {update}/{args.num_updates} step {global_step} "
                    f"{global_step / elapsed:.0f} steps/s games {len(tracker.curve)} "
                    f"return(last {len(recent)}) {np.mean(recent) if recent else float('nan'):.1f} "
                    f"entropy {stats['entropy']:.3f} kl {stats['approx_kl']:.4f} "
                    f"clipfrac {stats['clip_fraction']:.3f}"
                )
    finally:
        env.close()
    train_wall = time.perf_counter() - start

    checkpoint = {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "config": config,
    }
    evaluation = play_episodes(
        game, load_expert_policy(checkpoint), args.eval_episodes,
        seed=args.seed + EVAL_SEED_OFFSET, greedy=True,
        max_episode_steps=args.max_episode_steps, num_threads=args.num_threads,
    )
    log(
        f"[ppo {game}] greedy eval over {len(evaluation)} games: mean {evaluation.returns.mean():.1f} "
        f"returns {evaluation.returns.tolist()} lengths {evaluation.lengths.tolist()} "
        f"truncated {int(evaluation.truncated.sum())}"
    )
    return {
        **checkpoint,
        "learning_curve": tracker.curve,
        "eval_returns": evaluation.returns.tolist(),
        "eval_lengths": evaluation.lengths.tolist(),
        "eval_truncated": evaluation.truncated.tolist(),
        "eval_mean_return": float(evaluation.returns.mean()),
        "steps": global_step,
        "wall_s": time.perf_counter() - start,
        "steps_per_s": global_step / train_wall,
    }


def load_expert_policy(checkpoint: dict) -> Policy:
    """The expert's logits function, uint8 (N, 4, 84, 84) -> (N, A), for play_episodes."""
    model = NatureCNNActorCritic(checkpoint["config"]["num_actions"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model.logits
