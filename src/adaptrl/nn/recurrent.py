"""A recurrent actor-critic for memory-based meta-RL (RL², Duan et al. 2016).

At every step of a trial the network reads the current observation together with the previous
action, the previous reward and whether the previous step ended an episode, so its memory can
learn, within one task, what actions are worth. The memory (``nn.memory``) is kept across the
episodes of a trial and starts empty on every new task. The policy head comes from
``nn.heads`` (categorical for ``Discrete``, Gaussian for ``Box`` actions); the value head is
linear, either on the policy's memory (``shared=True``, for PPO) or on a memory of its own
(``shared=False``: a separately fitted value function, as TRPO needs).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from adaptrl.core.errors import ConfigError
from adaptrl.nn import heads
from adaptrl.nn.memory import make_memory


def observation_dim(space: gym.Space) -> int:
    """Width of :func:`encode_observation`: ``n`` for ``Discrete(n)``, the flat size for ``Box``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(torch.tensor(space.shape).prod()) if space.shape else 1
    raise ConfigError(f"observations must be Discrete or Box, got {type(space).__name__}")


def encode_observation(space: gym.Space, obs: torch.Tensor) -> torch.Tensor:
    """One-hot encoding of a ``Discrete`` observation, flattened floats for a ``Box``."""
    if isinstance(space, gym.spaces.Discrete):
        return nn.functional.one_hot(obs.long() - int(space.start), int(space.n)).float()
    batch_shape = obs.shape[: obs.dim() - len(space.shape)]
    return obs.float().reshape(*batch_shape, -1)


