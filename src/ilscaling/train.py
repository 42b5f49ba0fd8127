"""Behaviour cloning, one run per (game, width, seed): Atari CNNs and NetHack recurrent agents.

The run trains with cross entropy and Adam and writes a checkpoint each time its cumulative
training FLOPs (analytic, see flops.py) cross one of its budgets; it stops at the largest.
Until the run completes, its checkpoints and a resume state live in a work folder outside the
output folder (Snakemake clears the outputs of a failed job); the resume state is written
periodically, at each budget and on SIGTERM/SIGUSR1 (what Slurm sends before preemption) or
SIGINT (Ctrl-C), so a rerun continues where the killed one stopped, with the same data order.
At the end the checkpoints are linked into the output folder, which therefore only ever holds a
finished run, and the work folder keeps the finished run (links, no copies): a rerun of a
finished job (Snakemake interrupted, which marks it incomplete; profiles/default sets
rerun-incomplete) restores it instead of training.

The loop is shared; what differs per game family is its training task (families/): the model,
the batches and the loss. Atari samples single frames; NetHack reads (B, T) sequences of whole
games with the recurrent state carried from one unroll to the next (and reset where a game starts).
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

from ilscaling.families import family_of
from ilscaling.flops import budget_label, epochs_for_budget
from ilscaling.io import load_torch, provenance, read_json, save_torch, write_json
from ilscaling.jobs import SPEED_FIELDS



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
    """Adam learning rate (constant over the run, as the authors'), at `lr_reference_width`."""
    lr_reference_width: int | None = None
    """None: `lr` at every width. A width: the learning rate is lr x lr_reference_width / width, the
    muP rule for Adam's hidden layers (Yang et al. 2022): an update moves a layer's output by a
    width-independent amount, so one lr stays near-optimal across a sweep's widths."""
    max_grad_norm: float | None = None
    """Clip the gradient to this global L2 norm before each step (None: no clipping)."""
    batch_size: int = 128
    """Samples per gradient step (Atari: frames; NetHack: sequences of `unroll` frames)."""
    unroll: int = 80
    """NetHack: time steps per sequence (truncated backpropagation length)."""
    core: str = "lstm"
    """NetHack: the recurrent core, lstm (the paper's first version) or transformer (its TMLR version)."""
    variant: str = "full"
    """NetHack: encoder sizes, full (the paper's), reduced (the CPU-sized default study) or scaled (reduced x h/256)."""
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
    channels_last: bool = True
    """Atari: channels-last convolutions (faster on CPU and GPU; the checkpoint's weights are stored the same way)."""
    compile: bool = False
    """torch.compile the model (inductor): pays off only where the run is much longer than the compilation."""
    max_epochs: float | None = None
    """Refuse to start a run whose largest budget would show it its training frames more than this many
    times (None: no bound). Scaling laws describe fresh data; a guard, it changes no result."""


def config_differences(saved, now, where: str = "") -> list[str]:
    """The settings in which two run configurations differ, as "key: saved -> now" (speed fields
    ignored), walking nested dicts and lists."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [difference for key in sorted(set(saved) | set(now), key=str) if key not in SPEED_FIELDS
                for difference in config_differences(saved.get(key), now.get(key), f"{where}.{key}" if where else key)]
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now):
        return [d for i, (a, b) in enumerate(zip(saved, now)) for d in config_differences(a, b, f"{where}[{i}]")]
    return [] if saved == now else [f"{where}: {saved!r} -> {now!r}"]


def learning_rate(args: BCArgs) -> float:
    """The run's Adam learning rate: args.lr, scaled by lr_reference_width / width when that is set."""
    if args.lr_reference_width is None:
        return args.lr
    if args.lr_reference_width < 1:
        raise ValueError(f"lr_reference_width must be a positive width, got {args.lr_reference_width}")
    return args.lr * args.lr_reference_width / args.width


class TooManyEpochs(ValueError):
    """A run would repeat its training data more often than its max_epochs allows."""


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


def compiled(model: torch.nn.Module, enabled: bool):
    """The model the training step calls: `torch.compile`d (inductor) when asked, else itself.

    The compiled module shares the parameters, so the optimiser, the checkpoints and the resume
    state use `model` either way.
    """
    # Static shapes: the short batch at an epoch's end compiles once more instead of turning every
    # kernel into a dynamic-shape one.
    return torch.compile(model, dynamic=False) if enabled else model


def seed_everything(seed: int) -> np.random.Generator:
    """All seeding of a run in one place: torch (init) and numpy (data order)."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def sorted_budgets(budgets) -> list[float]:
    if not budgets or min(budgets) <= 0:
        raise ValueError(f"budgets must be a non-empty list of positive FLOPs, got {budgets}")
    return sorted(float(b) for b in budgets)


def cpu_state(state: dict) -> dict:
    """A state dict as a checkpoint stores it: on the CPU, contiguous (the memory format is not saved)."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


class RunProgress:
    """One run's way to its budgets: step, sample and FLOP counts, the checkpoints, the final outputs.

    Shared by the solo loop (`train_bc`) and the batched one (`train_batched.train_batched`), so a
    run writes the same files whichever trained it. The training loss is summed on the model's
    device (no host sync per step) in float64, which equals summing `loss.item()` on the host.
    """

    def __init__(self, args: BCArgs, model, num_frames: int, device: torch.device, out_dir, work_dir, log):
        self.args, self.budgets = args, sorted_budgets(args.budgets)
        self.out_dir, self.work_dir, self.log = Path(out_dir), Path(work_dir), log
        self.num_frames = num_frames
        self.flops_per_sample = model.train_flops_per_sample()
        self.meta = {"params": model.num_params(), "train_flops_per_sample": self.flops_per_sample,
                     "train_frames": num_frames, "config": dataclasses.asdict(args), "provenance": provenance(),
                     **device_record(device, args.bf16)}
        self.check_epochs()
        self.state = {"step": 0, "samples": 0, "flops": 0.0, "loss_sum": torch.zeros((), dtype=torch.float64,
                      device=device), "loss_steps": 0, "checkpoints": [], "wall_s": 0.0}

    def check_epochs(self) -> None:
        """Refuse, before any step, a run that would leave the regime of fresh data (args.max_epochs)."""
        epochs = epochs_for_budget(self.budgets[-1], self.flops_per_sample, self.num_frames)
        if self.args.max_epochs is not None and epochs > self.args.max_epochs:
            raise TooManyEpochs(
                f"{self.args.game} width {self.args.width} seed {self.args.seed}: its largest budget "
                f"{budget_label(self.budgets[-1])} would show it its {self.num_frames:,} training frames "
                f"{epochs:.2f} times, more than max_epochs = {self.args.max_epochs:g}: record more data, "
                "or leave this width out of that budget")

    def describe(self) -> str:
        return (f"{self.args.game} width {self.args.width} seed {self.args.seed}: {self.meta['params']} params, "
                f"{self.flops_per_sample:.4g} FLOPs/sample, {self.num_frames} training frames, "
                f"budgets {[budget_label(b) for b in self.budgets]}, on {self.meta['device_name']}")

    @property
    def done(self) -> bool:
        return len(self.state["checkpoints"]) == len(self.budgets)

    def add_step(self, loss: torch.Tensor, samples: int, wall_s: float) -> list[float]:
        """Count one optimiser step; return the budgets it crossed (to checkpoint now)."""
        state = self.state
        state["step"] += 1
        state["samples"] += samples
        state["flops"] = self.flops_per_sample * state["samples"]  # from the count: no drift
        state["loss_sum"] += loss.detach().double()
        state["loss_steps"] += 1
        state["wall_s"] = wall_s
        crossed = []
        for budget in self.budgets[len(state["checkpoints"]):]:
            if state["flops"] < budget:
                break
            crossed.append(budget)
        return crossed

    def checkpoint(self, budget: float, model_state: dict) -> None:
        """Write c<budget>.pt into the work folder (the first step at or past the budget)."""
        state = self.state
        record = {"budget": budget, "flops": state["flops"], "samples": state["samples"], "steps": state["step"],
                  "epochs": state["samples"] / self.num_frames,
                  "train_loss": float(state["loss_sum"]) / state["loss_steps"], "wall_s": state["wall_s"]}
        save_torch({"model": cpu_state(model_state), **self.meta, **record},
                   self.work_dir / f"c{budget_label(budget)}.pt")
        state["checkpoints"].append(record)
        state["loss_sum"].zero_()
        state["loss_steps"] = 0
        self.log(f"checkpoint {budget_label(budget)} of {self.args.game} w{self.args.width}-s{self.args.seed}: "
                 f"step {state['step']}, {state['samples']} samples, {record['epochs']:.2f} epochs, "
                 f"train loss {record['train_loss']:.4f}")

    def state_dict(self) -> dict:
        return {**self.state, "loss_sum": self.state["loss_sum"].cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.state = {**state, "loss_sum": state["loss_sum"].to(self.state["loss_sum"].device)}

    def finish(self, extra: dict | None = None) -> list[dict]:
        """Record the run as finished in its work folder, then give the output folder its files.

        Each step can be killed and repeated: metrics.json is written to the work folder first
        (the run is finished from then on), the resume state goes, and the checkpoints and
        metrics.json are linked into the output folder, replacing whatever an earlier try left.
        """
        state = self.state
        summary = {**self.meta, "checkpoints": state["checkpoints"],
                   "samples_per_s": state["samples"] / max(state["wall_s"], 1e-9),
                   "achieved_flops_per_s": state["flops"] / max(state["wall_s"], 1e-9), **(extra or {})}
        write_json(summary, self.work_dir / FINISHED)
        (self.work_dir / RESUME).unlink(missing_ok=True)  # the optimiser's state is not needed any more
        return restore_finished(self.args, self.work_dir, self.out_dir, self.log)


FINISHED, RESUME = "metrics.json", "resume.pt"  # in a run's work folder


def restore_finished(args: BCArgs, work_dir, out_dir, log=print) -> list[dict] | None:
    """The checkpoint records of a run that finished in `work_dir`, after linking its files into
    `out_dir` (hard links, copies where the file system has none); None if it did not finish.

    A finished run of other settings is obsolete (Snakemake reruns a job whose results settings
    changed): its work folder is removed, and the run trains anew.
    """
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    if not (work_dir / FINISHED).is_file():
        return None
    summary = read_json(work_dir / FINISHED, "finished run's metrics")
    differences = config_differences(summary["config"], dataclasses.asdict(args))
    if differences:
        log(f"{work_dir} holds a finished run of other settings ({'; '.join(differences)}): training anew")
        shutil.rmtree(work_dir)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [f"c{budget_label(r['budget'])}.pt" for r in summary["checkpoints"]] + [FINISHED]:
        link_into(work_dir / name, out_dir / name)
    return summary["checkpoints"]


def link_into(source: Path, target: Path) -> None:
    """`target` becomes `source`'s file (a hard link, or a copy), replacing what was there, atomically."""
    temporary = target.with_name(f".{target.name}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:  # another file system, or none that links
        shutil.copy2(source, temporary)
    os.replace(temporary, target)


class Preemptible:
    """The resume file of a loop, and what SIGTERM/SIGUSR1 (Slurm's preemption notice) do.

    A signal only sets a flag; the loop calls `between_steps()` where its state is consistent,
    which writes the resume file and exits with status 1 (a rerun resumes), or writes it anyway
    every `every_s` seconds (work lost to a SIGKILL is at most that).
    """

    def __init__(self, path, config, snapshot, every_s: float, log):
        self.path, self.config, self.snapshot, self.every_s, self.log = Path(path), config, snapshot, every_s, log
        self.signal, self.last_write = None, time.perf_counter()

    def load(self) -> dict | None:
        """The saved state, if a resume file of this configuration exists (speed settings may differ)."""
        if not self.path.is_file():
            return None
        saved = load_torch(self.path, "resume file")
        differences = config_differences(saved["config"], self.config)
        if differences:
            raise ValueError(f"resume file {self.path} was written with other settings ({'; '.join(differences)}); "
                             "set them back to resume, or delete the file to restart")
        return saved

    def write(self) -> None:
        save_torch({"config": self.config, **self.snapshot()}, self.path)
        self.last_write = time.perf_counter()

    def between_steps(self, step: int) -> None:
        if self.signal is not None:
            self.write()
            self.log(f"{self.signal} received: wrote {self.path} at step {step}; rerun to resume")
            raise SystemExit(1)
        if time.perf_counter() - self.last_write > self.every_s:
            self.write()

    def __enter__(self):
        def request_stop(signum, _frame):
            self.signal = signal.Signals(signum).name

        # SIGINT too: Ctrl-C in a terminal reaches every process of the group, the trainers included.
        self.previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def train_bc(args: BCArgs, train_path: str | Path, out_dir: str | Path, work_dir: str | Path,
             log=print) -> list[dict]:
    """Train one run; write `out_dir/c<budget>.pt` per budget and `out_dir/metrics.json`.

    `work_dir` keeps the resume state and the checkpoints while the run is unfinished.
    """
    sorted_budgets(args.budgets)
    finished = restore_finished(args, work_dir, out_dir, log)
    if finished is not None:
        log(f"{work_dir} holds this run, finished: its checkpoints are back in {out_dir}")
        return finished
    torch.set_num_threads(args.num_threads)
    device = resolve_device(args.device)
    rng = seed_everything(args.seed)
    task = family_of(args.game).training_task(args, Path(train_path), rng, device)
    model = task.model
    step_model = compiled(model, args.compile)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate(args))
    run = RunProgress(args, model, task.num_frames, device, out_dir, work_dir, log)
    resume = Preemptible(Path(work_dir) / RESUME, dataclasses.asdict(args), lambda: {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
        "state": run.state_dict(), "data": task.state_dict()}, args.resume_every_s, log)
    saved = resume.load()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["rng"]
        run.load_state_dict(saved["state"])
        task.load_state_dict(saved["data"])
        log(f"resumed from {resume.path} at step {run.state['step']}, {run.state['flops']:.3g} FLOPs")
    log(run.describe())
    started, wall_before = time.perf_counter(), run.state["wall_s"]
    with resume:
        while not run.done:
            resume.between_steps(run.state["step"])
            with autocast(device, args.bf16):
                loss, samples = task.loss(step_model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            for budget in run.add_step(loss, samples, wall_before + time.perf_counter() - started):
                run.checkpoint(budget, model.state_dict())
                resume.write()
            if run.state["step"] % args.log_every == 0:
                log(f"step {run.state['step']}: loss {loss.item():.4f}, {run.state['flops']:.3g} FLOPs, "
                    f"{run.state['samples'] / max(run.state['wall_s'], 1e-9):.0f} samples/s")
    return run.finish()
