"""Meta-Q-Learning: context-conditioned Q-learning over a replay of whole trials (Fakoor et al. 2020).

A Q-function reads the current observation and a *context*, an encoding of the transitions seen so
far in the trial (a GRU over the last ``context`` of them, as Meta-Q-Learning, or PEARL's
order-invariant set encoder), and is trained off-policy by TD learning: double DQN for discrete
actions, TD3 (twin critics, target smoothing, a delayed deterministic actor) for continuous ones.
The encoder learns through the TD loss.

The objective is the *trial's* return: a target bootstraps across episode boundaries from the next
decision state of the trial (the next episode's first observation), and only the trial's last step
is terminal. So the context plays the role of a belief, and the Q-function can learn what
exploring in the first episode is worth in the later ones, as RL² does on-policy.

One iteration:

1. run one trial on each of ``trials`` fresh meta-train tasks with the current Q-function
   (epsilon-greedy, or the actor plus Gaussian noise), all at once in a batched environment;
2. append each trial to its row of the replay buffer (``rl/replay.py``: one ring of trials per
   row; context windows never cross a trial);
3. take ``updates`` gradient steps on windows sampled from every row, then move the target network
   towards the online one (Polyak averaging).

Evaluation runs the greedy policy (``eval_epsilon``) through the trial-agent protocol, beside the
classic agents. The replay buffer is part of the checkpoint, so a resumed run is bit-identical.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import torch
from torch import nn

from adaptrl.algos.offpolicy import OffPolicyConfig, OffPolicyLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Ge, Positive, Size, Unit
from adaptrl.core.errors import ConfigError
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch
from adaptrl.nn import heads
from adaptrl.nn.context import (
    ProbabilisticContextEncoder,
    RecurrentContextEncoder,
    transition_dim,
)
from adaptrl.nn.mlp import mlp
from adaptrl.nn.policies import to_box
from adaptrl.nn.recurrent import encode_observation, observation_dim
from adaptrl.rl.td import (
    double_dqn_target,
    smoothed_target_action,
    td3_target,
    td_loss,
)


@dataclasses.dataclass(frozen=True)
class MetaQConfig(OffPolicyConfig):
    """Context-conditioned Q-learning (double DQN or TD3) over a replay of whole trials."""

    context: Size | None = None
    """Transitions the context encodes: the last ``context`` of the trial (None: all so far)."""
    encoder: Literal["gru", "set"] = "gru"
    """Context encoder: a GRU (Meta-Q-Learning) or PEARL's product of Gaussians, used as (mu, var)."""
    context_size: Size = 64
    """GRU units, or twice the set encoder's latent size."""
    time_input: bool = True
    """Feed the share of the trial already spent (the value of a finite trial depends on it)."""
    huber: Positive | None = None
    """Huber threshold of the TD loss (None: squared error)."""
    epsilon: Unit = 1.0
    """Discrete: exploration rate of epsilon-greedy collection at the first iteration."""
    epsilon_final: Unit = 0.05
    """Discrete: exploration rate once the decay is over."""
    epsilon_decay: Unit = 0.5
    """Discrete: share of the iterations over which epsilon falls linearly."""
    eval_epsilon: Unit = 0.0
    """Discrete: exploration rate of the evaluated agent (0: greedy)."""
    exploration_noise: Annotated[float, Ge(0)] = 0.1
    """Continuous: standard deviation of the Gaussian noise on collected actions ([-1, 1] units)."""
    target_noise: Annotated[float, Ge(0)] = 0.2
    """Continuous: TD3's target-policy smoothing noise."""
    noise_clip: Annotated[float, Ge(0)] = 0.5
    """Continuous: clip of the smoothing noise."""
    policy_delay: Size = 2
    """Continuous: critic updates per actor update."""


def epsilon_at(cfg: MetaQConfig, iteration: int) -> float:
    """Linear decay from ``epsilon`` to ``epsilon_final`` over ``epsilon_decay`` of the run."""
    span = max(cfg.epsilon_decay * cfg.iterations, 1.0)
    frac = min(iteration / span, 1.0)
    return cfg.epsilon + frac * (cfg.epsilon_final - cfg.epsilon)


