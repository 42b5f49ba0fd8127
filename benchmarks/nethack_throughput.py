"""NetHack ratios measured in one run: loader vs trainer, trainer vs matmul peak (rollouts: benchmarks/rollouts.py).

    python benchmarks/nethack_throughput.py [--ttyrecs results/nethack/bot] [--widths 16 64 256]

Without --ttyrecs it first records a few bot games. Prints the machine, then one line per
measurement; the ratios, measured back to back, are what to compare on a shared machine.
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
from ilscaling.games.nethack_bot import record_bot_games
from ilscaling.models.nethack import NetHackModelConfig, NetHackNet
from machine import describe, matmul_peak, timed


def loader_frames_per_s(split: Split, batch_size: int, unroll: int, seconds: float) -> float:
    batches = itertools.chain.from_iterable(
        sequence_batches(split.db, split.dataset, split.train, batch_size=batch_size, seq_length=unroll,
                         play_frames=split.play_frames) for _ in itertools.count())
    frames, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        frames += int(next(batches)["valid"].sum())
    return frames / (time.perf_counter() - started)


def trainer_samples_per_s(model: NetHackNet, batch: dict, seconds: float) -> float:
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

    return timed(step, seconds) * int(inputs["valid"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ttyrecs", help="a recording (folder of */*.xlogfile); default: record --games bot games")
    parser.add_argument("--games", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--variant", default="reduced")
    parser.add_argument("--core", default="lstm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--unroll", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
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

    peak = matmul_peak(args.seconds)
    loader = loader_frames_per_s(split, args.batch_size, args.unroll, args.seconds)
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s; loader (batch {args.batch_size} x unroll {args.unroll}, "
          f"1 thread): {loader:,.0f} frames/s")
    batch = next(sequence_batches(split.db, split.dataset, split.train, batch_size=args.batch_size,
                                  seq_length=args.unroll, play_frames=split.play_frames))
    for width in args.widths:
        model = NetHackNet(NetHackModelConfig(hidden=width, core=args.core, variant=args.variant, unroll=args.unroll))
        samples = trainer_samples_per_s(model, batch, args.seconds)
        achieved = samples * model.train_flops_per_sample()
        print(f"trainer {args.variant} {args.core} h={width}: {samples:,.0f} samples/s, {achieved / 1e9:.2f} GFLOP/s "
              f"= {achieved / peak:.1%} of peak; loader / trainer = {loader / samples:.1f}x")


if __name__ == "__main__":
    main()
