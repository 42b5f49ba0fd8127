"""Evaluation of BC checkpoints and the gathering of all results into one table.

Per checkpoint: the held-out loss (mean cross entropy over every held-out frame, on the recorded
actions, as the paper), the held-out KL(π_expert ‖ π_BC) (Atari: mean over every held-out frame,
against the expert's stored action distribution; NetHack has none, so its `kl` is NaN) and the mean
return of the sampled policy (softmax sampling, as the paper) over full games played in
parallel with batched inference. Atari: ALE's vector env, every checkpoint on the same
environment seeds (common random numbers), which lowers the variance between model sizes.
NetHack: the in-game score is the return; games run in worker processes (games/nethack_vec.py).
In the `seeded` environment every checkpoint plays the same seeded games (paired, on the pinned
clock); `challenge` games cannot be seeded. Each game's seeds, max depth, turns, death cause and
start (moon phase, Friday the 13th) are recorded.

Device: "auto" runs the network on CUDA when present (else the CPU), as training does
(`ilscaling.train.resolve_device`). The held-out losses come from float32 logits through a float64
log-softmax (so that KL equals the cross entropy exactly for greedy demonstrations); the rollouts'
forward runs under bf16 autocast on CUDA (the softmax and the sampling stay float32). The
result records the device, its name, the rollouts' autocast and their steps/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import xarray as xr

from ilscaling.data.atari import Demonstrations
from ilscaling.families import build_model, family_of
from ilscaling.io import DataFileError, load_torch, provenance, read_json, require_keys, write_json
from ilscaling.results_file import build_results, write_results


HELDOUT_LOSS_PRECISION = "float32 logits, float64 log-softmax"
# What every BC checkpoint holds (train.RunProgress.checkpoint); the PPO expert's has none of these.
CHECKPOINT_KEYS = ("model", "config", "budget", "flops", "params", "samples", "epochs", "train_loss")


def load_bc_model(checkpoint: dict) -> torch.nn.Module:
    model = build_model(checkpoint["config"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def load_bc_checkpoint(path: str | Path) -> dict:
    """A BC checkpoint; a file that is not one (the PPO expert's, a corrupt file) is named."""
    checkpoint = load_torch(path, "BC checkpoint")
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in CHECKPOINT_KEYS) \
            or "width" not in checkpoint["config"]:
        found = ", ".join(sorted(checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise DataFileError(f"{path} is not a BC checkpoint of the sweep (it holds {found}; a BC checkpoint holds "
                            f"{', '.join(CHECKPOINT_KEYS)} with config.width): the PPO expert's?")
    return checkpoint


def check_heldout_matches(checkpoint_path, checkpoint: dict, heldout_path) -> None:
    """The held-out data is of the checkpoint's game family (its held-out file: families/)."""
    game = checkpoint["config"]["game"]
    expected = family_of(game).data_files["heldout"]
    if Path(heldout_path).suffix != Path(expected).suffix:
        raise DataFileError(f"{checkpoint_path} is a {game} checkpoint, so the held-out data must be its "
                            f"{expected}, not {heldout_path}")


def _device_of(model) -> torch.device:
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass(frozen=True)
class HeldoutLoss:
    """Means over held-out frames, in nats."""

    cross_entropy: float  # -log π_BC(recorded action)
    kl: float  # KL(π_expert ‖ π_BC) against the expert's stored distribution


def frame_losses(logits: torch.Tensor, actions: torch.Tensor, expert_probs: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame cross entropy on `actions` and KL(expert ‖ model), in float64.

    An action the expert never plays (p = 0) contributes 0 to the KL. For a one-hot expert the
    two are equal to the last bit: both are -log_softmax at the recorded action.
    """
    log_model = torch.log_softmax(logits.double(), dim=1)
    cross_entropy = -log_model.gather(1, actions[:, None])[:, 0]
    expert = expert_probs.double()
    expert = expert / expert.sum(dim=1, keepdim=True)  # float32 softmax rows sum to 1 only up to rounding
    terms = torch.where(expert > 0, expert * (torch.log(expert) - log_model), torch.zeros_like(expert))
    return cross_entropy, terms.sum(dim=1)


@torch.inference_mode()
def heldout_loss(model: torch.nn.Module, demos: Demonstrations, batch_size: int = 1024) -> HeldoutLoss:
    """Mean cross entropy and mean KL(expert ‖ model) over all frames of `demos` (on the model's device)."""
    device = _device_of(model)
    total_ce = total_kl = 0.0
    for start in range(0, len(demos), batch_size):
        index = np.arange(start, min(start + batch_size, len(demos)))
        logits = model(torch.from_numpy(demos.stacked(index)).to(device))
        actions = torch.from_numpy(demos.actions[index].astype(np.int64)).to(device)
        expert = torch.from_numpy(demos.expert_probs[index]).to(device)
        cross_entropy, kl = frame_losses(logits.float(), actions, expert)
        total_ce += cross_entropy.sum().item()
        total_kl += kl.sum().item()
    return HeldoutLoss(cross_entropy=total_ce / len(demos), kl=total_kl / len(demos))


@torch.inference_mode()
def nethack_heldout_loss(model: torch.nn.Module, split_path: str | Path, *, batch_size: int, unroll: int
                         ) -> tuple[float, int]:
    """Mean cross entropy over every frame of the held-out games, and their number of frames.

    The games are read as in training (rows of whole games, the recurrent state carried).
    """
    from ilscaling.data.nethack import Split, sequence_batches

    split = Split.load(split_path)
    device = _device_of(model)
    batch_size = min(batch_size, len(split.heldout))
    state = model.initial_state(batch_size, device)
    total, frames = 0.0, 0
    for batch in sequence_batches(split.db, split.dataset, split.heldout, batch_size=batch_size, seq_length=unroll,
                                  play_frames=split.play_frames):
        batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
        logits, state = model(batch["tty_chars"], batch["tty_colors"], batch["tty_cursor"], batch["prev_action"],
                              batch["done"], state)
        valid = batch["valid"]
        total += F.cross_entropy(logits[valid].float(), batch["action"][valid], reduction="sum").item()
        frames += int(valid.sum())
    return total / frames, frames


@dataclass
class EvalArgs:
    """How one checkpoint is evaluated (what its family reads of it: families/)."""

    episodes: int = 8
    """Games the sampled policy plays."""
    seed: int = 0
    """Seeds the games (Atari: the environments and the action sampling; NetHack: the seeded games)."""
    max_episode_steps: int = 27000
    """Agent steps after which a game is cut (counted as truncated)."""
    env: str = "seeded"
    """NetHack: seeded (every checkpoint plays the same seeded games on a pinned clock) or challenge."""
    threads: int = 1
    """CPU threads for PyTorch (Atari: also ALE's)."""
    processes: int = 1
    """NetHack: worker processes stepping the games."""
    envs: int | None = None
    """Games played at once (default: all; Atari: up to 32), each playing a fixed quota."""
    ttyrec_dir: str | None = None
    """NetHack: keep the games' ttyrecs here."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda[:i] for the network; cuda without CUDA fails."""


def evaluate_checkpoint(checkpoint_path: str | Path, heldout_path: str | Path, out_path: str | Path,
                        args: EvalArgs, log=print) -> dict:
    """Held-out loss and sampled-policy return of one checkpoint, written to `out_path` (JSON)."""
    from ilscaling.train import device_record, resolve_device

    device = resolve_device(args.device)  # fails clearly before any work when CUDA is asked for but absent
    bf16 = device.type == "cuda"  # rollouts only; the held-out loss stays float32
    if device.type == "cuda":  # float32 means float32: no TF32 in cuDNN's convolutions or matmuls
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(args.threads)
    checkpoint = load_bc_checkpoint(checkpoint_path)
    check_heldout_matches(checkpoint_path, checkpoint, heldout_path)
    model = load_bc_model(checkpoint).to(device)
    config = checkpoint["config"]
    game = config["game"]
    family = family_of(game)
    started = time.perf_counter()
    heldout = family.heldout_loss(model, config, Path(heldout_path), Path(checkpoint_path))
    loss, kl = heldout.cross_entropy, heldout.kl
    loss_s = time.perf_counter() - started
    log(f"held-out loss {loss:.4f}, KL {kl:.4f} over {heldout.frames} frames ({loss_s:.1f} s); "
        f"playing {args.episodes} games")
    started = time.perf_counter()
    played = family.play(model, config, args, device, bf16, log)
    rollout_s = time.perf_counter() - started
    returns, lengths = np.asarray(played.returns, dtype=float), np.asarray(played.lengths)
    truncated = np.asarray(played.truncated)
    result = {
        "game": game, "width": checkpoint["config"]["width"], "seed": checkpoint["config"]["seed"],
        "budget": checkpoint["budget"], "flops": checkpoint["flops"], "params": checkpoint["params"],
        "samples": checkpoint["samples"], "epochs": checkpoint["epochs"], "train_loss": checkpoint["train_loss"],
        "loss": loss, "kl": kl, "heldout_frames": heldout.frames,
        "return": float(returns.mean()),
        "return_sem": float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else float("nan"),
        "episode_returns": returns.tolist(), "episode_lengths": lengths.tolist(),
        "episodes_truncated": int(truncated.sum()), "eval_seed": args.seed,
        # Rollout speed: agent steps of the counted games per second, end to end (with creating the
        # envs or worker processes) and while stepping only (setup excluded).
        "rollout_steps_per_s": float(lengths.sum() / max(rollout_s, 1e-9)),
        "rollout_play_steps_per_s": float(lengths.sum() / max(played.play_s, 1e-9)),
        "rollout_setup_s": played.setup_s,
        **device_record(device, bf16), "heldout_loss_precision": heldout.precision,
        "loss_s": loss_s, "rollout_s": rollout_s, "provenance": provenance(), **played.extra,
    }
    log(f"{game} w{result['width']} {result['budget']:.3g} FLOPs: held-out loss {loss:.4f}, "
        f"return {result['return']:.2f} ± {result['return_sem']:.2f} over {len(returns)} episodes; "
        f"rollouts on {result['device_name']}: {result['rollout_steps_per_s']:,.0f} steps/s "
        f"({result['rollout_play_steps_per_s']:,.0f} while stepping)")
    write_json(result, out_path)
    return result


RESULT_VARIABLES = ("loss", "kl", "return", "return_sem", "samples", "epochs", "flops_actual", "train_loss", "width")
EVALUATION_KEYS = ("game", "budget", "params", "seed", "flops", "loss", "return", "return_sem", "samples", "epochs",
                   "train_loss", "width")  # what gather reads of an evaluation (and kl, see _evaluation_row)


def _evaluation_row(path) -> dict:
    """One evaluation's row of the results table. An Atari evaluation without `kl` predates it and is
    an error; a NetHack one has none to have (no expert distribution), so NaN."""
    result = read_json(path, "evaluation")
    required = EVALUATION_KEYS + (("kl",) if family_of(result.get("game", "")).has_expert_distribution else ())
    result = require_keys(result, required, "evaluation", path)
    return {"game": result["game"], "flops": float(result["budget"]), "params": int(result["params"]),
            "seed": int(result["seed"]), "flops_actual": result["flops"], "kl": result.get("kl", np.nan),
            **{k: result[k] for k in ("loss", "return", "return_sem", "samples", "epochs", "train_loss", "width")}}


def gather_results(eval_paths: list[str | Path], card_paths: list[str | Path], out_nc: str | Path,
                   out_csv: str | Path, log=print) -> xr.Dataset:
    """All evaluations in one Dataset (dims game, flops, params, seed) plus a CSV twin.

    `loss` is the held-out cross entropy on the recorded actions, `kl` the held-out KL(π_expert ‖ π_BC)
    (NaN for NetHack, which has no expert distribution).
    From the data cards: `expert_return`, `expert_loss` and `expert_kl` (dim game).

    `flops` is the nominal budget; the FLOPs a checkpoint actually reached (at most one batch
    more) are kept as `flops_actual`.
    """
    rows = [_evaluation_row(path) for path in eval_paths]
    if not rows:
        raise ValueError("no evaluation results to gather")
    cards = {}
    for path in card_paths:
        card = require_keys(read_json(path, "data card"), ("game",), "data card", path)
        cards[card["game"]] = card
    expert = {name: {game: card[key] for game, card in cards.items() if key in card}
              for name, key in (("expert_return", "expert_mean_return"), ("expert_loss", "expert_cross_entropy"),
                                ("expert_kl", "expert_kl"))}
    dataset = build_results(rows, expert)
    # The expert's cross entropy on its own demonstrations: the floor of the held-out loss.
    dataset["expert_loss"].attrs.update(long_name="expert's cross entropy on its demonstrations (loss floor)")
    dataset["expert_kl"].attrs.update(long_name="expert network's KL to the policy it played (0 when it sampled)")
    dataset["kl"].attrs.update(note="mean over held-out frames against the expert's recorded action distribution; "
                                    "NaN for NetHack (no expert distribution)")
    dataset.attrs.update(source="ilscaling", description="BC scaling sweep: held-out loss and return per checkpoint")
    write_results(dataset, out_nc, out_csv)
    table = pd.DataFrame(rows)
    for game, rows in table.groupby("game"):
        log(f"{game}: {len(rows)} evaluations, {rows['flops'].nunique()} budgets, {rows['params'].nunique()} sizes, "
            f"loss {rows['loss'].min():.4f}..{rows['loss'].max():.4f}, kl {rows['kl'].min():.4f}.."
            f"{rows['kl'].max():.4f}, return {rows['return'].min():.1f}.."
            f"{rows['return'].max():.1f}")
    log(f"wrote {out_nc} and {out_csv}")
    return dataset