class ContextQNetwork(nn.Module):
    """Context encoder, Q-network(s) and, for continuous actions, a deterministic actor."""

    def __init__(self, obs_space, action_space, cfg: MetaQConfig):
        super().__init__()
        self.obs_space = obs_space
        self.spec = heads.spec_for(action_space)
        self.discrete = self.spec.kind == "categorical"
        self.time_input = cfg.time_input
        obs_dim = observation_dim(obs_space)
        feat = transition_dim(obs_dim, self.spec, cfg.context_next_obs)
        if cfg.encoder == "gru":
            self.encoder: nn.Module = RecurrentContextEncoder(feat, cfg.context_size)
        else:
            if cfg.context_size % 2:
                raise ConfigError(
                    f"meta-q --encoder set needs an even --context-size, got {cfg.context_size}"
                )
            self.encoder = ProbabilisticContextEncoder(feat, cfg.context_size // 2, cfg.hidden)
        state_dim = obs_dim + int(cfg.time_input) + cfg.context_size
        if self.discrete:
            self.q = mlp(state_dim, cfg.hidden, self.spec.dim, activation="relu")
        else:
            a = self.spec.dim
            self.q1 = mlp(state_dim + a, cfg.hidden, 1, activation="relu")
            self.q2 = mlp(state_dim + a, cfg.hidden, 1, activation="relu")
            self.actor = mlp(state_dim, cfg.hidden, a, activation="relu", out_gain=0.01)

    def context(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Context of each window ``[..., N, F]`` of transitions."""
        if isinstance(self.encoder, RecurrentContextEncoder):
            return self.encoder(features, mask)
        return torch.cat(self.encoder(features, mask), dim=-1)

    def context_pair(
        self, features: torch.Tensor, mask: torch.Tensor, whole_trial: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Contexts before and after the last transition of windows ``[..., N + 1, F]``: of
        ``s_t`` (the first N) and of ``s_{t+1}`` (the last N). A GRU reading the whole trial
        gets both from one pass: the window's oldest step lies in an earlier trial (a trial has
        N steps), so it is masked and the pass equals two."""
        if whole_trial and isinstance(self.encoder, RecurrentContextEncoder):
            states = self.encoder.states(features, mask)
            return states[..., -2, :], states[..., -1, :]
        before = self.context(features[..., :-1, :], mask[..., :-1])
        return before, self.context(features[..., 1:, :], mask[..., 1:])

    def state(
        self, obs: torch.Tensor, progress: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        """The Q-network's input: observation, trial progress and context."""
        parts = [encode_observation(self.obs_space, obs)]
        if self.time_input:
            parts.append(progress.unsqueeze(-1))
        return torch.cat([*parts, context], dim=-1)

    def q_values(self, state: torch.Tensor, action: torch.Tensor | None = None) -> Any:
        """Discrete: ``[..., actions]``. Continuous: both critics at ``action`` (unit box)."""
        if self.discrete:
            return self.q(state)
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def act_unit(self, state: torch.Tensor) -> torch.Tensor:
        """The actor's action in ``[-1, 1]^d``."""
        return torch.tanh(self.actor(state))


class ContextWindow:
    """The transitions an acting agent has seen in its current trial, as the encoder reads them:
    the last ``length`` (or all), left-padded, with a mask. ``[B, length, F]``."""

    def __init__(self, batch: int, length: int, width: int, device: torch.device):
        self.features = torch.zeros(batch, length, width, device=device)
        self.mask = torch.zeros(batch, length, dtype=torch.bool, device=device)

    def push(self, features: torch.Tensor) -> None:
        self.features = torch.cat([self.features[:, 1:], features.unsqueeze(1)], dim=1)
        ones = torch.ones_like(self.mask[:, :1])
        self.mask = torch.cat([self.mask[:, 1:], ones], dim=1)


class MetaQAgent:
    """A context Q-learner acting through the trial-agent protocol: greedy (or epsilon-greedy)
    on discrete actions, the actor plus Gaussian noise on continuous ones."""

    name = "meta-q"
    uses_task = False

    def __init__(self, learner: MetaQ, epsilon: float, noise: float):
        self.learner, self.net = learner, learner.net
        self.epsilon, self.noise = epsilon, noise

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        L = self.learner
        self.generator, self.t = generator, 0
        self.window = ContextWindow(env.num_envs, L.context_length, L.feature_dim, env.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        L, net = self.learner, self.net
        progress = torch.full(obs.shape[:1], self.t / L.steps, device=obs.device)
        state = net.state(obs, progress, net.context(self.window.features, self.window.mask))
        self.t += 1
        gen = self.generator
        if net.discrete:
            greedy = net.q_values(state).argmax(-1)
            u = torch.rand(greedy.shape, generator=gen, device=gen.device).to(obs.device)
            rand = torch.randint(net.spec.dim, greedy.shape, generator=gen, device=gen.device)
            self.action = torch.where(u < self.epsilon, rand.to(obs.device), greedy)
            return self.action
        unit = net.act_unit(state)
        noise = torch.randn(unit.shape, generator=gen, device=gen.device).to(obs.device)
        self.action = (unit + self.noise * noise).clamp(-1.0, 1.0)
        return to_box(self.action, L.action_map)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        self.window.push(self.learner.features(obs, self.action, step.reward, step.final_obs))

    @torch.no_grad()
    def embedding(self) -> dict[str, torch.Tensor]:
        """The context of the transitions seen so far, ``[B, context_size]``."""
        return {"context": self.net.context(self.window.features, self.window.mask)}


class MetaQ(OffPolicyLearner):
    """Meta-Q-Learning: ``meta_train_step`` collects a batch of trials into the replay buffer and
    takes ``updates`` TD steps on it."""

    name = "meta-q"
    optimizers = ("optimizer", "actor_optimizer")
    training_only = ("optimizer", "actor_optimizer", "replay", "target")

    def __init__(self, config: MetaQConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.context_length = config.context or self.steps
        critic = [p for n, p in self.net.named_parameters() if not n.startswith("actor.")]
        self.critic_params = critic
        self.optimizer = torch.optim.Adam(critic, lr=config.lr)
        self.actor_optimizer = (
            None
            if self.net.discrete
            else torch.optim.Adam(self.net.actor.parameters(), lr=config.lr)
        )

    def check_config(self) -> None:
        cfg = self.config
        if cfg.context is not None and cfg.context > self.steps:
            raise ConfigError(
                f"meta-q --context {cfg.context} is longer than a trial ({self.steps} steps: "
                f"{self.episodes} episodes of {self.horizon}); use at most {self.steps}"
            )

    def build_network(self) -> ContextQNetwork:
        return ContextQNetwork(self.family.observation_space, self.family.action_space, self.config)

    def exploring_agent(self) -> MetaQAgent:
        return MetaQAgent(
            self, epsilon_at(self.config, self.iteration), self.config.exploration_noise
        )

    def extra_fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {
            "next_obs": self.obs_field(),  # the trial's next decision state
            "progress": ((), torch.float32),
            "last": ((), torch.bool),  # the trial's last step: no bootstrapping
        }

    def trial_extras(self, trial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The next decision state crosses episode boundaries: the next episode's first
        # observation, not the ended episode's final one.
        B, T = trial["reward"].shape
        steps = torch.arange(T, device=self.device)
        return {
            "next_obs": torch.cat([trial["obs"][:, 1:], trial["obs"][:, -1:]], dim=1),
            "progress": (steps / T).expand(B, T),
            "last": (steps == T - 1).expand(B, T),
        }

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        return {"epsilon": torch.tensor(epsilon_at(self.config, self.iteration))}

    def update(self) -> dict[str, torch.Tensor]:
        """One TD step (double DQN or TD3) on windows sampled from every replay row."""
        cfg = self.config
        window, mask = self.replay.windows(
            cfg.batch, self.context_length + 1, generator=self.generator
        )
        feats = self.features(
            window["obs"], window["action"], window["reward"], window["final_obs"]
        )
        now = {k: v[:, :, -1] for k, v in window.items()}  # [rows, batch, time, ...]
        reward, last = now["reward"] * cfg.reward_scale, now["last"]
        next_progress = now["progress"] + 1.0 / self.steps

        # The context of s_t reads the transitions before t; that of s_{t+1} includes t.
        ctx, ctx_next = self.net.context_pair(feats, mask, whole_trial=self.config.context is None)
        state = self.net.state(now["obs"], now["progress"], ctx)
        with torch.no_grad():
            _, t_ctx_next = self.target.context_pair(feats, mask, self.config.context is None)
            next_state_t = self.target.state(now["next_obs"], next_progress, t_ctx_next)
        if self.net.discrete:
            q = self.net.q_values(state).gather(-1, now["action"].unsqueeze(-1)).squeeze(-1)
            with torch.no_grad():
                next_online = self.net.q_values(
                    self.net.state(now["next_obs"], next_progress, ctx_next.detach())
                )
                y = double_dqn_target(
                    reward, last, next_online, self.target.q_values(next_state_t), cfg.gamma
                )
            loss = td_loss(q, y, huber=cfg.huber)
            norm = self.step(self.optimizer, loss, self.net.parameters())
            info = {"td_loss": loss.detach(), "q": q.detach().mean(), "grad_norm": norm}
        else:
            info = self._td3(state, now, reward, last, next_state_t)
        return info

    def _td3(self, state, now, reward, last, next_state_t) -> dict[str, torch.Tensor]:
        cfg = self.config
        q1, q2 = self.net.q_values(state, now["action"])
        with torch.no_grad():
            a_next = self.target.act_unit(next_state_t)
            noise = cfg.target_noise * torch.randn(
                a_next.shape, generator=self.generator, device=self.generator.device
            ).to(a_next.device)
            a_next = smoothed_target_action(a_next, noise, cfg.noise_clip, -1.0, 1.0)
            y = td3_target(reward, last, *self.target.q_values(next_state_t, a_next), cfg.gamma)
        loss = td_loss(q1, y, huber=cfg.huber) + td_loss(q2, y, huber=cfg.huber)
        info = {
            "td_loss": loss.detach(),
            "q": q1.detach().mean(),
            "grad_norm": self.step(self.optimizer, loss, self.critic_params),
        }
        if self.updates_done % cfg.policy_delay == 0:
            s = state.detach()  # the actor does not train the encoder
            actor_loss = -self.net.q_values(s, self.net.act_unit(s))[0].mean()
            self.step(self.actor_optimizer, actor_loss, self.net.actor.parameters())
            info["actor_loss"] = actor_loss.detach()
        return info

    # --- evaluation ------------------------------------------------------------------------
    def trial_agent(self) -> MetaQAgent:
        """The trained Q-function acting greedily (``eval_epsilon``) or by its actor, noise-free."""
        return MetaQAgent(self, self.config.eval_epsilon, 0.0)


register_algo(
    AlgoSpec(
        name="meta-q",
        config_cls=MetaQConfig,
        learner_cls=MetaQ,
        description="Meta-Q-Learning: Q-learning (double DQN / TD3) on a context of the trial so far",
        kind="rl",
    )
)
