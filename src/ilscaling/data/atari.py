"""Atari demonstrations on disk: single uint8 frames, 4-frame stacks rebuilt at load time.

One `.npz` per split (train, heldout) holds whole episodes back to back:
  frames (T, 84, 84) uint8   newest frame of each observation the expert acted on
  actions (T,) uint8, rewards (T,) float32
  episode_starts (E + 1,) int64  offsets into the frame axis, last entry = T
  episode_ids (E,) int64, episode_returns (E,) float64
  expert_probs (T, A) float32  the expert's action distribution at each frame, as played: the
                               softmax it sampled from, or the one-hot on the recorded (argmax)
                               action when greedy; a BC model's KL is measured against it
                               (24 bytes a frame for 6 actions beside the frame's 7 KB)
Storing single frames is 4x smaller than stacks; the stack is rebuilt exactly as ALE builds
it (zeros before the episode's first frame), which a test checks against the live env.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilscaling.data import split_episodes  # noqa: F401  (re-exported: the split is shared with NetHack)
from ilscaling.io import DataFileError, atomic_path, write_json

STACK = 4
_ARRAYS = ("frames", "actions", "rewards", "episode_starts", "episode_ids", "episode_returns", "expert_probs")
EXPERT_PROBS_TEXT = ("expert_probs (T, A) float32: the expert's action distribution at each frame as played "
                     "(its softmax when sampling, the one-hot on the recorded action when greedy)")


@dataclass
class Demonstrations:
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    episode_starts: np.ndarray
    episode_ids: np.ndarray
    episode_returns: np.ndarray
    expert_probs: np.ndarray

    def __post_init__(self):
        lengths = np.diff(self.episode_starts)
        # Offset of each frame's episode start: frames before it are zeros in the stack.
        self._frame_episode_start = np.repeat(self.episode_starts[:-1], lengths)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ids)

    def stacked(self, index: np.ndarray) -> np.ndarray:
        """(B, 4, 84, 84) uint8 observations for frame indices `index`, oldest frame first."""
        index = np.asarray(index)
        steps = index[:, None] - np.arange(STACK - 1, -1, -1)  # (B, 4): t-3 .. t
        inside = steps >= self._frame_episode_start[index][:, None]
        stacks = self.frames[np.where(inside, steps, index[:, None])]
        stacks[~inside] = 0
        return stacks

    @classmethod
    def from_episodes(cls, frames, actions, rewards, episode_ids, expert_probs) -> "Demonstrations":
        """Concatenate per-episode arrays (lists; expert_probs: (T, A) each) into one split."""
        lengths = np.array([len(a) for a in actions], dtype=np.int64)
        return cls(
            frames=np.concatenate(frames) if frames else np.zeros((0, 84, 84), np.uint8),
            actions=np.concatenate(actions).astype(np.uint8) if actions else np.zeros(0, np.uint8),
            rewards=np.concatenate(rewards).astype(np.float32) if rewards else np.zeros(0, np.float32),
            episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            episode_ids=np.asarray(episode_ids, dtype=np.int64),
            episode_returns=np.array([float(np.sum(r)) for r in rewards], dtype=np.float64),
            expert_probs=(np.concatenate(expert_probs).astype(np.float32) if expert_probs
                          else np.zeros((0, 0), np.float32)),
        )

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **{name: getattr(self, name) for name in _ARRAYS})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Demonstrations":
        """Load a split, naming the file if it is missing, truncated or inconsistent."""
        path = Path(path)
        if not path.is_file():
            raise DataFileError(f"demonstration file {path} does not exist")
        try:
            with np.load(path) as archive:
                missing = [name for name in _ARRAYS if name not in archive.files]
                if missing:
                    hint = ("; it predates the stored expert policy: record the demonstrations again"
                            if missing == ["expert_probs"] else "")
                    raise DataFileError(f"demonstration file {path} lacks arrays {missing}{hint}")
                arrays = {name: archive[name] for name in _ARRAYS}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise DataFileError(f"demonstration file {path} is corrupt or truncated ({err})") from err
        demos = cls(**arrays)
        if demos.episode_starts[-1] != len(demos.frames) or len(demos.frames) != len(demos.actions):
            raise DataFileError(f"demonstration file {path} is inconsistent: episode offsets do not match frames")
        check_expert_probs(demos, path)
        return demos


def check_expert_probs(demos: Demonstrations, path) -> None:
    """expert_probs holds one distribution per frame over at least the recorded actions."""
    probs = demos.expert_probs
    if probs.ndim != 2 or len(probs) != len(demos.actions):
        raise DataFileError(f"demonstration file {path} is inconsistent: expert_probs has shape {probs.shape}, "
                            f"expected ({len(demos.actions)}, number of actions)")
    if len(probs) == 0:
        return
    if int(demos.actions.max()) >= probs.shape[1]:
        raise DataFileError(f"demonstration file {path} is inconsistent: actions up to {int(demos.actions.max())} "
                            f"but expert_probs covers {probs.shape[1]} actions")
    sums = probs.sum(axis=1, dtype=np.float64)
    if not (np.isfinite(probs).all() and (probs >= 0).all() and np.allclose(sums, 1.0, atol=1e-4)):
        raise DataFileError(f"demonstration file {path}: expert_probs rows are not probability distributions "
                            f"(row sums {sums.min():.6g}..{sums.max():.6g})")


def write_demonstrations(episodes, out_dir: str | os.PathLike, heldout_fraction: float, seed: int,
                         game: str, **card_fields) -> dict:
    """Split recorded episodes, write train.npz, heldout.npz and card.json; return the card.

    `card_fields` (how the episodes were recorded) go into the card as they are.
    """
    out_dir = Path(out_dir)
    train_ids, heldout_ids = split_episodes(len(episodes.frames), heldout_fraction, seed)
    card = {"game": game, "split_seed": seed, "heldout_fraction": heldout_fraction,
            "arrays": {"frames": "(T, 84, 84) uint8, newest frame of each observation", "actions": "(T,) uint8",
                       "rewards": "(T,) float32", "episode_starts": "(E + 1,) int64", "episode_ids": "(E,) int64",
                       "episode_returns": "(E,) float64", "expert_probs": EXPERT_PROBS_TEXT},
            **card_fields}
    for name, ids in (("train", train_ids), ("heldout", heldout_ids)):
        split = Demonstrations.from_episodes(
            [episodes.frames[i] for i in ids], [episodes.actions[i] for i in ids],
            [episodes.rewards[i] for i in ids], ids, [episodes.policies[i] for i in ids],
        )
        split.save(out_dir / f"{name}.npz")
        card[name] = {
            "episodes": split.num_episodes,
            "frames": len(split),
            "bytes": (out_dir / f"{name}.npz").stat().st_size,
            "episode_ids": ids.tolist(),
        }
    returns = np.asarray(episodes.returns, dtype=float)
    card.update(
        episodes=len(returns),
        frames=int(sum(len(a) for a in episodes.actions)),
        bytes=card["train"]["bytes"] + card["heldout"]["bytes"],
        expert_mean_return=float(returns.mean()),
        expert_return_sem=float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else float("nan"),
        episode_returns=returns.tolist(),
        episode_lengths=[len(a) for a in episodes.actions],
        action_counts=np.bincount(np.concatenate(episodes.actions)).tolist(),
    )
    write_json(card, out_dir / "card.json")
    return card


def epoch_order(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch: every training frame once, in a fresh random order."""
    return rng.permutation(num_frames)
