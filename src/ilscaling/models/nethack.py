"""The authors' NetHack BC network, width-scaled by one number: the hidden size h.

Observation encoders (after Tuyls et al.'s `NetHackNetTtyrec`, itself the NLD "ChaoticDwarvenGPT5"):

* message: the top screen line (row 0, 80 characters) one-hot over 256 codes -> MLP (msg_hdim, 2 layers);
* bottom lines: rows 22-23 as 160 positions x 2 channels (character, digit value) -> Conv1d k8/s4 ->
  Conv1d k4 -> MLP to h/4 (2 layers);
* map: rows 1..21 (21 x 80) as character + colour embeddings -> ResNet (per stage: 3x3 conv, 3x3/2 max
  pool, residual blocks of 3x3 conv + BatchNorm + ELU) -> flatten -> linear to h;
* crop: the 9 x 9 map window around the cursor (`tty_cursor` = (row, col) on the 24 x 80 screen; the
  map is padded with code 0 where the window leaves it) -> the same embeddings -> 3x3 convs + BatchNorm;
* the previous action, one-hot (121).

All concatenated -> fc layers of width h (ReLU) -> core -> linear to the action logits. Core
"lstm": LSTM(h, h), state zeroed at every time step where `done` is true (the paper's first
version). Core "transformer": pre-norm causal self-attention blocks of width h (the TMLR version),
Transformer-XL style: each block also attends to a memory of the previous `unroll` inputs of that
block (detached), and no token attends across a game boundary (the mask is built from `done`).
Positions are rotary (sinusoidal rotations of queries and keys by their offset in the window):
they depend only on distances, so a sequence fed in unrolls of 80 or step by step in a rollout
sees the same position signal, and they add no parameters or counted FLOPs.

Variants: "full" and "reduced" (`ENCODERS`) fix the encoder sizes, only h scales; "scaled" grows
the encoders with h too:

* "full": the authors' sizes -- embeddings 16 + 16, message MLP 64, ResNet 2 stages of (16, 32)
  channels with 2 residual blocks of 2 convs each (10 convs), crop 5 convs 16 -> 8 channels, bottom
  Conv1d (32, 64) channels, 2 fc layers. Encoders 37.2M forward FLOPs per sample for any h
  (plus their output layers, whose width is h: 2 x 2432 h + ...); parameters (LSTM core) h=128:
  2.08M, h=1536: 31.8M, h=2048: 52.8M, where the paper quotes ~1.9M, ~29M, ~48M (with a single fc
  layer they would be 2.06M, 29.5M, 48.6M; the authors' code defaults to 2, as the notes say).
* "reduced": for a 2-core CPU study. Reduced: character / colour embeddings 16/16 -> 8/4,
  message MLP 64 -> 16, ResNet channels (16, 32) -> (8, 16) and residual blocks per stage 2 -> 1
  (6 convs instead of 10), crop convs 5 -> 3 with 16 -> 8 inner and 8 -> 4 output channels, bottom
  Conv1d channels (32, 64) -> (16, 32). Same layout, same inputs, same core; encoders 6.5M
  forward FLOPs per sample (5.7x fewer) plus their h-wide output layers (2 x 1216 h + ...).
* "scaled": one width number for the whole network, like the Atari CNN's: every encoder size is
  the reduced one times h / 256 (`SCALED_REFERENCE_WIDTH`; rounded half up, at least 1), so at
  h = 256 it is the reduced model. With fixed encoders (~20M of the reduced model's 20-27M training
  FLOPs per sample at h = 16..256) a FLOP budget buys every width about the same number of samples
  and the isoFLOP trade-off between size and data disappears; here the training FLOPs per sample
  grow with the parameters: FLOPs / 6N stays between 1.8 and 3.1 for h = 16..512 (the reduced
  variant: 8.7 at h = 16, 2.9 at 256). Below h = 64 the convs are 1-2 channels wide.

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

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ilscaling.flops import (
    attention_block_flops,
    conv1d_flops,
    conv1d_output_length,
    conv2d_flops,
    conv_output_hw,
    count_parameters,
    linear_flops,
    lstm_step_flops,
    training_flops_per_sample,
)

SCREEN_ROWS, SCREEN_COLS = 24, 80
MAP_ROWS = SCREEN_ROWS - 3  # rows 1..21: the top line and the two bottom lines are encoded apart
NUM_CHARS = 256
NUM_COLORS = 128  # the authors' colour table; NLE colours are 0..15
NUM_ACTIONS = 121
CROP = 9
CORES = ("lstm", "transformer")


@dataclass(frozen=True)
class EncoderSizes:
    """The sizes of the observation encoders (fixed, or a function of h for the "scaled" variant)."""

    char_edim: int
    """character embedding size (map and crop)"""
    color_edim: int
    """colour embedding size (map and crop)"""
    msg_hdim: int
    """width of the message (top line) MLP"""
    screen_channels: tuple[int, ...]
    """output channels of each ResNet stage (each stage: conv, max pool, residual blocks)"""
    res_blocks: int
    """residual blocks per ResNet stage"""
    res_layers: int
    """conv + BatchNorm + ELU layers per residual block"""
    crop_channels: int
    """channels of the crop's inner convs"""
    crop_layers: int
    """3x3 convs on the 9x9 crop"""
    crop_out: int
    """channels of the crop's last conv (flattened: 81 x crop_out features)"""
    bottom_channels: tuple[int, int]
    """channels of the two Conv1d layers over the bottom lines"""
    fc_layers: int = 2
    """fc layers of width h between the concatenated encodings and the core"""


