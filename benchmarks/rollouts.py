"""Rollout speed measured in one run: agent steps/s of the sampled policy vs the raw vectorised env.

    python benchmarks/rollouts.py [--seconds 4] [--atari-widths 1 8] [--nethack-settings 16x2 32x2]

Prints the machine, then per game and setting the policy's rollout steps/s, the raw env's
steps/s measured the same way in the same run (same number of envs, threads or processes, same
observation handling, random actions) and their ratio against the issue's target (>= 50%).

Atari (ale-py's AtariVectorEnv, Qbert, 16 envs, 2 games each): `stepping` compares the rollout loop
(`Episodes.play_s`) with stepping the raw env; `end to end` adds to both the creation and
seeded reset of the envs (ALE reloads the ROM for every seeded reset: ~0.1-0.3 s per env,
often more than the games themselves take). NetHack (reduced encoders, LSTM h=16): the raw env
is the same worker processes, shared-memory observations and per-step sampling with a network
that costs nothing; the policy-bound roofline is the fp32 matmul peak (same torch threads)
divided by the model's forward FLOPs per step, and the forward alone at the same batch size is
measured too.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from ilscaling.games.atari import make_vector_env, num_actions
from ilscaling.games.atari_play import play_episodes
from ilscaling.models.atari import WidthCNN
from machine import describe, matmul_peak, timed

TARGET = 0.5  # issue 7 part 4: at least 50% of the raw vectorised env's steps/s


def verdict(ratio: float) -> str:
    return f"{ratio:.0%} of raw (target >= {TARGET:.0%}: {'met' if ratio >= TARGET else 'NOT met'})"


# ----------------------------------------------------------------------------------------- Atari


def atari_raw(game: str, envs: int, threads: int, seconds: float) -> tuple[float, float]:
    """(seconds to create and reset the envs, steps/s with random actions)."""
    started = time.perf_counter()
    env, _, _ = make_vector_env(game, envs, seed=0, num_threads=threads)
    setup = time.perf_counter() - started
    rng = np.random.default_rng(0)
    actions = num_actions(game)
    rate = timed(lambda: env.step(rng.integers(0, actions, envs)), seconds) * envs
    env.close()
    return setup, rate


def atari(args) -> None:
    game, envs = args.game, args.atari_envs
    print(f"\n== Atari {game}: {envs} envs, {args.threads} ALE thread(s) in all, torch threads "
          f"{torch.get_num_threads()}, sampled policy, {args.atari_games_per_env} games per env ==")
    setup_raw, raw = atari_raw(game, envs, args.threads, args.seconds)
    print(f"raw env (random actions): {raw:,.0f} steps/s stepping; creating + resetting {envs} envs {setup_raw:.2f} s")
    torch.manual_seed(0)
    for width in args.atari_widths:
        model = WidthCNN(width, num_actions(game)).eval()
        for groups in args.atari_groups:
            played = play_episodes(game, model, envs * args.atari_games_per_env, seed=0, greedy=False,
                                   max_episode_steps=args.atari_max_steps, num_threads=args.threads, envs=envs,
                                   groups=groups)
            steps = played.num_frames
            stepping = steps / played.play_s
            end_to_end = steps / (played.setup_s + played.play_s)
            raw_end_to_end = steps / (setup_raw + steps / raw)  # the same steps on the raw env, with its setup
            print(f"w={width} ({model.num_params():,} params), {groups} group(s): {steps} steps of {len(played)} games; "
                  f"stepping {stepping:,.0f} steps/s = {verdict(stepping / raw)}; end to end {end_to_end:,.0f} "
                  f"steps/s (setup {played.setup_s:.2f} s) vs raw {raw_end_to_end:,.0f} = "
                  f"{end_to_end / raw_end_to_end:.0%}")
    # An evaluation as the workflow runs it: a fixed number of games, env creation included.
    model = WidthCNN(args.atari_widths[-1], num_actions(game)).eval()
    for eval_envs in args.atari_eval_envs:
        started = time.perf_counter()
        played = play_episodes(game, model, args.atari_eval_games, seed=0, greedy=False,
                               max_episode_steps=args.atari_max_steps, num_threads=args.threads, envs=eval_envs)
        wall = time.perf_counter() - started
        print(f"evaluation of {args.atari_eval_games} games, w={args.atari_widths[-1]}, {eval_envs} envs: {wall:.1f} s "
              f"({played.setup_s:.1f} s creating envs), {played.num_frames / wall:,.0f} steps/s end to end")


# --------------------------------------------------------------------------------------- NetHack


class NoPolicy(nn.Module):
    """Uniform logits at no cost: play_games with it measures the env, workers, pipes and sampling."""

    def __init__(self, num_actions: int = 121):
        super().__init__()
        self.num_actions = num_actions
        self.anchor = nn.Parameter(torch.zeros(()))  # play_games reads the device off a parameter

    def initial_state(self, batch_size: int, device=None):
        return (torch.zeros(batch_size, 1, device=device),)

    def forward(self, tty_chars, tty_colors, tty_cursor, prev_action, done, state):
        return torch.zeros(tty_chars.shape[0], 1, self.num_actions), state


def nethack(args) -> None:
    from ilscaling.games.nethack_vec import play_games
    from ilscaling.models.nethack import NetHackNet
    from ilscaling.models.nethack_config import NetHackModelConfig

    torch.manual_seed(0)
    model = NetHackNet(NetHackModelConfig(hidden=args.nethack_width, core="lstm", variant="reduced")).eval()
    flops = model.forward_flops()
    peak = matmul_peak(args.seconds)
    bound = peak / flops
    print(f"\n== NetHack: reduced encoders, LSTM h={args.nethack_width} ({model.num_params():,} params), "
          f"{flops / 1e6:.2f} MFLOP forward per step, torch threads {torch.get_num_threads()}, "
          f"{args.nethack_max_steps} steps per game at most, {args.nethack_env} environment ==")
    print(f"fp32 matmul peak (2048^2): {peak / 1e9:.1f} GFLOP/s -> policy-bound roofline {bound:,.0f} steps/s")
    for setting in args.nethack_settings:
        envs, processes = (int(x) for x in setting.split("x"))
        batch = {"tty_chars": torch.randint(32, 127, (envs, 1, 24, 80), dtype=torch.uint8),
                 "tty_colors": torch.randint(0, 16, (envs, 1, 24, 80), dtype=torch.int8),
                 "tty_cursor": torch.randint(1, 20, (envs, 1, 2), dtype=torch.uint8)}
        state = model.initial_state(envs)
        prev, done = torch.zeros(envs, 1, dtype=torch.long), torch.zeros(envs, 1, dtype=torch.bool)
        with torch.inference_mode():
            forward = timed(lambda: model(batch["tty_chars"], batch["tty_colors"], batch["tty_cursor"], prev, done,
                                          state), args.seconds) * envs
        rates = {}
        for name, policy in (("raw env", NoPolicy()), ("policy", model)):
            played = play_games(policy, envs, envs=envs, processes=processes, max_episode_steps=args.nethack_max_steps,
                                kind=args.nethack_env, seed=0, log=lambda *_: None)
            rates[name] = (played.env_steps / played.play_s, played.env_steps / played.wall_s,
                           played.setup_s, played.env_steps)
        (raw, raw_e2e, raw_setup, raw_steps), (policy, policy_e2e, setup, steps) = rates["raw env"], rates["policy"]
        in_process = processes == 1 and args.nethack_env == "challenge"  # seeded games run on the pinned clock
        where = "in this process" if in_process else f"in {processes} worker process(es)"
        print(f"{envs} games {where}: raw env (random actions, same loop) {raw:,.0f} steps/s stepping, "
              f"{raw_e2e:,.0f} end to end ({raw_steps} steps; startup {raw_setup:.1f} s); policy {policy:,.0f} "
              f"steps/s stepping ({steps} steps), {policy_e2e:,.0f} end to end (startup {setup:.1f} s) = "
              f"{verdict(policy / raw)}")
        print(f"    policy-bound: roofline {bound:,.0f} steps/s, forward alone at batch {envs} {forward:,.0f} "
              f"samples/s ({forward / bound:.1%} of roofline); rollout = {policy / bound:.1%} of roofline, "
              f"{policy / forward:.0%} of the forward alone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; ALE threads in all (Atari)")
    parser.add_argument("--game", default="Qbert")
    parser.add_argument("--atari-envs", type=int, default=16)
    parser.add_argument("--atari-widths", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--atari-groups", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--atari-games-per-env", type=int, default=2)
    parser.add_argument("--atari-max-steps", type=int, default=2000)
    parser.add_argument("--atari-eval-games", type=int, default=16)
    parser.add_argument("--atari-eval-envs", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--nethack-width", type=int, default=16)
    parser.add_argument("--nethack-settings", nargs="+", default=["16x1", "16x2", "32x1", "32x2"],
                        help="ENVSxPROCESSES: games played at once (one each) and worker processes")
    parser.add_argument("--nethack-max-steps", type=int, default=200)
    parser.add_argument("--nethack-env", choices=["seeded", "challenge"], default="seeded",
                        help="seeded games always run in workers started on the pinned clock")
    parser.add_argument("--skip", nargs="*", default=[], choices=["atari", "nethack"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(args.threads))
    if "atari" not in args.skip:
        atari(args)
    if "nethack" not in args.skip:
        nethack(args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
