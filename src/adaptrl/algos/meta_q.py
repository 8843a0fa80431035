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
classic agents, two ways: ``none`` (the context alone adapts) and ``propensity``, Meta-Q-Learning's
adaptation. With ``propensity`` the agent plays ``adapt_episodes`` context episodes, then each task
takes ``adapt_steps`` gradient steps on its own Q-head (the layers after the frozen context
encoder), on its transitions plus a fixed sample of meta-training transitions (the *bank*)
weighted by how much they look like the new task (``rl/propensity.py``: a logistic regression on
the contexts), with a proximal penalty towards the meta-trained head scaled by ``1 - ESS``, and
plays the remaining episodes with that head. The bank is drawn from the replay and stored with the
model, so an exported model adapts too. The replay buffer is part of the checkpoint, so a resumed
run is bit-identical.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any, Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from adaptrl.algos.offpolicy import OffPolicyConfig, OffPolicyLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Ge, Positive, Size, Unit
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
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
from adaptrl.rl.propensity import propensity_weights
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
    td_samples: Literal["windows", "trials"] = "windows"
    """Where a TD step's contexts come from. "windows": ``batch`` windows per replay row, each
    encoded on its own (any encoder and context length). "trials" (a GRU over the whole trial,
    ``context`` None): whole stored trials, each encoded in one pass that gives the context of
    every step, and ``batch`` steps drawn from them; about ``batch`` times less encoder work for
    the same number of TD samples, which then come from fewer trials."""
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
    adaptation: Literal["none", "propensity"] = "none"
    """Meta-test adaptation of ``trial_agent()`` (evaluation reports both ways anyway)."""
    adapt_episodes: Size = 1
    """Propensity: context episodes played before the Q-head adapts."""
    adapt_steps: Size = 10
    """Propensity: gradient steps of each task's Q-head."""
    adapt_lr: Positive = 1e-4
    """Propensity: Adam step size of those steps (each parameter moves about this much)."""
    propensity_bank: Size = 256
    """Propensity: meta-training transitions stored with the model for reuse."""
    propensity_clip: Positive = 1.0
    """Propensity: upper clip of the density-ratio weights of meta-training transitions."""
    propensity_l2: Positive = 0.01
    """Propensity: L2 penalty of the logistic regression (standardised contexts)."""
    proximal: Annotated[float, Ge(0)] = 1.0
    """Propensity: weight of ``(1 - ESS) / 2 |theta - theta_meta|^2``."""


