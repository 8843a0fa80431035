"""RL²: fast reinforcement learning via slow reinforcement learning (Duan et al. 2016).

A recurrent policy reads, at every step, the observation, the previous action, the previous
reward and whether the previous step ended an episode. Its memory is kept across all episodes of
a *trial* on one task and reset between tasks, so the outer loop, plain RL over many trials,
turns the recurrence into a fast learner: within a trial it must explore, remember what it found
and exploit it.

One iteration:

1. draw ``trials`` meta-train tasks and run one whole trial on each, all at once in one batched
   environment (time-major ``[T, B]``, no host syncs);
2. compute advantages with GAE over the *whole trial*: value flows across episode boundaries
   (a bandit pull is a one-step episode, yet what it teaches pays off on later pulls); the only
   cut is the end of the trial;
3. update with PPO (epochs over minibatches of whole trials, the memory recomputed from the trial
   start; clipped objective + value loss + entropy bonus, Adam, gradient-norm clipping) or with
   TRPO as in the paper (conjugate gradient + line search on the policy, a separately fitted
   recurrent value function).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
import tyro
from torch.func import functional_call

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core import distributed
from adaptrl.core.config import Config, Ge, Positive, Size, Unit
from adaptrl.core.distributed import Rows
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import (
    derive_seed,
    generator_state,
    make_generator,
    set_generator_state,
)
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch
from adaptrl.nn import heads
from adaptrl.nn.policies import to_box, unit_box_rescale
from adaptrl.nn.recurrent import RecurrentActorCritic
from adaptrl.rl.losses import entropy_loss, ppo_clip_loss, value_loss
from adaptrl.rl.returns import explained_variance, gae, masked_mean, normalize
from adaptrl.rl.rollout import collect
from adaptrl.rl.trpo import trpo_step


@dataclasses.dataclass(frozen=True)
class RL2Config(Config):
    """RL² with a GRU (or causal transformer) policy trained by PPO (or TRPO)."""

    family: Annotated[FamilyConfigUnion, tyro.conf.arg(name="")] = BanditConfig()  # type: ignore[valid-type]
    """The task family (and its options) to meta-train on."""
    iterations: Size = 500
    """Outer iterations (one batch of trials and one update each)."""
    trials: Size = 256
    """Trials per iteration: tasks run at once, one per row of the batched environment."""
    episodes: Size | None = None
    """Episodes per trial; default: the family's episodes_per_trial."""
    memory: Literal["gru", "transformer"] = "gru"
    """The policy's memory: a GRU, or a causal transformer over the trial so far."""
    hidden: Size = 64
    """Width of the memory (GRU units; transformer model width)."""
    transformer_layers: Size = 2
    """Transformer blocks (memory=transformer only)."""
    transformer_heads: Size = 4
    """Attention heads (memory=transformer only)."""
    time_input: bool = False
    """Also feed the share of the trial already spent (helps the critic of long trials, whose
    value is mostly the number of steps left, which a GRU cannot count precisely)."""
    episode_time_input: bool = False
    """Also feed the share of the current episode already spent (steps since it began over the
    family's ``max_episode_steps``): the best action of a finite-horizon episode depends on the
    steps left in it, which the memory otherwise has to count from the done flags."""
    prev_obs_input: bool = False
    """Also feed the previous observation, so each input is a whole transition (s, a, r, s') as
    context encoders of later meta-RL methods read it, instead of leaving s to the memory."""
    embed: tuple[Size, ...] = ()
    """ReLU layers embedding each input before the memory (empty: the memory reads the inputs)."""
    init_log_std: float = 0.0
    """Initial log standard deviation of a Gaussian policy (continuous actions only)."""
    normalize_actions: bool = False
    """Bounded Box actions: the policy acts in [-1, 1]^d, mapped affinely onto the box (as
    MAML-RL does; ``nn.policies.unit_box_rescale``), and its memory reads the previous action in
    the same unit coordinates. Off by default (docs/results.md compares both on nav2d)."""
    outer: Literal["ppo", "trpo"] = "ppo"
    """Outer-loop optimiser: PPO or TRPO (TRPO always fits a separate critic)."""
    separate_critic: bool = False
    """PPO only: give the value function a memory of its own instead of sharing the policy's, so
    the value loss cannot reshape the policy's features (gradients clipped per network)."""
    gamma: Unit = 0.99
    """Discount within a trial (across its episodes)."""
    gae_lambda: Unit = 0.3
    """GAE lambda."""
    reward_scale: Positive = 1.0
    """Rewards are multiplied by this for the update only (keeps value targets near 1)."""
    lr: Positive = 3e-3
    """Adam learning rate (PPO: the whole network; TRPO: the value function)."""
    lr_final: Annotated[float, Ge(0)] | None = None
    """Learning rate at the last iteration, linear from ``lr`` in between (None: constant)."""
    epochs: Size = 4
    """PPO epochs over each batch (TRPO: value-function epochs)."""
    minibatches: Size = 4
    """Minibatches of whole trials per epoch."""
    clip: Positive = 0.2
    """PPO clipping range of the probability ratio."""
    value_coef: float = 0.5
    """Weight of the value loss (PPO)."""
    entropy_coef: float = 0.01
    """Entropy bonus at the first iteration."""
    entropy_final: float = 0.0
    """Entropy bonus at the last iteration (linear schedule in between)."""
    max_grad_norm: Positive = 0.5
    """Gradient-norm clipping (PPO and the TRPO critic)."""
    normalize_advantages: bool = True
    """Standardise advantages over each batch."""
    max_kl: Positive = 0.01
    """TRPO trust region (mean KL)."""
    damping: Annotated[float, Ge(0)] = 0.1
    """TRPO Fisher damping."""
    cg_iters: Size = 10
    """TRPO conjugate-gradient iterations."""
    grad_chunks: Size = 1
    """Trials are collected in this many fixed blocks, and each PPO minibatch's gradient is the
    sum, in order, of the gradients of this many fixed chunks of its trials. Training depends on
    it but never on the number of ``torchrun`` processes, which must divide it (each process
    collects and computes its share of the blocks and chunks)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.minibatches > self.trials:
            raise ConfigError(
                f"rl2 minibatches ({self.minibatches}) cannot exceed trials ({self.trials})"
            )
        if self.trials % self.grad_chunks:
            raise ConfigError(
                f"rl2 trials ({self.trials}) must be a multiple of grad_chunks ({self.grad_chunks})"
            )
        if self.grad_chunks > self.trials // self.minibatches:
            raise ConfigError(
                f"rl2 grad_chunks ({self.grad_chunks}) cannot exceed the trials of a minibatch "
                f"({self.trials} // {self.minibatches} = {self.trials // self.minibatches})"
            )


# ------------------------------------------------------------------------------------------
# Small pieces, each tested on its own (tests/test_rl2.py)


def linear_schedule(start: float, end: float, iteration: int, iterations: int) -> float:
    """``start`` at iteration 0, ``end`` at the last of ``iterations``, linear in between."""
    frac = min(iteration / max(iterations - 1, 1), 1.0)
    return start + frac * (end - start)


def episode_index(done: torch.Tensor) -> torch.Tensor:
    """Index of the episode each step belongs to, ``[T, B]`` from the done flags ``[T, B]``."""
    d = done.long()
    return d.cumsum(0) - d


def trial_masks(done: torch.Tensor, episodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid, trial_end)``: steps inside the trial's first ``episodes`` episodes, and the step
    that ends the trial (the end of episode ``episodes`` or the last collected step)."""
    ep = episode_index(done)
    valid = ep < episodes
    end = done & (ep == episodes - 1)
    last = torch.zeros_like(end)
    last[-1] = True
    return valid, end | (last & valid)


