"""The authors' NetHack BC network, width-scaled by one number: the hidden size h.

The observation encoders (`ilscaling.models.nethack_encoders`) and the previous action, one-hot,
all concatenated -> fc layers of width h (ReLU) -> core (`ilscaling.models.nethack_cores`) ->
linear to the action logits. The sizes of each variant and the config: `ilscaling.models.nethack_config`.
The parameter and FLOP counts live next to the model.

FLOPs follow `ilscaling.flops` (multiply-add = 2, conv/linear/matmul only, training = 3 x forward),
counted analytically per sample (one time step) and checked against torch's FlopCounterMode in
tests/test_nethack_models.py. The message's one-hot x weight is computed as an embedding-bag
lookup (the same numbers, no 20480-wide one-hot): it is counted as the dense linear layer the
authors' model has (2 x 20480 x msg_hdim FLOPs), which FlopCounterMode does not see.

Every state tensor has the batch as dimension 0 (LSTM: h, c of (B, h); transformer: one (B, unroll,
h) memory per block, then a (B, unroll) bool mask of the memory slots of the current game), so
rows can be reset, saved in a checkpoint or moved as plain tensors.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ilscaling.flops import count_parameters, linear_flops, training_flops_per_sample
from ilscaling.models.nethack_config import (
    MAP_ROWS,
    NUM_CHARS,
    NUM_COLORS,
    SCREEN_COLS,
    SCREEN_ROWS,
    NetHackModelConfig,
)
from ilscaling.models.nethack_cores import LSTMCore, TransformerCore
from ilscaling.models.nethack_encoders import (
    BottomLinesEncoder,
    CropEncoder,
    MapEncoder,
    TopLineEncoder,
    crop_around_cursor,
)


def _lookup(weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Embedding rows of `codes` (any shape) -> codes.shape + (dim,)."""
    return weight.index_select(0, codes.reshape(-1)).view(*codes.shape, weight.shape[1])


class NetHackNet(nn.Module):
    def __init__(self, config: NetHackModelConfig):
        super().__init__()
        self.config = config
        sizes, h = config.encoders, config.hidden
        self.num_actions = config.num_actions
        self.char_embed = nn.Embedding(NUM_CHARS, sizes.char_edim)
        self.color_embed = nn.Embedding(NUM_COLORS, sizes.color_edim)
        embedded = sizes.char_edim + sizes.color_edim
        self.topline = TopLineEncoder(sizes.msg_hdim)
        self.bottom = BottomLinesEncoder(sizes.bottom_channels, h // 4)
        self.screen = MapEncoder(embedded, sizes, h)
        self.crop = CropEncoder(embedded, sizes)
        concat = (self.topline.out_dim + self.bottom.out_dim + self.screen.out_dim + self.crop.out_dim
                  + config.num_actions)
        layers = []
        for i in range(sizes.fc_layers):
            layers += [nn.Linear(concat if i == 0 else h, h), nn.ReLU()]
        self.fc = nn.Sequential(*layers)
        if config.core == "lstm":
            self.core = LSTMCore(h)
        else:
            self.core = TransformerCore(h, config.transformer_layers, config.transformer_heads, config.unroll)
        self.policy = nn.Linear(h, config.num_actions)

    def initial_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, ...]:
        """The state at the start of a game for `batch_size` rows (a tuple of plain tensors)."""
        return self.core.initial_state(batch_size, device)

    def _embed(self, chars: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """(N, H, W) codes -> (N, char_edim + color_edim, H, W), channels-last in memory.

        `index_select` rather than `nn.Embedding`'s forward: the same numbers, a ~4x faster backward
        on CPU (pytorch#24912, as the authors do); channels-last makes the convs and max pools
        ~4x faster on CPU too.
        """
        x = torch.cat([_lookup(self.char_embed.weight, chars), _lookup(self.color_embed.weight, colors)], dim=-1)
        return x.permute(0, 3, 1, 2)

    def forward(self, tty_chars, tty_colors, tty_cursor, prev_action, done, state):
        """tty_chars uint8 (B, T, 24, 80), tty_colors int8 (B, T, 24, 80), tty_cursor (B, T, 2) = (row,
        col), prev_action int64 (B, T), done bool (B, T) (true at a game's first step), state from
        `initial_state` or the previous call -> (logits float32 (B, T, A), new state)."""
        B, T = tty_chars.shape[:2]
        N = B * T
        chars = tty_chars.reshape(N, SCREEN_ROWS, SCREEN_COLS).long()
        colors = tty_colors.reshape(N, SCREEN_ROWS, SCREEN_COLS).long() & (NUM_COLORS - 1)
        cursor = tty_cursor.reshape(N, 2).long()
        map_chars, map_colors = chars[:, 1:1 + MAP_ROWS], colors[:, 1:1 + MAP_ROWS]
        crop = self._embed(crop_around_cursor(map_chars, cursor), crop_around_cursor(map_colors, cursor))
        features = [
            self.topline(chars[:, 0]),
            self.bottom(chars[:, 1 + MAP_ROWS:]),
            self.screen(self._embed(map_chars, map_colors)),
            self.crop(crop),
            F.one_hot(prev_action.reshape(N), self.num_actions).float(),
        ]
        x = self.fc(torch.cat(features, dim=1)).view(B, T, -1)  # (under autocast, cat promotes to float32)
        x, state = self.core(x, done.to(torch.bool), state)
        return self.policy(x).float(), state

    # --- sizes -----------------------------------------------------------------------------------

    def flops_breakdown(self) -> dict[str, float]:
        """Analytic forward FLOPs of one sample (one time step) per part."""
        core = self.core.flops_per_token() if self.config.core == "lstm" else \
            self.core.flops_per_token(self.config.unroll)
        return {
            "topline": self.topline.flops(),
            "bottom": self.bottom.flops(),
            "screen": self.screen.flops(),
            "crop": self.crop.flops(),
            "fc": sum(linear_flops(m) for m in self.fc if isinstance(m, nn.Linear)),
            "core": core,
            "policy": linear_flops(self.policy),
        }

    def encoder_flops(self) -> int:
        """Forward FLOPs per sample of the four observation encoders (incl. their linear heads)."""
        parts = self.flops_breakdown()
        return int(parts["topline"] + parts["bottom"] + parts["screen"] + parts["crop"])

    def forward_flops(self) -> int:
        """Analytic forward FLOPs of one sample (one time step): encoders, fc, core, policy. For the
        transformer: the average per token of an `unroll`-step segment with a full memory."""
        return round(sum(self.flops_breakdown().values()))

    def train_flops_per_sample(self) -> float:
        return training_flops_per_sample(self.forward_flops())

    def num_params(self) -> int:
        return count_parameters(self)


@lru_cache(maxsize=None)
def model_size(config: NetHackModelConfig) -> tuple[int, float]:
    """(parameters, training FLOPs per sample) of a config, without keeping the model."""
    model = NetHackNet(config)
    return model.num_params(), model.train_flops_per_sample()


def size_table(configs) -> list[dict]:
    """One row per config: its size and FLOPs, with the encoders' share and 6N for comparison."""
    rows = []
    for config in configs:
        model = NetHackNet(config)
        forward, params = model.forward_flops(), model.num_params()
        rows.append({
            "hidden": config.hidden,
            "core": config.core,
            "variant": config.variant,
            "params": params,
            "forward_flops": forward,
            "train_flops": model.train_flops_per_sample(),
            "encoder_flop_share": model.encoder_flops() / forward,
            "six_n": 6 * params,
        })
    return rows
