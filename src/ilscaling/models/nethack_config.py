"""The NetHack BC network's sizes: the screen layout, the encoder sizes of each variant, and the
model config (`NetHackModelConfig`): plain numbers, no torch.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
