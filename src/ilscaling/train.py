"""Behaviour cloning of the Atari expert, one run per (game, width, seed).

The run trains with cross entropy and Adam and writes a checkpoint each time its cumulative
training FLOPs (analytic, see flops.py) cross one of its budgets; it stops at the largest.
Until the run completes, its checkpoints and a resume state live in a work folder outside the
output folder (Snakemake clears the outputs of a failed job); the resume state is written
periodically, at each budget and on SIGTERM/SIGUSR1 (what Slurm sends before preemption), so a
rerun continues where the killed one stopped, with the same data order. At the end the
checkpoints move into the output folder, which therefore only ever holds a finished run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ilscaling.data.atari import Demonstrations, epoch_order
from ilscaling.flops import budget_label
from ilscaling.io import load_torch, provenance, save_torch, write_json
from ilscaling.models.atari import WidthCNN


@dataclass
class BCArgs:
    game: str
    """Atari game the demonstrations come from, e.g. Breakout."""
    width: int
    """Width factor of the CNN (channels w, 2w, 2w)."""
    budgets: list[float] = field(default_factory=list)
    """Training-FLOP budgets at which to checkpoint; the run stops at the largest."""
    num_actions: int = 18
    """Size of the game's action set (the model's output)."""
    seed: int = 0
    """Seeds the model's initialisation and the order of the training data."""
    lr: float = 1e-3
    """Adam learning rate (constant, as the authors)."""
    batch_size: int = 128
    """Samples per gradient step."""
    num_threads: int = 1
    """CPU threads for PyTorch."""
    resume_every_s: float = 120.0
    """Seconds between periodic resume files (work lost to a SIGKILL is at most this)."""
    log_every: int = 200
    """Steps between progress lines in the log."""


class _StopRequested(Exception):
    pass


def seed_everything(seed: int) -> np.random.Generator:
    """All seeding of a run in one place: torch (init) and numpy (data order)."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def train_bc(args: BCArgs, train_path: str | Path, out_dir: str | Path, work_dir: str | Path,
             log=print) -> list[dict]:
    """Train one run; write `out_dir/c<budget>.pt` per budget and `out_dir/metrics.json`.

    `work_dir` keeps the resume state and the checkpoints while the run is unfinished.
    """
    if not args.budgets or min(args.budgets) <= 0:
        raise ValueError(f"budgets must be a non-empty list of positive FLOPs, got {args.budgets}")
    budgets = sorted(float(b) for b in args.budgets)
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    resume_path = work_dir / "resume.pt"
    torch.set_num_threads(args.num_threads)
    data = Demonstrations.load(train_path)
    if len(data) == 0:
        raise ValueError(f"{train_path} holds no training frames")

    rng = seed_everything(args.seed)
    model = WidthCNN(args.width, args.num_actions)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    flops_per_sample = model.train_flops_per_sample()
    state = {"step": 0, "samples": 0, "flops": 0.0, "order": epoch_order(len(data), rng), "pos": 0,
             "loss_sum": 0.0, "loss_steps": 0, "checkpoints": [], "wall_s": 0.0}
    if resume_path.is_file():
        saved = load_torch(resume_path, "resume file")
        if saved["args"] != dataclasses.asdict(args):
            raise ValueError(f"resume file {resume_path} belongs to another configuration; delete it to restart")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["rng"]
        state = saved["state"]
        log(f"resumed from {resume_path} at step {state['step']}, {state['flops']:.3g} FLOPs")

    def write_resume():
        save_torch({"args": dataclasses.asdict(args), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
                    "state": state}, resume_path)

    def request_stop(signum, _frame):
        raise _StopRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    meta = {"params": model.num_params(), "train_flops_per_sample": flops_per_sample,
            "train_frames": len(data), "config": dataclasses.asdict(args), "provenance": provenance()}
    log(f"{args.game} width {args.width}: {meta['params']} params, {flops_per_sample:.4g} FLOPs/sample, "
        f"{len(data)} training frames, budgets {[budget_label(b) for b in budgets]}")
    started, last_resume = time.perf_counter(), time.perf_counter()
    wall_before = state["wall_s"]
    try:
        while len(state["checkpoints"]) < len(budgets):
            if state["pos"] >= len(state["order"]):
                state["order"], state["pos"] = epoch_order(len(data), rng), 0
            index = state["order"][state["pos"]: state["pos"] + args.batch_size]
            frames = torch.from_numpy(data.stacked(index))
            actions = torch.from_numpy(data.actions[index].astype(np.int64))
            loss = F.cross_entropy(model(frames), actions)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            state["pos"] += len(index)
            state["step"] += 1
            state["samples"] += len(index)
            state["flops"] = flops_per_sample * state["samples"]  # from the count: no drift
            state["loss_sum"] += loss.item()
            state["loss_steps"] += 1
            state["wall_s"] = wall_before + time.perf_counter() - started

            while len(state["checkpoints"]) < len(budgets) and state["flops"] >= budgets[len(state["checkpoints"])]:
                budget = budgets[len(state["checkpoints"])]
                record = {
                    "budget": budget, "flops": state["flops"], "samples": state["samples"],
                    "steps": state["step"], "epochs": state["samples"] / len(data),
                    "train_loss": state["loss_sum"] / state["loss_steps"], "wall_s": state["wall_s"],
                }
                save_torch({"model": model.state_dict(), **meta, **record},
                           work_dir / f"c{budget_label(budget)}.pt")
                state["checkpoints"].append(record)
                state["loss_sum"], state["loss_steps"] = 0.0, 0
                log(f"checkpoint {budget_label(budget)}: step {state['step']}, {state['samples']} samples, "
                    f"{record['epochs']:.2f} epochs, train loss {record['train_loss']:.4f}")
                write_resume()
            if state["step"] % args.log_every == 0:
                log(f"step {state['step']}: loss {loss.item():.4f}, {state['flops']:.3g} FLOPs, "
                    f"{state['samples'] / max(state['wall_s'], 1e-9):.0f} samples/s")
            if time.perf_counter() - last_resume > args.resume_every_s:
                write_resume()
                last_resume = time.perf_counter()
    except _StopRequested as stop:
        write_resume()
        log(f"{stop} received: wrote {resume_path} at step {state['step']}; rerun to resume")
        raise SystemExit(1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    summary = {**meta, "checkpoints": state["checkpoints"],
               "samples_per_s": state["samples"] / max(state["wall_s"], 1e-9),
               "achieved_flops_per_s": state["flops"] / max(state["wall_s"], 1e-9)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for budget in budgets:
        name = f"c{budget_label(budget)}.pt"
        os.replace(work_dir / name, out_dir / name)
    write_json(summary, out_dir / "metrics.json")
    shutil.rmtree(work_dir)
    return state["checkpoints"]
