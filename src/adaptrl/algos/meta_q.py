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

import copy
import dataclasses
from typing import Annotated, Any, Literal

import gymnasium as gym
import torch
import tyro
from torch import nn

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Config, Ge, Positive, Size, Unit
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import derive_seed, generator_state, make_generator, set_generator_state
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch
from adaptrl.nn import heads
from adaptrl.nn.context import (
    ProbabilisticContextEncoder,
    RecurrentContextEncoder,
    transition_dim,
    transition_features,
)
from adaptrl.nn.mlp import mlp
from adaptrl.nn.policies import to_box, unit_box_rescale
from adaptrl.nn.recurrent import encode_observation, observation_dim
from adaptrl.rl.replay import TaskReplay
from adaptrl.rl.td import (
    double_dqn_target,
    smoothed_target_action,
    soft_update,
    td3_target,
    td_loss,
)


@dataclasses.dataclass(frozen=True)
class MetaQConfig(Config):
    """Context-conditioned Q-learning (double DQN or TD3) over a replay of whole trials."""

    family: Annotated[FamilyConfigUnion, tyro.conf.arg(name="")] = BanditConfig()  # type: ignore[valid-type]
    """The task family (and its options) to meta-train on."""
    iterations: Size = 300
    """Outer iterations (one batch of trials collected, ``updates`` gradient steps)."""
    trials: Size = 16
    """Trials collected per iteration (one per fresh task); also the replay buffer's rows."""
    episodes: Size | None = None
    """Episodes per trial; default: the family's episodes_per_trial."""
    buffer_trials: Size = 64
    """Trials each replay row keeps (the buffer holds ``trials * buffer_trials`` trials)."""
    context: Size | None = None
    """Transitions the context encodes: the last ``context`` of the trial (None: all so far)."""
    encoder: Literal["gru", "set"] = "gru"
    """Context encoder: a GRU (Meta-Q-Learning) or PEARL's product of Gaussians, used as (mu, var)."""
    context_size: Size = 64
    """GRU units, or twice the set encoder's latent size."""
    context_next_obs: bool = False
    """Put the next observation into each context transition (where tasks differ in dynamics)."""
    hidden: tuple[Size, ...] = (128, 128)
    """Hidden layers of the Q-network (and of the actor)."""
    time_input: bool = True
    """Feed the share of the trial already spent (the value of a finite trial depends on it)."""
    gamma: Unit = 0.99
    """Discount over the whole trial."""
    lr: Positive = 1e-3
    """Adam learning rate of the critic and encoder (and of the actor)."""
    batch: Size = 32
    """Windows sampled from each replay row per gradient step."""
    updates: Size = 16
    """Gradient steps per iteration."""
    tau: Annotated[float, Ge(0)] = 0.01
    """Polyak rate of the target network per gradient step."""
    reward_scale: Positive = 1.0
    """Rewards are multiplied by this for the update only."""
    huber: Positive | None = None
    """Huber threshold of the TD loss (None: squared error)."""
    max_grad_norm: Positive = 10.0
    """Gradient-norm clipping of every update."""
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


