"""Analytic FLOP counting, the accounting every budget in the study is measured in.

Convention (as the authors): a multiply-add is 2 FLOPs; only convolutions and linear
layers are counted (activations, normalisation and the loss are negligible); the backward
pass costs 2 x the forward pass, so one training sample costs 3 x its forward FLOPs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a count needs it: the fits and budget labels do not
    import torch
    from torch import nn

BACKWARD_TO_FORWARD = 2.0


def conv2d_flops(layer: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    """Forward FLOPs of one Conv2d application producing an `out_hw` feature map."""
    kernel_macs = (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
    macs = out_hw[0] * out_hw[1] * layer.out_channels * kernel_macs
    return 2 * macs


def linear_flops(layer: nn.Linear) -> int:
    """Forward FLOPs of one Linear layer on one input vector."""
    return 2 * layer.in_features * layer.out_features


def conv_output_hw(layer: nn.Conv2d, in_hw: tuple[int, int]) -> tuple[int, int]:
    """Spatial size after `layer` (no dilation), as PyTorch computes it."""
    return tuple(
        (size + 2 * pad - kernel) // stride + 1
        for size, pad, kernel, stride in zip(in_hw, layer.padding, layer.kernel_size, layer.stride)
    )


def sequential_forward_flops(layers: nn.Module, in_hw: tuple[int, int]) -> int:
    """Forward FLOPs of a feed-forward stack of Conv2d/Linear layers, walked in order."""
    from torch import nn

    total, hw = 0, in_hw
    for layer in layers.modules():
        if isinstance(layer, nn.Conv2d):
            hw = conv_output_hw(layer, hw)
            total += conv2d_flops(layer, hw)
        elif isinstance(layer, nn.Linear):
            total += linear_flops(layer)
    return total


def conv1d_output_length(layer: nn.Conv1d, length: int) -> int:
    """Length after a Conv1d (no dilation), as PyTorch computes it."""
    return (length + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1


def conv1d_flops(layer: nn.Conv1d, out_length: int) -> int:
    """Forward FLOPs of one Conv1d application producing `out_length` positions."""
    return 2 * out_length * layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel_size[0]


def lstm_step_flops(input_size: int, hidden_size: int) -> int:
    """Forward FLOPs of one LSTM time step of one sequence: the four gates' input and hidden projections."""
    return 2 * 4 * hidden_size * (input_size + hidden_size)


def attention_block_flops(width: int, ffn_width: int, queries: int, keys: int) -> int:
    """Forward FLOPs of one self-attention block (Q, K, V, output projections, scores, weighted
    values, a 2-layer feed-forward net) for `queries` new tokens attending over `keys` keys.

    K and V are projected for every key (Transformer-XL: the memory's hidden states are stored,
    its keys and values recomputed); scores and values are counted over all keys, masked or not,
    as a dense masked attention computes them. Divide by `queries` for the cost per token.
    """
    projections = 2 * width * width * queries * 2 + 2 * width * 2 * width * keys  # Q, O; K, V
    attention = 2 * queries * keys * width * 2  # QK^T and AV over all heads
    feed_forward = 2 * 2 * width * ffn_width * queries
    return projections + attention + feed_forward


def training_flops_per_sample(forward_flops: float) -> float:
    """Forward + backward FLOPs of one training sample."""
    return (1.0 + BACKWARD_TO_FORWARD) * forward_flops


def epochs_for_budget(budget: float, flops_per_sample: float, frames: float) -> float:
    """Passes over `frames` training frames that spending `budget` takes, at `flops_per_sample` each."""
    return budget / flops_per_sample / frames


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measured_forward_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs PyTorch's FlopCounterMode counts for one forward pass of `example` (per batch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example)
    return counter.get_total_flops()


def measured_step_flops(step) -> int:
    """FLOPs PyTorch's FlopCounterMode counts in one call of `step` (e.g. a training step): matmuls
    and convolutions, forward and backward, each backward only for the gradients it computes (a
    first layer computes no input gradient: its backward is 1x its forward, not the convention's 2x)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def budget_label(budget: float) -> str:
    """Compact, file-name-safe label of a FLOP budget: 1e10, 2e10, 2.5e11."""
    mantissa, exponent = f"{budget:.6e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"
