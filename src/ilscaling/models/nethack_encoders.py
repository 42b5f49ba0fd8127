"""The NetHack BC network's observation encoders (after Tuyls et al.'s `NetHackNetTtyrec`, itself
the NLD "ChaoticDwarvenGPT5"), each with its analytic forward FLOPs per sample:

* message: the top screen line (row 0, 80 characters) one-hot over 256 codes -> MLP (msg_hdim, 2 layers);
* bottom lines: rows 22-23 as 160 positions x 2 channels (character, digit value) -> Conv1d k8/s4 ->
  Conv1d k4 -> MLP to h/4 (2 layers);
* map: rows 1..21 (21 x 80) as character + colour embeddings -> ResNet (per stage: 3x3 conv, 3x3/2 max
  pool, residual blocks of 3x3 conv + BatchNorm + ELU) -> flatten -> linear to h;
* crop: the 9 x 9 map window around the cursor (`tty_cursor` = (row, col) on the 24 x 80 screen; the
  map is padded with code 0 where the window leaves it) -> the same embeddings -> 3x3 convs + BatchNorm;
* the previous action, one-hot (121).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ilscaling.flops import conv1d_flops, conv1d_output_length, conv2d_flops, conv_output_hw, linear_flops
from ilscaling.models.nethack_config import CROP, MAP_ROWS, NUM_CHARS, SCREEN_COLS, SCREEN_ROWS, EncoderSizes


class TopLineEncoder(nn.Module):
    """The message line, one-hot (80 x 256) -> linear -> ELU -> linear -> ELU.

    one_hot(line) @ W is the sum of the 80 rows of W the characters select: computed with
    `F.embedding_bag` (no 20480-wide one-hot, a sparse gradient pattern), counted as the dense layer.
    """

    def __init__(self, msg_hdim: int):
        super().__init__()
        fan_in = SCREEN_COLS * NUM_CHARS
        bound = 1 / math.sqrt(fan_in)  # nn.Linear(fan_in, msg_hdim)'s default initialisation
        self.weight = nn.Parameter(torch.empty(fan_in, msg_hdim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(msg_hdim).uniform_(-bound, bound))
        self.fc = nn.Linear(msg_hdim, msg_hdim)
        self.register_buffer("offsets", torch.arange(SCREEN_COLS) * NUM_CHARS, persistent=False)
        self.out_dim = msg_hdim

    def forward(self, line: torch.Tensor) -> torch.Tensor:
        """line: long (N, 80) character codes -> (N, msg_hdim)."""
        x = F.embedding_bag(line + self.offsets, self.weight, mode="sum") + self.bias
        return F.elu(self.fc(F.elu(x)))

    def lookup_flops(self) -> int:
        """FLOPs of the one-hot layer counted as dense (2 x 20480 x msg_hdim); FlopCounterMode sees 0."""
        return 2 * self.weight.numel()

    def flops(self) -> int:
        return self.lookup_flops() + linear_flops(self.fc)


class BottomLinesEncoder(nn.Module):
    """Rows 22-23 as 160 positions x (character, digit) channels -> 2 Conv1d -> 2-layer MLP to h/4."""

    def __init__(self, channels: tuple[int, int], out_dim: int):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv1d(2, c1, kernel_size=8, stride=4)
        self.conv2 = nn.Conv1d(c1, c2, kernel_size=4, stride=1)
        self.len1 = conv1d_output_length(self.conv1, 2 * SCREEN_COLS)
        self.len2 = conv1d_output_length(self.conv2, self.len1)
        self.fc1 = nn.Linear(self.len2 * c2, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, lines: torch.Tensor) -> torch.Tensor:
        """lines: long (N, 2, 80) character codes -> (N, out_dim)."""
        x = lines.reshape(lines.shape[0], -1).float()
        chars = (x - 32) / 96  # printable ASCII to about [0, 1]
        digits = ((x > 44) & (x < 58)) * (x - 47) / 10  # '-./0123456789' as numbers (the authors' offset)
        x = torch.stack([chars, digits], dim=1)
        x = F.elu(self.conv2(F.elu(self.conv1(x))))
        return F.elu(self.fc2(F.elu(self.fc1(x.flatten(1)))))

    def flops(self) -> int:
        return (conv1d_flops(self.conv1, self.len1) + conv1d_flops(self.conv2, self.len2)
                + linear_flops(self.fc1) + linear_flops(self.fc2))


class ResBlock(nn.Module):
    """x + (3x3 conv -> BatchNorm -> ELU) x layers."""

    def __init__(self, channels: int, layers: int):
        super().__init__()
        modules = []
        for _ in range(layers):
            modules += [nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ELU()]
        self.net = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + x


class MapEncoder(nn.Module):
    """Embedded 21 x 80 map -> ResNet stages (conv, 3x3/2 max pool, residual blocks) -> linear to h."""

    def __init__(self, in_channels: int, sizes: EncoderSizes, out_dim: int):
        super().__init__()
        stages, self.conv_hw, hw = [], [], (MAP_ROWS, SCREEN_COLS)
        for channels in sizes.screen_channels:
            conv = nn.Conv2d(in_channels, channels, 3, padding=1)
            self.conv_hw.append(conv_output_hw(conv, hw))
            hw = tuple((n - 3) // 2 + 1 for n in self.conv_hw[-1])  # MaxPool2d(3, stride 2)
            self.conv_hw += [hw] * (sizes.res_blocks * sizes.res_layers)
            stages += [conv, nn.MaxPool2d(3, stride=2)] + [ResBlock(channels, sizes.res_layers)
                                                           for _ in range(sizes.res_blocks)]
            in_channels = channels
        self.net = nn.Sequential(*stages)
        self.fc = nn.Linear(hw[0] * hw[1] * in_channels, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, 21, 80) embedded map -> (N, out_dim)."""
        return F.elu(self.fc(self.net(x).flatten(1)))

    def flops(self) -> int:
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == len(self.conv_hw)
        return sum(conv2d_flops(c, hw) for c, hw in zip(convs, self.conv_hw)) + linear_flops(self.fc)


