"""Ratios measured in one run: the Atari trainer vs the machine's ceiling, the loader vs the
trainer, and batched training (train_batched.py) vs one model per process.

    python benchmarks/throughput.py [--widths 1 8 34] [--threads 1] [--seconds 1] [--rounds 3]

Prints the machine, then one line per measurement. On a shared machine a rate can halve from one
second to the next, so every figure is the best of `--rounds` short trials, and each ratio's two
rates are measured in alternating trials (the ceiling and the trainer, the batch and the solo model).

The ceiling is the fastest of several kernels in the trainer's dtype (machine.ceiling_kernels:
matmuls of several sizes and large channels-last convolutions; on this AVX-512 CPU oneDNN's
convolutions beat the BLAS matmul by 1.5-2x), printed beside the theoretical FLOP/cycle x clock.
The trainer's FLOPs are those its step really does (FlopCounterMode: the first convolution
computes no input gradient), not the 3 x forward of the budgets' convention, so a ratio cannot
pass 100% unless the ceiling's kernel is slower than the trainer's. Rollouts: benchmarks/rollouts.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ilscaling.data.atari import Demonstrations
from ilscaling.flops import measured_step_flops as step_flops
from ilscaling.games.atari import num_actions
from ilscaling.models.atari import WidthCNN
from ilscaling.train import autocast, resolve_device
from ilscaling.train_batched import StackedCNN, member_losses, vectorized
from machine import best_rates, describe, print_ceiling

CPU_TARGET = 0.60       # issue 7: the CPU trainer at >= 60% of the fp32 peak for widths >= 34
GPU_TARGET = 0.35       # issue 7: >= 35% of the bf16 peak for models of 1M parameters and more
BATCHED_TARGET = 10.0   # issue 7: batched >= 10x the samples/s of one model per process (GPU, widths <= 34)


def synthetic_demos(frames: int, actions: int) -> Demonstrations:
    rng = np.random.default_rng(0)
    lengths = [frames // 10] * 10
    return Demonstrations.from_episodes(
        [rng.integers(0, 256, (n, 84, 84), dtype=np.uint8) for n in lengths],
        [rng.integers(0, actions, n).astype(np.uint8) for n in lengths],
        [np.zeros(n, np.float32) for n in lengths], range(10),
        [np.full((n, actions), 1 / actions, np.float32) for n in lengths])


def solo_step(width: int, actions: int, frames: torch.Tensor, labels: torch.Tensor, device, bf16: bool,
              channels_last: bool, compile: bool = False):
    """One optimiser step of one model, as train.py takes it (the batch already on the device)."""
    torch.manual_seed(0)
    model = WidthCNN(width, actions, channels_last=channels_last).to(device)
    forward = torch.compile(model) if compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        with autocast(device, bf16):
            loss = F.cross_entropy(forward(frames).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, step


def batched_step(width: int, actions: int, members: int, frames, labels, device, bf16: bool, vmap: bool,
                 channels_last: bool):
    """One optimiser step of `members` stacked models (train_batched.py's StackedCNN and loss)."""
    torch.manual_seed(0)
    stack = StackedCNN([WidthCNN(width, actions, channels_last=channels_last) for _ in range(members)], vmap,
                       device)
    optimizer = torch.optim.Adam(stack.params.values(), lr=1e-3)
    frames = frames.expand(members, *frames.shape).contiguous()
    labels = labels.expand(members, *labels.shape).contiguous()
    valid = torch.ones_like(labels, dtype=torch.bool)

    def step():
        with autocast(device, bf16):
            loss = member_losses(stack.logits(frames), labels, valid).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 4, 8, 16, 34, 48, 66])
    parser.add_argument("--batched-widths", type=int, nargs="+", default=[1, 4, 8, 16, 34])
    parser.add_argument("--members", type=int, default=8, help="models per batched group")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=1.0, help="per trial")
    parser.add_argument("--rounds", type=int, default=3, help="trials per rate (the best counts)")
    parser.add_argument("--game", default="Qbert")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (with its compile time)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    actions = num_actions(args.game)
    print(describe(args.threads))
    ceiling = print_ceiling(device, args.threads, args.seconds, args.rounds)

    demos = synthetic_demos(20_000, actions)
    rng = np.random.default_rng(0)
    loader_fps = best_rates([lambda: demos.stacked(rng.integers(0, len(demos), args.batch_size))],
                           args.seconds, args.rounds)[0] * args.batch_size
    print(f"loader: {loader_fps:,.0f} frames/s (stacked 4x84x84 uint8 batches of {args.batch_size}, one thread)")
    frames = torch.from_numpy(demos.stacked(np.arange(args.batch_size))).to(device)
    labels = torch.from_numpy(demos.actions[: args.batch_size].astype(np.int64)).to(device)
    target = GPU_TARGET if on_gpu else CPU_TARGET

    print(f"\ntrainer (batch {args.batch_size}; target >= {target:.0%} of the ceiling for widths >= 34"
          f"{' (1M+ parameters on a GPU)' if on_gpu else ''}):")
    for width in args.widths:
        variants = {"NCHW": dict(channels_last=False), "channels-last": dict(channels_last=True)}
        for name, options in variants.items():
            model, step = solo_step(width, actions, frames, labels, device, True, **options)
            done = step_flops(step)  # per step: 3x forward less the first conv's input gradient
            peak, rate = best_rates([ceiling.step, step], args.seconds, args.rounds)
            peak *= ceiling.flops
            samples = rate * args.batch_size
            achieved = rate * done
            print(f"  w={width:3d} ({model.num_params():>9,} params) {name:13s}: {samples:8,.0f} samples/s, "
                  f"{achieved / 1e9:6.1f} GFLOP/s = {achieved / peak:5.1%} of {peak / 1e9:.0f} GFLOP/s ceiling "
                  f"(done/convention {done / args.batch_size / model.train_flops_per_sample():.2f}); "
                  f"loader/trainer = {loader_fps / samples:5.1f}")
        if args.compile:
            started = time.perf_counter()
            model, step = solo_step(width, actions, frames, labels, device, True, channels_last=True, compile=True)
            step()
            compile_s = time.perf_counter() - started
            eager = solo_step(width, actions, frames, labels, device, True, channels_last=True)[1]
            done = step_flops(eager)
            peak, rate, eager_rate = best_rates([ceiling.step, step, eager], args.seconds, args.rounds)
            peak *= ceiling.flops
            achieved = rate * done
            print(f"  w={width:3d} channels-last + torch.compile: {rate * args.batch_size:8,.0f} samples/s "
                  f"= {achieved / peak:5.1%} of the ceiling, {rate / eager_rate:.2f}x eager, compiled in {compile_s:.0f} s")

    print(f"\nbatched training, {args.members} models per process vs one model per process (aggregate "
          f"samples/s; the issue's target >= {BATCHED_TARGET:.0f}x is for a GPU, widths <= 34):")
    for width in args.batched_widths:
        _, solo = solo_step(width, actions, frames, labels, device, True, channels_last=True)
        modes = {"loop": False, "vmap": True}
        steps = [solo] + [batched_step(width, actions, args.members, frames, labels, device, True, vmap, True)
                          for vmap in modes.values()]
        solo_rate, *rates = best_rates(steps, args.seconds, args.rounds)
        auto = "vmap" if vectorized("auto", device) else "loop"
        print(f"  w={width:3d}: solo {solo_rate * args.batch_size:8,.0f} samples/s; " + "; ".join(
            f"{mode}{' (auto)' if mode == auto else ''} {rate * args.batch_size * args.members:8,.0f} = "
            f"{rate * args.members / solo_rate:5.2f}x" for mode, rate in zip(modes, rates)))


if __name__ == "__main__":
    main()
