"""Write your own meta-learner in one file, train it with the one training loop, evaluate it
beside the classic agents with the same protocol.

Empirical-Bayes Thompson sampling for Bernoulli bandits. The outer loop meta-learns a Beta(a, b)
prior over arm success probabilities from *experience* in meta-train tasks: each iteration pulls
every arm of a batch of tasks ``pulls_per_arm`` times and takes an Adam step on the Beta-Binomial
marginal log-likelihood of the success counts (the tasks' hidden probabilities are never read).
The adaptation is Thompson sampling under the learned prior: arm i is scored by a draw from
Beta(a + successes_i, b + failures_i). The only difference from the ``thompson`` baseline is the
prior, so the gap between the two is what meta-learning bought.

On ``bandit-bernoulli-v0`` (arms ~ U[0, 1]) the learned prior approaches Beta(1, 1) and the learner
ties ``thompson``. Here it runs on a variant family defined below, where most arms are poor and a few
are good (arms ~ Beta(0.3, 1): median 0.1, one in five above 0.5): the learned prior gets there
and beats ``thompson`` clearly. ``gittins`` (an index policy, near-optimal for the uniform prior) still
scores higher: Thompson sampling ignores the horizon and keeps exploring when 20 pulls leave little
time to exploit, whatever its prior. Scoring arms by the Gittins index under the learned prior
(``baselines/gittins.py``: ``finite_horizon_index_bisect`` takes any Beta state) is the next step.

Run with ``.venv/bin/python examples/custom_algo.py [OUT]``: the training run goes to
``OUT/train`` and the evaluation to ``OUT/eval`` (default ``runs/custom-algo``; a run directory is
never overwritten, so give a new OUT to run it again).
"""

# No `from __future__ import annotations`: the config ranges are read from the annotations at run
# time, and a file run by runpy (as the tests do) is not in sys.modules to resolve strings from.
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from adaptrl.algos import ALGOS, AlgoSpec, MetaLearner, register_algo
from adaptrl.algos.trainer import new_run, train_run
from adaptrl.baselines import AGENTS
from adaptrl.baselines.bandits import ThompsonAgent
from adaptrl.baselines.generic import beta_sample, numpy_rng
from adaptrl.core.config import Config, Ge, Positive, Size
from adaptrl.core.seeding import derive_seed
from adaptrl.envs import FAMILIES, TaskBatch, make_family
from adaptrl.envs.bandit import BanditConfig, BernoulliBandit
from adaptrl.envs.registry import register_family
from adaptrl.eval.learners import EvalOptions, evaluate_learner
from adaptrl.eval.stats import mean_ci

SKEWED = "bandit-bernoulli-skewed-v0"
DESCRIPTION = "Thompson sampling under a Beta prior meta-learned by empirical Bayes"


@dataclasses.dataclass(frozen=True)
class SkewedBanditConfig(BanditConfig):
    alpha: Positive = 0.3
    """Arm probabilities ~ Beta(alpha, beta)."""
    beta: Positive = 1.0


class SkewedBernoulliBandit(BernoulliBandit):
    """Bernoulli bandits whose arm probabilities are Beta(alpha, beta), not U[0, 1]."""

    family_id = SKEWED  # ids carry a version: bump it when the distribution changes
    config_cls = SkewedBanditConfig

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        c, rng = self.config, numpy_rng(generator)
        probs = rng.beta(c.alpha, c.beta, size=(n, self.num_arms)).astype(np.float32)
        return TaskBatch({"probs": torch.from_numpy(probs).to(generator.device)})


@dataclasses.dataclass(frozen=True)
class EBThompsonConfig(Config):
    """Thompson sampling under a Beta prior meta-learned by empirical Bayes."""

    family: BanditConfig | SkewedBanditConfig = BanditConfig()
    """The Bernoulli bandit family to meta-train on (a union: config.yaml names it by family_id)."""
    iterations: Size = 150
    """Outer iterations (one batch of tasks and one Adam step each)."""
    tasks: Size = 64
    """Meta-train tasks per iteration."""
    pulls_per_arm: Annotated[int, Ge(2)] = 10
    """Pulls of every arm of those tasks (>= 2: one pull per arm only tells the prior's mean)."""
    lr: Positive = 0.05
    """Adam learning rate on (log a, log b)."""


class LearnedPriorThompson(ThompsonAgent):
    """The ``thompson`` baseline with the prior Beta(a, b) in place of Beta(1, 1)."""

    def __init__(self, family: BernoulliBandit, a: float, b: float):
        super().__init__(family)
        self.a, self.b = a, b

    def scores(self) -> torch.Tensor:
        return beta_sample(self.a + self.successes, self.b + self.failures, self._rng())


def log_beta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x.lgamma() + y.lgamma() - (x + y).lgamma()


