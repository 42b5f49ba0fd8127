"""NetHack ratios measured in one run: loader vs trainer, trainer vs the ceiling, and the rollout
forward vs the ceiling (full rollouts: benchmarks/rollouts.py).

    python benchmarks/nethack_throughput.py [--ttyrecs results/NetHack/expert] [--widths 16 64 256]
        [--variants reduced scaled]

Without --ttyrecs it first records a few bot games. Prints the machine and the ceiling (as
benchmarks/throughput.py), then per variant and width: parameters, training FLOPs per sample and
their ratio to 6N, the trainer's samples/s and FLOP/s against the ceiling (FLOPs as the step really
does them, FlopCounterMode: the message lookup and the bottom lines' first conv's input gradient
are not done), and the policy's forward at --rollout-games games x 1 step (a rollout's network
cost) against the same ceiling. The ceiling is measured beside each rate, in alternating trials.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ilscaling.data.nethack import build_database, make_split, sequence_batches, Split
from ilscaling.flops import measured_step_flops as step_flops
from ilscaling.games.nethack_bot import record_bot_games
from ilscaling.models.nethack import NetHackNet
from ilscaling.models.nethack_config import NetHackModelConfig
from machine import best_rates, describe, print_ceiling


def loader_frames_per_s(split: Split, batch_size: int, unroll: int, seconds: float) -> float:
    batches = itertools.chain.from_iterable(
        sequence_batches(split.db, split.dataset, split.train, batch_size=batch_size, seq_length=unroll,
                         play_frames=split.play_frames) for _ in itertools.count())
    frames, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        frames += int(next(batches)["valid"].sum())
    return frames / (time.perf_counter() - started)


def trainer_step(model: NetHackNet, batch: dict):
    """One optimiser step on `batch`, as train.py's NetHackTask takes it (the state carried on)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
    state = [model.initial_state(inputs["done"].shape[0])]

    def step():
        logits, carry = model(inputs["tty_chars"], inputs["tty_colors"], inputs["tty_cursor"],
                              inputs["prev_action"], inputs["done"], state[0])
        state[0] = tuple(c.detach() for c in carry)
        valid = inputs["valid"]
        loss = F.cross_entropy(logits[valid], inputs["action"][valid])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def rollout_step(model: NetHackNet, batch: dict, games: int):
    """The policy's forward for `games` games x 1 step (inference, the state carried on), the
    games' observations being the first `games` frames of the (B, T) `batch`."""
    inputs = [torch.from_numpy(batch[k]).flatten(0, 1)[:games, None] for k in (
        "tty_chars", "tty_colors", "tty_cursor", "prev_action", "done")]
    state = [model.initial_state(inputs[0].shape[0])]

    def step():
        with torch.inference_mode():
            _, state[0] = model(*inputs, state[0])

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ttyrecs", help="a recording (folder of */*.xlogfile); default: record --games bot games")
    parser.add_argument("--games", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--variants", nargs="+", default=["reduced", "scaled"])
    parser.add_argument("--core", default="lstm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--unroll", type=int, default=32)
    parser.add_argument("--rollout-games", type=int, default=16, help="games per rollout forward (<= batch x unroll)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2, help="trials per rate (the best counts)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads))

    work = Path(tempfile.mkdtemp(prefix="nethack-bench-"))
    root = Path(args.ttyrecs) if args.ttyrecs else work / "ttyrecs"
    if not args.ttyrecs:
        record_bot_games(root, games=args.games, processes=args.processes, max_episode_steps=2000, log=lambda *_: None)
    build_database(root, work / "nld.db", "bench")
    make_split(work / "nld.db", "bench", work / "split.json", heldout_fraction=0.1, seed=0,
               min_train_games=args.batch_size, log=lambda *_: None)
    split = Split.load(work / "split.json")
    print(f"data: {len(split.train)} train games, {split.train_frames} frames")

    ceiling = print_ceiling(torch.device("cpu"), args.threads, args.seconds, args.rounds)
    loader = loader_frames_per_s(split, args.batch_size, args.unroll, args.seconds)
    print(f"loader (batch {args.batch_size} x unroll {args.unroll}, 1 thread): {loader:,.0f} frames/s")
    train_batch = next(sequence_batches(split.db, split.dataset, split.train, batch_size=args.batch_size,
                                        seq_length=args.unroll, play_frames=split.play_frames))
    labels = int(train_batch["valid"].sum())
    for variant in args.variants:
        for width in args.widths:
            config = NetHackModelConfig(hidden=width, core=args.core, variant=variant, unroll=args.unroll)
            torch.manual_seed(0)
            model = NetHackNet(config)
            params, convention = model.num_params(), model.train_flops_per_sample()
            train, play = trainer_step(model, train_batch), rollout_step(model, train_batch, args.rollout_games)
            train_flops, play_flops = step_flops(train), step_flops(play)
            peak, train_rate, play_rate = best_rates([ceiling.step, train, play], args.seconds, args.rounds)
            peak *= ceiling.flops
            samples = train_rate * labels
            print(f"{variant} {args.core} h={width}: {params:,} params, {convention / 1e6:.2f}M training FLOPs/sample "
                  f"= {convention / (6 * params):.2f} x 6N (done: {train_flops / (args.batch_size * args.unroll) / 1e6:.2f}M)"
                  f"\n  trainer {samples:,.0f} samples/s, {train_rate * train_flops / 1e9:.1f} GFLOP/s = "
                  f"{train_rate * train_flops / peak:.1%} of {peak / 1e9:.0f} GFLOP/s ceiling; loader / trainer = "
                  f"{loader / samples:.1f}x"
                  f"\n  rollout forward ({args.rollout_games} games x 1 step): {play_rate * args.rollout_games:,.0f} "
                  f"steps/s, {play_rate * play_flops / 1e9:.1f} GFLOP/s = {play_rate * play_flops / peak:.1%} of the ceiling",
                  flush=True)


if __name__ == "__main__":
    main()