ENCODERS = {
    "full": EncoderSizes(char_edim=16, color_edim=16, msg_hdim=64, screen_channels=(16, 32), res_blocks=2,
                         res_layers=2, crop_channels=16, crop_layers=5, crop_out=8, bottom_channels=(32, 64)),
    "reduced": EncoderSizes(char_edim=8, color_edim=4, msg_hdim=16, screen_channels=(8, 16), res_blocks=1,
                            res_layers=2, crop_channels=8, crop_layers=3, crop_out=4, bottom_channels=(16, 32)),
}
SCALED_REFERENCE_WIDTH = 256
"""the width h at which the "scaled" variant's encoders are the reduced ones"""
VARIANTS = (*ENCODERS, "scaled")


def scaled_encoders(hidden: int) -> EncoderSizes:
    """The reduced encoder sizes times hidden / SCALED_REFERENCE_WIDTH (half up, at least 1)."""
    factor = hidden / SCALED_REFERENCE_WIDTH

    def size(reference: int) -> int:
        return max(1, math.floor(reference * factor + 0.5))

    reduced = ENCODERS["reduced"]
    return EncoderSizes(
        char_edim=size(reduced.char_edim), color_edim=size(reduced.color_edim), msg_hdim=size(reduced.msg_hdim),
        screen_channels=tuple(size(c) for c in reduced.screen_channels), res_blocks=reduced.res_blocks,
        res_layers=reduced.res_layers, crop_channels=size(reduced.crop_channels), crop_layers=reduced.crop_layers,
        crop_out=size(reduced.crop_out), bottom_channels=tuple(size(c) for c in reduced.bottom_channels),
        fc_layers=reduced.fc_layers)