class EBThompson(MetaLearner):
    def __init__(self, config: EBThompsonConfig, *, seed: int = 0, device: Any = "cpu"):
        super().__init__(config, seed=seed, device=device)
        self.family = make_family(config.family)
        self.log_prior = torch.zeros(2, device=self.device, requires_grad=True)  # Beta(1, 1)
        self.optimizer = torch.optim.Adam([self.log_prior], lr=config.lr)

    def meta_train_step(self) -> dict[str, torch.Tensor]:
        c, k = self.config, self.family.num_arms
        # Every draw of this step is seeded from (seed, iteration): no generator state to carry.
        step_seed = derive_seed(self.seed, "eb-thompson", self.iteration)
        tasks = self.family.tasks(c.tasks, "train", step_seed, device=self.device)
        # One environment row per (task, arm) pair, always pulling that arm; a pull is an episode.
        env = self.family.make_env(c.tasks * k, self.device)
        env.set_tasks(TaskBatch.cat([tasks] * k))  # row r: task r % B, arm r // B
        env.reset(seed=derive_seed(step_seed, "env"))
        arm = torch.arange(k, device=self.device).repeat_interleave(c.tasks)
        s = sum(env.step(arm).reward for _ in range(c.pulls_per_arm))
        f = c.pulls_per_arm - s
        a, b = self.log_prior.exp().unbind()
        # Beta-Binomial: log P(s | m, a, b) = log C(m, s) + log B(a + s, b + m - s) - log B(a, b)
        log_choose = (s + f + 1).lgamma() - (s + 1).lgamma() - (f + 1).lgamma()
        log_lik = (log_choose + log_beta(a + s, b + f) - log_beta(a, b)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (-log_lik).backward()
        self.optimizer.step()
        self.iteration += 1
        a, b = self.log_prior.detach().exp().unbind()
        return {"log_lik": log_lik.detach(), "prior_mean": a / (a + b), "a": a, "b": b}

    def trial_agent(self) -> LearnedPriorThompson:
        a, b = self.log_prior.detach().exp().tolist()
        return LearnedPriorThompson(self.family, a, b)

    # Everything a bit-identical resume needs. An off-policy learner would also keep its replay
    # buffer here (a tensor buffer in adaptrl.rl, e.g. rl/replay.py): checkpoints are safetensors +
    # JSON, never pickle, so the buffer goes in as tensors. A learner that keeps a torch.Generator
    # across steps saves core.seeding.generator_state(gen) and restores it with set_generator_state.
    def state_dict(self) -> dict[str, Any]:
        return {
            "log_prior": self.log_prior.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_prior.copy_(state["log_prior"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])


def register() -> AlgoSpec:
    """Register the family and the learner once per process (running this file twice in one
    process, as the tests do, reuses the first registration and its classes)."""
    if SKEWED not in FAMILIES:
        register_family(SkewedBernoulliBandit)
    if "eb-thompson" not in ALGOS:
        register_algo(AlgoSpec("eb-thompson", EBThompsonConfig, EBThompson, DESCRIPTION, kind="rl"))
    return ALGOS.get("eb-thompson")


def main(
    out: str = "runs/custom-algo", num_tasks: int = 2000, iterations: int = 150, seed: int = 0
) -> dict[str, Any]:
    spec = register()
    family = FAMILIES.get(SKEWED).config_cls(k=10, n=20, alpha=0.3, beta=1.0)
    config = spec.config_cls(family=family, iterations=iterations)
    run = Path(out) / "train"
    new_run(run, config, seed=seed, checkpoint_every=50)
    learner = train_run(run, show_progress=False)  # checkpoints every 50 iterations, then model.*
    # A killed run continues bit-identically from its newest checkpoint with resume=True (what
    # `adaptrl train --resume RUN` does for the built-in learners); a finished run stays as it is.
    resumed = train_run(run, resume=True, show_progress=False)
    assert resumed.iteration == iterations and torch.equal(resumed.log_prior, learner.log_prior)
    baselines = [
        b for b in ("thompson", "gittins", "random") if AGENTS.get(b).supports(learner.family)
    ]
    opts = EvalOptions(num_tasks=num_tasks, baselines=tuple(baselines), show_progress=False)
    print(evaluate_learner(learner, opts, Path(out) / "eval"))
    results = json.loads((Path(out) / "eval" / "results.json").read_text())
    totals = {r["name"]: np.asarray(r["returns"][0]).sum(-1) for r in results["agents"]}
    a, b = learner.log_prior.detach().exp().tolist()
    gain = mean_ci(totals["eb-thompson"] - totals["thompson"])  # paired: same tasks and noise
    alpha, beta = family.alpha, family.beta
    print(
        f"learned prior Beta({a:.2f}, {b:.2f}), mean {a / (a + b):.3f}; tasks' Beta({alpha}, {beta}),"
        f" mean {alpha / (alpha + beta):.3f}; gain over thompson {gain[0]:.2f} ± {gain[1]:.2f}"
    )
    return {
        "prior": (a, b),
        "task_prior": (alpha, beta),
        "returns": {n: mean_ci(t) for n, t in totals.items()},
        "gain_over_thompson": gain,
    }


if __name__ == "__main__":
    main(*sys.argv[1:2])
