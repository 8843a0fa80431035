"""``goal-search``: the Bayesian explorer of ``gridworld-goal-v0`` with known dynamics.

The agent knows the grid (walls, moves) but not the goal; its prior is uniform over the family's
candidate goal cells. Every step that ends on a cell without reward rules that cell out; a reward
reveals the goal. It heads for one remaining candidate by a shortest path:

* ``strategy="sample"``: posterior sampling (PSRL with the right prior): a candidate drawn
  uniformly from the posterior, redrawn only when it is ruled out;
* ``strategy="nearest"``: the nearest remaining candidate (ties broken by a random order drawn once
  per trial), a strong greedy search.

Unlike generic ``psrl`` (independent Gaussian rewards and Dirichlet transitions per state-action),
this posterior is exact for the family, so it shows what exploration-then-exploitation a trial allows.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.generic import random_argmax
from adaptrl.baselines.registry import AgentSpec, register_agent
from adaptrl.core.errors import ConfigError
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch, TaskFamily
from adaptrl.envs.gridworld import GridworldGoal


def shortest_path_lengths(move_table: torch.Tensor) -> torch.Tensor:
    """All-pairs step counts ``[S, S]`` of a deterministic move table ``[S, A]`` (inf if unreachable)."""
    S = move_table.shape[0]
    dist = torch.full((S, S), float("inf"))
    dist.fill_diagonal_(0.0)
    for _ in range(S):
        new = torch.minimum(dist, 1.0 + dist[move_table].amin(dim=1))
        if torch.equal(new, dist):
            break
        dist = new
    return dist


class GoalSearchAgent(TrialAgent):
    """Exact goal posterior, shortest-path moves; see the module docstring."""

    name: ClassVar[str] = "goal-search"

    def __init__(self, family: TaskFamily, strategy: Literal["sample", "nearest"] = "nearest"):
        if strategy not in ("sample", "nearest"):
            raise ConfigError(
                f"goal-search strategy must be 'sample' or 'nearest', got {strategy!r}"
            )
        assert isinstance(family, GridworldGoal)
        self.strategy = strategy
        self.moves = family.move_table.long()
        self.dist = shortest_path_lengths(self.moves)
        self.prior = torch.zeros(family.num_states, dtype=torch.bool)
        self.prior[family.goal_cells] = True

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        dev = env.device
        self.generator, self.moves, self.dist = generator, self.moves.to(dev), self.dist.to(dev)
        self.belief = self.prior.to(dev).expand(env.num_envs, -1).clone()
        # a random order over cells, fixed for the trial: breaks distance ties consistently
        self.order = torch.rand(self.belief.shape, generator=generator, device=generator.device).to(
            dev
        )
        self.target = self._draw_target(torch.zeros(env.num_envs, dtype=torch.long, device=dev))

    def _draw_target(self, cell: torch.Tensor) -> torch.Tensor:
        if self.strategy == "nearest":
            score = -(self.dist[cell] + 0.5 * self.order)
        else:
            score = torch.rand(
                self.belief.shape, generator=self.generator, device=self.generator.device
            )
            score = score.to(self.belief.device)
        return score.masked_fill(~self.belief, -float("inf")).argmax(dim=1)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        s = obs.long()
        # distance to the target after each move; staying put on the target is distance 0
        after = self.dist[self.moves[s], self.target.unsqueeze(1)]
        return random_argmax(-after, self.generator)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        cell = step.final_obs.long()
        found = step.reward > 0
        rows = torch.arange(len(cell), device=cell.device)
        goal_only = torch.zeros_like(self.belief)
        goal_only[rows, cell] = True
        self.belief = torch.where(found.unsqueeze(1), goal_only, self.belief)
        self.belief[rows, cell] &= found  # a visited cell without reward is not the goal
        if self.strategy == "nearest":
            self.target = self._draw_target(cell)
        else:
            lost = ~self.belief[rows, self.target]
            self.target = torch.where(lost, self._draw_target(cell), self.target)


register_agent(
    AgentSpec(
        name="goal-search",
        factory=GoalSearchAgent,
        supports=lambda family: isinstance(family, GridworldGoal),
        description="exact posterior over the goal cell, shortest paths (nearest or sampled target)",
        params={"strategy": "nearest"},
    )
)

__all__ = ["GoalSearchAgent", "shortest_path_lengths"]
