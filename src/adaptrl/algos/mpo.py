"""Meta-Policy Optimisation (MPO): a Distral prior that guides new tasks' policies.

The source articles' *meta-policy network* produces a meta-policy that guides the task policies.
adaptrl implements it as Distral (Teh et al. 2017): a shared *prior* policy ``pi_0`` and one policy
``pi_i`` per task. Each task policy maximises its return regularised toward the prior,

    E[ sum_t gamma^t ( r_t + (alpha / beta) log pi_0(a_t|s_t) - (1 / beta) log pi_i(a_t|s_t) ) ],

with ``alpha = c_KL / (c_KL + c_ent)`` and ``1 / beta = c_KL + c_ent`` (``kl_weight``,
``entropy_weight``). In expectation over ``a_t ~ pi_i`` the two log terms of a step are
``c_ent H(pi_i(.|s_t)) - c_KL KL(pi_i(.|s_t) || pi_0(.|s_t))``, which :func:`regulariser`
computes in closed form (categorical and Gaussian alike): the same objective as the sampled log
ratio, with less variance. The prior is distilled from the trained task policies
(:func:`distill_loss`, ``min E_s KL(pi_i || pi_0)``) on the states of the episodes they ran from
their start (``distill_on``; Distral's own choice, the trained policies' states, is an option).

One meta-iteration (:meth:`MPO.meta_train_step`):

1. draw ``tasks`` meta-train tasks; each task policy starts from the prior's parameters
   (one column) or, with ``two_column``, acts as ``pi_i ∝ exp(alpha h + beta f_i)``, ``h`` the
   prior's logits and ``f_i`` a task column starting from a fixed initialisation;
2. ``inner_updates`` times: run ``episodes`` episodes per task, all tasks in one batched
   environment, and take one Adam step per task on the regularised policy gradient
   (:func:`regularised_pg_loss`; per-task parameters ``[tasks, ...]``, ``vmap(grad)``);
3. run ``episodes`` more with the trained task policies (the metrics' ``return_post``) and
   distil the prior toward them (``distill_steps`` Adam steps on the prior).

At meta-test a new task's policy starts the same way from the frozen prior and is trained for
``test_updates`` updates of ``episodes`` episodes with the KL toward it
(:meth:`MPO.adaptation_curve`). ``outer="multitask"`` trains the prior itself as one policy on
every task instead (the ``pretrained`` baseline of ``baselines/mpo.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import gymnasium as gym
import torch
import tyro
from torch.func import functional_call, grad, vmap

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Config, Count, Ge, Positive, Size, Unit
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import derive_seed, generator_state, make_generator, set_generator_state
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.base import BatchedEnv, TaskBatch
from adaptrl.envs.gridworld import GridworldConfig
from adaptrl.nn import heads
from adaptrl.nn.policies import MLPPolicy, Params, policy_dist, to_box, unit_box_rescale
from adaptrl.nn.recurrent import encode_observation, observation_dim
from adaptrl.rl.baseline import baseline_advantages
from adaptrl.rl.losses import vpg_loss
from adaptrl.rl.optim import AdamState, adam_init, adam_step
from adaptrl.rl.returns import masked_mean, normalize
from adaptrl.rl.rollout import collect, first_episode_mask

Weight = Annotated[float, Ge(0)]


@dataclasses.dataclass(frozen=True)
class MPOConfig(Config):
    """Distral: task policies regularised toward a prior distilled from them."""

    family: Annotated[FamilyConfigUnion, tyro.conf.arg(name="")] = GridworldConfig(  # type: ignore[valid-type]
        height=9, width=9, layout="four-rooms", horizon=30
    )
    """Task family to meta-train on."""
    iterations: Count = 200
    """Outer iterations (a batch of tasks trained from the prior, then one distillation)."""
    tasks: Size = 16
    """Meta-train tasks per iteration, trained at once."""
    episodes: Size = 8
    """Episodes per task and update (one per environment row), in training and at meta-test."""
    inner_updates: Size = 20
    """Policy-gradient updates of each task policy per meta-iteration."""
    test_updates: Count = 40
    """Updates of a new task's policy at meta-test (the adaptation curve's length)."""
    hidden: tuple[Size, ...] = (64,)
    """Hidden layer widths of the policy MLP (prior, task policies and task columns alike)."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden activation."""
    init_log_std: float = 0.0
    """Initial log standard deviation of a Gaussian policy (continuous actions)."""
    kl_weight: Weight = 0.05
    """c_KL: weight of KL(pi_i || pi_0) in each task's regularised return."""
    entropy_weight: Weight = 0.01
    """c_ent: weight of the task policy's entropy in its regularised return."""
    test_kl_weight: Weight | None = None
    """c_KL at meta-test (None: kl_weight). The baselines fine-tune with 0."""
    two_column: bool = False
    """Distral's two-column form: pi_i ∝ exp(alpha h + beta f_i) with h the prior's logits and f_i
    a task column (discrete actions only). Off: each task policy is its own network, started
    from the prior's parameters (one column)."""
    outer: Literal["distill", "multitask"] = "distill"
    """How the prior learns: distilled from the task policies (Distral), or trained itself as one
    policy on every task's episodes without a KL (multi-task pretraining, the baseline)."""
    inner_lr: Positive = 0.03
    """Adam step size of the task-policy updates (in training and at meta-test)."""
    outer_lr: Positive = 3e-3
    """Adam step size of the prior's updates (distillation, or multi-task training)."""
    distill_steps: Size = 10
    """Distillation steps per meta-iteration, each on all the states ``distill_on`` names."""
    distill_on: Literal["start", "trained", "both"] = "start"
    """Where the prior is distilled toward the trained task policies: on the states of the
    episodes the task policies ran before training (one column: the prior's own episodes), of
    those they ran after training (Distral's visitation), or both."""
    gamma: Unit = 0.99
    """Discount factor."""
    gae_lambda: Unit | None = None
    """GAE lambda on the linear baseline; None: discounted returns minus the baseline."""
    normalize_advantages: bool = False
    """Standardise advantages per task (over its valid steps). Off by default: a task whose
    episodes found no reward yet would get its regulariser's small returns blown up to unit
    scale, noise that collapsed the policies on the four-room grid (docs/architecture.md)."""
    normalize_actions: bool = True
    """Bounded Box actions: the policy acts in [-1, 1]^d, mapped onto the box (as MAML-RL)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.two_column and self.kl_weight + self.entropy_weight <= 0:
            raise ConfigError(
                "two_column needs kl_weight + entropy_weight > 0 (beta = 1 / their sum)"
            )
        if self.two_column and self.outer == "multitask":
            raise ConfigError("outer='multitask' trains one policy: it has no task columns")

    @property
    def meta_test_kl(self) -> float:
        """c_KL of the meta-test updates."""
        return self.kl_weight if self.test_kl_weight is None else self.test_kl_weight


# ------------------------------------------------------------------------------------------
# Small pieces, each tested on its own (tests/test_mpo.py)


def distral_coefficients(kl_weight: float, entropy_weight: float) -> tuple[float, float]:
    """``(alpha, beta)`` of Distral: ``alpha = c_KL / (c_KL + c_ent)``, ``beta = 1 / (c_KL +
    c_ent)``."""
    total = kl_weight + entropy_weight
    if total <= 0:
        raise ConfigError("Distral's alpha and beta need kl_weight + entropy_weight > 0")
    return kl_weight / total, 1.0 / total


def regulariser(
    spec: heads.DistSpec,
    task: torch.Tensor,
    prior: torch.Tensor,
    kl_weight: float,
    entropy_weight: float,
) -> torch.Tensor:
    """Per state, ``c_ent H(pi_i) - c_KL KL(pi_i || pi_0)``: the expectation over ``a ~ pi_i`` of
    Distral's ``(alpha / beta) log pi_0(a) - (1 / beta) log pi_i(a)``, in closed form."""
    return entropy_weight * heads.entropy(spec, task) - kl_weight * heads.kl(spec, task, prior)


