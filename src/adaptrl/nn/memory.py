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

import math

import torch
from torch import nn

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


class TransformerMemory(nn.Module):
    """A causal (decoder-only) transformer over the trial so far.

    The state is the history of inputs seen in this trial, ``[t, B, in_dim]``: each call re-reads
    the whole history under a causal mask (no key/value cache; quadratic in the trial length,
    which keeps it simple and exactly equal to the sequence form). Positions are learned up to
    ``max_len`` steps, the longest trial the memory can read.
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
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.in_dim = in_dim

    def initial_state(self, batch: int, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.zeros(0, batch, self.in_dim, device=device)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        history = x if state is None or state.shape[0] == 0 else torch.cat([state, x])
        length = history.shape[0]
        if length > self.max_len:
            raise ConfigError(
                f"the transformer memory reads at most {self.max_len} steps, got a trial of "
                f"{length}; raise max_len (the trial length) when building it"
            )
        h = self.embed(history) + self.position[:length]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device)
        y = self.norm(self.blocks(h, mask=mask, is_causal=True))
        return y[length - x.shape[0] :], history

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, history = self.forward(x.unsqueeze(0), state)
        return y.squeeze(0), history


def make_memory(kind: str, in_dim: int, hidden: int, max_len: int = 1000, **kw) -> nn.Module:
    """``"gru"`` or ``"transformer"`` memory reading ``in_dim`` inputs with ``hidden`` outputs."""
    if kind == "gru":
        return GRUMemory(in_dim, hidden)
    if kind == "transformer":
        return TransformerMemory(in_dim, d_model=hidden, max_len=max_len, **kw)
    raise ConfigError(f"memory must be 'gru' or 'transformer', got {kind!r}")
