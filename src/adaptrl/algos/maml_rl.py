"""MAML for reinforcement learning (Finn, Abbeel & Levine 2017), read top to bottom.

The policy's initial parameters ``theta`` are meta-trained so that a few vanilla policy-gradient
(VPG) steps on a new task's own rollouts give a good policy for that task. One meta-iteration
(:meth:`MAMLRL.meta_train_step`):

1. draw ``G`` meta-train tasks; run ``E`` rollouts per task with ``theta`` in one batched
   environment of ``G * E`` rows (task ``g`` repeated ``E`` times), stored task-major
   ``[G, H, E, ...]`` so that every per-task computation below reads contiguous memory;
2. fit the linear feature baseline per task and take ``S`` inner VPG steps per task, all tasks at
   once: ``phi_g = theta - alpha * grad L_g(theta)`` with ``torch.func.grad`` vmapped over tasks
   (each further inner step runs fresh rollouts with the current adapted parameters);
3. run ``E`` rollouts per task with the adapted parameters ``phi_g`` (per-task parameters applied
   with ``vmap(functional_call)``, one batched forward per environment step);
4. update ``theta`` on the adapted policies' rollouts (:meth:`MAMLRL.update`): TRPO (the paper's
   method: the objective re-runs the differentiable adaptation on the pre-update rollouts and
   evaluates the importance-weighted surrogate on the post-update ones; the KL constraint is on
   the adapted policies) or a PPO-style clipped objective (several epochs, re-adapting each
   epoch). Second-order gradients flow through the inner step; ``first_order=True`` (FOMAML)
   detaches the inner gradient.

With ``inner_steps=0`` the same code is multi-task TRPO/PPO (the "pretrained" transfer baseline);
``observe_task=True`` appends the task parameters to the observation (the "oracle" baseline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Literal

import gymnasium as gym
import torch
import tyro
from torch.func import grad, jvp, vmap

from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core import distributed
from adaptrl.core.config import Config, Count, Ge, Gt, Interval, Positive, Size
from adaptrl.core.distributed import Rows
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import derive_seed, generator_state, make_generator, set_generator_state
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.base import BatchedEnv, TaskBatch
from adaptrl.envs.nav2d import Nav2DConfig
from adaptrl.nn import heads
from adaptrl.nn.policies import (
    MLPPolicy,
    Params,
    batched_policy_dist,
    policy_dist,
    to_box,
    unit_box_rescale,
)
from adaptrl.rl.baseline import baseline_advantages
from adaptrl.rl.losses import ppo_clip_loss, vpg_loss
from adaptrl.rl.returns import normalize
from adaptrl.rl.rollout import (
    Rollout,
    collect,
    episode_success,
    first_episode_mask,
    step_budget_mask,
    step_in_episode,
)
from adaptrl.rl.trpo import trpo_step, unflat

StepSize = Annotated[float, Ge(0)]


@dataclasses.dataclass(frozen=True)
class MAMLRLConfig(Config):
    """MAML-RL hyperparameters; the defaults are the paper's 2D-navigation setting (Appendix C)."""

    family: Annotated[FamilyConfigUnion, tyro.conf.arg(name="")] = Nav2DConfig()
    """Task family to meta-train on."""
    iterations: Count = 500
    """Outer (meta) iterations."""
    meta_batch_size: Size = 20
    """Tasks per meta-batch, G."""
    rollouts_per_task: Size = 20
    """Rollouts per task for each inner step and for the post-update evaluation, E."""
    hidden: tuple[Size, ...] = (100, 100)
    """Hidden layer widths of the policy MLP."""
    activation: Literal["tanh", "relu"] = "relu"
    """Hidden activation."""
    init_log_std: float = 0.0
    """Initial log standard deviation of a Gaussian policy."""
    inner_steps: Count = 1
    """Inner VPG steps during meta-training, S (0 = multi-task training without adaptation)."""
    inner_lr: StepSize = 0.1
    """Inner learning rate alpha."""
    inner_lrs: tuple[StepSize, ...] = ()
    """Learning rate of each inner step in meta-training, one per step (empty: inner_lr for all).
    Lets a multi-step model train with the schedule it will be tested with."""
    step_loss_weights: tuple[Annotated[float, Ge(0)], ...] = ()
    """Outer-loss weight of the policy after each inner step 1..S (empty: the last step only, the
    paper). Non-zero earlier weights add the surrogate (and the KL) of the policies after those
    steps on the rollouts they collected, MAML++'s multi-step loss, so a model meta-trained for S
    steps stays good after fewer."""
    single_step_iterations: Count = 0
    """A step curriculum: the first meta-iterations train one inner step (the schedule's first
    step size, the outer loss on its policy alone, as a one-step model), the rest the S-step
    schedule with step_loss_weights. Needs inner_steps >= 2; 0 (default): S steps from the start
    (the maml-rl/nav2d-curriculum preset uses it)."""
    eval_inner_lrs: tuple[Annotated[float, Gt(0)], ...] = ()
    """Learning rate of each inner step at test time, the last one repeated (empty: the training
    schedule, inner_lrs or inner_lr). The paper used (0.1, 0.05) for 2D navigation."""
    eval_rollouts_per_task: Size | None = None
    """Rollouts per task for each step at test time (None: rollouts_per_task). The authors'
    2D-navigation test script sampled 40 (4000 steps), twice the training batch."""
    batch: Literal["episodes", "steps"] = "episodes"
    """What a meta-training batch of one task holds. "episodes": the first episode of each of its
    rollouts_per_task (E) environments. "steps": as rllab's samplers drew the paper's batches (a
    budget of steps, not of episodes), those environments run on, resetting at each episode end,
    until the episodes they completed hold at least E x H steps, and every such episode is kept
    (rl.rollout.step_budget_mask). Where episodes end early (nav2d at the goal) a batch then holds
    more, shorter, mostly successful episodes. Rollouts take 2H steps, so the outer update costs
    about twice as much."""
    eval_batch: Literal["episodes", "steps"] = "episodes"
    """The same choice for test-time batches (eval_rollouts_per_task environments; the authors'
    2D-navigation test script sampled 4000 steps on 40 environments)."""
    first_order: bool = False
    """FOMAML: detach the inner gradient (no second-order terms)."""
    outer: Literal["trpo", "ppo"] = "trpo"
    """Outer optimiser: TRPO (the paper) or a PPO-style clipped objective."""
    max_kl: Positive = 0.01
    """TRPO: bound on the mean KL between the adapted policies before and after the update."""
    cg_iters: Count = 10
    """TRPO: conjugate-gradient iterations."""
    fvp: Literal["structured", "autograd"] = "structured"
    """TRPO Fisher-vector product: "structured" (exact J^T F J form; with more than one inner step
    the update uses "autograd" instead) or "autograd" (double backward through the adaptation,
    rl.trpo.fisher_vector_product)."""
    fvp_subsample: Annotated[float, Interval(gt=0, le=1)] = 1.0
    """TRPO, structured product only: share of each task's rollouts the Fisher-vector products use
    (the gradient, the KL and the line search always use all). 1.0 is exact; Schulman et al. (2015)
    compute them on 10% of the data, since the Fisher only sets the step's metric."""
    fvp_block: Size | None = None
    """TRPO, structured product only: time steps per block of the Fisher-vector products. The
    products are sums over steps, so computing them block by block is exact (to float rounding);
    blocks whose activations fit the per-core cache keep the elementwise work of the double
    backward there. None: one block (all H steps)."""
    cg_damping: Annotated[float, Ge(0)] = 1e-5
    """TRPO: damping added to the Fisher-vector product."""
    ls_max_steps: Count = 15
    """TRPO: backtracking line-search steps."""
    ls_backtrack_ratio: Annotated[float, Interval(gt=0, lt=1)] = 0.8
    """TRPO: step shrink factor per backtrack."""
    ppo_epochs: Count = 5
    """PPO: epochs over the meta-batch, re-adapting each epoch."""
    ppo_clip: Positive = 0.2
    """PPO: ratio clip range."""
    ppo_lr: Positive = 3e-3
    """PPO: Adam learning rate for theta."""
    gamma: Annotated[float, Interval(gt=0, le=1)] = 0.99
    """Discount factor."""
    gae_lambda: Annotated[float, Interval(ge=0, le=1)] | None = None
    """GAE lambda; None uses plain discounted returns minus the baseline, as in the paper."""
    normalize_advantages: bool = True
    """Standardise advantages per task (over its valid steps)."""
    normalize_actions: bool = True
    """Bounded Box actions: the policy acts in [-1, 1]^d, mapped affinely onto the box (rllab's
    ``normalize`` wrapper, which the paper's experiments used). nav2d's velocities are in
    [-0.1, 0.1]: acting in them directly, the policy must shrink its std ~10x, which makes the
    inner VPG step (scaled by 1/std^2) ~100x larger."""
    observe_task: bool = False
    """Append the task parameters to the observation (the oracle baseline)."""
    eval_chunk: Size = 50
    """Tasks evaluated together in adaptation_curve / adapt (memory bound)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("inner_lrs", "step_loss_weights"):
            value = getattr(self, name)
            if value and len(value) != self.inner_steps:
                raise ConfigError(
                    f"{name} needs one value per inner step ({self.inner_steps}), got {len(value)}"
                )
        if self.step_loss_weights and sum(self.step_loss_weights) <= 0:
            raise ConfigError(
                f"step_loss_weights must have a positive sum, got {self.step_loss_weights}"
            )
        if self.fvp_subsample < 1 and (self.fvp == "autograd" or self.inner_steps > 1):
            raise ConfigError(
                "fvp_subsample < 1 needs the structured Fisher product: fvp='structured' and "
                "inner_steps <= 1"
            )
        if self.single_step_iterations > 0 and self.inner_steps < 2:
            raise ConfigError(
                "single_step_iterations needs inner_steps >= 2 (it trains one step before S), "
                f"got inner_steps={self.inner_steps}"
            )

    def steps_at(self, iteration: int) -> int:
        """Inner steps meta-trained at ``iteration`` (one during the single-step curriculum)."""
        return 1 if iteration < self.single_step_iterations else self.inner_steps

    def train_lrs(self, steps: int | None = None) -> list[float]:
        """The inner learning rate of each meta-training step (of the first ``steps``)."""
        lrs = list(self.inner_lrs) if self.inner_lrs else [self.inner_lr] * self.inner_steps
        return lrs if steps is None else lrs[:steps]

    def test_lr(self, step: int) -> float:
        """The inner learning rate of test-time step ``step`` (0-based; the schedule's last
        repeated): ``eval_inner_lrs``, else the training schedule."""
        lrs = self.eval_inner_lrs or self.inner_lrs or (self.inner_lr,)
        return float(lrs[min(step, len(lrs) - 1)])

    def trpo_options(self) -> dict[str, Any]:
        """The TRPO solver's options, as ``rl.trpo.trpo_step`` takes them."""
        return {
            "max_kl": self.max_kl,
            "damping": self.cg_damping,
            "cg_iters": self.cg_iters,
            "max_backtracks": self.ls_max_steps,
            "backtrack_ratio": self.ls_backtrack_ratio,
        }

    def loss_weights(self, steps: int | None = None) -> list[float]:
        """The outer-loss weight of the policy after each inner step 1..S, summing to 1.
        Trained for fewer ``steps`` (the curriculum's one), the last of them carries it all."""
        if steps is not None and steps < self.inner_steps:
            return [0.0] * (steps - 1) + [1.0]
        if not self.step_loss_weights:
            return [0.0] * (self.inner_steps - 1) + [1.0]
        total = sum(self.step_loss_weights)
        return [w / total for w in self.step_loss_weights]


