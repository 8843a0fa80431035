"""Memories for memory-based meta-learners (RL²): a GRU and a causal transformer over a trial.

Both read a batch of input sequences time-major ``[T, B, D]`` and share one interface:

* ``initial_state(batch, device)`` is the empty memory at the start of a trial (a new task);
* ``forward(x, state) -> (y, state)`` reads ``x [T, B, D]`` after whatever ``state`` has seen
  and returns outputs ``[T, B, out_dim]`` and the memory after the last step;
* ``step(x, state) -> (y, state)`` is ``forward`` for one step ``x [B, D]`` (used while acting).

Feeding a sequence step by step gives the same outputs as feeding it whole, so a policy can act
one step at a time during a rollout and be re-run over whole trials during the update. The
memory is reset only by starting again from ``initial_state`` (between tasks), never inside a
trial, so it carries what the agent learned across the episodes of one task.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from adaptrl.core.errors import ConfigError


class GRUMemory(nn.Module):
    """A single-layer GRU; the state is the hidden vector ``[B, hidden]``."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ConfigError(f"GRU sizes must be >= 1, got in_dim={in_dim}, hidden={hidden}")
        self.out_dim = hidden
        self.gru = nn.GRU(in_dim, hidden)
        # Orthogonal recurrent weights keep early gradients from vanishing over long trials.
        for name, p in self.gru.named_parameters():
            if name.startswith("weight_hh"):
                for chunk in p.data.chunk(3, 0):
                    nn.init.orthogonal_(chunk)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p.data)
            else:
                nn.init.zeros_(p.data)

    def initial_state(self, batch: int, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.zeros(batch, self.out_dim, device=device)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = self.initial_state(x.shape[1], x.device)
        y, h = self.gru(x, state.unsqueeze(0))
        return y, h.squeeze(0)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.forward(x.unsqueeze(0), state)
        return y.squeeze(0), h


class _CausalBlock(nn.Module):
    """A pre-norm transformer block; its attention reads keys and values given by the caller."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.ReLU(), nn.Linear(2 * d_model, d_model)
        )

    def project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``[B, H, T, d / H]`` of the new steps ``h [T, B, d]``."""
        steps, batch, d = h.shape
        qkv = self.qkv(self.norm1(h)).reshape(steps, batch, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 1, 3, 0, 4).unbind(0)
        return q, k, v

    def attend(
        self, h: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """The block's output for ``h [T, B, d]``, the last ``T`` of the ``[B, H, P + T, d / H]``
        keys and values."""
        steps, batch, d = h.shape
        past = keys.shape[2] - steps
        # query i (position past + i) sees positions 0 .. past + i
        allowed = torch.ones(steps, past + steps, dtype=torch.bool, device=h.device).tril(past)
        a = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
        h = h + self.out(a.permute(2, 0, 1, 3).reshape(steps, batch, d))
        return h + self.ffn(self.norm2(h))


@dataclasses.dataclass(frozen=True)
class TransformerState:
    """The transformer memory's state: keys and values of every block for the steps seen.

    ``cache[..., :length, :]`` (``[layers, 2, B, heads, length, d_model / heads]``) holds them.
    Without autograd (acting) the cache is a buffer grown in place, so a step costs O(length),
    not a copy of it; ``frontier`` (shared by the states of one buffer) records how far it was
    written, and a state stepped again after a later one was made from it copies the buffer
    first, so every state stays valid. With autograd the cache is rebuilt by concatenation (no
    in-place writes); a state made so has no spare room, so acting from it starts a new buffer.
    """

    cache: torch.Tensor
    length: int
    frontier: list[int] = dataclasses.field(compare=False)


class TransformerMemory(nn.Module):
    """A causal (decoder-only) transformer over the trial so far.

    The state (``TransformerState``) caches the keys and values of every block, so a step
    attends to the cache instead of re-reading the history and stepping equals reading the whole
    trial at once. Positions are learned up to ``max_len`` steps, the longest trial it can read.
    """

    def __init__(
        self,
        in_dim: int,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        max_len: int = 1000,
    ):
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if min(in_dim, d_model, layers, heads, max_len) < 1:
            raise ConfigError("transformer sizes must be >= 1")
        self.out_dim = d_model
        self.max_len = max_len
        self.embed = nn.Linear(in_dim, d_model)
        self.position = nn.Parameter(torch.zeros(max_len, 1, d_model))
        nn.init.normal_(self.position, std=1.0 / math.sqrt(d_model))
        self.blocks = nn.ModuleList(_CausalBlock(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def initial_state(self, batch: int, device: str | torch.device = "cpu") -> TransformerState:
        heads = self.blocks[0].heads
        shape = (len(self.blocks), 2, batch, heads, 0, self.out_dim // heads)
        cache = torch.zeros(shape, device=device)
        return TransformerState(cache, 0, [0])

    def forward(
        self, x: torch.Tensor, state: TransformerState | None = None
    ) -> tuple[torch.Tensor, TransformerState]:
        if state is None:
            state = self.initial_state(x.shape[1], x.device)
        past, steps = state.length, x.shape[0]
        end = past + steps
        if end > self.max_len:
            raise ConfigError(
                f"the transformer memory reads at most {self.max_len} steps, got a trial of "
                f"{end}; raise max_len (the trial length) when building it"
            )
        in_place = not torch.is_grad_enabled()
        if in_place:
            cache, frontier = self._writable(state, end)
        else:
            cache, frontier = state.cache[..., :past, :], [end]
        h = self.embed(x) + self.position[past:end]
        new_kv = []
        for i, block in enumerate(self.blocks):
            q, k, v = block.project(h)
            if in_place:
                cache[i, 0, :, :, past:end] = k
                cache[i, 1, :, :, past:end] = v
                keys, values = cache[i, 0, :, :, :end], cache[i, 1, :, :, :end]
            else:
                keys = torch.cat([cache[i, 0], k], dim=2)
                values = torch.cat([cache[i, 1], v], dim=2)
                new_kv.append(torch.stack([keys, values]))
            h = block.attend(h, q, keys, values)
        if not in_place:
            cache = torch.stack(new_kv)
        return self.norm(h), TransformerState(cache, end, frontier)

    def _writable(self, state: TransformerState, end: int) -> tuple[torch.Tensor, list[int]]:
        """A buffer holding ``state``'s cache with room for ``end`` steps, and its frontier."""
        cache, frontier = state.cache, state.frontier
        n = state.length
        if frontier[0] != n:  # a later state was made from this one: copy on write
            cache, frontier = cache[..., :n, :].clone(), [n]
        if cache.shape[-2] < end:  # grow geometrically: amortised O(1) copies per step
            size = min(self.max_len, max(end, 2 * cache.shape[-2]))
            grown = cache.new_empty(*cache.shape[:-2], size, cache.shape[-1])
            grown[..., :n, :] = cache[..., :n, :]
            cache = grown
        frontier[0] = end
        return cache, frontier

    def step(
        self, x: torch.Tensor, state: TransformerState
    ) -> tuple[torch.Tensor, TransformerState]:
        y, state = self.forward(x.unsqueeze(0), state)
        return y.squeeze(0), state


def make_memory(kind: str, in_dim: int, hidden: int, max_len: int = 1000, **kw) -> nn.Module:
    """``"gru"`` or ``"transformer"`` memory reading ``in_dim`` inputs with ``hidden`` outputs."""
    if kind == "gru":
        return GRUMemory(in_dim, hidden)
    if kind == "transformer":
        return TransformerMemory(in_dim, d_model=hidden, max_len=max_len, **kw)
    raise ConfigError(f"memory must be 'gru' or 'transformer', got {kind!r}")