class CropEncoder(nn.Module):
    """Embedded 9 x 9 window around the cursor -> (3x3 conv -> BatchNorm -> ELU) x layers -> flatten."""

    def __init__(self, in_channels: int, sizes: EncoderSizes):
        super().__init__()
        widths = [in_channels] + [sizes.crop_channels] * (sizes.crop_layers - 1) + [sizes.crop_out]
        modules = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            modules += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ELU()]
        self.net = nn.Sequential(*modules)
        self.out_dim = CROP * CROP * sizes.crop_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)

    def flops(self) -> int:
        return sum(conv2d_flops(m, (CROP, CROP)) for m in self.net.modules() if isinstance(m, nn.Conv2d))


def crop_around_cursor(grid: torch.Tensor, cursor: torch.Tensor) -> torch.Tensor:
    """The 9 x 9 window of the (N, 21, 80) map centred on each screen cursor (N, 2) = (row, col).

    The map starts at screen row 1, so the centre is (row - 1, col). Outside the map the window
    reads code 0 (the authors' crop zero-pads too); the cursor may sit on the message line.
    """
    half = CROP // 2
    pad_rows = half + 2  # centres from map row -1 (cursor on the message line) to 22 (bottom lines)
    padded = F.pad(grid, (half, half, pad_rows, pad_rows))
    row0 = (cursor[:, 0] - 1).clamp(-1, SCREEN_ROWS - 2) + pad_rows - half
    col0 = cursor[:, 1].clamp(0, SCREEN_COLS - 1)
    steps = torch.arange(CROP, device=grid.device)
    rows = (row0[:, None] + steps)[:, :, None]
    cols = (col0[:, None] + steps)[:, None, :]
    return padded[torch.arange(grid.shape[0], device=grid.device)[:, None, None], rows, cols]
