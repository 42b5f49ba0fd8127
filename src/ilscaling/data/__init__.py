"""Demonstration data of each game family; the whole-episode split they share."""

from __future__ import annotations

import numpy as np


def heldout_count(num_episodes: int, heldout_fraction: float) -> int:
    """Episodes held out of `num_episodes`: the fraction, rounded, at least 1 and leaving at least 1."""
    return min(max(1, round(heldout_fraction * num_episodes)), num_episodes - 1)


def split_episodes(num_episodes: int, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of whole episodes: (train ids, held-out ids), each non-empty and sorted."""
    if num_episodes < 2:
        raise ValueError(f"need at least 2 episodes to split into train and held-out, got {num_episodes}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    num_heldout = heldout_count(num_episodes, heldout_fraction)
    return np.sort(order[num_heldout:]), np.sort(order[:num_heldout])
