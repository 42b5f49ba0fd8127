"""The NetHack BC network's sequence cores, each with its analytic forward FLOPs per token.

Core "lstm": LSTM(h, h), state zeroed at every time step where `done` is true (the paper's first
version). Core "transformer": pre-norm causal self-attention blocks of width h (the TMLR version),
Transformer-XL style: each block also attends to a memory of the previous `unroll` inputs of that
block (detached), and no token attends across a game boundary (the mask is built from `done`).
Positions are rotary (sinusoidal rotations of queries and keys by their offset in the window):
they depend only on distances, so a sequence fed in unrolls of 80 or step by step in a rollout
sees the same position signal, and they add no parameters or counted FLOPs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ilscaling.flops import attention_block_flops, lstm_step_flops


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