def two_column_logits(
    prior_logits: torch.Tensor, column_logits: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """Distral's two-column policy ``pi_i ∝ exp(alpha h + beta f_i)`` as (unnormalised) logits."""
    return alpha * prior_logits + beta * column_logits


def regularised_pg_loss(
    spec: heads.DistSpec,
    dist: torch.Tensor,
    prior: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    kl_weight: float,
    entropy_weight: float,
) -> torch.Tensor:
    """One task's loss: the policy gradient of its regularised return.

    ``advantages`` come from the returns of ``r_t + regulariser(s_t)``; the regulariser also
    depends on the policy directly at each visited state, whose gradient is the second term."""
    logp = heads.log_prob(spec, dist, actions)
    reg = regulariser(spec, dist, prior.detach(), kl_weight, entropy_weight)
    return vpg_loss(logp, advantages, mask) - masked_mean(reg, mask)


def distill_loss(
    spec: heads.DistSpec, task: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``mean_s KL(pi_i(.|s) || pi_0(.|s))`` over the valid states of every task: minimised in
    the prior, the task policies being targets. Its minimiser at a state visited by several
    tasks is their mixture (categorical) or its moment match (Gaussian)."""
    return masked_mean(heads.kl(spec, task.detach(), prior), mask)


def first_episode_returns(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each task's mean undiscounted return of its rows' first episodes: ``[G]`` from
    ``rewards`` and ``mask`` ``[G, T, E]``."""
    return (rewards * mask).sum(1).mean(1)


@dataclasses.dataclass
class Batch:
    """Episodes of G tasks on E environment rows each, task-major ``[G, T, E, ...]``, detached."""

    obs: torch.Tensor
    """Encoded observations (one-hot for discrete ones) ``[G, T, E, D]``."""
    actions: torch.Tensor
    """The policy's actions (before rescaling to the box)."""
    mask: torch.Tensor
    """1.0 on the steps of each row's first episode."""
    advantages: torch.Tensor
    dist: torch.Tensor
    """The task policies' distribution parameters ``[G, T, E, P]``."""
    prior: torch.Tensor
    """The prior's distribution parameters at the same states."""
    returns: torch.Tensor
    """Each task's mean episode return (environment reward only) ``[G]``."""


def task_major(x: torch.Tensor, tasks: int) -> torch.Tensor:
    """``[T, G * E, ...] -> [G, T, E, ...]``, contiguous."""
    T, B = x.shape[:2]
    return x.reshape(T, tasks, B // tasks, *x.shape[2:]).transpose(0, 1).contiguous()


# ------------------------------------------------------------------------------------------
# The learner


class MPO(MetaLearner):
    """Distral meta-learner: the prior in ``self.prior``; task policies as batched parameters."""

    name = "mpo"
    metric = "return"
    higher_is_better = True
    training_only = ("optimizer",)

    def __init__(self, config: MPOConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.family = make_family(config.family)
        self.obs_space = self.family.observation_space
        if not isinstance(self.obs_space, gym.spaces.Discrete | gym.spaces.Box):
            raise ConfigError(f"mpo needs Discrete or Box observations, got {self.obs_space}")
        self.spec = heads.spec_for(self.family.action_space)
        if config.two_column and self.spec.kind != "categorical":
            raise ConfigError(
                f"two_column needs discrete actions (Distral's two-column policy multiplies "
                f"probabilities over actions); {self.family.family_id} has "
                f"{self.family.action_space}: use the one-column form (two_column=False)"
            )
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
            torch.manual_seed(derive_seed(self.seed, "mpo", "init"))
            self.net = MLPPolicy(
                observation_dim(self.obs_space),
                self.family.action_space,
                config.hidden,
                config.activation,
                config.init_log_std,
            ).to(self.device)
            column = self.net.params()  # the task columns' fixed starting point (two_column)
        self.prior: Params = {k: v.requires_grad_(True) for k, v in self.net.params().items()}
        self.column_init: Params = column
        self.alpha, self.beta = (
            distral_coefficients(config.kl_weight, config.entropy_weight)
            if config.two_column
            else (0.0, 0.0)
        )
        self.optimizer = torch.optim.Adam(self.prior.values(), lr=config.outer_lr)
        self.generator = make_generator(self.seed, "mpo", "actions", device=self.device)
        self.rescale = (
            unit_box_rescale(self.family.action_space, self.device)
            if config.normalize_actions
            else None
        )
        self._envs: dict[int, BatchedEnv] = {}

    @property
    def default_eval_steps(self) -> int:  # type: ignore[override]
        """Meta-test updates of ``adaptrl eval``: the configured ``test_updates``."""
        return self.config.test_updates

    # --- one meta-iteration ---------------------------------------------------------------
    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        c, it = self.config, self.iteration
        tasks = self.family.tasks(
            c.tasks, "train", derive_seed(self.seed, "mpo", "tasks", it), self.device
        )
        seeds = [derive_seed(self.seed, "mpo", "env", it, k) for k in range(c.inner_updates + 1)]
        if c.outer == "multitask":
            metrics = self._multitask(tasks, seeds)
        else:
            params, returns, first, last = self.train_tasks(
                tasks, c.inner_updates, c.kl_weight, seeds, self.generator
            )
            metrics = {
                "return_pre": returns[:, 0].mean(),
                "return_post": returns[:, -1].mean(),
                **self.distill(*self.distill_data(params, first, last)),
            }
        self.iteration += 1
        return metrics

    def env_steps(self, iterations: int) -> int:
        """Each task's ``episodes`` before every update and once more after the last."""
        c = self.config
        per_update = c.tasks * c.episodes * self.family.max_episode_steps
        return iterations * per_update * (c.inner_updates + 1)

    def _multitask(self, tasks: TaskBatch, seeds: list[int]) -> dict[str, torch.Tensor]:
        """Multi-task pretraining: one Adam step of the prior per batch of every task's episodes,
        on the same budget as the inner loop's (``inner_updates + 1`` batches)."""
        c = self.config
        returns, entropy = [], torch.zeros((), device=self.device)
        for env_seed in seeds:
            shared = self.start_params(len(tasks))
            batch = self.collect(tasks, shared, 0.0, env_seed, self.generator)
            dist = policy_dist(self.net, self.prior, batch.obs)
            loss = regularised_pg_loss(
                self.spec,
                dist,
                dist.detach(),
                batch.actions,
                batch.advantages,
                batch.mask,
                0.0,
                c.entropy_weight,
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            returns.append(batch.returns.mean())
            entropy = masked_mean(heads.entropy(self.spec, batch.dist), batch.mask)
        return {"return_pre": returns[0], "return_post": returns[-1], "entropy": entropy}

    # --- the task policies -----------------------------------------------------------------
    def start_params(self, num_tasks: int) -> Params:
        """Every task's starting parameters ``[num_tasks, ...]``: the prior's (one column, and the
        multi-task policy) or the fixed task-column initialisation (two columns)."""
        start = self.column_init if self.config.two_column else self.prior
        return {k: v.detach().expand(num_tasks, *v.shape).clone() for k, v in start.items()}

    def task_dist(self, params: Params, obs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """One task's distribution parameters at ``obs`` from its ``params`` and the prior's
        distribution there (used by the two-column form)."""
        own = functional_call(self.net, params, (obs,))
        if not self.config.two_column:
            return own
        return two_column_logits(prior, own, self.alpha, self.beta)

    def env(self, num_envs: int) -> BatchedEnv:
        """The batched environment of ``num_envs`` rows (built once per size)."""
        if num_envs not in self._envs:
            self._envs[num_envs] = self.family.make_env(num_envs, self.device)
        return self._envs[num_envs]

    def collect(
        self,
        tasks: TaskBatch,
        params: Params,
        kl_weight: float,
        env_seed: int,
        generator: torch.Generator,
    ) -> Batch:
        """``episodes`` episodes per task with per-task ``params`` (one environment of
        ``tasks x episodes`` rows), their advantages for the regularised return with ``kl_weight``
        against the per-task linear baseline, and each task's mean return."""
        c, num_tasks, per = self.config, len(tasks), self.config.episodes
        env = self.env(num_tasks * per)
        env.set_tasks(tasks[torch.arange(num_tasks, device=tasks.device).repeat_interleave(per)])
        obs0 = env.reset(seed=env_seed)
        prior_params = {k: v.detach() for k, v in self.prior.items()}
        task_dists = vmap(self.task_dist)

        def act(obs: torch.Tensor, carry: None) -> tuple[torch.Tensor, dict[str, Any], None]:
            x = encode_observation(self.obs_space, obs).reshape(num_tasks, per, -1)
            prior = policy_dist(self.net, prior_params, x)
            dist = task_dists(params, x, prior)
            action = heads.sample(self.spec, dist.reshape(num_tasks * per, -1), generator)
            extras = {"x": x, "action": action, "dist": dist, "prior": prior}
            return to_box(action, self.rescale), extras, carry

        with torch.no_grad():
            ro = collect(env, act, obs0, None, self.family.max_episode_steps)[0]
            T = ro.rewards.shape[0]
            mask = first_episode_mask(ro.done).float()  # [T, G * E]
            x, dist, prior = (ro.extras[k].transpose(0, 1) for k in ("x", "dist", "prior"))
            mask, rewards, done = (
                task_major(v, num_tasks) for v in (mask, ro.rewards.float(), ro.done)
            )
            reg = regulariser(self.spec, dist, prior, kl_weight, c.entropy_weight) * mask
            timestep = torch.arange(T, device=self.device)[None, :, None].expand_as(mask)
            to_time = lambda v: v.transpose(0, 1)  # noqa: E731  [G, T, ...] <-> [T, G, ...]
            adv = to_time(
                baseline_advantages(
                    to_time((rewards + reg) * mask),
                    to_time(done),
                    to_time(x),
                    to_time(timestep),
                    to_time(mask),
                    c.gamma,
                    c.gae_lambda,
                )
            )
            if c.normalize_advantages:
                adv = vmap(normalize)(adv, mask) * mask
            action = task_major(ro.extras["action"], num_tasks)
            return Batch(
                obs=x.contiguous(),
                actions=action,
                mask=mask,
                advantages=adv.contiguous(),
                dist=dist.contiguous(),
                prior=prior.contiguous(),
                returns=first_episode_returns(rewards, mask),
            )

    def inner_update(
        self, params: Params, state: AdamState, batch: Batch, kl_weight: float
    ) -> tuple[Params, AdamState]:
        """One Adam step of every task policy on its regularised policy gradient, all tasks at
        once (``vmap`` of ``grad`` over the leading task dimension)."""
        c = self.config

        def loss(p: Params, obs, actions, adv, mask, prior) -> torch.Tensor:
            dist = self.task_dist(p, obs, prior)
            return regularised_pg_loss(
                self.spec, dist, prior, actions, adv, mask, kl_weight, c.entropy_weight
            )

        grads = vmap(grad(loss))(
            params, batch.obs, batch.actions, batch.advantages, batch.mask, batch.prior
        )
        return adam_step(params, grads, state, c.inner_lr)

    def train_tasks(
        self,
        tasks: TaskBatch,
        updates: int,
        kl_weight: float,
        env_seeds: list[int],
        generator: torch.Generator,
    ) -> tuple[Params, torch.Tensor, Batch, Batch]:
        """Start every task's policy (:meth:`start_params`) and train it for ``updates`` updates,
        each on fresh episodes (one environment seed per batch, ``updates + 1`` of them).
        Returns the trained parameters, each task's mean return before every update and after
        the last ``[G, updates + 1]``, and the first and last batches (the starting and the
        trained policies' episodes)."""
        params = self.start_params(len(tasks))
        state = adam_init(params)
        returns, batches = [], []
        for k in range(updates + 1):
            batches.append(self.collect(tasks, params, kl_weight, env_seeds[k], generator))
            returns.append(batches[-1].returns)
            if k < updates:
                params, state = self.inner_update(params, state, batches[-1], kl_weight)
        return params, torch.stack(returns, dim=1), batches[0], batches[-1]

    # --- the prior ---------------------------------------------------------------------------
    def distill_data(
        self, params: Params, first: Batch, last: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(obs, target, mask)`` the prior is distilled on (``distill_on``): the states of the
        starting policies' episodes (``first``), of the trained ones' (``last``) or of both, and
        there the trained task policies' distributions, task-major ``[G, T, E', ...]``."""
        parts = []
        if self.config.distill_on in ("start", "both"):
            with torch.no_grad():
                target = vmap(self.task_dist)(params, first.obs, first.prior)
            parts.append((first.obs, target, first.mask))
        if self.config.distill_on in ("trained", "both"):
            parts.append((last.obs, last.dist, last.mask))
        obs, target, mask = (torch.cat(p, dim=2) for p in zip(*parts, strict=True))
        return obs, target, mask

    def distill(
        self, obs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``distill_steps`` Adam steps of the prior toward the task policies' distributions
        ``target`` at ``obs`` (``[G, T, E, ...]``); the loss before the first step and after the
        last, and the prior's entropy there."""
        steps, losses = self.config.distill_steps, []
        for step in range(steps + 1):
            prior = policy_dist(self.net, self.prior, obs)
            loss = distill_loss(self.spec, target, prior, mask)
            losses.append(loss.detach())
            if step == steps:
                break
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        entropy = masked_mean(heads.entropy(self.spec, prior.detach()), mask)
        return {"kl_to_prior": losses[0], "kl_after_distill": losses[-1], "prior_entropy": entropy}

    # --- evaluation hooks ----------------------------------------------------------------------
    def _meta_test(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> tuple[Params, torch.Tensor]:
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        tasks = tasks.to(self.device)
        seeds = [int(s) for s in torch.randint(2**62, (steps + 1,), generator=generator)]
        params, returns, _, _ = self.train_tasks(
            tasks, steps, self.config.meta_test_kl, seeds, generator
        )
        return params, returns

    def adaptation_curve(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Each new task's mean episode return after 0..steps updates from the prior (with the
        KL toward it), ``[num_tasks, steps + 1]``; ``episodes`` episodes per task and update."""
        return self._meta_test(tasks, steps, generator)[1]

    def adapt(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Each task's policy after ``steps`` updates, ``[num_tasks, ...]`` (with two columns: the
        task columns as ``column.*``; the shared prior is the run's). With ``normalize_actions``
        a Gaussian policy acts in ``[-1, 1]^d`` (``nn.policies.unit_box_rescale``)."""
        params = self._meta_test(tasks, steps, generator)[0]
        prefix = "column." if self.config.two_column else ""
        return {prefix + k: v.detach().contiguous() for k, v in params.items()}

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "prior": {k: v.detach().clone() for k, v in self.prior.items()},
            "column_init": {k: v.clone() for k, v in self.column_init.items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["prior"]) != set(self.prior):
            raise ConfigError(
                f"checkpoint parameters {sorted(state['prior'])} do not match this policy's "
                f"{sorted(self.prior)}"
            )
        with torch.no_grad():
            for k, v in state["prior"].items():
                self.prior[k].copy_(v)
            for k, v in state["column_init"].items():
                self.column_init[k].copy_(v)
        if "optimizer" in state:  # an exported model has none (training_only)
            self.optimizer.load_state_dict(state["optimizer"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])


register_algo(
    AlgoSpec(
        name="mpo",
        config_cls=MPOConfig,
        learner_cls=MPO,
        description="meta-policy optimisation: a Distral prior distilled from KL-regularised "
        "task policies guides new tasks (one- or two-column)",
        kind="rl",
    )
)

__all__ = [
    "MPO",
    "Batch",
    "MPOConfig",
    "distill_loss",
    "distral_coefficients",
    "regularised_pg_loss",
    "regulariser",
    "two_column_logits",
]
