"""The authors' width-scaled Atari BC network: one factor `width` scales every layer.

conv 8x8/4 (w channels) -> conv 4x4/2 (2w) -> conv 3x3/1 (2w) -> linear to the action logits.
Width 1..266 spans about 1k..5M parameters. Parameter and FLOP counts live next to the model.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ilscaling.flops import count_parameters, sequential_forward_flops, training_flops_per_sample

FRAME_HW = (84, 84)
STACK = 4


class WidthCNN(nn.Module):
    def __init__(self, width: int, num_actions: int, channels_last: bool = False):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width, self.num_actions = width, num_actions
        # channels-last (NHWC) activations and conv weights: the same model and state dict (the
        # checkpoint does not depend on it), but oneDNN's (CPU) and cuDNN's (GPU) faster convolution
        # kernels: 1.2-1.7x in training at widths 34-66 on one CPU thread (benchmarks/throughput.py).
        self.channels_last = channels_last
        self.layers = nn.Sequential(
            nn.Conv2d(STACK, width, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, num_actions),
        )
        if channels_last:
            self.to(memory_format=torch.channels_last)  # the conv weights too (after init: same values)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, 4, 84, 84) -> action logits (B, A)."""
        scaled = frames.float() / 255.0
        if self.channels_last:
            scaled = scaled.contiguous(memory_format=torch.channels_last)
        return self.layers(scaled)

    def forward_flops(self) -> int:
        """Analytic forward FLOPs of one sample."""
        return sequential_forward_flops(self.layers, FRAME_HW)

    def train_flops_per_sample(self) -> float:
        return training_flops_per_sample(self.forward_flops())

    def num_params(self) -> int:
        return count_parameters(self)


@lru_cache(maxsize=None)
def model_size(width: int, num_actions: int) -> tuple[int, float]:
    """(parameters, training FLOPs per sample) of a width, without keeping the model."""
    model = WidthCNN(width, num_actions)
    return model.num_params(), model.train_flops_per_sample()