@dataclasses.dataclass
class Batch:
    """Rollouts of G tasks on E environments each, task-major and contiguous ``[G, T, E, ...]``
    (T = H steps, or 2H for a step-budget batch), detached."""

    obs: torch.Tensor
    """Policy inputs [G, T, E, D] (with the task appended when ``observe_task``)."""
    actions: torch.Tensor
    mask: torch.Tensor
    """1.0 for the steps of the episodes the batch keeps (each row's first; with a step budget
    those completed within it), else 0.0 [G, T, E]."""
    advantages: torch.Tensor
    dist: torch.Tensor
    """Behaviour policy's distribution parameters [G, T, E, P]."""
    logp: torch.Tensor
    returns: torch.Tensor
    """Mean undiscounted return of the task's kept episodes [G]."""
    success: torch.Tensor | None = None
    """Success rate of the task's kept episodes [G] (success at any step), for families that
    report success; else None."""

    def first_rollouts(self, k: int) -> Batch:
        """The first ``k`` of each task's E rollouts (i.i.d. rollouts: a random subset)."""
        if k >= self.mask.shape[2]:
            return self
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Batch(
            **{
                n: v if n in ("returns", "success") else v[:, :, :k].contiguous()
                for n, v in fields.items()
            }
        )


def task_major(x: torch.Tensor) -> torch.Tensor:
    """``[H, G, ...] -> [G, H, ...]``, contiguous."""
    return x.transpose(0, 1).contiguous()