def adam_moments(params: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Zero first and second moments for :func:`adam_step`, shaped like ``params``."""
    zeros = {n: {k: torch.zeros_like(p) for k, p in d.items()} for n, d in params.items()}
    return {"m": zeros, "v": {n: dict(d) for n, d in zeros.items()}}


def adam_step(
    params: dict[str, dict[str, torch.Tensor]],
    grads: dict[str, dict[str, torch.Tensor]],
    moments: dict[str, Any],
    t: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """One functional Adam step (step ``t`` >= 1) on nested parameter dicts, out of place: each
    parameter moves by about ``lr`` whatever the scale of its gradient (Q-values of a trial's
    return make plain gradient steps diverge)."""
    b1, b2 = betas
    m = {
        n: {k: b1 * moments["m"][n][k] + (1 - b1) * g for k, g in d.items()}
        for n, d in grads.items()
    }
    v = {
        n: {k: b2 * moments["v"][n][k] + (1 - b2) * g * g for k, g in d.items()}
        for n, d in grads.items()
    }
    c1, c2 = 1 - b1**t, 1 - b2**t
    new = {
        n: {k: p - lr * (m[n][k] / c1) / ((v[n][k] / c2).sqrt() + eps) for k, p in d.items()}
        for n, d in params.items()
    }
    return new, {"m": m, "v": v}


TDSamples = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]
"""TD samples: transitions ``[rows, batch, ...]``, the online network's contexts before and after
each, the target network's after."""


def trial_contexts(encoder: RecurrentContextEncoder, features: torch.Tensor) -> torch.Tensor:
    """Every context of whole trials ``[..., T, F]`` in one GRU pass: ``[..., T + 1, H]``, entry
    ``t`` the context after the first ``t`` transitions (zeros for ``t = 0``)."""
    after = encoder.states(features)
    return torch.cat([torch.zeros_like(after[..., :1, :]), after], dim=-2)


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
        self.inputs = obs_dim + int(cfg.time_input)  # a state's width before its context
        state_dim = self.inputs + cfg.context_size
        if self.discrete:
            self.q = self.q_network(cfg)
        else:
            a = self.spec.dim
            self.q1 = mlp(state_dim + a, cfg.hidden, 1, activation="relu")
            self.q2 = mlp(state_dim + a, cfg.hidden, 1, activation="relu")
            self.actor = mlp(state_dim, cfg.hidden, a, activation="relu", out_gain=0.01)

    def q_network(self, cfg: MetaQConfig) -> nn.Module:
        """Discrete actions: the Q-network, from the state (inputs, then context) to Q-values."""
        return mlp(self.inputs + cfg.context_size, cfg.hidden, self.spec.dim, activation="relu")

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

    def heads(self) -> dict[str, nn.Module]:
        """The layers after the context, which propensity adaptation changes per task."""
        if self.discrete:
            return {"q": self.q}
        return {"q1": self.q1, "q2": self.q2, "actor": self.actor}

    def head_call(self, params: dict[str, Any], name: str, x: torch.Tensor) -> torch.Tensor:
        """Head ``name`` with the parameters ``params[name]`` instead of its own."""
        return functional_call(getattr(self, name), params[name], (x,))

    def bootstrap_target(
        self, reward: torch.Tensor, last: torch.Tensor, next_state: torch.Tensor, gamma: float
    ) -> torch.Tensor:
        """TD target from this network alone (no target network): ``r + gamma max_a Q(s', a)``,
        or TD3's clipped double-Q at the actor's action."""
        if self.discrete:
            next_q = self.q_values(next_state)
            return double_dqn_target(reward, last, next_q, next_q, gamma)
        return td3_target(
            reward, last, *self.q_values(next_state, self.act_unit(next_state)), gamma
        )


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

    def __init__(
        self,
        learner: MetaQ,
        epsilon: float,
        noise: float,
        adaptation: Literal["none", "propensity"] = "none",
    ):
        self.learner, self.net = learner, learner.net
        self.epsilon, self.noise = epsilon, noise
        self.adapt_at = learner.config.adapt_episodes * learner.horizon
        self.propensity = adaptation == "propensity"
        if self.propensity:
            self.name = "meta-q+propensity"
        # A GRU over the whole trial so far carries its state step by step; other encoders
        # re-read the window of the last transitions.
        self.carried = isinstance(self.net.encoder, RecurrentContextEncoder) and (
            learner.config.context is None
        )

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        L = self.learner
        self.generator, self.t, self.rows = generator, 0, env.rows
        if self.carried:
            self.hidden = torch.zeros(env.num_envs, L.config.context_size, device=env.device)
        else:
            self.window = ContextWindow(env.num_envs, L.context_length, L.feature_dim, env.device)
        self.head: dict[str, Any] | None = None  # per-task head parameters once adapted
        self.log: dict[str, list[torch.Tensor]] = {"state": [], "action": [], "reward": []}

    def _values(self, state: torch.Tensor) -> torch.Tensor:
        """Q-values (discrete) or the actor's unit action (continuous), per-task head or not."""
        net = self.net
        name = "q" if net.discrete else "actor"
        if self.head is None:
            return net.q_values(state) if net.discrete else net.actor(state)
        return vmap(lambda p, x: net.head_call(p, name, x))(self.head, state)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        L, net = self.learner, self.net
        progress = torch.full(obs.shape[:1], self.t / L.steps, device=obs.device)
        state = net.state(obs, progress, self.context())
        if self.propensity and self.t <= self.adapt_at:
            self.log["state"].append(state)
            if self.t == self.adapt_at:
                log = {k: torch.stack(v, dim=1) for k, v in self.log.items()}
                self.head = L.propensity_adapt(log["state"], log["action"], log["reward"])
        self.t += 1
        gen, draw = self.generator, self.rows.draw  # noise drawn for the whole batch of rows
        if net.discrete:
            greedy = self._values(state).argmax(-1)
            shape = tuple(greedy.shape)
            u = draw(torch.rand, shape, gen, device=gen.device).to(obs.device)
            rand = draw(
                functools.partial(torch.randint, net.spec.dim), shape, gen, device=gen.device
            )
            self.action = torch.where(u < self.epsilon, rand.to(obs.device), greedy)
            return self.action
        unit = torch.tanh(self._values(state))
        noise = draw(torch.randn, tuple(unit.shape), gen, device=gen.device).to(obs.device)
        self.action = (unit + self.noise * noise).clamp(-1.0, 1.0)
        return to_box(self.action, L.action_map)

    def context(self) -> torch.Tensor:
        """The context of the transitions seen so far in the trial, ``[B, context_size]``."""
        if self.carried:
            return self.hidden
        return self.net.context(self.window.features, self.window.mask)

    @torch.no_grad()
    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        features = self.learner.features(obs, self.action, step.reward, step.final_obs)
        if self.carried:
            self.hidden = self.net.encoder.cell(features, self.hidden)
        else:
            self.window.push(features)
        if self.propensity and self.t <= self.adapt_at:
            self.log["action"].append(self.action)
            self.log["reward"].append(step.reward)

    @torch.no_grad()
    def embedding(self) -> dict[str, torch.Tensor]:
        """The context of the transitions seen so far, ``[B, context_size]``."""
        return {"context": self.context()}


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
        self.bank: dict[str, torch.Tensor] | None = None  # see adaptation_bank
        self.bank_at = -1

    def check_config(self) -> None:
        cfg = self.config
        if cfg.adaptation == "propensity":
            self.check_adaptation()
        if cfg.td_samples == "trials" and (cfg.encoder != "gru" or cfg.context is not None):
            raise ConfigError(
                "meta-q --td-samples trials needs a GRU over the whole trial "
                f"(--encoder gru, no --context); got --encoder {cfg.encoder} --context {cfg.context}"
            )
        if cfg.context is not None and cfg.context > self.steps:
            raise ConfigError(
                f"meta-q --context {cfg.context} is longer than a trial ({self.steps} steps: "
                f"{self.episodes} episodes of {self.horizon}); use at most {self.steps}"
            )

    def check_adaptation(self) -> None:
        if self.config.adapt_episodes >= self.episodes:
            raise ConfigError(
                f"meta-q --adapt-episodes {self.config.adapt_episodes} leaves no episode to play "
                f"after adapting (trials of {self.episodes} episodes); use at most "
                f"{self.episodes - 1}"
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

    def extra_state(self) -> dict[str, Any]:
        held = self.bank is not None or self.replay_held()
        return {"bank": self.adaptation_bank()} if held else {}

    def replay_held(self) -> bool:
        """Whether the replay holds any transition (a model exported without it holds none)."""
        return bool(self.replay.size.sum() > 0)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.bank = state.get("bank")
        self.bank_at = int(state["iteration"]) if self.bank is not None else -1

    def update(self) -> dict[str, torch.Tensor]:
        """One TD step (double DQN or TD3) on transitions sampled from every replay row."""
        cfg = self.config
        now, ctx, ctx_next, t_ctx_next = (
            self.trial_samples() if cfg.td_samples == "trials" else self.window_samples()
        )
        reward, last = now["reward"] * cfg.reward_scale, now["last"]
        next_progress = now["progress"] + 1.0 / self.steps
        state = self.net.state(now["obs"], now["progress"], ctx)
        with torch.no_grad():
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

    def window_samples(self) -> TDSamples:
        """``batch`` windows per replay row: the transitions at their ends ``[rows, batch, ...]``,
        the online network's contexts before and after each, the target network's after. The
        context of ``s_t`` reads the transitions before ``t``; that of ``s_{t+1}`` includes ``t``."""
        cfg = self.config
        window, mask = self.replay.windows(
            cfg.batch, self.context_length + 1, generator=self.generator
        )
        feats = self.features(
            window["obs"], window["action"], window["reward"], window["final_obs"]
        )
        now = {k: v[:, :, -1] for k, v in window.items()}  # [rows, batch, time, ...]
        whole = cfg.context is None
        ctx, ctx_next = self.net.context_pair(feats, mask, whole_trial=whole)
        with torch.no_grad():
            _, t_ctx_next = self.target.context_pair(feats, mask, whole)
        return now, ctx, ctx_next, t_ctx_next

    def trials_per_row(self) -> int:
        """Stored trials per replay row that a TD step reads with ``td_samples="trials"``:
        enough for ``batch`` steps, ``ceil(batch / steps)``."""
        return -(-self.config.batch // self.steps)

    def trial_samples(self) -> TDSamples:
        """The same from ``ceil(batch / steps)`` whole trials per replay row, each read by the
        GRU once: its state after ``t`` transitions is the context of ``s_t``."""
        cfg = self.config
        n = self.trials_per_row()
        trial = self.replay.sample_segments(n, generator=self.generator)  # [rows, n, T, ...]
        feats = self.features(trial["obs"], trial["action"], trial["reward"], trial["final_obs"])
        rows = feats.shape[0]
        pick = torch.randint(
            n * self.steps,
            (rows, cfg.batch),
            generator=self.generator,
            device=self.generator.device,
        ).to(self.device)
        row = torch.arange(rows, device=self.device).unsqueeze(1)
        now = {k: v.flatten(1, 2)[row, pick] for k, v in trial.items()}

        def contexts(net: ContextQNetwork) -> tuple[torch.Tensor, torch.Tensor]:
            states = trial_contexts(net.encoder, feats)  # [rows, n, T + 1, H]
            return (
                states[..., :-1, :].flatten(1, 2)[row, pick],
                states[..., 1:, :].flatten(1, 2)[row, pick],
            )

        ctx, ctx_next = contexts(self.net)
        with torch.no_grad():
            _, t_ctx_next = contexts(self.target)
        return now, ctx, ctx_next, t_ctx_next

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
    def trial_agent(self, adaptation: Literal["none", "propensity"] | None = None) -> MetaQAgent:
        """The trained Q-function acting greedily (``eval_epsilon``) or by its actor, noise-free;
        with ``propensity`` (default: the config's ``adaptation``) it adapts its Q-head after
        ``adapt_episodes``."""
        adaptation = adaptation or self.config.adaptation
        if adaptation == "propensity":
            self.check_adaptation()
        return MetaQAgent(self, self.config.eval_epsilon, 0.0, adaptation)

    def trial_agents(self) -> dict[str, Any]:
        """Scored both ways: the context alone, and with propensity adaptation (where a trial
        has an episode left after ``adapt_episodes``)."""
        agents: dict[str, Any] = {"meta-q": lambda: self.trial_agent("none")}
        if self.config.adapt_episodes < self.episodes:
            agents["meta-q+propensity"] = lambda: self.trial_agent("propensity")
        return agents

    # --- propensity adaptation -------------------------------------------------------------
    @torch.no_grad()
    def adaptation_bank(self) -> dict[str, torch.Tensor]:
        """``propensity_bank`` meta-training transitions as the Q-head reads them: ``state``,
        ``action`` and the TD target ``y`` of the current network. Drawn from the replay with a
        generator of its own (training draws stay untouched), again whenever the network has
        trained since; a model loaded without its replay uses the bank it was saved with."""
        if self.bank_at != self.iteration and self.replay_held():
            self.bank, self.bank_at = self._draw_bank(), self.iteration
        if self.bank is None:
            raise ConfigError(
                "meta-q has no meta-training transitions to adapt with (the model was saved "
                "before any training); evaluate it with --adaptation none"
            )
        return self.bank

    def _draw_bank(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        gen = make_generator(self.seed, self.name, "bank", self.iteration, device=self.device)
        per_row = -(-cfg.propensity_bank // cfg.trials)
        window, mask = self.replay.windows(per_row, self.context_length + 1, generator=gen)
        feats = self.features(
            window["obs"], window["action"], window["reward"], window["final_obs"]
        )
        now = {k: v[:, :, -1] for k, v in window.items()}
        ctx, ctx_next = self.net.context_pair(feats, mask, whole_trial=cfg.context is None)
        state = self.net.state(now["obs"], now["progress"], ctx)
        next_state = self.net.state(now["next_obs"], now["progress"] + 1.0 / self.steps, ctx_next)
        y = self.net.bootstrap_target(
            now["reward"] * cfg.reward_scale, now["last"], next_state, cfg.gamma
        )
        bank = {"state": state, "action": now["action"], "y": y}
        return {k: v.flatten(0, 1)[: cfg.propensity_bank].contiguous() for k, v in bank.items()}

    def propensity_adapt(
        self, state: torch.Tensor, action: torch.Tensor, reward: torch.Tensor
    ) -> dict[str, Any]:
        """Meta-Q-Learning's adaptation of each task's Q-head from its context steps (``state``
        ``[B, T + 1, S]``: the T steps' states and the next; ``action``, ``reward`` ``[B, T]``):
        ``adapt_steps`` gradient steps on its TD loss plus the bank's, weighted by propensity,
        plus ``proximal (1 - ESS) / 2 |theta - theta_meta|^2``. Targets come from the
        meta-trained network, held fixed. Returns the heads' parameters ``[B, ...]``."""
        cfg, net = self.config, self.net
        bank = self.adaptation_bank()
        ctx = slice(state.shape[-1] - cfg.context_size, None)  # the state ends with the context
        with torch.no_grad():
            done = torch.zeros_like(reward, dtype=torch.bool)
            y = net.bootstrap_target(reward * cfg.reward_scale, done, state[:, 1:], cfg.gamma)
            beta, ess = propensity_weights(
                state[:, :-1, ctx],
                bank["state"][:, ctx],
                l2=cfg.propensity_l2,
                clip=cfg.propensity_clip,
            )
        meta = {n: {k: p.detach() for k, p in m.named_parameters()} for n, m in net.heads().items()}

        def loss(params, s, a, y, beta, ess):
            new = self._head_losses(params, s, a, y, None)
            old = self._head_losses(params, bank["state"], bank["action"], bank["y"], beta)
            drift = sum((p - meta[n][k]).square().sum() for n in meta for k, p in params[n].items())
            return new + old + 0.5 * cfg.proximal * (1.0 - ess) * drift

        step = vmap(grad(loss))
        B = state.shape[0]
        params = {n: {k: p.expand(B, *p.shape) for k, p in d.items()} for n, d in meta.items()}
        moments = adam_moments(params)
        for t in range(1, cfg.adapt_steps + 1):
            g = step(params, state[:, :-1], action, y, beta, ess)
            params, moments = adam_step(params, g, moments, t, cfg.adapt_lr)
        return params

    def _head_losses(self, params, s, a, y, weight) -> torch.Tensor:
        """One task's TD loss (and, continuous, actor loss) of the heads ``params`` on the
        transitions ``s, a, y``, each weighted by ``weight`` (None: 1)."""
        net = self.net
        w = 1.0 if weight is None else weight
        if net.discrete:
            q = net.head_call(params, "q", s).gather(-1, a.unsqueeze(-1)).squeeze(-1)
            return (0.5 * w * (q - y).square()).mean()
        critic = sum(
            (
                0.5 * w * (net.head_call(params, n, torch.cat([s, a], -1)).squeeze(-1) - y).square()
            ).mean()
            for n in ("q1", "q2")
        )
        fixed = {"q1": {k: v.detach() for k, v in params["q1"].items()}}
        pi = torch.tanh(net.head_call(params, "actor", s))
        q_pi = net.head_call(fixed, "q1", torch.cat([s, pi], -1)).squeeze(-1)
        return critic - (w * q_pi).mean()


register_algo(
    AlgoSpec(
        name="meta-q",
        config_cls=MetaQConfig,
        learner_cls=MetaQ,
        description="Meta-Q-Learning: Q-learning (double DQN / TD3) on a context of the trial so far",
        kind="rl",
    )
)
