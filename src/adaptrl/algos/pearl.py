"""PEARL: probabilistic embeddings for actor-critic RL (Rakelly et al. 2019).

A latent task variable ``z`` conditions a soft actor-critic (SAC). An order-invariant encoder turns
each transition of a task into a Gaussian factor over ``z``; the posterior is their product
(``nn/context.py``), regularised by a KL to the ``N(0, I)`` prior. The critic's TD loss trains the
encoder; the actor reads a detached ``z``. Discrete actions use the discrete form of SAC (exact
expectations over actions), continuous ones a tanh-squashed Gaussian.

Exploration is posterior sampling, the paper's meta-test protocol: each trial starts with ``z``
drawn from the prior; at the end of every episode ``z`` is redrawn from the posterior of all the
trial's transitions so far, and held for the whole next episode. Training matches it: an update
takes one stored trial per replay row, draws an episode index ``e``, encodes the trial's episodes
before ``e`` as the context (none for ``e = 0``: the prior), samples ``z`` from that posterior, and
runs SAC on transitions of the same trial. Returns are per episode (SAC's objective); bootstrapping
stops only where the environment terminates.

One iteration collects one trial per fresh task into its replay row (whole trials, ``rl/replay.py``)
and takes ``updates`` gradient steps. The replay is in the checkpoint, so resume is bit-identical.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Annotated, Any

import gymnasium as gym
import torch
import tyro
from torch import nn

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Config, Ge, Positive, Size, Unit
from adaptrl.core.seeding import derive_seed, generator_state, make_generator, set_generator_state
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.nn import heads
from adaptrl.nn.context import (
    ProbabilisticContextEncoder,
    kl_to_standard_normal,
    posterior_from_sums,
    transition_dim,
    transition_features,
)
from adaptrl.nn.mlp import mlp
from adaptrl.nn.policies import to_box, unit_box_rescale
from adaptrl.nn.recurrent import encode_observation, observation_dim
from adaptrl.rl.replay import TaskReplay
from adaptrl.rl.td import (
    discrete_sac_actor_loss,
    discrete_sac_target,
    sac_actor_loss,
    sac_alpha_loss,
    sac_target,
    soft_update,
    td_loss,
)

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclasses.dataclass(frozen=True)
class PEARLConfig(Config):
    """PEARL: SAC conditioned on a latent task variable from a product-of-Gaussians encoder."""

    family: Annotated[FamilyConfigUnion, tyro.conf.arg(name="")] = Nav2DConfig()  # type: ignore[valid-type]
    """The task family (and its options) to meta-train on."""
    iterations: Size = 500
    """Outer iterations (one batch of trials collected, ``updates`` gradient steps)."""
    trials: Size = 16
    """Trials collected per iteration (one per fresh task); also the replay buffer's rows."""
    episodes: Size | None = None
    """Episodes per trial; default: the family's episodes_per_trial."""
    buffer_trials: Size = 32
    """Trials each replay row keeps."""
    latent: Size = 5
    """Size of the latent task variable z (the paper: 5)."""
    encoder_hidden: tuple[Size, ...] = (128, 128)
    """Hidden layers of the per-transition encoder."""
    context_next_obs: bool = False
    """Put the next observation into each context transition (where tasks differ in dynamics)."""
    hidden: tuple[Size, ...] = (128, 128)
    """Hidden layers of the critics and the actor."""
    gamma: Unit = 0.99
    """Discount within an episode."""
    lr: Positive = 3e-4
    """Adam learning rate of every network and of the temperature."""
    batch: Size = 64
    """Transitions per replay row per gradient step (all from the row's sampled trial)."""
    updates: Size = 32
    """Gradient steps per iteration."""
    tau: Annotated[float, Ge(0)] = 0.005
    """Polyak rate of the target critics per gradient step."""
    reward_scale: Positive = 5.0
    """Rewards are multiplied by this for the update only (the paper: 5; sets SAC's greediness)."""
    kl_weight: Annotated[float, Ge(0)] = 0.1
    """Weight of the KL of the posterior to the prior in the critic's loss (the paper: 0.1)."""
    alpha: Positive = 1.0
    """Initial entropy temperature."""
    learn_alpha: bool = True
    """Tune the temperature towards ``target_entropy`` (False: keep ``alpha``)."""
    target_entropy: float | None = None
    """Entropy the temperature aims at; default -dim for continuous actions and
    ``0.5 log(actions)`` for discrete ones."""
    max_grad_norm: Positive = 10.0
    """Gradient-norm clipping of every update."""
    eval_deterministic: bool = True
    """Evaluate the actor's mean (continuous) or most likely (discrete) action, as the paper does;
    exploration comes from sampling z."""


