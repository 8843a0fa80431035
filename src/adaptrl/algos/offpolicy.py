"""The shared frame of the off-policy context learners (``meta-q``, ``pearl``).

Both meta-train the same way: each iteration runs one trial on each of ``trials`` fresh tasks with
an exploring agent, appends every trial to its own row of a replay buffer (``rl/replay.py``; a row
is a ring of whole trials, stored as aligned segments), then takes ``updates`` gradient steps and
moves the target network towards the online one. This module holds that frame, the config fields
it reads and the checkpoint it writes (the replay and the target network included, so a resumed
run is bit-identical); it is not an algorithm and registers nothing. Each learner's file keeps its
networks, its agent and its update.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

import gymnasium as gym
import torch
import tyro
from torch import nn

from adaptrl.algos.base import MetaLearner
from adaptrl.core import distributed
from adaptrl.core.config import Config, Ge, Positive, Size, Unit
from adaptrl.core.distributed import Rows
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import derive_seed, generator_state, make_generator, set_generator_state
from adaptrl.envs import FamilyConfigUnion, make_family
from adaptrl.envs.bandit import BanditConfig
from adaptrl.envs.base import BatchedEnv, TaskBatch
from adaptrl.nn import heads
from adaptrl.nn.context import transition_dim, transition_features
from adaptrl.nn.policies import unit_box_rescale
from adaptrl.nn.recurrent import encode_observation, observation_dim
from adaptrl.rl.replay import TaskReplay
from adaptrl.rl.td import soft_update

Fields = dict[str, tuple[tuple[int, ...], torch.dtype]]


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(Config):
    """What every off-policy context learner is configured by (its own options come after)."""

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
    context_next_obs: bool = False
    """Put the next observation into each context transition (where tasks differ in dynamics)."""
    hidden: tuple[Size, ...] = (128, 128)
    """Hidden layers of the critics (and of the actor)."""
    gamma: Unit = 0.99
    """Discount."""
    lr: Positive = 1e-3
    """Adam learning rate."""
    batch: Size = 32
    """Samples drawn from each replay row per gradient step."""
    updates: Size = 16
    """Gradient steps per iteration."""
    tau: Annotated[float, Ge(0)] = 0.01
    """Polyak rate of the target network per gradient step."""
    reward_scale: Positive = 1.0
    """Rewards are multiplied by this for the update only."""
    max_grad_norm: Positive | None = 10.0
    """Gradient-norm clipping of every update (None: no clipping; the norm is still logged)."""
    collect_chunks: Size = 1
    """Trials are collected in this many fixed blocks (``trials`` must be a multiple). Training
    depends on it but never on the number of ``torchrun`` processes, which must divide it (each
    collects its share of the blocks)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trials % self.collect_chunks:
            raise ConfigError(
                f"trials ({self.trials}) must be a multiple of collect_chunks "
                f"({self.collect_chunks})"
            )


def collect_trial(
    env: BatchedEnv, agent: Any, obs: torch.Tensor, steps: int
) -> dict[str, torch.Tensor]:
    """Run ``agent`` for ``steps`` steps in every row of ``env`` (one trial per row): the
    transitions ``[B, steps, ...]`` with the action the agent itself recorded (``agent.action``,
    e.g. in unit-box coordinates), ``final_obs`` (what the action led to), ``terminated`` and the
    index of the episode each step belongs to."""
    keys = ("obs", "action", "reward", "final_obs", "terminated", "episode")
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    episode = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)
    for _ in range(steps):
        step = env.step(agent.act(obs))
        agent.observe(obs, agent.action, step)
        values = (obs, agent.action, step.reward, step.final_obs, step.terminated, episode)
        for k, v in zip(keys, values, strict=True):
            rows[k].append(v)
        episode = episode + (step.terminated | step.truncated).long()
        obs = step.obs
    return {k: torch.stack(v, dim=1) for k, v in rows.items()}


def episode_sums(reward: torch.Tensor, episode: torch.Tensor, episodes: int) -> torch.Tensor:
    """Return of each of the first ``episodes`` episodes, ``[B, episodes]`` from ``[B, T]``."""
    out = torch.zeros(reward.shape[0], episodes + 1, device=reward.device)
    out.scatter_add_(1, episode.clamp_max(episodes), reward.float())
    return out[:, :episodes]