def trial_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    valid: torch.Tensor,
    trial_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over whole trials: ``(advantages, value targets)``, both ``[T, B]``.

    The next value of a step is the value of the next step *of the trial*, also across episode
    boundaries; only the end of the trial stops bootstrapping and the GAE recursion.
    """
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    adv = gae(rewards * valid, values, next_values, trial_end, trial_end, gamma, lam)
    return adv, adv + values


def next_episode_step(episode_step: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Steps taken in the current episode after one more step ``[B]``: 0 where ``done``."""
    return (episode_step + 1) * ~done


def episode_returns(rewards: torch.Tensor, done: torch.Tensor, episodes: int) -> torch.Tensor:
    """Return of each of the first ``episodes`` episodes of every trial, ``[B, episodes]``."""
    ep = episode_index(done).clamp_max(episodes).T
    out = torch.zeros(rewards.shape[1], episodes + 1, device=rewards.device)
    return out.scatter_add_(1, ep, rewards.T.float())[:, :episodes]


def episode_successes(success: torch.Tensor, done: torch.Tensor, episodes: int) -> torch.Tensor:
    """Whether each of the first ``episodes`` episodes of every trial succeeded at any of its
    steps (Meta-World's definition), ``[B, episodes]`` of 0.0 / 1.0."""
    ep = episode_index(done).clamp_max(episodes).T
    out = torch.zeros(success.shape[1], episodes + 1, device=success.device)
    return out.scatter_reduce_(1, ep, success.T.float(), "amax")[:, :episodes]


