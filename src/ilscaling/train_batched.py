"""Behaviour cloning of many Atari runs of one width in one process: the batched sweep trainer.

Small models cannot fill a GPU one at a time. A sweep's runs of one width (across games and
seeds) share the architecture except the action head, so they train together: their parameters
are stacked along a new first axis, one forward computes every member's logits (`torch.func.vmap`
over the solo `WidthCNN`, which becomes grouped convolutions, or a loop over the members), and
the members' losses are summed, so each member's gradient is its solo gradient. Adam is
elementwise, so one `torch.optim.Adam` over the stacked tensors is each member's own Adam.

Each member is exactly its solo run (train.py): the same seeding, initialisation and data order
(its own `AtariTask`), the same budgets, checkpoints (`RunProgress`: same files, its own
num_actions) and metrics.json. Heads are padded to the group's largest action set and the extra
logits masked to -inf, so the padding takes no part in the loss and its rows get no gradient. A
member leaves the stack after its last budget; the outputs of all move into place when the last
one finishes (Snakemake clears a failed job's outputs). Resume and preemption as in train.py:
one resume file for the group, bitwise-identical resumption on the CPU.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ilscaling.data.atari import Demonstrations
from ilscaling.families import family_of
from ilscaling.families.atari import Atari, AtariTask
from ilscaling.models.atari import WidthCNN
from ilscaling.train import (BCArgs, Preemptible, RunProgress, autocast, compiled, learning_rate,
                             resolve_device, restore_finished, seed_everything)

HEAD = ("layers.7.weight", "layers.7.bias")  # the action head: rows padded to the group's largest action set
SHARED = ("width", "lr", "lr_reference_width", "batch_size", "num_threads", "device", "bf16", "resume_every_s", "log_every",
          "channels_last", "compile")


@dataclass
class Member:
    """One run of a group: its solo arguments and files."""

    args: BCArgs
    train: Path
    out_dir: Path
    work_dir: Path


def vectorized(mode: str, device: torch.device) -> bool:
    """auto: vmap (grouped convolutions) on a GPU; a loop over the members on the CPU, where oneDNN's
    grouped convolutions are slower than one member after another (benchmarks/throughput.py)."""
    if mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"vectorize must be auto, vmap or loop, got {mode!r}")
    return mode == "vmap" or (mode == "auto" and device.type == "cuda")


class StackedCNN:
    """The parameters of K `WidthCNN`s of one width stacked on a first axis, and their joint forward."""

    def __init__(self, models: list[WidthCNN], vmap: bool, device: torch.device):
        self.num_actions = [m.num_actions for m in models]
        self.vmap = vmap
        # vmap cannot choose a memory format: channels-last only for the loop.
        self.base = WidthCNN(models[0].width, max(self.num_actions), models[0].channels_last and not vmap).to("meta")
        self.params = {name: torch.stack([self._padded(m, name) for m in models]).to(device).requires_grad_()
                       for name, _ in models[0].named_parameters()}
        columns = torch.arange(self.base.num_actions)
        self.invalid = (columns[None, :] >= torch.tensor(self.num_actions)[:, None]).to(device)  # (K, A)

    def _padded(self, model: WidthCNN, name: str) -> torch.Tensor:
        value = dict(model.named_parameters())[name].detach().contiguous()
        if name in HEAD:
            value = F.pad(value, (0, 0) * (value.dim() - 1) + (0, self.base.num_actions - model.num_actions))
        return value

    def _one(self, params: dict, frames: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, params, (frames,))

    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (K, B, 4, 84, 84) -> logits (K, B, A), the extra columns of smaller heads -inf."""
        if self.vmap:
            logits = torch.func.vmap(self._one)(self.params, frames)
        else:
            # unbind: one backward for all the members' slices (indexing would add a zero-filled
            # full-size gradient per member)
            slices = {n: p.unbind(0) for n, p in self.params.items()}
            logits = torch.stack([self._one({n: p[i] for n, p in slices.items()}, frames[i])
                                  for i in range(len(frames))])
        return logits.float().masked_fill(self.invalid[:, None, :], float("-inf"))

    def member_state(self, index: int) -> dict:
        """Member `index`'s state dict, exactly as its solo model's (its own head rows)."""
        state = {name: value[index].detach() for name, value in self.params.items()}
        for name in HEAD:
            state[name] = state[name][: self.num_actions[index]]
        return state

    def clip_member_grads(self, max_norm: float) -> None:
        """Each member's gradient clipped to global L2 norm `max_norm`, as clip_grad_norm_ does for a
        solo model (the padded head rows have zero gradient and leave the norm alone)."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).float().pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for grad in grads:
            grad.mul_(scale.view(-1, *[1] * (grad.dim() - 1)).to(grad.dtype))

    def keep(self, positions: list[int], optimizer: torch.optim.Adam) -> torch.optim.Adam:
        """Keep only the members at `positions` of the stack, with their Adam moments; the new optimiser."""
        index = torch.tensor(positions, dtype=torch.long, device=self.invalid.device)
        saved = optimizer.state_dict()
        for moments in saved["state"].values():
            for key in ("exp_avg", "exp_avg_sq"):
                moments[key] = moments[key][index]
        self.params = {n: p.detach()[index].clone().requires_grad_() for n, p in self.params.items()}
        self.invalid = self.invalid[index]
        self.num_actions = [self.num_actions[i] for i in positions]
        optimizer = torch.optim.Adam(self.params.values(), **optimizer.defaults)
        optimizer.load_state_dict(saved)
        return optimizer


def stacked_batch(batches: list[tuple[np.ndarray, np.ndarray]], batch_size: int, device: torch.device):
    """The members' batches as (K, B) tensors, a (K, B) mask of real samples (a batch at an epoch's end
    is short: it is padded with zero frames and action 0, which the mask leaves out) and the counts."""
    frames = np.zeros((len(batches), batch_size, *batches[0][0].shape[1:]), np.uint8)
    actions = np.zeros((len(batches), batch_size), np.int64)
    valid = np.zeros((len(batches), batch_size), bool)
    for i, (f, a) in enumerate(batches):
        frames[i, : len(a)], actions[i, : len(a)], valid[i, : len(a)] = f, a, True
    return (torch.from_numpy(frames).to(device, non_blocking=True),
            torch.from_numpy(actions).to(device, non_blocking=True), torch.from_numpy(valid).to(device),
            [len(a) for _, a in batches])


def member_losses(logits: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(K,) mean cross entropy of each member over its real samples (its solo loss)."""
    ce = F.cross_entropy(logits.flatten(0, 1), actions.flatten(), reduction="none").view(actions.shape)
    return torch.where(valid, ce, 0.0).sum(1) / valid.sum(1)


