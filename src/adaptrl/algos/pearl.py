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
before ``e`` as the context (none for ``e = 0``: the prior; ``empty_context=False`` draws
``e >= 1`` only), samples ``z`` from that posterior, and runs SAC on transitions of the same
trial. Returns are per episode (SAC's objective); bootstrapping stops only where the environment
terminates.

One iteration collects one trial per fresh task into its replay row (whole trials, ``rl/replay.py``)
and takes ``updates`` gradient steps. The replay is in the checkpoint, so resume is bit-identical.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

import torch
from torch import nn

from adaptrl.algos.offpolicy import OffPolicyConfig, OffPolicyLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Ge, Positive, Size
from adaptrl.core.distributed import Rows
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch
from adaptrl.nn import heads
from adaptrl.nn.context import (
    ProbabilisticContextEncoder,
    kl_to_standard_normal,
    posterior_from_sums,
    transition_dim,
)
from adaptrl.nn.mlp import mlp
from adaptrl.nn.policies import to_box
from adaptrl.nn.recurrent import encode_observation, observation_dim
from adaptrl.rl.td import (
    discrete_sac_actor_loss,
    discrete_sac_target,
    sac_actor_loss,
    sac_alpha_loss,
    sac_target,
    td_loss,
)

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclasses.dataclass(frozen=True)
class PEARLConfig(OffPolicyConfig):
    """PEARL: SAC conditioned on a latent task variable from a product-of-Gaussians encoder."""

    lr: Positive = 3e-4
    """Adam learning rate of every network and of the temperature (the paper: 3e-4)."""
    max_grad_norm: Positive | None = None
    """Gradient-norm clipping (None, as the paper: SAC's critic gradients on locomotion reach
    hundreds, and clipping them at 10 stalled learning; see docs/results.md)."""
    reward_scale: Positive = 5.0
    """Rewards are multiplied by this for the update only (the paper: 5; sets SAC's greediness)."""
    latent: Size = 5
    """Size of the latent task variable z (the paper: 5)."""
    encoder_hidden: tuple[Size, ...] = (128, 128)
    """Hidden layers of the per-transition encoder."""
    kl_weight: Annotated[float, Ge(0)] = 0.1
    """Weight of the KL of the posterior to the prior in the critic's loss (the paper: 0.1)."""
    alpha: Positive = 1.0
    """Initial entropy temperature."""
    learn_alpha: bool = True
    """Tune the temperature towards ``target_entropy`` (False: keep ``alpha``)."""
    target_entropy: float | None = None
    """Entropy the temperature aims at; default -dim for continuous actions and
    ``0.5 log(actions)`` for discrete ones."""
    empty_context: bool = True
    """Also train on an empty context (z from the prior, as the trial's first episode acts) in a
    1/episodes share of the rows. False trains only on non-empty contexts, as the paper does; on
    the VariBAD gridworld that scored lower (docs/results.md, PEARL section)."""
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
        self, state: torch.Tensor, generator: torch.Generator, rows: Rows | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous: a reparameterised squashed sample and its log-probability (``rows``: the
        block of a larger batch ``state`` is, see :func:`heads.sample`)."""
        mean, log_std = self.actor(state).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return heads.tanh_gaussian_sample(mean, log_std, generator, rows)


class PEARLAgent:
    """Posterior sampling through the trial-agent protocol: ``z`` from the prior, redrawn from the
    posterior of the trial's transitions at the end of every episode."""

    name = "pearl"
    uses_task = False

    def __init__(self, learner: PEARL, deterministic: bool):
        self.learner, self.net, self.deterministic = learner, learner.net, deterministic

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        latent = self.learner.config.latent
        self.generator, self.rows = generator, env.rows
        self.precision = torch.zeros(env.num_envs, latent, device=env.device)
        self.weighted = torch.zeros_like(self.precision)
        self.z = self._draw()

    def _draw(self) -> torch.Tensor:
        mu, var = posterior_from_sums(self.precision, self.weighted)
        gen = self.generator
        eps = self.rows.draw(torch.randn, tuple(mu.shape), gen, device=gen.device)
        return mu + var.sqrt() * eps.to(mu.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        net, gen = self.net, self.generator
        state = net.state(obs, self.z)
        if net.discrete:
            logits = net.actor(state)
            self.action = (
                logits.argmax(-1)
                if self.deterministic
                else heads.sample(net.spec, logits, gen, self.rows)
            )
            return self.action
        if self.deterministic:
            self.action = torch.tanh(net.actor(state).chunk(2, dim=-1)[0])
        else:
            self.action = net.policy(state, gen, self.rows)[0]
        return to_box(self.action, self.learner.action_map)

    @torch.no_grad()
    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        features = self.learner.features(obs, self.action, step.reward, step.final_obs)
        mu, var = self.net.encoder.factors(features)
        self.precision = self.precision + var.reciprocal()
        self.weighted = self.weighted + mu / var
        ended = (step.terminated | step.truncated).unsqueeze(-1)
        self.z = torch.where(ended, self._draw(), self.z)

    def embedding(self) -> dict[str, torch.Tensor]:
        """The posterior over z of the transitions seen so far, ``[B, latent]`` each."""
        mu, var = posterior_from_sums(self.precision, self.weighted)
        return {"z_mean": mu, "z_var": var}


class PEARL(OffPolicyLearner):
    """PEARL meta-learner: ``meta_train_step`` collects a batch of trials by posterior sampling and
    takes ``updates`` SAC steps with the encoder trained through the critics."""

    name = "pearl"
    optimizers = ("optimizer", "actor_optimizer", "alpha_optimizer")
    training_only = ("optimizer", "actor_optimizer", "alpha_optimizer", "replay", "target")

    def __init__(self, config: PEARLConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.log_alpha = torch.tensor(
            math.log(config.alpha), device=self.device, requires_grad=True
        )
        if config.target_entropy is not None:
            self.target_entropy = config.target_entropy
        elif self.net.discrete:
            self.target_entropy = 0.5 * math.log(self.spec.dim)
        else:
            self.target_entropy = -float(self.spec.dim)
        net = self.net
        self.critic_params = [*net.encoder.parameters(), *net.q1.parameters(), *net.q2.parameters()]
        self.optimizer = torch.optim.Adam(self.critic_params, lr=config.lr)
        self.actor_optimizer = torch.optim.Adam(net.actor.parameters(), lr=config.lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.lr)

    def build_network(self) -> PEARLNetwork:
        return PEARLNetwork(self.family.observation_space, self.family.action_space, self.config)

    def exploring_agent(self) -> PEARLAgent:
        return PEARLAgent(self, deterministic=False)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def context_episodes(self, rows: int) -> torch.Tensor:
        """Per row, how many of the trial's first episodes form the training context: uniform
        over ``0 .. episodes - 1`` (from 1 without ``empty_context``, unless a trial has one)."""
        low = 0 if self.config.empty_context else min(1, self.episodes - 1)
        e = torch.randint(
            low, self.episodes, (rows, 1), generator=self.generator, device=self.generator.device
        )
        return e.to(self.device)

    def posterior(self, trial: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` per row from the posterior of the trial's episodes before a random one (the
        context the acting agent has when that episode starts), and the KL to the prior."""
        mask = trial["episode"] < self.context_episodes(trial["episode"].shape[0])
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
            "grad_norm": self.step(
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
        self.step(self.actor_optimizer, actor_loss, self.net.actor.parameters())
        if cfg.learn_alpha:
            alpha_loss = sac_alpha_loss(self.log_alpha, logp, self.target_entropy)
            self.step(self.alpha_optimizer, alpha_loss, [self.log_alpha])
        return {
            **info,
            "actor_loss": actor_loss.detach(),
            "entropy": -logp.detach().mean(),
            "alpha": self.alpha,
        }

    # --- evaluation ------------------------------------------------------------------------
    def trial_agent(self) -> PEARLAgent:
        """Posterior sampling with the actor's mean action (``eval_deterministic``)."""
        return PEARLAgent(self, deterministic=self.config.eval_deterministic)

    # --- checkpoints -------------------------------------------------------------------------
    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])


register_algo(
    AlgoSpec(
        name="pearl",
        config_cls=PEARLConfig,
        learner_cls=PEARL,
        description="PEARL: SAC on a latent task variable inferred by a product of Gaussians",
        kind="rl",
    )
)