def per_task_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over each task's steps and episodes (dims 1 and 2), ``[G]``."""
    return (x * mask).sum((1, 2)) / mask.sum((1, 2)).clamp_min(1.0)


def task_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over each task's steps and episodes (dims 1 and 2), then mean over tasks."""
    return per_task_mean(x, mask).mean()


def kept_steps(
    done: torch.Tensor, groups: int, budget: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, timestep)`` ``[T, B]``: the steps a batch keeps and each one's index in its
    episode. ``budget=None`` keeps each row's first episode (the rows start together, so the
    index is the time step); a budget keeps what :func:`step_budget_mask` keeps for ``groups``."""
    if budget is None:
        timestep = torch.arange(done.shape[0], device=done.device)[:, None].expand(done.shape)
        return first_episode_mask(done), timestep
    return step_budget_mask(done, groups, budget), step_in_episode(done)


def mean_episode_return(
    rewards: torch.Tensor, done: torch.Tensor, kept: torch.Tensor, groups: int, per_episode: bool
) -> torch.Tensor:
    """Each group's mean return ``[groups]`` from kept rewards ``[T, groups * E]``: over its rows
    (one episode each), or with ``per_episode`` over all the episodes it kept."""
    per_row = rewards.sum(0).reshape(groups, -1)
    if not per_episode:
        return per_row.mean(1)
    episodes = (done & kept).reshape(done.shape[0], groups, -1).sum((0, 2))
    return per_row.sum(1) / episodes


def step_blocks(steps: int, block: int | None) -> list[slice]:
    """Slices of ``steps`` time steps in blocks of ``block`` (the last may be shorter); one slice
    of all of them for ``None``."""
    size = steps if block is None else block
    return [slice(i, min(i + size, steps)) for i in range(0, steps, size)]


def per_task(params: Params, num_tasks: int) -> Params:
    """Shared parameters as one (expanded, not copied) copy per task, ``[num_tasks, ...]``."""
    return {k: v.expand(num_tasks, *v.shape) for k, v in params.items()}


def task_leaves(params: Params, num_tasks: int) -> list[torch.Tensor]:
    """One detached copy of every shared parameter per task, ``[num_tasks, ...]``, as autograd
    leaves: the gradient of a sum of per-task values holds each task's own gradient."""
    return [
        v.detach().expand(num_tasks, *v.shape).clone().requires_grad_() for v in params.values()
    ]


def steps_per_iteration(config: MAMLRLConfig, horizon: int, iterations: int) -> list[int]:
    """Environment steps of each of the first ``iterations`` meta-iterations, at most (every
    rollout counted as a full episode of ``horizon`` steps): each task's rollouts before and after
    each inner step."""
    per_batch = config.meta_batch_size * config.rollouts_per_task * horizon
    return [per_batch * (config.steps_at(it) + 1) for it in range(iterations)]