def clipped_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[torch.Tensor],
    max_norm: float | None,
) -> torch.Tensor:
    """Backward, clip the gradient norm of ``params`` (None: no clipping), step; returns the
    norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    limit = float("inf") if max_norm is None else max_norm
    norm = torch.nn.utils.clip_grad_norm_(list(params), limit)
    optimizer.step()
    return norm.detach()


class OffPolicyLearner(MetaLearner):
    """Collect trials into the replay, take ``updates`` steps on it; see the module docstring.

    A subclass builds its network (``build_network``, a module with ``spec`` and ``discrete``),
    its optimisers (listed in ``optimizers``), the exploring agent (``exploring_agent``) and one
    gradient step (``update``); it may add replay fields (``extra_fields`` / ``trial_extras``),
    metrics (``extra_metrics``) and tensors to the checkpoint (``extra_state``).
    """

    default_eval_steps = 2
    """Context episodes ``adaptrl adapt`` reads by default."""
    distributed = True
    """Under ``torchrun`` the trials are collected in shares and gathered; every process then
    holds the same replay and repeats the same updates (simulation is what splits)."""
    optimizers: ClassVar[tuple[str, ...]] = ("optimizer",)
    """Attributes holding the learner's optimisers (None where unused), all checkpointed."""

    def __init__(
        self, config: OffPolicyConfig, *, seed: int = 0, device: str | torch.device = "cpu"
    ):
        super().__init__(config, seed=seed, device=device)
        self.family = make_family(config.family)
        self.episodes = config.episodes or self.family.episodes_per_trial
        self.horizon = self.family.max_episode_steps
        self.steps = self.episodes * self.horizon
        self.check_config()
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
            torch.manual_seed(derive_seed(seed, self.name, "init"))
            self.net = self.build_network().to(self.device)
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self.spec: heads.DistSpec = self.net.spec
        self.obs_space = self.family.observation_space
        self.feature_dim = transition_dim(
            observation_dim(self.obs_space), self.spec, config.context_next_obs
        )
        self.action_map = unit_box_rescale(self.family.action_space, self.device)
        self.generator = make_generator(seed, self.name, "train", device=self.device)
        self.world = distributed.current()
        self.family.check_meta_batch(config.trials, "trials")
        self.shard = self.world.shard(config.trials, "trials")
        distributed.check_chunks(self.world, config.collect_chunks, "collect_chunks")
        self.block = config.trials // config.collect_chunks
        """Trials collected at once (see ``collect_chunks``)."""
        self.env = self.family.make_env(self.block, self.device)
        self.replay = TaskReplay(
            config.trials,
            config.buffer_trials * self.steps,
            self.replay_fields(),
            self.device,
            capacity_option="--buffer-trials",
            segment=self.steps,
        )
        self.updates_done = 0

    # --- what a subclass provides --------------------------------------------------------
    def check_config(self) -> None:
        """Refuse options that do not fit the family (called before anything is built)."""

    @abc.abstractmethod
    def build_network(self) -> nn.Module: ...

    @abc.abstractmethod
    def exploring_agent(self) -> Any:
        """The agent that collects training trials."""

    @abc.abstractmethod
    def update(self) -> dict[str, torch.Tensor]:
        """One gradient step on samples of every replay row; returns its diagnostics."""

    def extra_fields(self) -> Fields:
        return {}

    def trial_extras(self, trial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Values of :meth:`extra_fields` for a collected trial ``[B, T]``."""
        return {}

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        return {}

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # --- the frame -----------------------------------------------------------------------
    def env_steps(self, iterations: int) -> int:
        """One whole trial per replay row and iteration."""
        return iterations * self.config.trials * self.steps

    def obs_field(self) -> tuple[tuple[int, ...], torch.dtype]:
        """How the replay stores an observation: the index, or the float vector."""
        space = self.family.observation_space
        if isinstance(space, gym.spaces.Discrete):
            return (), torch.int64
        return tuple(space.shape), torch.float32

    def replay_fields(self) -> Fields:
        obs = self.obs_field()
        spec = heads.spec_for(self.family.action_space)
        action = ((), torch.int64) if spec.kind == "categorical" else ((spec.dim,), torch.float32)
        return {
            "obs": obs,
            "action": action,  # discrete: the index; continuous: the policy's [-1, 1] action
            "reward": ((), torch.float32),
            "final_obs": obs,  # the observation the action led to (the transition's s')
            "terminated": ((), torch.bool),
            **self.extra_fields(),
        }

    def features(self, obs, action, reward, final_obs) -> torch.Tensor:
        """Context features of transitions (the encoders' input)."""
        nxt = (
            encode_observation(self.obs_space, final_obs) if self.config.context_next_obs else None
        )
        return transition_features(
            self.spec, encode_observation(self.obs_space, obs), action, reward, nxt
        )

    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        cfg = self.config
        seed = derive_seed(self.seed, self.name, "tasks", self.iteration)
        tasks = self.family.tasks(cfg.trials, "train", seed, self.device)
        rows = self.shard
        trial, returns = self.collect(tasks[rows.start : rows.start + rows.count], rows)
        trial = {k: self.world.gather(v) for k, v in trial.items()}
        returns = self.world.gather(returns)
        self.replay.add(trial)
        sums: dict[str, torch.Tensor] = {}
        for _ in range(cfg.updates):
            for k, v in self.update().items():
                sums[k] = sums.get(k, 0.0) + v
            soft_update(self.target, self.net, cfg.tau)
            self.updates_done += 1
        per_episode = returns.mean(0)
        metrics = {  # trial returns first: the trainer's progress bar shows the first metrics
            "trial_return": returns.sum(1).mean(),
            "first_episode_return": per_episode[0],
            "last_episode_return": per_episode[-1],
            **{k: v / cfg.updates for k, v in sums.items()},
            **self.extra_metrics(),
        }
        self.iteration += 1
        return metrics

    @torch.no_grad()
    def collect(
        self, tasks: TaskBatch, rows: Rows | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One trial per task with the exploring agent: the replay rows ``[trials, steps, ...]``
        and the per-episode returns ``[trials, episodes]``. ``rows``: the block of the batch
        of trials ``tasks`` are (all of it by default).

        Trials are collected :attr:`block` at a time
        (:func:`~adaptrl.core.distributed.in_blocks`), so a trial's numbers do not depend on how
        many trials a process holds."""
        rows = rows or Rows.all(len(tasks))
        env_seed = derive_seed(self.seed, self.name, "env", self.iteration)

        def collect_block(block: Rows) -> dict[str, torch.Tensor]:
            lo = block.start - rows.start
            block_tasks = tasks[lo : lo + block.count]
            self.env.set_rows(block)
            self.env.set_tasks(block_tasks)
            obs = self.env.reset(seed=env_seed)
            agent = self.exploring_agent()
            agent.begin_trial(self.env, block_tasks, self.generator)
            return collect_trial(self.env, agent, obs, self.steps)

        parts = distributed.in_blocks(rows, self.block, self.generator, collect_block)
        trial = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        trial["trial"] = torch.full_like(trial["episode"], self.iteration)
        trial.update(self.trial_extras(trial))
        return trial, episode_sums(trial["reward"], trial["episode"], self.episodes)

    @torch.no_grad()
    def adapt(
        self, tasks: TaskBatch, steps: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Adaptation is inference here: run ``steps`` episodes of each task with the evaluated
        agent and return what its context holds at the end of the last one (the agent's
        ``embedding()``: meta-q's context vector, PEARL's posterior), ``[num_tasks, ...]``."""
        env = self.family.make_env(len(tasks), self.device)
        env.set_tasks(tasks)
        obs = env.reset(seed=derive_seed(self.seed, self.name, "adapt"))
        agent = self.trial_agent()
        agent.begin_trial(env, tasks, generator)
        saved = agent.embedding()
        ended = torch.zeros(len(tasks), dtype=torch.long, device=self.device)
        for _ in range(steps * self.horizon):  # every row ends its `steps` episodes in this budget
            step = env.step(agent.act(obs))
            agent.observe(obs, agent.action, step)
            newly = (step.terminated | step.truncated) & (ended == steps - 1)
            ended = ended + (step.terminated | step.truncated).long()
            saved = {
                k: torch.where(newly.view(-1, *[1] * (v.dim() - 1)), v, saved[k])
                for k, v in agent.embedding().items()
            }
            obs = step.obs
        return saved

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params) -> torch.Tensor:
        """:func:`clipped_step` with the configured norm."""
        return clipped_step(optimizer, loss, params, self.config.max_grad_norm)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "replay": self.replay.state_dict(prefix=""),
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
            "updates_done": self.updates_done,
            **self.extra_state(),
        }
        for name in self.optimizers:
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if "target" in state:  # an exported model keeps only what acting needs (training_only)
            self.target.load_state_dict(state["target"])
            self.replay.load_state_dict(state["replay"], prefix="")
            for name in self.optimizers:
                if getattr(self, name) is not None:
                    getattr(self, name).load_state_dict(state[name])
        self.load_extra_state(state)
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])
        self.updates_done = int(state["updates_done"])