@dataclasses.dataclass
class TrialBatch:
    """Whole trials, time-major ``[T, B, ...]``: network inputs, actions, old log-probabilities
    and values, rewards and done flags (and success flags, for families that report it)."""

    inputs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    done: torch.Tensor
    success: torch.Tensor | None = None

    def map(
        self, fn: Callable[[list[torch.Tensor]], torch.Tensor], *others: TrialBatch
    ) -> TrialBatch:
        """A batch whose every field is ``fn`` of that field in ``self`` and ``others`` (None
        stays None)."""
        fields = {}
        for f in dataclasses.fields(self):
            values = [getattr(b, f.name) for b in (self, *others)]
            fields[f.name] = None if values[0] is None else fn(values)
        return TrialBatch(**fields)


def collect_trials(
    net: RecurrentActorCritic,
    env: BatchedEnv,
    obs: torch.Tensor,
    steps: int,
    generator: torch.Generator,
    action_map: tuple[torch.Tensor, torch.Tensor] | None = None,
    rows: Rows | None = None,
) -> TrialBatch:
    """Run one trial of ``steps`` steps in every row of ``env`` from an empty memory.

    With ``action_map`` the policy's actions are rescaled for the environment; the batch keeps
    (and the memory reads) the policy's own. ``rows``: the block of a larger batch of trials the
    environment's rows are (their action noise is drawn for the whole batch)."""
    spec = net.spec

    def policy(obs: torch.Tensor, carry: tuple) -> tuple[torch.Tensor, dict, tuple]:
        state, prev, t, ep_step, _ = carry
        x = net.inputs(obs, *prev, progress=t / steps, episode_step=ep_step)
        params, value, state = net.step(x, state)
        action = heads.sample(spec, params, generator, rows)
        extras = {
            "inputs": x,
            "action": action,
            "logp": heads.log_prob(spec, params, action),
            "value": value,
        }
        return to_box(action, action_map), extras, (state, prev, t, ep_step, (action, obs))

    def on_step(carry: tuple, env_action: torch.Tensor, step: Step) -> tuple:
        state, _, t, ep_step, (action, obs) = carry
        done = step.terminated | step.truncated
        prev = (
            heads.encode_action(spec, action),
            step.reward,
            done.float(),
            net.encode_prev_obs(obs),
        )
        return state, prev, t + 1, next_episode_step(ep_step, done), None

    B, dev = env.num_envs, env.device
    ep_step = torch.zeros(B, dtype=torch.long, device=dev)
    carry = (net.initial_state(B, dev), net.initial_prev(B, dev), 0, ep_step, None)
    with torch.no_grad():
        ro, _, _ = collect(env, policy, obs, carry, steps, on_step=on_step)
    return TrialBatch(
        ro.extras["inputs"],
        ro.extras["action"],
        ro.extras["logp"],
        ro.extras["value"],
        ro.rewards,
        ro.terminated | ro.truncated,
        ro.success,
    )


# ------------------------------------------------------------------------------------------
# The learner