def embedding(in_dim: int, widths: tuple[int, ...]) -> nn.Module:
    """The per-step input embedding before the memory: ReLU layers of ``widths`` (none: identity).
    A nonlinear embedding can form conjunctions of its inputs, e.g. of the previous observation,
    action and reward, which a GRU's input weights alone only add up."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class RecurrentActorCritic(nn.Module):
    """Memory policy over ``(obs, previous action, previous reward, previous done)``, optionally
    with the previous observation (``prev_obs_input``) and a ReLU embedding before the memory.

    ``step`` runs one time step ``[B, ...]`` (acting); ``forward`` runs whole trials
    ``[T, B, ...]`` from the trial start (the update). Both return the action distribution's
    parameters (see ``nn.heads``), the values and the memory after the last step.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        hidden: int = 64,
        memory: str = "gru",
        shared: bool = True,
        max_len: int = 1000,
        head_kw: dict[str, Any] | None = None,
        time_input: bool = False,
        prev_obs_input: bool = False,
        embed: tuple[int, ...] = (),
        episode_steps: int | None = None,
        **memory_kw: Any,
    ):
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.spec = heads.spec_for(action_space)
        self.time_input = time_input
        self.prev_obs_input = prev_obs_input
        self.obs_dim = observation_dim(observation_space)
        self.in_dim = self.obs_dim + heads.action_input_dim(self.spec) + 2
        self.in_dim += int(time_input) + (self.obs_dim if prev_obs_input else 0)
        if episode_steps is not None and episode_steps < 1:
            raise ConfigError(f"episode_steps must be >= 1, got {episode_steps}")
        self.episode_steps = episode_steps
        self.in_dim += int(episode_steps is not None)
        self.shared = shared
        if any(width < 1 for width in embed):
            raise ConfigError(f"embedding widths must be >= 1, got {embed}")
        memory_in = embed[-1] if embed else self.in_dim
        self.embed = embedding(self.in_dim, embed)
        self.memory = make_memory(memory, memory_in, hidden, max_len, **memory_kw)
        self.policy_head = self.make_policy_head(hidden, head_kw or {})
        self.value_embed = None if shared else embedding(self.in_dim, embed)
        self.value_memory = (
            None if shared else make_memory(memory, memory_in, hidden, max_len, **memory_kw)
        )
        # A zero value head: the untrained critic says 0 everywhere. A random one (orthogonal,
        # gain 1) gives values of about +-0.1 that depend on the previous-action input, so with a
        # small lambda the TD errors r + gamma V(h') - V(h) reward whichever action the random
        # critic happens to like more than any reward does once rewards are scaled down; the
        # policy then collapses onto that action with no gain (tabular MDPs, docs/results/rl2-mdp.md).
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def make_policy_head(self, hidden: int, head_kw: dict[str, Any]) -> nn.Module:
        """The policy head on the memory's features (``nn.heads``); see :meth:`policy`."""
        return heads.make_head(self.action_space, hidden, **head_kw)

    def policy(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The action distribution's parameters from the memory's ``features`` and this step's
        input ``x`` (unused here; a hypernetwork policy applies its generated network to it)."""
        return self.policy_head(features)

    @property
    def state_dim(self) -> int:
        """Width of :meth:`state_input`."""
        return self.obs_dim + int(self.time_input) + int(self.episode_steps is not None)

    def state_input(self, x: torch.Tensor) -> torch.Tensor:
        """The part of an input ``x [..., in_dim]`` that describes the current state: the encoded
        observation and, when fed, the trial and episode progress (the last columns), not the
        previous transition."""
        tail = self.state_dim - self.obs_dim
        return torch.cat([x[..., : self.obs_dim], x[..., self.in_dim - tail :]], dim=-1)

    def inputs(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        prev_done: torch.Tensor,
        prev_obs: torch.Tensor | None = None,
        progress: float = 0.0,
        episode_step: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The per-step input ``[..., in_dim]``: encoded obs, previous action (already encoded
        with ``heads.encode_action``; all zeros before the first step), reward and done flag;
        with ``prev_obs_input`` the previous observation (already encoded, zeros before the first
        step), so that one input holds a whole transition (s, a, r, s'); with ``time_input``
        the share of the trial already spent (``progress`` in [0, 1)); and with ``episode_steps``
        the share of the current episode already spent (``episode_step [B]``, steps taken since
        the episode began, over ``episode_steps``)."""
        parts = [
            encode_observation(self.observation_space, obs),
            prev_action,
            prev_reward.float().unsqueeze(-1),
            prev_done.float().unsqueeze(-1),
        ]
        if self.prev_obs_input:
            if prev_obs is None:
                raise ConfigError("this network reads the previous observation: pass prev_obs")
            parts.append(prev_obs)
        if self.time_input:
            parts.append(torch.full_like(parts[-1][..., :1], progress))
        if self.episode_steps is not None:
            if episode_step is None:
                raise ConfigError(
                    "this network reads the step within the episode: pass episode_step"
                )
            parts.append(episode_step.float().unsqueeze(-1) / self.episode_steps)
        return torch.cat(parts, dim=-1)

    def encode_prev_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs`` as the next step's previous-observation input (empty unless ``prev_obs_input``)."""
        if not self.prev_obs_input:
            return obs.new_zeros(obs.shape[0], 0, dtype=torch.float32)
        return encode_observation(self.observation_space, obs)

    def initial_state(self, batch: int, device: str | torch.device = "cpu") -> tuple:
        """The empty memory of a new trial: ``(policy memory, value memory or None)``."""
        v = None if self.value_memory is None else self.value_memory.initial_state(batch, device)
        return (self.memory.initial_state(batch, device), v)

    def initial_prev(self, batch: int, device: str | torch.device = "cpu") -> tuple:
        """``(encoded previous action, reward, done, encoded previous observation)`` before a
        trial's first step: all zeros (the observation part is empty without ``prev_obs_input``)."""
        zero = torch.zeros(batch, device=device)
        action = torch.zeros(batch, heads.action_input_dim(self.spec), device=device)
        obs = torch.zeros(batch, self.obs_dim if self.prev_obs_input else 0, device=device)
        return action, zero, zero, obs

    def forward(
        self, x: torch.Tensor, state: tuple | None = None, with_value: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        """Whole trials ``x [T, B, in_dim]`` -> ``(dist params [T, B, ...], values [T, B], state)``."""
        p_state, v_state = state if state is not None else (None, None)
        features, p_state = self.memory(self.embed(x), p_state)
        params = self.policy(features, x)
        values = None
        if with_value:
            if self.value_memory is not None:
                assert self.value_embed is not None
                v_features, v_state = self.value_memory(self.value_embed(x), v_state)
            else:
                v_features = features
            values = self.value_head(v_features).squeeze(-1)
        return params, values, (p_state, v_state)

    def step(
        self, x: torch.Tensor, state: tuple, with_value: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        """One step ``x [B, in_dim]`` -> ``(dist params [B, ...], values [B], state)``."""
        params, values, state = self.forward(x.unsqueeze(0), state, with_value)
        return params.squeeze(0), None if values is None else values.squeeze(0), state

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Values of whole trials ``x [T, B, in_dim]`` (only the critic's part runs if separate)."""
        if self.value_memory is None or self.value_embed is None:
            return self.forward(x)[1]
        features, _ = self.value_memory(self.value_embed(x))
        return self.value_head(features).squeeze(-1)

    def policy_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters the policy depends on (what TRPO updates), by name."""
        return {
            n: p
            for n, p in self.named_parameters()
            if not n.startswith(("value_memory.", "value_embed.", "value_head."))
        }

    def value_parameters(self) -> list[nn.Parameter]:
        """Parameters of the value function alone (empty memory part when ``shared``)."""
        return [
            p
            for n, p in self.named_parameters()
            if n.startswith(("value_memory.", "value_embed.", "value_head."))
        ]
