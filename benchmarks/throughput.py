"""Ratios measured in one run: trainer vs matmul peak, loader vs trainer, rollouts vs raw env.

    python benchmarks/throughput.py [--widths 1 8 34] [--threads 1] [--seconds 5]

Prints the machine, then one line per measurement. Absolute speeds on shared machines are
noisy; the ratios, measured back to back, are what to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ilscaling.data.atari import Demonstrations
from ilscaling.games.atari import make_vector_env, num_actions, play_episodes
from ilscaling.models.atari import WidthCNN
from machine import describe, matmul_peak, timed


def synthetic_demos(frames: int, actions: int) -> Demonstrations:
    rng = np.random.default_rng(0)
    lengths = [frames // 10] * 10
    return Demonstrations.from_episodes(
        [rng.integers(0, 256, (n, 84, 84), dtype=np.uint8) for n in lengths],
        [rng.integers(0, actions, n).astype(np.uint8) for n in lengths],
        [np.zeros(n, np.float32) for n in lengths], range(10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 8, 16, 34])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--game", default="Qbert")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    actions = num_actions(args.game)
    print(describe(args.threads))
    peak = matmul_peak(args.seconds)
    print(f"fp32 matmul peak (2048^2): {peak / 1e9:.1f} GFLOP/s")

    demos = synthetic_demos(20_000, actions)
    rng = np.random.default_rng(0)
    loader_rate = timed(lambda: demos.stacked(rng.integers(0, len(demos), args.batch_size)), args.seconds)
    loader_fps = loader_rate * args.batch_size
    print(f"loader: {loader_fps:,.0f} frames/s (stacked 4x84x84 batches of {args.batch_size})")

    for width in args.widths:
        model = WidthCNN(width, actions)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        frames = torch.from_numpy(demos.stacked(np.arange(args.batch_size)))
        labels = torch.from_numpy(demos.actions[: args.batch_size].astype(np.int64))

        def step():
            loss = F.cross_entropy(model(frames), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        samples = timed(step, args.seconds) * args.batch_size
        achieved = samples * model.train_flops_per_sample()
        print(f"trainer w={width:3d} ({model.num_params():>9,} params): {samples:8,.0f} samples/s, "
              f"{achieved / 1e9:6.1f} GFLOP/s = {achieved / peak:5.1%} of matmul peak; "
              f"loader/trainer = {loader_fps / samples:5.1f}")

    envs = 16
    env, _, _ = make_vector_env(args.game, envs, seed=0, num_threads=args.threads)
    noop = np.zeros(envs, dtype=np.int64)
    raw = timed(lambda: env.step(noop), args.seconds) * envs
    env.close()
    model = WidthCNN(8, actions).eval()
    started = time.perf_counter()
    played = play_episodes(args.game, model, envs, seed=0, greedy=False, max_episode_steps=2000,
                           num_threads=args.threads)
    policy = played.lengths.sum() / (time.perf_counter() - started)
    print(f"rollouts ({envs} envs): raw env {raw:,.0f} steps/s, sampled w=8 policy {policy:,.0f} steps/s "
          f"= {policy / raw:.0%} of raw (first-game-only envs idle at the end, counted as lost time)")


if __name__ == "__main__":
    main()
