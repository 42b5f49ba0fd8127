"""The NetHack bot in one process: its env steps/s next to the raw env's, and how well it plays.

    python benchmarks/nethack_bot.py [--games 20] [--max-episode-steps 5000] [--seconds 5] [--seed 0]

Prints the machine, then the raw environment's random-action steps/s (same observation keys as
the bot, and the terminal-only keys of evaluation), the bot's steps/s over its games and their
ratio, then the games' mean and median score, mean max depth and the action histogram. Games
are played in this process, one after another, not recorded, in the `challenge` environment
(seeded games need worker processes on the pinned clock; the bot plays at the same speed).
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np

from ilscaling.games import nethack as nh
from ilscaling.games.nethack_bot import ACTION_NAMES, BOT_OBSERVATION_KEYS, NetHackBot, play_game
from machine import describe


def random_steps_per_s(observation_keys, seconds: float, seed: int) -> float:
    """Steps/s of uniformly random actions (games that end are reset, not counted as steps)."""
    env = nh.make_env("challenge", max_episode_steps=10**9, observation_keys=observation_keys)
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.action_space.n, size=1 << 16).tolist()
    steps, stepping = 0, 0.0
    try:
        env.reset()
        while stepping < seconds:
            started = time.perf_counter()
            for _ in range(1000):
                _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
                steps += 1
                if terminated or truncated:
                    break
            stepping += time.perf_counter() - started
            if terminated or truncated:
                nh.finish_game(env)
                env.reset()
    finally:
        env.close()
    return steps / stepping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--games", type=int, default=20)
    parser.add_argument("--max-episode-steps", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5.0, help="for each raw-env measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(describe())

    raw_bot_keys = random_steps_per_s(BOT_OBSERVATION_KEYS, args.seconds, args.seed)
    raw_tty = random_steps_per_s(nh.OBSERVATION_KEYS, args.seconds, args.seed)
    print(f"raw env, random actions: {raw_bot_keys:,.0f} steps/s (bot's observation keys), "
          f"{raw_tty:,.0f} steps/s (terminal + blstats only)")

    env = nh.make_env("challenge", max_episode_steps=args.max_episode_steps, observation_keys=BOT_OBSERVATION_KEYS)
    bot = NetHackBot(np.random.default_rng(args.seed))
    counts = np.zeros(len(ACTION_NAMES), dtype=np.int64)
    records = []
    started = time.perf_counter()
    try:
        for game in range(args.games):
            records.append(play_game(env, bot, counts))
            r = records[-1]
            print(f"  game {game + 1}/{args.games}: score {r['score']}, depth {r['max_depth']}, "
                  f"{r['turns']} turns, {r['steps']} steps{' (step limit)' if r['truncated'] else ''}")
    finally:
        env.close()
    seconds = time.perf_counter() - started
    steps = sum(r["steps"] for r in records)
    bot_rate = steps / seconds
    print(f"bot: {bot_rate:,.0f} env steps/s in one process (incl. resets and quitting cut games); "
          f"{bot_rate / raw_bot_keys:.3f} of the raw env with the same keys")

    scores = [r["score"] for r in records]
    depths = [r["max_depth"] for r in records]
    print(f"{args.games} games of up to {args.max_episode_steps} steps: mean score {np.mean(scores):,.0f}, "
          f"median {np.median(scores):,.0f}, mean max depth {np.mean(depths):.2f}, "
          f"depths {dict(sorted(collections.Counter(depths).items()))}, "
          f"{sum(r['truncated'] for r in records)} cut by the step limit")
    total = counts.sum()
    top = np.argsort(-counts)[:8]
    print("actions: " + ", ".join(f"{ACTION_NAMES[i]} {counts[i] / total:.1%}" for i in top if counts[i]))


if __name__ == "__main__":
    main()