class MetaQ(MetaLearner):
    """Meta-Q-Learning: ``meta_train_step`` collects a batch of trials into the replay buffer and
    takes ``updates`` TD steps on it."""

    name = "meta-q"
    training_only = ("optimizer", "actor_optimizer", "replay", "target")

    def __init__(self, config: MetaQConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        cfg = config
        self.family = make_family(cfg.family)
        self.episodes = cfg.episodes or self.family.episodes_per_trial
        self.steps = self.episodes * self.family.max_episode_steps
        if cfg.context is not None and cfg.context > self.steps:
            raise ConfigError(
                f"meta-q --context {cfg.context} is longer than a trial ({self.steps} steps: "
                f"{self.episodes} episodes of {self.family.max_episode_steps}); use at most {self.steps}"
            )
        self.context_length = cfg.context or self.steps
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
            torch.manual_seed(derive_seed(seed, "meta-q", "init"))
            self.net = ContextQNetwork(
                self.family.observation_space, self.family.action_space, cfg
            ).to(self.device)
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self.spec = self.net.spec
        self.feature_dim = transition_dim(
            observation_dim(self.family.observation_space), self.spec, cfg.context_next_obs
        )
        critic = [p for n, p in self.net.named_parameters() if not n.startswith("actor.")]
        self.optimizer = torch.optim.Adam(critic, lr=cfg.lr)
        self.actor_optimizer = (
            None if self.net.discrete else torch.optim.Adam(self.net.actor.parameters(), lr=cfg.lr)
        )
        self.action_map = unit_box_rescale(self.family.action_space, self.device)
        self.generator = make_generator(seed, "meta-q", "train", device=self.device)
        self.env = self.family.make_env(cfg.trials, self.device)
        self.replay = TaskReplay(
            cfg.trials,
            cfg.buffer_trials * self.steps,
            self._replay_fields(),
            self.device,
            capacity_option="--buffer-trials",
        )
        self.updates_done = 0

    def _replay_fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        obs_space = self.family.observation_space
        discrete_obs = isinstance(obs_space, gym.spaces.Discrete)
        obs = ((), torch.int64) if discrete_obs else (tuple(obs_space.shape), torch.float32)
        action = ((), torch.int64) if self.net.discrete else ((self.spec.dim,), torch.float32)
        return {
            "obs": obs,
            "action": action,
            "reward": ((), torch.float32),
            "final_obs": obs,  # the observation the action led to (the transition's s')
            "next_obs": obs,  # the trial's next decision state (the next episode's first obs)
            "progress": ((), torch.float32),
            "last": ((), torch.bool),  # the trial's last step: no bootstrapping
        }

    def features(self, obs, action, reward, final_obs) -> torch.Tensor:
        """Context features of transitions (the encoder's input)."""
        space = self.family.observation_space
        nxt = encode_observation(space, final_obs) if self.config.context_next_obs else None
        return transition_features(self.spec, encode_observation(space, obs), action, reward, nxt)

    # --- one outer iteration -------------------------------------------------------------
    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        cfg = self.config
        tasks = self.family.tasks(
            cfg.trials,
            "train",
            derive_seed(self.seed, "meta-q", "tasks", self.iteration),
            self.device,
        )
        trial, returns = self.collect(tasks, epsilon_at(cfg, self.iteration))
        self.replay.add(trial)
        sums: dict[str, torch.Tensor] = {}
        for _ in range(cfg.updates):
            for k, v in self.update().items():
                sums[k] = sums.get(k, 0.0) + v
        per_episode = returns.mean(0)
        metrics = {
            "trial_return": returns.sum(1).mean(),
            "first_episode_return": per_episode[0],
            "last_episode_return": per_episode[-1],
            **{k: v / cfg.updates for k, v in sums.items()},
            "epsilon": torch.tensor(epsilon_at(cfg, self.iteration)),
        }
        self.iteration += 1
        return metrics

    @torch.no_grad()
    def collect(
        self, tasks: TaskBatch, epsilon: float
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One trial per task with the exploring agent: the transitions as replay rows
        ``[trials, steps, ...]`` and the per-episode returns ``[trials, episodes]``."""
        self.env.set_tasks(tasks)
        obs = self.env.reset(seed=derive_seed(self.seed, "meta-q", "env", self.iteration))
        agent = MetaQAgent(self, epsilon, self.config.exploration_noise)
        agent.begin_trial(self.env, tasks, self.generator)
        B, T = self.config.trials, self.steps
        rows: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("obs", "action", "reward", "final_obs")
        }
        episode = torch.zeros(B, dtype=torch.long, device=self.device)
        episodes = []
        for _ in range(T):
            step = self.env.step(agent.act(obs))
            agent.observe(obs, agent.action, step)
            for k, v in (
                ("obs", obs),
                ("action", agent.action),
                ("reward", step.reward),
                ("final_obs", step.final_obs),
            ):
                rows[k].append(v)
            episodes.append(episode)
            episode = episode + (step.terminated | step.truncated).long()
            obs = step.obs
        trial = {k: torch.stack(v, dim=1) for k, v in rows.items()}
        trial["next_obs"] = torch.cat([trial["obs"][:, 1:], trial["obs"][:, -1:]], dim=1)
        trial["progress"] = (torch.arange(T, device=self.device) / T).expand(B, T)
        trial["last"] = (torch.arange(T, device=self.device) == T - 1).expand(B, T)
        trial["episode"] = torch.stack(episodes, dim=1)
        trial["trial"] = torch.full((B, T), self.iteration, dtype=torch.long, device=self.device)
        ep = trial["episode"].clamp_max(self.episodes)
        returns = torch.zeros(B, self.episodes + 1, device=self.device)
        returns.scatter_add_(1, ep, trial["reward"].float())
        return trial, returns[:, : self.episodes]

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
        ctx = self.net.context(feats[..., :-1, :], mask[..., :-1])
        state = self.net.state(now["obs"], now["progress"], ctx)
        with torch.no_grad():
            after = (feats[..., 1:, :], mask[..., 1:])
            t_ctx_next = self.target.context(*after)
            next_state_t = self.target.state(now["next_obs"], next_progress, t_ctx_next)
        if self.net.discrete:
            q = self.net.q_values(state).gather(-1, now["action"].unsqueeze(-1)).squeeze(-1)
            with torch.no_grad():
                next_online = self.net.q_values(
                    self.net.state(now["next_obs"], next_progress, self.net.context(*after))
                )
                y = double_dqn_target(
                    reward, last, next_online, self.target.q_values(next_state_t), cfg.gamma
                )
            loss = td_loss(q, y, huber=cfg.huber)
            info = self._step(self.optimizer, loss, self.net.parameters())
            info = {"td_loss": loss.detach(), "q": q.detach().mean(), **info}
        else:
            info = self._td3(state, now, reward, last, next_state_t)
        soft_update(self.target, self.net, cfg.tau)
        self.updates_done += 1
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
        critic = [p for n, p in self.net.named_parameters() if not n.startswith("actor.")]
        info = {
            "td_loss": loss.detach(),
            "q": q1.detach().mean(),
            **self._step(self.optimizer, loss, critic),
        }
        if self.updates_done % cfg.policy_delay == 0:
            s = state.detach()  # the actor does not train the encoder
            actor_loss = -self.net.q_values(s, self.net.act_unit(s))[0].mean()
            self._step(self.actor_optimizer, actor_loss, self.net.actor.parameters())
            info["actor_loss"] = actor_loss.detach()
        return info

    def _step(self, optimizer, loss, params) -> dict[str, torch.Tensor]:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params), self.config.max_grad_norm)
        optimizer.step()
        return {"grad_norm": norm.detach()}

    # --- evaluation ------------------------------------------------------------------------
    def trial_agent(self) -> MetaQAgent:
        """The trained Q-function acting greedily (``eval_epsilon``) or by its actor, noise-free."""
        return MetaQAgent(self, self.config.eval_epsilon, 0.0)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(prefix=""),
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
            "updates_done": self.updates_done,
        }
        if self.actor_optimizer is not None:
            state["actor_optimizer"] = self.actor_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if "target" in state:  # an exported model keeps only what acting needs (training_only)
            self.target.load_state_dict(state["target"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.replay.load_state_dict(state["replay"], prefix="")
            if self.actor_optimizer is not None:
                self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])
        self.updates_done = int(state["updates_done"])


register_algo(
    AlgoSpec(
        name="meta-q",
        config_cls=MetaQConfig,
        learner_cls=MetaQ,
        description="Meta-Q-Learning: Q-learning (double DQN / TD3) on a context of the trial so far",
        kind="rl",
    )
)