class PEARLNetwork(nn.Module):
    """The encoder, two critics and the actor, all reading ``(observation, z)``."""

    def __init__(self, obs_space, action_space, cfg: PEARLConfig):
        super().__init__()
        self.obs_space = obs_space
        self.spec = heads.spec_for(action_space)
        self.discrete = self.spec.kind == "categorical"
        obs_dim = observation_dim(obs_space)
        a = self.spec.dim
        self.encoder = ProbabilisticContextEncoder(
            transition_dim(obs_dim, self.spec, cfg.context_next_obs), cfg.latent, cfg.encoder_hidden
        )
        state = obs_dim + cfg.latent
        critic_in, critic_out = (state, a) if self.discrete else (state + a, 1)
        self.q1 = mlp(critic_in, cfg.hidden, critic_out, activation="relu")
        self.q2 = mlp(critic_in, cfg.hidden, critic_out, activation="relu")
        self.actor = mlp(
            state, cfg.hidden, a if self.discrete else 2 * a, activation="relu", out_gain=0.01
        )

    def state(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([encode_observation(self.obs_space, obs), z], dim=-1)

    def critics(self, state: torch.Tensor, action: torch.Tensor | None = None):
        """Discrete: both critics' ``[..., actions]``; continuous: both at ``action``."""
        if self.discrete:
            return self.q1(state), self.q2(state)
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def policy(
        self, state: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous: a reparameterised squashed sample and its log-probability."""
        mean, log_std = self.actor(state).chunk(2, dim=-1)
        return heads.tanh_gaussian_sample(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX), generator)


class PEARLAgent:
    """Posterior sampling through the trial-agent protocol: ``z`` from the prior, redrawn from the
    posterior of the trial's transitions at the end of every episode."""

    name = "pearl"
    uses_task = False

    def __init__(self, learner: PEARL, deterministic: bool):
        self.learner, self.net, self.deterministic = learner, learner.net, deterministic

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        latent = self.learner.config.latent
        self.generator = generator
        self.precision = torch.zeros(env.num_envs, latent, device=env.device)
        self.weighted = torch.zeros_like(self.precision)
        self.z = self._draw()

    def _draw(self) -> torch.Tensor:
        mu, var = posterior_from_sums(self.precision, self.weighted)
        eps = torch.randn(mu.shape, generator=self.generator, device=self.generator.device)
        return mu + var.sqrt() * eps.to(mu.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        net, gen = self.net, self.generator
        state = net.state(obs, self.z)
        if net.discrete:
            logits = net.actor(state)
            self.action = (
                logits.argmax(-1) if self.deterministic else heads.sample(net.spec, logits, gen)
            )
            return self.action
        if self.deterministic:
            self.action = torch.tanh(net.actor(state).chunk(2, dim=-1)[0])
        else:
            self.action = net.policy(state, gen)[0]
        return to_box(self.action, self.learner.action_map)

    @torch.no_grad()
    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        features = self.learner.features(obs, self.action, step.reward, step.final_obs)
        mu, var = self.net.encoder.factors(features)
        self.precision = self.precision + var.reciprocal()
        self.weighted = self.weighted + mu / var
        ended = (step.terminated | step.truncated).unsqueeze(-1)
        self.z = torch.where(ended, self._draw(), self.z)


class PEARL(MetaLearner):
    """PEARL meta-learner: ``meta_train_step`` collects a batch of trials by posterior sampling and
    takes ``updates`` SAC steps with the encoder trained through the critics."""

    name = "pearl"
    training_only = ("optimizer", "actor_optimizer", "alpha_optimizer", "replay", "target")

    def __init__(self, config: PEARLConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        cfg = config
        self.family = make_family(cfg.family)
        self.episodes = cfg.episodes or self.family.episodes_per_trial
        self.horizon = self.family.max_episode_steps
        self.steps = self.episodes * self.horizon
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
            torch.manual_seed(derive_seed(seed, "pearl", "init"))
            self.net = PEARLNetwork(
                self.family.observation_space, self.family.action_space, cfg
            ).to(self.device)
        self.spec = self.net.spec
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.alpha), device=self.device, requires_grad=True)
        if cfg.target_entropy is not None:
            self.target_entropy = cfg.target_entropy
        elif self.net.discrete:
            self.target_entropy = 0.5 * math.log(self.spec.dim)
        else:
            self.target_entropy = -float(self.spec.dim)
        critic = [
            *self.net.encoder.parameters(),
            *self.net.q1.parameters(),
            *self.net.q2.parameters(),
        ]
        self.critic_params = critic
        self.optimizer = torch.optim.Adam(critic, lr=cfg.lr)
        self.actor_optimizer = torch.optim.Adam(self.net.actor.parameters(), lr=cfg.lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.action_map = unit_box_rescale(self.family.action_space, self.device)
        self.generator = make_generator(seed, "pearl", "train", device=self.device)
        self.env = self.family.make_env(cfg.trials, self.device)
        self.replay = TaskReplay(
            cfg.trials,
            cfg.buffer_trials * self.steps,
            self._replay_fields(),
            self.device,
            capacity_option="--buffer-trials",
            segment=self.steps,
        )

    def _replay_fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        space = self.family.observation_space
        discrete_obs = isinstance(space, gym.spaces.Discrete)
        obs = ((), torch.int64) if discrete_obs else (tuple(space.shape), torch.float32)
        action = ((), torch.int64) if self.net.discrete else ((self.spec.dim,), torch.float32)
        return {
            "obs": obs,
            "action": action,
            "reward": ((), torch.float32),
            "final_obs": obs,
            "terminated": ((), torch.bool),
        }

    def features(self, obs, action, reward, final_obs) -> torch.Tensor:
        """Context features of transitions (the encoder's input)."""
        space = self.family.observation_space
        nxt = encode_observation(space, final_obs) if self.config.context_next_obs else None
        return transition_features(self.spec, encode_observation(space, obs), action, reward, nxt)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    # --- one outer iteration -------------------------------------------------------------
    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        cfg = self.config
        tasks = self.family.tasks(
            cfg.trials,
            "train",
            derive_seed(self.seed, "pearl", "tasks", self.iteration),
            self.device,
        )
        trial, returns = self.collect(tasks)
        self.replay.add(trial)
        sums: dict[str, torch.Tensor] = {}
        for _ in range(cfg.updates):
            for k, v in self.update().items():
                sums[k] = sums.get(k, 0.0) + v
        per_episode = returns.mean(0)
        self.iteration += 1
        return {
            "trial_return": returns.sum(1).mean(),
            "first_episode_return": per_episode[0],
            "last_episode_return": per_episode[-1],
            **{k: v / cfg.updates for k, v in sums.items()},
        }

    @torch.no_grad()
    def collect(self, tasks: TaskBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One trial per task by posterior sampling with the stochastic actor: replay rows
        ``[trials, steps, ...]`` and per-episode returns ``[trials, episodes]``."""
        self.env.set_tasks(tasks)
        obs = self.env.reset(seed=derive_seed(self.seed, "pearl", "env", self.iteration))
        agent = PEARLAgent(self, deterministic=False)
        agent.begin_trial(self.env, tasks, self.generator)
        keys = ("obs", "action", "reward", "final_obs", "terminated", "episode")
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        episode = torch.zeros(self.config.trials, dtype=torch.long, device=self.device)
        for _ in range(self.steps):
            step = self.env.step(agent.act(obs))
            agent.observe(obs, agent.action, step)
            values = (obs, agent.action, step.reward, step.final_obs, step.terminated, episode)
            for k, v in zip(keys, values, strict=True):
                rows[k].append(v)
            episode = episode + (step.terminated | step.truncated).long()
            obs = step.obs
        trial = {k: torch.stack(v, dim=1) for k, v in rows.items()}
        trial["trial"] = torch.full_like(trial["episode"], self.iteration)
        ep = trial["episode"].clamp_max(self.episodes)
        returns = torch.zeros(self.config.trials, self.episodes + 1, device=self.device)
        returns.scatter_add_(1, ep, trial["reward"].float())
        return trial, returns[:, : self.episodes]

    def posterior(self, trial: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` per row from the posterior of the trial's episodes before a random one (the
        context the acting agent has when that episode starts), and the KL to the prior."""
        rows = trial["episode"].shape[0]
        e = torch.randint(
            self.episodes, (rows, 1), generator=self.generator, device=self.generator.device
        )
        mask = trial["episode"] < e.to(self.device)
        feats = self.features(trial["obs"], trial["action"], trial["reward"], trial["final_obs"])
        mu, var = self.net.encoder(feats, mask)
        eps = torch.randn(mu.shape, generator=self.generator, device=self.generator.device).to(mu)
        return mu + var.sqrt() * eps, kl_to_standard_normal(mu, var).mean()

    def update(self) -> dict[str, torch.Tensor]:
        """One SAC step (critics with the encoder, actor, temperature) on every replay row."""
        cfg = self.config
        trial = {
            k: v[:, 0] for k, v in self.replay.sample_segments(1, generator=self.generator).items()
        }
        z, kl = self.posterior(trial)
        rows = z.shape[0]
        pick = torch.randint(
            self.steps, (rows, cfg.batch), generator=self.generator, device=self.generator.device
        ).to(self.device)
        row = torch.arange(rows, device=self.device).unsqueeze(1)
        b = {k: v[row, pick] for k, v in trial.items()}  # [rows, batch, ...] of the same trial
        zb = z.unsqueeze(1).expand(-1, cfg.batch, -1)
        reward = b["reward"] * cfg.reward_scale
        state = self.net.state(b["obs"], zb)
        with torch.no_grad():
            next_state = self.net.state(b["final_obs"], zb)
            target_next = self.target.state(b["final_obs"], zb)
            if self.net.discrete:
                y = discrete_sac_target(
                    reward,
                    b["terminated"],
                    *self.target.critics(target_next),
                    self.net.actor(next_state),
                    self.alpha,
                    cfg.gamma,
                )
            else:
                a_next, logp_next = self.net.policy(next_state, self.generator)
                y = sac_target(
                    reward,
                    b["terminated"],
                    *self.target.critics(target_next, a_next),
                    logp_next,
                    self.alpha,
                    cfg.gamma,
                )
        if self.net.discrete:
            q1, q2 = (
                q.gather(-1, b["action"].unsqueeze(-1)).squeeze(-1) for q in self.net.critics(state)
            )
        else:
            q1, q2 = self.net.critics(state, b["action"])
        critic_loss = td_loss(q1, y) + td_loss(q2, y)
        info = {
            "critic_loss": critic_loss.detach(),
            "kl": kl.detach(),
            "q": q1.detach().mean(),
            "grad_norm": self._step(
                self.optimizer, critic_loss + cfg.kl_weight * kl, self.critic_params
            ),
        }
        s = state.detach()  # the actor does not train the encoder
        if self.net.discrete:
            qa1, qa2 = self.net.critics(s)
            actor_loss, logp = discrete_sac_actor_loss(qa1, qa2, self.net.actor(s), self.alpha)
        else:
            action, logp = self.net.policy(s, self.generator)
            qa1, qa2 = self.net.critics(s, action)
            actor_loss = sac_actor_loss(qa1, qa2, logp, self.alpha)
        self._step(self.actor_optimizer, actor_loss, self.net.actor.parameters())
        if cfg.learn_alpha:
            alpha_loss = sac_alpha_loss(self.log_alpha, logp, self.target_entropy)
            self._step(self.alpha_optimizer, alpha_loss, [self.log_alpha])
        soft_update(self.target, self.net, cfg.tau)
        return {
            **info,
            "actor_loss": actor_loss.detach(),
            "entropy": -logp.detach().mean(),
            "alpha": self.alpha,
        }

    def _step(self, optimizer, loss, params) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params), self.config.max_grad_norm)
        optimizer.step()
        return norm.detach()

    # --- evaluation ------------------------------------------------------------------------
    def trial_agent(self) -> PEARLAgent:
        """Posterior sampling with the actor's mean action (``eval_deterministic``)."""
        return PEARLAgent(self, deterministic=self.config.eval_deterministic)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "replay": self.replay.state_dict(prefix=""),
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if "target" in state:  # an exported model keeps only what acting needs (training_only)
            self.target.load_state_dict(state["target"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.actor_optimizer.load_state_dict(state["actor_optimizer"])
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
            self.replay.load_state_dict(state["replay"], prefix="")
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])


register_algo(
    AlgoSpec(
        name="pearl",
        config_cls=PEARLConfig,
        learner_cls=PEARL,
        description="PEARL: SAC on a latent task variable inferred by a product of Gaussians",
        kind="rl",
    )
)