class RL2(MetaLearner):
    """RL² meta-learner: ``meta_train_step`` runs one batch of trials and one update."""

    name = "rl2"
    training_only = ("optimizer",)
    distributed = True

    def __init__(self, config: RL2Config, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.family = make_family(config.family)
        self.episodes = config.episodes or self.family.episodes_per_trial
        self.steps = self.episodes * self.family.max_episode_steps
        head_kw = {}
        if heads.spec_for(self.family.action_space).kind == "gaussian":
            head_kw = {"init_log_std": config.init_log_std}
        memory_kw = {}
        if config.memory == "transformer":
            memory_kw = {"layers": config.transformer_layers, "heads": config.transformer_heads}
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
            torch.manual_seed(derive_seed(seed, "rl2", "init"))
            self.net = self.build_network(
                hidden=config.hidden,
                memory=config.memory,
                shared=config.outer == "ppo" and not config.separate_critic,
                max_len=self.steps,
                head_kw=head_kw,
                time_input=config.time_input,
                prev_obs_input=config.prev_obs_input,
                embed=config.embed,
                episode_steps=self.family.max_episode_steps if config.episode_time_input else None,
                **memory_kw,
            ).to(self.device)
        trained = self.net.parameters() if config.outer == "ppo" else self.net.value_parameters()
        self.optimizer = torch.optim.Adam(trained, lr=config.lr, eps=1e-5)
        self.generator = make_generator(seed, "rl2", "policy", device=self.device)
        self.world = distributed.current()
        self.family.check_meta_batch(config.trials, "trials")
        self.shard = self.world.shard(config.trials, "trials")
        """This process's block of every batch of trials (all of them in one process)."""
        if self.world.size > 1:
            if config.outer != "ppo":
                raise ConfigError("rl2 splits its trials across processes with outer='ppo' only")
            distributed.check_chunks(self.world, config.grad_chunks)
        self.block = config.trials // config.grad_chunks
        """Trials collected at once: every process steps blocks of this size, so a trial's
        numbers do not depend on how many trials a process holds."""
        self.env = self.family.make_env(self.block, self.device)
        self.action_map = (
            unit_box_rescale(self.family.action_space, self.device)
            if config.normalize_actions
            else None
        )

    def build_network(self, **kw: Any) -> RecurrentActorCritic:
        """The recurrent actor-critic for this family, from the config's network options."""
        return RecurrentActorCritic(self.family.observation_space, self.family.action_space, **kw)

    # --- one outer iteration -------------------------------------------------------------
    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        cfg = self.config
        tasks = self.family.tasks(
            cfg.trials, "train", derive_seed(self.seed, "rl2", "tasks", self.iteration), self.device
        )
        batch = self.gather_trials(self.collect_blocks(tasks))
        valid, end = trial_masks(batch.done, self.episodes)
        adv, returns = trial_advantages(
            batch.rewards * cfg.reward_scale, batch.values, valid, end, cfg.gamma, cfg.gae_lambda
        )
        if cfg.normalize_advantages:
            adv = normalize(adv, valid)
        if cfg.lr_final is not None:
            lr = linear_schedule(cfg.lr, cfg.lr_final, self.iteration, cfg.iterations)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        update = self.update(batch, adv, returns, valid)
        per_episode = episode_returns(batch.rewards * valid, batch.done, self.episodes).mean(0)
        metrics = {  # trial returns first: the trainer's progress bar shows the first metrics
            "trial_return": (batch.rewards * valid).sum(0).mean(),
            "first_episode_return": per_episode[0],
            "last_episode_return": per_episode[-1],
            **update,
            "explained_variance": explained_variance(batch.values, returns, valid),
        }
        if batch.success is not None:
            success = episode_successes(batch.success & valid.bool(), batch.done, self.episodes)
            metrics["first_episode_success"] = success[:, 0].mean()
            metrics["last_episode_success"] = success[:, -1].mean()
        self.iteration += 1
        return metrics

    def update(
        self, batch: TrialBatch, adv: torch.Tensor, returns: torch.Tensor, valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Update the network from a batch of trials, its advantages, value targets and valid
        steps (all ``[T, B]``) with the configured outer optimiser; returns its diagnostics."""
        if self.config.outer == "ppo":
            return self._ppo(batch, adv, returns, valid)
        return self._trpo(batch, adv, returns, valid)

    def _entropy_coef(self) -> float:
        cfg = self.config
        return linear_schedule(cfg.entropy_coef, cfg.entropy_final, self.iteration, cfg.iterations)

    def collect_blocks(self, tasks: TaskBatch) -> TrialBatch:
        """This process's trials of ``tasks`` (all of them in one process), collected block by
        block (:attr:`block` trials each; :func:`~adaptrl.core.distributed.in_blocks`)."""
        env_seed = derive_seed(self.seed, "rl2", "env", self.iteration)

        def collect_block(rows: Rows) -> TrialBatch:
            self.env.set_rows(rows)
            self.env.set_tasks(tasks[rows.start : rows.start + rows.count])
            obs = self.env.reset(seed=env_seed)
            return collect_trials(
                self.net, self.env, obs, self.steps, self.generator, self.action_map, rows
            )

        parts = distributed.in_blocks(self.shard, self.block, self.generator, collect_block)
        if len(parts) == 1:
            return parts[0]
        return parts[0].map(lambda vs: torch.cat(vs, dim=1), *parts[1:])

    def gather_trials(self, batch: TrialBatch) -> TrialBatch:
        """Every process's trials, in trial order (the identity in one process)."""
        if self.world.size == 1:
            return batch
        return batch.map(lambda vs: self.world.gather(vs[0].transpose(0, 1)).transpose(0, 1))

    def _ppo(self, batch, adv, returns, valid) -> dict[str, torch.Tensor]:
        """PPO epochs over minibatches of whole trials. A minibatch's gradient is the ordered sum
        of its ``grad_chunks`` chunks' gradients, each chunk's loss weighted by its share of the
        minibatch's valid steps; a process computes its share of the chunks and the chunk
        gradients are gathered (:mod:`adaptrl.core.distributed`)."""
        cfg = self.config
        params = list(self.net.parameters())
        ent_coef = self._entropy_coef()
        sums: dict[str, torch.Tensor] = {}
        keys: list[str] = []
        for _ in range(cfg.epochs):
            order = torch.randperm(cfg.trials, generator=self.generator, device=self.device)
            for idx in order.chunk(cfg.minibatches):
                steps = valid[:, idx].sum().clamp_min(1)
                parts = idx.tensor_split(cfg.grad_chunks)

                def chunk_loss(
                    c: int, parts: tuple = parts, steps: torch.Tensor = steps
                ) -> tuple[torch.Tensor, torch.Tensor]:
                    loss, info = self._ppo_loss(batch, adv, returns, valid, parts[c], ent_coef)
                    keys[:] = info
                    share = valid[:, parts[c]].sum() / steps
                    return loss * share, torch.stack(list(info.values())) * share

                grads, totals = distributed.chunk_gradients(
                    self.world, cfg.grad_chunks, params, chunk_loss
                )
                for p, g in zip(params, grads, strict=True):
                    p.grad = g.clone()
                if self.net.shared:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                else:  # a separate critic's (often larger) gradient must not shrink the policy's
                    grad_norm = torch.nn.utils.clip_grad_norm_(
                        self.net.policy_parameters().values(), cfg.max_grad_norm
                    )
                    torch.nn.utils.clip_grad_norm_(self.net.value_parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                for k, v in zip(keys, totals, strict=True):
                    sums[k] = sums.get(k, 0.0) + v
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm.detach()
        n = cfg.epochs * cfg.minibatches
        first = ("policy_loss", "value_loss", "entropy", "grad_norm")
        return {k: sums[k] / n for k in (*first, *(k for k in sums if k not in first))}

    def _ppo_loss(
        self,
        batch: TrialBatch,
        adv: torch.Tensor,
        returns: torch.Tensor,
        valid: torch.Tensor,
        idx: torch.Tensor,
        ent_coef: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """PPO's loss on the trials ``idx`` (clipped surrogate, value loss, entropy bonus, each a
        mean over their valid steps) and its diagnostics."""
        cfg, spec = self.config, self.net.spec
        mask = valid[:, idx]
        params, values, _ = self.net(batch.inputs[:, idx])
        logp = heads.log_prob(spec, params, batch.actions[:, idx])
        pi_loss, info = ppo_clip_loss(logp, batch.logp[:, idx], adv[:, idx], cfg.clip, mask)
        v_loss = value_loss(values, returns[:, idx], mask=mask)
        ent = heads.entropy(spec, params)
        loss = pi_loss + cfg.value_coef * v_loss + ent_coef * entropy_loss(ent, mask)
        diagnostics = {
            "policy_loss": pi_loss.detach(),
            "value_loss": v_loss.detach(),
            "entropy": masked_mean(ent.detach(), mask),
            **info,
        }
        return loss, diagnostics

    def _trpo(self, batch, adv, returns, valid) -> dict[str, Any]:
        cfg, spec, net = self.config, self.net.spec, self.net
        named = net.policy_parameters()
        names, params = list(named), list(named.values())
        with torch.no_grad():
            old_params = net(batch.inputs, with_value=False)[0]
            old_logp = heads.log_prob(spec, old_params, batch.actions)

        def dist(flat_params: list[torch.Tensor]) -> torch.Tensor:
            p = dict(zip(names, flat_params, strict=True))
            return functional_call(net, p, (batch.inputs,), {"with_value": False})[0]

        def objective(ps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            new = dist(ps)
            logp = heads.log_prob(spec, new, batch.actions)
            loss = -masked_mean(torch.exp(logp - old_logp) * adv, valid)
            return loss, masked_mean(heads.kl(spec, old_params, new), valid)

        new_params, info = trpo_step(
            params, objective, max_kl=cfg.max_kl, damping=cfg.damping, cg_iters=cfg.cg_iters
        )
        with torch.no_grad():
            for p, new in zip(params, new_params, strict=True):
                p.copy_(new)
            entropy = masked_mean(heads.entropy(spec, old_params), valid)
        v_sum = torch.zeros((), device=self.device)
        for _ in range(cfg.epochs):
            order = torch.randperm(cfg.trials, generator=self.generator, device=self.device)
            for idx in order.chunk(cfg.minibatches):
                v_loss = value_loss(
                    net.values(batch.inputs[:, idx]), returns[:, idx], mask=valid[:, idx]
                )
                self.optimizer.zero_grad()
                v_loss.backward()
                torch.nn.utils.clip_grad_norm_(net.value_parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                v_sum = v_sum + v_loss.detach()
        return {
            "policy_loss": torch.as_tensor(info["loss_after"]),
            "approx_kl": torch.as_tensor(info["kl"]),
            "step_fraction": torch.as_tensor(info["step_fraction"]),
            "value_loss": v_sum / (cfg.epochs * cfg.minibatches),
            "entropy": entropy,
        }

    def env_steps(self, iterations: int) -> int:
        """One whole trial per row and iteration."""
        return iterations * self.config.trials * self.steps

    # --- evaluation ------------------------------------------------------------------------
    def trial_agent(self) -> RL2Agent:
        """The trained policy as a trial agent (memory reset at ``begin_trial``), sampling actions."""
        return RL2Agent(self.net, self.steps, self.action_map, name=self.name)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if "optimizer" in state:  # an exported model has none (training_only)
            self.optimizer.load_state_dict(state["optimizer"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])


class RL2Agent:
    """A trained RL² policy behind the trial-agent protocol (``adaptrl.baselines.base``).

    ``begin_trial`` empties the memory; ``act`` samples from the policy with the trial's
    generator (as the paper evaluates) and rescales it for the environment (``action_map``);
    ``observe`` records the previous action (the policy's own), reward and done flag that the
    next ``act`` reads.
    """

    uses_task = False

    def __init__(
        self,
        net: RecurrentActorCritic,
        trial_steps: int,
        action_map: tuple[torch.Tensor, torch.Tensor] | None = None,
        name: str = "rl2",
    ):
        self.name = name
        self.net = net
        self.trial_steps = trial_steps
        self.action_map = action_map

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        self.state = self.net.initial_state(env.num_envs, env.device)
        self.prev = self.net.initial_prev(env.num_envs, env.device)
        self.generator = generator
        self.t = 0
        self.episode_step = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.net.inputs(
            obs, *self.prev, progress=self.t / self.trial_steps, episode_step=self.episode_step
        )
        self.t += 1
        params, _, self.state = self.net.step(x, self.state, with_value=False)
        self.action = heads.sample(self.net.spec, params, self.generator)
        return to_box(self.action, self.action_map)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        done = step.terminated | step.truncated
        # the memory reads the policy's action, not the rescaled one the environment received
        self.prev = (
            heads.encode_action(self.net.spec, self.action),
            step.reward,
            done.float(),
            self.net.encode_prev_obs(obs),
        )
        self.episode_step = next_episode_step(self.episode_step, done)


register_algo(
    AlgoSpec(
        name="rl2",
        config_cls=RL2Config,
        learner_cls=RL2,
        description="RL²: a GRU/transformer policy whose memory spans a trial, trained by PPO/TRPO",
        kind="rl",
    )
)