@dataclass(frozen=True)
class NetHackModelConfig:
    hidden: int
    """the width h: fc layers, core, map-encoder output (and h/4 for the bottom-line encoder)"""
    core: str = "lstm"
    """sequence core: "lstm" (the paper's first version) or "transformer" (its TMLR version)"""
    variant: str = "full"
    """encoder sizes: "full" (the authors'), "reduced" (a CPU study), both fixed (`ENCODERS`), or
    "scaled" (the reduced ones grown with h: `scaled_encoders`)"""
    unroll: int = 80
    """time steps per training sequence; the transformer's memory holds this many steps, and its
    FLOPs per sample are those of a segment of this length attending to a full memory"""
    transformer_layers: int = 2
    """transformer blocks (core "transformer" only)"""
    transformer_heads: int = 4
    """attention heads; hidden / heads must be even (core "transformer" only)"""
    num_actions: int = NUM_ACTIONS
    """action logits (NLE's full keyboard: 121)"""

    def __post_init__(self):
        if self.core not in CORES:
            raise ValueError(f"core must be one of {CORES}, got {self.core!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.hidden < 4:
            raise ValueError(f"hidden must be >= 4 (the bottom-line encoder is h/4 wide), got {self.hidden}")
        if self.unroll < 1 or self.num_actions < 1:
            raise ValueError(f"unroll and num_actions must be >= 1, got {self.unroll}, {self.num_actions}")
        if self.core == "transformer":
            if self.transformer_layers < 1 or self.transformer_heads < 1:
                raise ValueError("transformer_layers and transformer_heads must be >= 1")
            head_dim, rest = divmod(self.hidden, self.transformer_heads)
            if rest or head_dim % 2:
                raise ValueError(f"hidden ({self.hidden}) / transformer_heads ({self.transformer_heads}) "
                                 "must be an even integer (rotary positions rotate pairs)")

    @property
    def encoders(self) -> EncoderSizes:
        return scaled_encoders(self.hidden) if self.variant == "scaled" else ENCODERS[self.variant]


# ---------------------------------------------------------------------------------------------
# Observation encoders


def _lookup(weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Embedding rows of `codes` (any shape) -> codes.shape + (dim,)."""
    return weight.index_select(0, codes.reshape(-1)).view(*codes.shape, weight.shape[1])


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


# ---------------------------------------------------------------------------------------------
# Cores


class LSTMCore(nn.Module):
    """LSTM(h, h) stepped by hand so the state can be zeroed where `done` (nn.LSTM's parameters and
    gate order; the input projections of all steps are one matmul)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(hidden, hidden)

    def initial_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(batch_size, self.hidden, device=device) for _ in range(2))

    def forward(self, x: torch.Tensor, done: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        h, c = state
        gates_x = F.linear(x, self.lstm.weight_ih_l0, self.lstm.bias_ih_l0)  # (B, T, 4h)
        keep = (~done).unsqueeze(-1)
        outputs = []
        for t in range(x.shape[1]):
            h = h * keep[:, t]
            c = c * keep[:, t]
            gates = gates_x[:, t] + F.linear(h, self.lstm.weight_hh_l0, self.lstm.bias_hh_l0)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h.float(), c.float())

    def flops_per_token(self) -> int:
        return lstm_step_flops(self.hidden, self.hidden)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions: rotate the pairs (x[..., :d/2], x[..., d/2:]) by the angles of each position."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class XLBlock(nn.Module):
    """Pre-norm block: x + attention(LN([memory; x])) then x + FFN(LN(x)) (4h, GELU)."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.norm1 = nn.LayerNorm(hidden)
        self.query = nn.Linear(hidden, hidden)
        self.key_value = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, 4 * hidden)
        self.ff2 = nn.Linear(4 * hidden, hidden)

    def forward(self, x, memory, allowed, cos, sin):
        """x (B, T, h) new tokens, memory (B, M, h), allowed (B, T, M+T) bool, cos/sin (M+T, d/2)."""
        B, T, _ = x.shape
        M = memory.shape[1]
        context = self.norm1(torch.cat([memory.to(x.dtype), x], dim=1))
        q = self.query(context[:, M:]).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.key_value(context).view(B, M + T, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = _rotate(q, cos[M:].to(q.dtype), sin[M:].to(q.dtype))
        k = _rotate(k, cos.to(k.dtype), sin.to(k.dtype))
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        attended = scores.softmax(dim=-1).to(v.dtype) @ v  # (B, heads, T, d)
        x = x + self.out(attended.transpose(1, 2).reshape(B, T, -1))
        return x + self.ff2(F.gelu(self.ff1(self.norm2(x))))


class TransformerCore(nn.Module):
    """Causal Transformer-XL core; state = each block's inputs over the last `memory` steps
    (detached) and which of those slots belong to the current game."""

    def __init__(self, hidden: int, layers: int, heads: int, memory: int):
        super().__init__()
        self.hidden, self.memory = hidden, memory
        self.blocks = nn.ModuleList(XLBlock(hidden, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        head_dim = hidden // heads
        self.register_buffer("inv_freq", 10000.0 ** (-torch.arange(0, head_dim, 2) / head_dim), persistent=False)

    def initial_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, ...]:
        memories = [torch.zeros(batch_size, self.memory, self.hidden, device=device) for _ in self.blocks]
        return (*memories, torch.zeros(batch_size, self.memory, dtype=torch.bool, device=device))

    def forward(self, x: torch.Tensor, done: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        *memories, valid = state
        B, T, _ = x.shape
        M = valid.shape[1]
        # Game index of each new step within this segment: 0 = the game the memory ends in.
        game = done.long().cumsum(dim=1)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        same_game = game[:, :, None] == game[:, None, :]
        to_memory = valid[:, None, :] & (game == 0)[:, :, None]
        allowed = torch.cat([to_memory, same_game & causal], dim=2)  # (B, T, M+T)
        angles = torch.arange(M + T, device=x.device, dtype=torch.float32)[:, None] * self.inv_freq[None]
        cos, sin = angles.cos(), angles.sin()
        new_memories = []
        for block, memory in zip(self.blocks, memories):
            new_memories.append(torch.cat([memory, x.detach().float()], dim=1)[:, -self.memory:])
            x = block(x, memory, allowed, cos, sin)
        last = game[:, -1:]
        new_valid = torch.cat([valid & (last == 0), game == last], dim=1)[:, -self.memory:]
        return self.norm(x), (*new_memories, new_valid)

    def flops_per_token(self, segment: int) -> float:
        """Average forward FLOPs per token of a `segment`-step unroll attending to a full memory.

        (A rollout step, segment 1, reprojects the whole memory: it costs more per token.)"""
        block = attention_block_flops(self.hidden, 4 * self.hidden, segment, self.memory + segment)
        return len(self.blocks) * block / segment


# ---------------------------------------------------------------------------------------------
# The network


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