class MAMLRL(MetaLearner):
    """MAML-RL learner: ``theta`` in ``self.params``, adaptation and updates as pure functions."""

    name = "maml-rl"
    streams = "maml-rl"
    """Namespace of the random streams (init, tasks, environments): a learner built on this one
    that keeps it draws the same initial policy and meta-batches for the same seed."""
    default_eval_steps = 3
    metric = "return"
    higher_is_better = True
    distributed = True

    def __init__(self, config: MAMLRLConfig, *, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.family = make_family(config.family)
        obs_space = self.family.observation_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ConfigError(
                f"maml-rl needs flat Box observations; {self.family.family_id} has {obs_space}"
            )
        self.task_dim = 0
        if config.observe_task:
            probe = self.family.sample_tasks(1, make_generator(0, "probe"))
            self.task_dim = int(self.family.task_keys(probe).shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.streams, "init"))
            self.policy = MLPPolicy(
                obs_space.shape[0] + self.task_dim,
                self.family.action_space,
                config.hidden,
                config.activation,
                config.init_log_std,
            ).to(self.device)
        self.spec = self.policy.spec
        self.rescale = (
            unit_box_rescale(self.family.action_space, self.device)
            if config.normalize_actions
            else None
        )
        self.params: Params = {k: v.requires_grad_(True) for k, v in self.policy.params().items()}
        self.optimizer = (
            torch.optim.Adam(self.params.values(), lr=config.ppo_lr)
            if config.outer == "ppo"
            else None
        )
        self.generator = make_generator(self.seed, self.streams, "actions", device=self.device)
        self._envs: dict[int, BatchedEnv] = {}
        self.world = distributed.current()
        self.family.check_meta_batch(config.meta_batch_size)
        self.shard = self.world.shard(config.meta_batch_size)
        """This process's block of every meta-batch (all of it in one process)."""

    # --- one meta-iteration ---------------------------------------------------------------------
    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        c = self.config
        it = self.iteration
        rows = self.shard
        tasks = self.family.tasks(
            c.meta_batch_size,
            "train",
            seed=derive_seed(self.seed, self.streams, "tasks", it),
            device=self.device,
        )[rows.start : rows.start + rows.count]
        # theta as one copy per task: every computation then has per-task shapes, the same in
        # every process, so its numbers do not depend on how many tasks a process holds
        phi = per_task({k: v.detach() for k, v in self.params.items()}, rows.count)
        pre: list[Batch] = []
        budget = c.batch == "steps"
        for k, lr in enumerate(c.train_lrs(c.steps_at(it))):
            env_seed = derive_seed(self.seed, self.streams, "env", it, k)
            pre.append(
                self.rollouts(
                    tasks, phi, per_task=True, env_seed=env_seed, step_budget=budget, rows=rows
                )
            )
            with torch.no_grad():
                phi = self.adapt_params(phi, pre[-1:], [lr], first_order=True, shared=False)
        env_seed = derive_seed(self.seed, self.streams, "env", it, "post")
        post = self.rollouts(
            tasks, phi, per_task=True, env_seed=env_seed, step_budget=budget, rows=rows
        )
        info = self.update(pre, post)
        self.iteration += 1
        gather = self.world.gather
        metrics: dict[str, float | torch.Tensor] = {
            "return_pre": gather((pre[0] if pre else post).returns).mean(),
            "return_post": gather(post.returns).mean(),
        }
        first = pre[0] if pre else post
        if first.success is not None and post.success is not None:
            metrics["success_pre"] = gather(first.success).mean()
            metrics["success_post"] = gather(post.success).mean()
        metrics.update({k: v for k, v in info.items() if isinstance(v, float | int | torch.Tensor)})
        return metrics

    # --- the outer update -----------------------------------------------------------------------
    def update(self, pre: list[Batch], post: Batch) -> dict[str, Any]:
        """Update ``theta`` from one pre-update batch per inner step and the post-update batch,
        with the configured outer optimiser; returns its diagnostics."""
        return self._trpo(pre, post) if self.config.outer == "trpo" else self._ppo(pre, post)

    def outer_terms(
        self, params: Params, pre: list[Batch], post: Batch, *, shared: bool = True
    ) -> list[tuple[float, torch.Tensor, Batch]]:
        """(weight, distribution, rollouts) of every adapted policy in the outer objective.

        The adaptation is re-run from ``params`` (shared, or one copy per task ``[G, ...]`` when
        not ``shared``) on the pre-update batches (differentiably). The policy after inner step
        ``k`` is scored on the rollouts it collected: ``pre[k]`` for the earlier steps (the batch
        of the next inner step), ``post`` for the last. With the default weights only the last
        step counts."""
        c = self.config
        if not pre:
            phi = self.adapt_params(
                params, [], [], first_order=True, shared=shared, num_tasks=post.obs.shape[0]
            )
            return [(1.0, batched_policy_dist(self.policy, phi, post.obs), post)]
        if len(pre) not in {c.inner_steps, c.steps_at(0)}:  # S, or the curriculum's one
            raise ConfigError(
                f"need one pre-update batch per inner step ({c.inner_steps}), got {len(pre)}"
            )
        scored_on = [*pre[1:], post]
        out = []
        phi = params
        steps = len(pre)
        for batch, lr, weight, target in zip(
            pre, c.train_lrs(steps), c.loss_weights(steps), scored_on, strict=True
        ):
            phi = self.adapt_params(phi, [batch], [lr], first_order=c.first_order, shared=shared)
            shared = False
            if weight > 0:
                out.append((weight, batched_policy_dist(self.policy, phi, target.obs), target))
        return out

    def task_loss_and_kl(
        self, params: Params, pre: list[Batch], post: Batch, *, shared: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each task's outer objective at ``params`` (see :meth:`outer_terms`), ``[G]`` each: minus
        the importance-weighted return of its re-adapted policies on the data each collected, and
        the KL(adapted before the update || re-adapted) on the states each visited, both weighted
        over inner steps by ``step_loss_weights``, from one re-adaptation."""
        num_tasks = post.obs.shape[0]
        loss = kl = torch.zeros(num_tasks, device=self.device)
        for weight, dist, batch in self.outer_terms(params, pre, post, shared=shared):
            ratio = torch.exp(heads.log_prob(self.spec, dist, batch.actions) - batch.logp)
            loss = loss - weight * per_task_mean(ratio * batch.advantages, batch.mask)
            kl = kl + weight * per_task_mean(heads.kl(self.spec, batch.dist, dist), batch.mask)
        return loss, kl

    def loss_and_kl(
        self, params: Params, pre: list[Batch], post: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The outer objective at shared ``params``: :meth:`task_loss_and_kl` on one copy of them
        per task, averaged over the meta-batch's tasks (gathered from every process;
        differentiable only in one process)."""
        copies = per_task(params, post.obs.shape[0])
        loss, kl = self.task_loss_and_kl(copies, pre, post, shared=False)
        return self.world.gather(loss).mean(), self.world.gather(kl).mean()

    def task_gradients(
        self, fn: Callable[[Params], torch.Tensor], theta: Params, num_tasks: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gradients [G, P], values [G])`` of the per-task values ``fn(copies)`` at ``theta``:
        row ``g`` is the flat gradient of task ``g``'s value, every process's rows gathered in task
        order.

        ``fn`` gets one copy of ``theta`` per task, ``[num_tasks, ...]`` (task ``g``'s value
        depends on copy ``g`` only), so one backward of their sum gives every task's gradient.
        Averaging the gathered rows, the same operation on the same tensor in every process, makes
        the meta-gradient independent of the number of processes (:mod:`adaptrl.core.distributed`).
        """
        names = list(theta)
        copies = task_leaves(theta, num_tasks)
        with torch.enable_grad():
            values = fn(dict(zip(names, copies, strict=True)))
            grads = torch.autograd.grad(values.sum(), copies, materialize_grads=True)
        rows = torch.cat([g.reshape(num_tasks, -1) for g in grads], dim=1)
        return self.world.gather(rows), self.world.gather(values.detach())

    def _trpo(self, pre: list[Batch], post: Batch) -> dict[str, Any]:
        c = self.config
        names = list(self.params)
        theta = {n: v.detach() for n, v in self.params.items()}
        num_tasks = post.obs.shape[0]

        def objective(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return self.loss_and_kl(dict(zip(names, values, strict=True)), pre, post)

        def gradient(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            rows, losses = self.task_gradients(
                lambda p: self.task_loss_and_kl(p, pre, post, shared=False)[0],
                dict(zip(names, values, strict=True)),
                num_tasks,
            )
            return losses.mean(), rows.mean(0)

        if c.fvp == "structured" and len(pre) <= 1:
            k = self.fvp_rollouts(post)
            fvp = self.structured_fvp(
                theta, [b.first_rollouts(k) for b in pre], post.first_rollouts(k), c.cg_damping
            )
        else:
            fvp = self.autograd_fvp(theta, pre, post, c.cg_damping)
        new, info = trpo_step(
            [self.params[k].detach() for k in names],
            objective,
            fvp=fvp,
            gradient=gradient,
            **c.trpo_options(),
        )
        with torch.no_grad():
            for k, v in zip(names, new, strict=True):
                self.params[k].copy_(v)
        return info

    def _ppo(self, pre: list[Batch], post: Batch) -> dict[str, Any]:
        """Clipped-surrogate epochs, each one Adam step on the mean over tasks of each task's
        clipped surrogate (per-task gradients gathered, as :meth:`task_gradients`)."""
        c = self.config
        assert self.optimizer is not None
        num_tasks = post.obs.shape[0]
        clip_loss = vmap(lambda *a: ppo_clip_loss(*a[:3], c.ppo_clip, a[3]))
        info: dict[str, torch.Tensor] = {}

        def objective(params: Params) -> torch.Tensor:
            loss = torch.zeros(num_tasks, device=self.device)
            for weight, dist, batch in self.outer_terms(params, pre, post, shared=False):
                logp = heads.log_prob(self.spec, dist, batch.actions)
                term, diagnostics = clip_loss(logp, batch.logp, batch.advantages, batch.mask)
                loss = loss + weight * term
                info.update(diagnostics)
            return loss

        for _ in range(c.ppo_epochs):
            rows, losses = self.task_gradients(objective, self.params, num_tasks)
            grads = unflat(rows.mean(0), list(self.params.values()))
            for p, g in zip(self.params.values(), grads, strict=True):
                p.grad = g.clone()
            self.optimizer.step()
        gathered = {k: self.world.gather(v.detach()).mean() for k, v in info.items()}
        return {"loss_after": losses.mean(), **gathered}

    def fvp_rollouts(self, post: Batch) -> int:
        """Rollouts per task the Fisher-vector products use (``fvp_subsample`` of E, at least 1)."""
        return max(1, round(self.config.fvp_subsample * post.mask.shape[2]))

    def structured_fvp(
        self, theta: Params, pre: list[Batch], post: Batch, damping: float
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> H v + damping * v``, ``H`` the Hessian at ``theta`` of the KL of
        :meth:`loss_and_kl`, exactly.

        ``KL(theta') = mean_g KL_g(phi_g(theta'))`` and the gradient of ``KL_g`` vanishes at the
        data-collecting ``phi_g``, so its Hessian is ``mean_g J_g^T F_g J_g`` with ``F_g`` the
        Fisher of task g's adapted policy on its post-update states and ``J_g = I - alpha H^in_g``
        the Jacobian of one inner step (``H^in_g`` the inner loss' Hessian; ``J_g = I`` for
        first-order MAML or no inner step; where only some parameters adapt, ``J_g = I - alpha P
        H^in_g`` with ``P`` the projection on them, no longer symmetric). Each product costs two
        inner Hessian-vector products and one Fisher-vector product, all second-order;
        differentiating the KL's gradient through the inner step
        (``rl.trpo.fisher_vector_product``) also computes third-order terms that multiply the
        vanishing gradient. ``F_g`` is applied as ``J_dist^T M J_dist`` (a
        forward-mode ``jvp``, the distribution's closed-form Fisher ``M`` from
        :func:`heads.fisher_product`, one retained-graph ``vjp``), cheaper than the double
        backward of the KL. One inner step only.
        """
        c = self.config
        names = list(theta)
        num_tasks = post.obs.shape[0]
        second_order = bool(pre) and not c.first_order
        lr = c.train_lrs()[0] if pre else 0.0
        if len(pre) > 1:
            raise ConfigError(
                "the structured Fisher product supports inner_steps <= 1; use fvp='autograd'"
            )
        with torch.enable_grad():
            phi = self.adapt_params(
                per_task(theta, num_tasks), pre, c.train_lrs()[: len(pre)], first_order=True,
                shared=False, num_tasks=num_tasks,
            )  # fmt: skip
            phi_now = tuple(phi[k].detach().contiguous() for k in names)
            phi_leaves = [p.clone().requires_grad_() for p in phi_now]
            # task_mean's weight of each step: the KL's Hessian is sum_i weight_i J_i^T F_i J_i
            total = num_tasks * self.world.size
            weight = post.mask / (post.mask.sum((1, 2), keepdim=True).clamp_min(1.0) * total)
            # each block's observations, behaviour distributions and weights [G, block, E, ...],
            # contiguous: the products' batched matmuls would copy strided slices every time
            blocks = [
                tuple(x[:, t].contiguous() for x in (post.obs, post.dist, weight[..., None]))
                for t in step_blocks(post.obs.shape[1], c.fvp_block)
            ]
            new = [
                batched_policy_dist(self.policy, dict(zip(names, phi_leaves, strict=True)), obs)
                for obs, _, _ in blocks
            ]
            if second_order:
                # per-task copies of theta: d(sum_g L_g)/d theta_g is task g's inner gradient;
                # the inner loss is a masked mean over steps, so each block's part is its masked
                # sum over the task's whole count
                copies = task_leaves(theta, num_tasks)
                b = pre[0]
                scale = b.mask.sum((1, 2)).clamp_min(1.0)
                inner_grads = []
                for t in step_blocks(b.obs.shape[1], c.fvp_block):
                    obs, actions, adv, mask = (
                        x[:, t].contiguous() for x in (b.obs, b.actions, b.advantages, b.mask)
                    )
                    dist = batched_policy_dist(
                        self.policy, dict(zip(names, copies, strict=True)), obs
                    )
                    logp = heads.log_prob(self.spec, dist, actions)
                    part = -(logp * adv * mask).sum((1, 2)) / scale
                    inner_grads.append(torch.autograd.grad(part.sum(), copies, create_graph=True))

        def dot(xs: tuple[torch.Tensor, ...], ys: list[torch.Tensor]) -> torch.Tensor:
            return sum((x * y.detach()).sum() for x, y in zip(xs, ys, strict=True))  # type: ignore[return-value]

        adapted = set(self.adapted())
        frozen = [k not in adapted for k in names]

        def project(w: list[torch.Tensor]) -> list[torch.Tensor]:  # P: zero what is not adapted
            return [torch.zeros_like(x) if f else x for x, f in zip(w, frozen, strict=True)]

        def hessian(w: list[torch.Tensor]) -> list[torch.Tensor]:  # H^in_g w_g, block by block
            with torch.enable_grad():
                parts = [
                    torch.autograd.grad(dot(g, w), copies, retain_graph=True) for g in inner_grads
                ]
            return [sum(xs) for xs in zip(*parts, strict=True)]  # type: ignore[misc]

        def jacobian(w: list[torch.Tensor]) -> list[torch.Tensor]:  # J_g w_g = w_g - lr P H w_g
            if not second_order:
                return w
            return [a - lr * h for a, h in zip(w, project(hessian(w)), strict=True)]

        def jacobian_t(w: list[torch.Tensor]) -> list[torch.Tensor]:  # J_g^T w_g = w_g - lr H P w_g
            if not second_order:
                return w
            return [a - lr * h for a, h in zip(w, hessian(project(w)), strict=True)]

        def fisher(u: list[torch.Tensor]) -> list[torch.Tensor]:  # F_g u_g: jvp, then vjp
            tangents = tuple(x.contiguous() for x in u)
            parts = []
            for (obs, behaviour, weights), out in zip(blocks, new, strict=True):

                def dist_of(*p: torch.Tensor, obs: torch.Tensor = obs) -> torch.Tensor:
                    return batched_policy_dist(self.policy, dict(zip(names, p, strict=True)), obs)

                _, du = jvp(dist_of, phi_now, tangents)
                w = heads.fisher_product(self.spec, behaviour, du) * weights
                with torch.enable_grad():
                    parts.append(torch.autograd.grad(out, phi_leaves, w, retain_graph=True))
            return [sum(xs) for xs in zip(*parts, strict=True)]  # type: ignore[misc]

        def fvp(v: torch.Tensor) -> torch.Tensor:
            shared = unflat(v, [theta[k] for k in names])
            u = jacobian([x.expand(num_tasks, *x.shape) for x in shared])
            rows = torch.cat([x.reshape(num_tasks, -1) for x in jacobian_t(fisher(u))], dim=1)
            return self.world.gather(rows).sum(0) + damping * v

        return fvp

    def autograd_fvp(
        self, theta: Params, pre: list[Batch], post: Batch, damping: float
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> H v + damping * v``, ``H`` the Hessian at ``theta`` of the KL of
        :meth:`loss_and_kl`, by double backward through every inner step (any number of them):
        each task's Hessian-vector product on its own copy of ``theta``, gathered and averaged
        as :meth:`task_gradients`."""
        names = list(theta)
        num_tasks = post.obs.shape[0]
        copies = task_leaves(theta, num_tasks)
        with torch.enable_grad():
            params = dict(zip(names, copies, strict=True))
            kl = self.task_loss_and_kl(params, pre, post, shared=False)[1]
            grads = torch.autograd.grad(kl.sum(), copies, create_graph=True)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            shared = unflat(v.detach(), [theta[k] for k in names])
            with torch.enable_grad():
                dot = sum((g * x).sum() for g, x in zip(grads, shared, strict=True))
                hv = torch.autograd.grad(dot, copies, retain_graph=True, materialize_grads=True)
            rows = torch.cat([h.reshape(num_tasks, -1) for h in hv], dim=1)
            return self.world.gather(rows).mean(0) + damping * v

        return fvp

    # --- inner loop: VPG steps, vmapped over tasks ----------------------------------------------
    def task_loss(
        self,
        params: Params,
        obs: torch.Tensor,
        actions: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """One task's VPG loss ``-mean(log pi(a|s) * A)`` over its valid steps ``[H, E]``."""
        logp = heads.log_prob(self.spec, policy_dist(self.policy, params, obs), actions)
        return vpg_loss(logp, advantages, mask)

    def adapt_params(
        self,
        params: Params,
        batches: list[Batch],
        lrs: list[float],
        *,
        first_order: bool,
        shared: bool = True,
        num_tasks: int | None = None,
    ) -> Params:
        """``phi_g`` after one VPG step per batch: ``phi <- phi - lr * grad L_g(phi)``, all tasks at
        once, on the parameters the inner loop adapts (:meth:`adapted`); the others stay ``params``.

        ``params`` are shared by all tasks (``shared``) or already per task ``[G, ...]``. The result
        is differentiable with respect to ``params`` (second order) unless ``first_order``, which
        detaches the inner gradient. With no batches the shared parameters are expanded to ``[G, ...]``.
        """
        if not batches:
            if not shared:
                return params
            g = num_tasks if num_tasks is not None else 1
            return {k: v.expand(g, *v.shape) for k, v in params.items()}
        adapted = set(self.adapted())
        moving = {k: v for k, v in params.items() if k in adapted}
        fixed = {k: v for k, v in params.items() if k not in adapted}

        def loss(moving: Params, fixed: Params, *batch: torch.Tensor) -> torch.Tensor:
            return self.task_loss({**fixed, **moving}, *batch)

        grad_fn = grad(loss)
        in_dim: int | None = None if shared else 0
        moving_dim = in_dim
        for batch, lr in zip(batches, lrs, strict=True):
            grads = vmap(grad_fn, in_dims=(moving_dim, in_dim, 0, 0, 0, 0))(
                moving, fixed, batch.obs, batch.actions, batch.advantages, batch.mask
            )
            moving = {
                k: moving[k] - lr * (grads[k].detach() if first_order else grads[k]) for k in moving
            }
            moving_dim = 0
        if shared:
            g = batches[0].obs.shape[0]
            fixed = {k: v.expand(g, *v.shape) for k, v in fixed.items()}
        return {k: moving[k] if k in moving else fixed[k] for k in params}

    def adapted(self) -> list[str]:
        """Names of the parameters the inner loop adapts (MAML: all of them)."""
        return list(self.params)

    # --- rollouts: collecting, then processing into a Batch --------------------------------------
    def rollouts(
        self,
        tasks: TaskBatch,
        params: Params,
        *,
        per_task: bool,
        env_seed: int,
        generator: torch.Generator | None = None,
        rollouts: int | None = None,
        step_budget: bool = False,
        rows: Rows | None = None,
    ) -> Batch:
        """E rollouts of every task with ``params`` (shared, or ``[G, ...]`` when ``per_task``);
        ``rows``: the block of a larger meta-batch these tasks are (one process's share).

        With ``step_budget`` the task's E environments run 2H steps and the batch keeps the
        episodes :func:`~adaptrl.rl.rollout.step_budget_mask` keeps for a budget of E x H steps;
        otherwise each environment's first episode.
        """
        per = rollouts or self.config.rollouts_per_task
        horizon = self.family.max_episode_steps
        steps = 2 * horizon if step_budget else horizon
        ro = self.collect(tasks, params, per, steps, per_task, env_seed, generator, rows)
        return self.process(ro, tasks, per, per * horizon if step_budget else None)

    def env(self, num_envs: int) -> BatchedEnv:
        """The batched environment of ``num_envs`` rows (built once per size)."""
        if num_envs not in self._envs:
            self._envs[num_envs] = self.family.make_env(num_envs, self.device)
        return self._envs[num_envs]

    def task_features(self, tasks: TaskBatch) -> torch.Tensor | None:
        """What ``observe_task`` appends to each observation, ``[G, 1, K]`` (else None)."""
        if not self.config.observe_task:
            return None
        return self.family.task_keys(tasks).to(self.device, torch.float32)[:, None, :]

    def policy_inputs(
        self, obs: torch.Tensor, task: torch.Tensor | None, num_tasks: int, per: int
    ) -> torch.Tensor:
        """``[..., G*E, D] -> [..., G, E, D']``: float observations grouped by task, with the task
        features (:meth:`task_features`) appended."""
        x = obs.to(torch.float32).reshape(*obs.shape[:-2], num_tasks, per, obs.shape[-1])
        if task is None:
            return x
        return torch.cat([x, task.expand(*x.shape[:-1], self.task_dim)], dim=-1)

    def collect(
        self,
        tasks: TaskBatch,
        params: Params,
        per: int,
        steps: int,
        per_task: bool,
        env_seed: int,
        generator: torch.Generator | None = None,
        rows: Rows | None = None,
    ) -> Rollout:
        """``steps`` steps of ``per`` environments per task (task-major rows) from a reset, the
        policy's own samples and distributions in ``extras`` (the environment gets them mapped
        onto its action box). The action noise and the environment's randomness are drawn for
        the whole meta-batch of ``rows`` and sliced, so a task's rollouts do not depend on which
        process collects them."""
        gen = self.generator if generator is None else generator
        num_tasks = len(tasks)
        block = (rows or Rows.all(num_tasks)).scaled(per)
        env = self.env(num_tasks * per)
        env.set_rows(block)
        env.set_tasks(tasks[torch.arange(num_tasks).repeat_interleave(per)])
        obs0 = env.reset(seed=env_seed)
        dist_fn = batched_policy_dist if per_task else policy_dist
        task = self.task_features(tasks)

        def act(obs: torch.Tensor, carry: None) -> tuple[torch.Tensor, dict[str, Any], None]:
            dist = dist_fn(self.policy, params, self.policy_inputs(obs, task, num_tasks, per))
            dist = dist.reshape(num_tasks * per, -1)
            action = heads.sample(self.spec, dist, gen, block)
            return to_box(action, self.rescale), {"dist": dist, "action": action}, carry

        with torch.no_grad():
            return collect(env, act, obs0, None, steps)[0]

    def process(self, ro: Rollout, tasks: TaskBatch, per: int, budget: int | None = None) -> Batch:
        """The rollouts as a task-major :class:`Batch`: the kept episodes' mask (each row's first,
        or those within a step ``budget`` per task), advantages against the per-task linear
        baseline (standardised per task), behaviour distributions and mean returns."""
        c = self.config
        num_tasks = len(tasks)
        steps = ro.rewards.shape[0]
        shape = (steps, num_tasks, per)
        with torch.no_grad():
            done = ro.done
            kept, timestep = kept_steps(done, num_tasks, budget)
            mask = kept.to(torch.float32)
            rewards = ro.rewards.to(torch.float32) * mask
            adv = baseline_advantages(
                rewards.reshape(shape),
                done.reshape(shape),
                ro.obs.to(torch.float32).reshape(*shape, -1),
                timestep.reshape(shape),
                mask.reshape(shape),
                c.gamma,
                c.gae_lambda,
            )
            mask, adv = task_major(mask.reshape(shape)), task_major(adv)
            if c.normalize_advantages:
                adv = vmap(normalize)(adv, mask) * mask
            dist = task_major(ro.extras["dist"].reshape(*shape, -1))
            policy_actions = ro.extras["action"]  # before rescaling to the environment's box
            actions = task_major(policy_actions.reshape(*shape, *policy_actions.shape[2:]))
            return Batch(
                obs=task_major(
                    self.policy_inputs(ro.obs, self.task_features(tasks), num_tasks, per)
                ),
                actions=actions,
                mask=mask,
                advantages=adv,
                dist=dist,
                logp=heads.log_prob(self.spec, dist, actions),
                returns=mean_episode_return(rewards, done, kept, num_tasks, budget is not None),
                success=None
                if ro.success is None
                else episode_success(ro.success, done, kept, num_tasks),
            )

    # --- evaluation hooks -----------------------------------------------------------------------
    def _adapt_chunk(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> tuple[Params, torch.Tensor, torch.Tensor | None]:
        """Adapt ``steps`` times on fresh rollouts; returns (params [G, ...], returns
        [G, steps+1], success rates [G, steps+1] or None for families without success)."""
        c = self.config
        theta = {k: v.detach() for k, v in self.params.items()}
        phi, shared = theta, True
        returns, success = [], []
        for k in range(steps + 1):
            env_seed = int(torch.randint(2**62, (1,), generator=generator).item())
            batch = self.rollouts(
                tasks,
                phi,
                per_task=not shared,
                env_seed=env_seed,
                generator=generator,
                rollouts=c.eval_rollouts_per_task,
                step_budget=c.eval_batch == "steps",
            )
            returns.append(batch.returns)
            success.append(batch.success)
            if k < steps:
                with torch.no_grad():
                    phi = self.adapt_params(
                        phi, [batch], [c.test_lr(k)], first_order=True, shared=shared
                    )
                shared = False
        if shared:
            phi = self.adapt_params(phi, [], [], first_order=True, num_tasks=len(tasks))
        rates = None if success[0] is None else torch.stack(success, dim=1)
        return phi, torch.stack(returns, dim=1), rates

    def _chunks(self, tasks: TaskBatch) -> list[TaskBatch]:
        size = self.config.eval_chunk
        return [tasks[i : i + size] for i in range(0, len(tasks), size)]

    def env_steps(self, iterations: int) -> int:
        return sum(steps_per_iteration(self.config, self.family.max_episode_steps, iterations))

    def _adapt_all(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> list[tuple[Params, torch.Tensor, torch.Tensor | None]]:
        """:meth:`_adapt_chunk` of every ``eval_chunk`` of ``tasks`` in turn."""
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        tasks = tasks.to(self.device)
        return [self._adapt_chunk(t, steps, generator) for t in self._chunks(tasks)]

    def adaptation_curve(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean return of the rollouts after 0..steps inner steps, ``[num_tasks, steps + 1]``
        (``eval_rollouts_per_task`` rollouts per task and step, default ``E``)."""
        return torch.cat([p[1] for p in self._adapt_all(tasks, steps, generator)])

    def adaptation_success(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`adaptation_curve` and each task's success rate over the same rollouts after
        0..steps inner steps (Meta-World's protocol: the adaptation episodes of step k are the
        evaluation episodes of the policy adapted k times; success at any step of an episode)."""
        if not self.family.reports_success:
            raise ConfigError(f"{self.family.family_id} does not report success")
        parts = self._adapt_all(tasks, steps, generator)
        return torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])  # type: ignore[misc]

    def adapt(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The adapted parameters after ``steps`` inner steps, each ``[num_tasks, ...]``.

        With ``normalize_actions`` the policy they define acts in ``[-1, 1]^d``: rescale its
        actions with :func:`adaptrl.nn.policies.unit_box_rescale` of the family's action space."""
        parts = [p[0] for p in self._adapt_all(tasks, steps, generator)]
        return {k: torch.cat([p[k] for p in parts]).contiguous() for k in parts[0]}

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.params) ^ set(state["params"])
        if missing:
            raise ConfigError(f"checkpoint parameters do not match this policy: {sorted(missing)}")
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])


register_algo(
    AlgoSpec(
        name="maml-rl",
        config_cls=MAMLRLConfig,
        learner_cls=MAMLRL,
        description="MAML for RL: VPG inner steps vmapped over tasks, TRPO or PPO outer loop",
        kind="rl",
    )
)

__all__ = ["MAMLRL", "Batch", "MAMLRLConfig", "steps_per_iteration", "task_mean"]
