"""Softmax sampling of actions with one seeded stream of uniform numbers per game (both families).

A game's k-th sampled action reads the k-th number of its own stream, so it does not depend on
which other games shared the forward, how games are spread over environments and processes, or
the device: the rollouts of two checkpoints on the same seeded games are paired draw for draw.
"""

from __future__ import annotations

import numpy as np
import torch


class ActionSampler:
    """Batched actions from logits, with one stream of uniform numbers per game slot.

    Sampled actions use inverse-CDF sampling of softmax(logits) in float32: slot j's k-th action
    reads the k-th number of slot j's own stream (numpy PCG64 seeded by (seed, j)). So an action
    never depends on which other rows shared the forward, on how the envs are grouped or
    pipelined, or on the device: a rollout is deterministic given `seed`. greedy=True takes the
    argmax. Logits may live on any device; actions come back as an int64 numpy array.
    """

    BLOCK = 512  # uniform numbers drawn per slot at a time

    def __init__(self, num_slots: int, seed: int, *, greedy: bool, device: torch.device | str = "cpu"):
        self.greedy, self.device = greedy, torch.device(device)
        self._rngs = [np.random.default_rng([seed, slot]) for slot in range(num_slots)]
        self._noise = np.empty((num_slots, self.BLOCK), dtype=np.float32)
        self._used = np.full(num_slots, self.BLOCK, dtype=np.int64)  # all blocks empty

    def uniforms(self, slots: np.ndarray) -> np.ndarray:
        """The next uniform number of each slot in `slots` (no repeats)."""
        for slot in slots[self._used[slots] >= self.BLOCK]:
            self._noise[slot] = self._rngs[slot].random(self.BLOCK, dtype=np.float32)
            self._used[slot] = 0
        values = self._noise[slots, self._used[slots]]
        self._used[slots] += 1
        return values

    def __call__(self, logits: torch.Tensor, slots: np.ndarray) -> np.ndarray:
        if self.greedy:
            actions = logits.argmax(dim=1)
        else:
            cdf = torch.softmax(logits.float(), dim=1).cumsum_(dim=1)
            u = torch.from_numpy(self.uniforms(slots)).to(cdf.device, non_blocking=True)
            # The first action whose cumulative probability exceeds u (float rounding can leave
            # the last cdf entry just below 1: clamp to the last action).
            actions = (cdf <= u[:, None]).sum(dim=1).clamp_(max=cdf.shape[1] - 1)
        return actions.cpu().numpy().astype(np.int64, copy=False)