def check_group(members: list[Member]) -> BCArgs:
    if not members:
        raise ValueError("a batched group needs at least one member")
    first = members[0].args
    for member in members:
        if not isinstance(family_of(member.args.game), Atari):
            raise ValueError(f"batched training is for the Atari CNN; {member.args.game} runs train one by one")
        differ = [key for key in SHARED if getattr(member.args, key) != getattr(first, key)]
        if differ:
            raise ValueError(f"members of a batched group must share {differ}: "
                             f"{first.game} s{first.seed} vs {member.args.game} s{member.args.seed}")
    names = [(m.args.game, m.args.seed) for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"a batched group holds a run twice: {names}")
    return first


def train_batched(members: list[Member], work_dir: str | Path, vectorize: str = "auto", log=print) -> list[list[dict]]:
    """Train the members' runs together; each writes what `train.train_bc` would write for it.

    `work_dir` holds the group's resume file; each member's checkpoints wait in its own work folder
    until every member is done. Returns each member's checkpoint records.
    """
    shared = check_group(members)
    work_dir = Path(work_dir)
    restored = [restore_finished(m.args, m.work_dir, m.out_dir, log) for m in members]
    if all(records is not None for records in restored):
        log("every run of the group finished before: their checkpoints are back in their output folders")
        return restored
    torch.set_num_threads(shared.num_threads)
    device = resolve_device(shared.device)
    data: dict[Path, Demonstrations] = {}
    tasks, rngs, runs = [], [], []
    for member in members:  # as each solo run: seed, then the model's initialisation, then the data order
        train = Path(member.train)
        if train not in data:
            data[train] = Demonstrations.load(train)
        rng = seed_everything(member.args.seed)
        tasks.append(AtariTask(member.args, train, rng, device, data=data[train]))
        rngs.append(rng)
        runs.append(RunProgress(member.args, tasks[-1].model, tasks[-1].num_frames, device, member.out_dir,
                                member.work_dir, log))
    stack = StackedCNN([task.model for task in tasks], vectorized(vectorize, device), device)
    for task in tasks:
        task.model = None  # the stack holds the parameters now
    optimizer = torch.optim.Adam(stack.params.values(), lr=learning_rate(shared))
    forward = compiled(stack.logits, shared.compile)
    group = {"step": 0, "active": list(range(len(members))), "wall_s": 0.0}

    config = {"members": [{**dataclasses.asdict(m.args), "train": str(m.train), "out_dir": str(m.out_dir),
                           "work_dir": str(m.work_dir)} for m in members], "vectorize": stack.vmap}
    resume = Preemptible(work_dir / "resume.pt", config, lambda: {
        "group": group, "params": {n: p.detach().cpu() for n, p in stack.params.items()},
        "optimizer": optimizer.state_dict(),
        "members": [{"rng": rng.bit_generator.state, "state": run.state_dict(), "data": task.state_dict()}
                    for rng, run, task in zip(rngs, runs, tasks)]}, shared.resume_every_s, log)
    saved = resume.load()
    if saved is not None:
        group = saved["group"]
        optimizer = stack.keep(group["active"], optimizer)  # the members still training, then their state
        for name, value in saved["params"].items():
            stack.params[name].data.copy_(value)
        optimizer.load_state_dict(saved["optimizer"])
        for rng, run, task, state in zip(rngs, runs, tasks, saved["members"]):
            rng.bit_generator.state = state["rng"]
            run.load_state_dict(state["state"])
            task.load_state_dict(state["data"])
        log(f"resumed from {resume.path} at step {group['step']}, {len(group['active'])} members training")
    for run in runs:
        log(run.describe())
    log(f"{len(members)} runs of width {shared.width} in one process ({'vmap' if stack.vmap else 'loop'}), "
        f"on {runs[0].meta['device_name']}")
    started, wall_before = time.perf_counter(), group["wall_s"]
    with resume:
        while group["active"]:
            resume.between_steps(group["step"])
            active = group["active"]
            frames, actions, valid, samples = stacked_batch([tasks[i].next_batch() for i in active],
                                                            shared.batch_size, device)
            with autocast(device, shared.bf16):
                losses = member_losses(forward(frames), actions, valid)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if shared.max_grad_norm is not None:
                stack.clip_member_grads(shared.max_grad_norm)
            optimizer.step()
            group["step"] += 1
            group["wall_s"] = wall_before + time.perf_counter() - started
            checkpointed = False
            for position, i in enumerate(active):
                for budget in runs[i].add_step(losses[position], samples[position], group["wall_s"]):
                    runs[i].checkpoint(budget, stack.member_state(position))
                    checkpointed = True
            if any(runs[i].done for i in active):  # they leave the stack
                group["active"] = [i for i in active if not runs[i].done]
                optimizer = stack.keep([p for p, i in enumerate(active) if not runs[i].done], optimizer)
            if checkpointed:
                resume.write()
            if group["step"] % shared.log_every == 0:
                total = sum(runs[i].state["samples"] for i in range(len(runs)))
                log(f"step {group['step']}: {len(active)} training, mean loss {losses.mean().item():.4f}, "
                    f"{total / max(group['wall_s'], 1e-9):.0f} samples/s in all")
    extra = {"batched": {"group": [f"{m.args.game}/w{m.args.width}-s{m.args.seed}" for m in members],
                         "vectorize": "vmap" if stack.vmap else "loop"}}
    records = [run.finish(extra) for run in runs]
    shutil.rmtree(work_dir, ignore_errors=True)
    return records
