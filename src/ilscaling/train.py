"""Behaviour cloning, one run per (game, width, seed): Atari CNNs and NetHack recurrent agents.

The run trains with cross entropy and Adam and writes a checkpoint each time its cumulative
training FLOPs (analytic, see flops.py) cross one of its budgets; it stops at the largest.
Until the run completes, its checkpoints and a resume state live in a work folder outside the
output folder (Snakemake clears the outputs of a failed job); the resume state is written
periodically, at each budget and on SIGTERM/SIGUSR1 (what Slurm sends before preemption), so a
rerun continues where the killed one stopped, with the same data order. At the end the
checkpoints move into the output folder, which therefore only ever holds a finished run.

The loop is shared; what differs per game family is the `Task`: the model, the batches and the
loss. Atari samples single frames; NetHack reads (B, T) sequences of whole games with the
recurrent state carried from one unroll to the next (and reset where a game starts).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ilscaling.data.atari import Demonstrations, epoch_order
from ilscaling.flops import budget_label
from ilscaling.io import load_torch, provenance, save_torch, write_json
from ilscaling.models import NETHACK, build_model



@dataclass
class BCArgs:
    game: str
    """Game the demonstrations come from: an Atari game (e.g. Breakout) or NetHack."""
    width: int
    """Width of the model: the CNN's channel factor w (Atari) or the hidden size h (NetHack)."""
    budgets: list[float] = field(default_factory=list)
    """Training-FLOP budgets at which to checkpoint; the run stops at the largest."""
    num_actions: int = 18
    """Size of the game's action set (the model's output)."""
    seed: int = 0
    """Seeds the model's initialisation and the order of the training data."""
    lr: float = 1e-3
    """Adam learning rate (constant, as the authors)."""
    batch_size: int = 128
    """Samples per gradient step (Atari: frames; NetHack: sequences of `unroll` frames)."""
    unroll: int = 80
    """NetHack: time steps per sequence (truncated backpropagation length)."""
    core: str = "lstm"
    """NetHack: the recurrent core, lstm (the paper's first version) or transformer (its TMLR version)."""
    variant: str = "full"
    """NetHack: encoder sizes, full (the paper's) or reduced (the CPU-sized default study)."""
    num_threads: int = 1
    """CPU threads for PyTorch."""
    device: str = "auto"
    """cpu, cuda, or auto (cuda when present)."""
    bf16: bool = True
    """On CUDA, run forward and backward under bf16 autocast (the weights and Adam stay fp32)."""
    resume_every_s: float = 120.0
    """Seconds between periodic resume files (work lost to a SIGKILL is at most this)."""
    log_every: int = 200
    """Steps between progress lines in the log."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked (matmuls and convs in bf16, reductions in fp32); else nothing."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def device_record(device: torch.device, bf16: bool) -> dict:
    """What ran the job, for checkpoints and benchmark files."""
    on_gpu = device.type == "cuda"
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if on_gpu else "cpu",
            "autocast": "bf16" if on_gpu and bf16 else None}


class AtariTask:
    """Single 4-frame observations in a fresh random order each epoch."""

    def __init__(self, args: BCArgs, train_path, rng: np.random.Generator, device: torch.device):
        self.data = Demonstrations.load(train_path)
        if len(self.data) == 0:
            raise ValueError(f"{train_path} holds no training frames")
        self.num_frames = len(self.data)
        self.args, self.rng, self.device = args, rng, device
        self.model = build_model(dataclasses.asdict(args)).to(device)
        self.order, self.pos = epoch_order(self.num_frames, rng), 0

    def loss(self) -> tuple[torch.Tensor, int]:
        """Loss of the next batch and its number of samples."""
        if self.pos >= len(self.order):
            self.order, self.pos = epoch_order(self.num_frames, self.rng), 0
        index = self.order[self.pos: self.pos + self.args.batch_size]
        self.pos += len(index)
        frames = torch.from_numpy(self.data.stacked(index)).to(self.device, non_blocking=True)
        actions = torch.from_numpy(self.data.actions[index].astype(np.int64)).to(self.device, non_blocking=True)
        return F.cross_entropy(self.model(frames).float(), actions), len(index)

    def state_dict(self) -> dict:
        return {"order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"], state["pos"]


class NetHackTask:
    """(B, unroll) sequences of whole games read through nle.dataset, in a fresh game order each epoch."""

    def __init__(self, args: BCArgs, split_path, rng: np.random.Generator, device: torch.device):
        from ilscaling.data.nethack import Split

        self.split = Split.load(split_path)
        self.num_frames = self.split.train_frames
        self.args, self.rng, self.device = args, rng, device
        self.model = build_model(dataclasses.asdict(args)).to(device)
        self._new_epoch()

    def _new_epoch(self):
        self.games = self.rng.permutation(self.split.train).tolist()
        self.pos = 0
        self._start_pass()

    def _start_pass(self):
        from ilscaling.data.nethack import sequence_batches

        self.batches = sequence_batches(self.split.db, self.split.dataset, self.games,
                                        batch_size=self.args.batch_size, seq_length=self.args.unroll,
                                        play_frames=self.split.play_frames)
        self.carry = self.model.initial_state(self.args.batch_size, self.device)  # every row starts a game

    def _next_batch(self) -> dict:
        """The next batch with at least one label (one of only padding and quit keys trains nothing)."""
        while True:
            batch = next(self.batches, None)
            if batch is None:
                self._new_epoch()
                continue
            self.pos += 1
            if batch["valid"].any():
                return batch

    def loss(self) -> tuple[torch.Tensor, int]:
        batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in self._next_batch().items()}
        logits, carry = self.model(batch["tty_chars"], batch["tty_colors"], batch["tty_cursor"],
                                   batch["prev_action"], batch["done"], self.carry)
        # Truncated backpropagation: the state flows on, its gradient stops at the unroll's edge.
        self.carry = tuple(c.detach() for c in carry)
        valid = batch["valid"]
        return F.cross_entropy(logits[valid].float(), batch["action"][valid]), int(valid.sum())

    def state_dict(self) -> dict:
        return {"games": self.games, "pos": self.pos, "carry": tuple(c.cpu() for c in self.carry)}

    def load_state_dict(self, state: dict) -> None:
        # The loader cannot jump: replay this epoch's pass up to the saved batch (reading is cheap).
        self.games = state["games"]
        self._start_pass()
        for _ in range(state["pos"]):
            next(self.batches)
        self.pos = state["pos"]
        self.carry = tuple(c.to(self.device) for c in state["carry"])


def make_task(args: BCArgs, train_path, rng, device):
    return (NetHackTask if args.game == NETHACK else AtariTask)(args, train_path, rng, device)


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
    device = resolve_device(args.device)
    rng = seed_everything(args.seed)
    task = make_task(args, train_path, rng, device)
    model = task.model
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    flops_per_sample = model.train_flops_per_sample()
    state = {"step": 0, "samples": 0, "flops": 0.0, "loss_sum": 0.0, "loss_steps": 0, "checkpoints": [],
             "wall_s": 0.0}
    if resume_path.is_file():
        saved = load_torch(resume_path, "resume file")
        if saved["args"] != dataclasses.asdict(args):
            raise ValueError(f"resume file {resume_path} belongs to another configuration; delete it to restart")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["rng"]
        state = saved["state"]
        task.load_state_dict(saved["data"])
        log(f"resumed from {resume_path} at step {state['step']}, {state['flops']:.3g} FLOPs")

    def write_resume():
        save_torch({"args": dataclasses.asdict(args), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
                    "state": state, "data": task.state_dict()}, resume_path)

    def request_stop(signum, _frame):
        raise _StopRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    meta = {"params": model.num_params(), "train_flops_per_sample": flops_per_sample,
            "train_frames": task.num_frames, "config": dataclasses.asdict(args), "provenance": provenance(),
            **device_record(device, args.bf16)}
    log(f"{args.game} width {args.width}: {meta['params']} params, {flops_per_sample:.4g} FLOPs/sample, "
        f"{task.num_frames} training frames, budgets {[budget_label(b) for b in budgets]}, "
        f"on {meta['device_name']}")
    started, last_resume = time.perf_counter(), time.perf_counter()
    wall_before = state["wall_s"]
    try:
        while len(state["checkpoints"]) < len(budgets):
            with autocast(device, args.bf16):
                loss, samples = task.loss()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            state["step"] += 1
            state["samples"] += samples
            state["flops"] = flops_per_sample * state["samples"]  # from the count: no drift
            state["loss_sum"] += loss.item()
            state["loss_steps"] += 1
            state["wall_s"] = wall_before + time.perf_counter() - started

            while len(state["checkpoints"]) < len(budgets) and state["flops"] >= budgets[len(state["checkpoints"])]:
                budget = budgets[len(state["checkpoints"])]
                record = {
                    "budget": budget, "flops": state["flops"], "samples": state["samples"],
                    "steps": state["step"], "epochs": state["samples"] / task.num_frames,
                    "train_loss": state["loss_sum"] / state["loss_steps"], "wall_s": state["wall_s"],
                }
                save_torch({"model": {k: v.cpu() for k, v in model.state_dict().items()}, **meta, **record},
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
