"""``bayes-optimal``: the exact Bayes-optimal agent of ``gridworld-goal-v0``.

With the goal uniform over a set of candidate cells and deterministic, known moves, the belief after
any history is uniform over the candidates not yet visited, so a belief is a set of visited
candidates (a bitmask). The agent solves the belief MDP exactly by backward dynamic programming
over states ``(visited set, cell, step, episode)``; a reward other than the goal's reveals nothing
but the cell, so until the goal is found every task sees the same history, and the Bayes-optimal
policy is one search path: ``actions[episode, step]``. Once the goal is found, the optimum is plain:
stay on it for the rest of the episode and walk a shortest path to it in every later one.

Values are kept unnormalised (a sum over the remaining candidates instead of an expectation) so no
division enters the recursion: at a state with ``R`` candidates left, a move onto an unvisited
candidate ``g`` earns ``g``'s whole remaining return (found now) plus ``step_reward`` for each of
the ``R - 1`` others; any other move earns ``step_reward`` for all ``R``. The trial's expected
return is the start state's value over ``|C|``.

Only visited sets reachable by walking are enumerated (those whose cells connect to the start
through known non-goal cells): 275,744 for the 5x5 VariBAD grid, about a minute and a few hundred
MB to solve. Ties between optimal actions go to the first in the order stay, up, right, down, left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.gridworld import shortest_path_lengths
from adaptrl.baselines.registry import AgentSpec, register_agent
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import progress
from adaptrl.envs.base import BatchedEnv, Step, TaskBatch, TaskFamily
from adaptrl.envs.gridworld import GridworldGoal

TIE = 1e-9
"""Values closer than this count as equal when picking the first optimal action."""
MAX_MASKS = 5_000_000
"""Refuse belief spaces larger than this (memory grows as masks x cells x actions)."""
CHUNK = 16_384
"""Visited sets per block of the backward pass (bounds the temporary Q-table)."""


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """The Bayes-optimal search of one grid and prior, with its exact expected returns."""

    actions: np.ndarray
    """``[episodes, horizon]`` action taken while the goal is still unknown."""
    value: float
    """Expected return of the whole trial (exact)."""
    episode_returns: np.ndarray
    """``[episodes]`` expected return of each episode under this plan (exact)."""
    prior: np.ndarray
    """Candidate goal cells (uniform prior)."""
    beliefs: int
    """Number of reachable visited sets the DP solved over."""


class _BeliefSpace:
    """Reachable visited sets of a grid and prior, and the transition table over ``(set, cell)``."""

    def __init__(self, move: np.ndarray, walls: np.ndarray, start: int, prior: Sequence[int]):
        self.move, self.start = move, start
        self.S, self.A = move.shape
        if self.S > 63:
            raise ConfigError(f"bayes-optimal needs at most 63 cells (bitmasks), got {self.S}")
        one = np.uint64(1)
        self.bit = np.array([one << np.uint64(c) for c in range(self.S)], dtype=np.uint64)
        self.cand = np.zeros(self.S, dtype=np.uint64)
        self.cand[list(prior)] = self.bit[list(prior)]
        self.cand_all = np.bitwise_or.reduce(self.cand)
        passable = np.bitwise_or.reduce(self.bit[~walls])
        self.known_free = passable & ~self.cand_all  # cells that are certainly not the goal
        self.nbits = np.array(
            [np.bitwise_or.reduce(self.bit[move[c]]) for c in range(self.S)], dtype=np.uint64
        )
        self.masks, self.remaining = self._enumerate(len(prior))
        M = len(self.masks)
        self.next = np.empty(
            (M, self.S, self.A), dtype=np.int32 if M * self.S < 2**31 else np.int64
        )
        self.found = np.empty((M, self.S, self.A), dtype=bool)
        for lo in range(0, M, CHUNK):
            rows = slice(lo, min(lo + CHUNK, M))
            self.next[rows], self.found[rows] = self._transitions(rows)

    def _neighbours(self, region: np.ndarray) -> np.ndarray:
        out = np.zeros_like(region)
        for c in range(self.S):
            has = (region & self.bit[c]) != 0
            out |= np.where(has, self.nbits[c], np.uint64(0))
        return out

    def _frontier(self, masks: np.ndarray) -> np.ndarray:
        """Unvisited candidates one move away from the cells reachable without entering one."""
        free = self.known_free | masks
        region = np.full_like(masks, self.bit[self.start])
        while True:
            grown = region | (self._neighbours(region) & free)
            if np.array_equal(grown, region):
                break
            region = grown
        return self._neighbours(region) & self.cand_all & ~masks

    def _enumerate(self, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
        layers, layer = [], np.zeros(1, dtype=np.uint64)
        total = 1
        while layer.size:
            layers.append(layer)
            frontier = self._frontier(layer)
            children = [
                layer[(frontier & self.cand[c]) != 0] | self.cand[c]
                for c in range(self.S)
                if self.cand[c]
            ]
            layer = np.unique(np.concatenate(children))
            total += layer.size
            if total > MAX_MASKS:
                raise ConfigError(
                    f"bayes-optimal: more than {MAX_MASKS:,} belief states for {n_cand} candidate "
                    "goals; use a smaller grid or fewer candidate cells"
                )
        masks = np.concatenate(layers)
        remaining = np.concatenate([np.full(x.size, n_cand - k) for k, x in enumerate(layers)])
        order = np.argsort(masks)
        return masks[order], remaining[order].astype(np.float64)

    def _transitions(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """``(next [m, S, A], found [m, S, A])`` for the visited sets ``rows``: the flat index
        ``set * S + cell`` after each move, and whether the move enters an unvisited candidate."""
        m = self.masks[rows][:, None]
        entered = self.cand[self.move]  # [S, A]: bit of the candidate a move lands on, else 0
        new = m[:, :, None] | entered[None]
        index = np.searchsorted(self.masks, new).clip(max=len(self.masks) - 1)
        found = (entered[None] & ~m[:, :, None]) != 0
        return index * self.S + self.move[None], found


def _known_goal_return(dist: np.ndarray, horizon: int, step_reward: float) -> np.ndarray:
    """Return of an episode from the start with the goal known: walk ``d`` moves, then stay."""
    d = np.minimum(dist, horizon + 1)
    return np.where(d <= horizon, step_reward * (d - 1) + (horizon - d + 1), step_reward * horizon)


def _episode_backward(
    space: _BeliefSpace, after: np.ndarray, found_value, step_reward: float, keep: bool
):
    """Backward pass through one episode; ``after[set]`` is the value at the next episode's start.

    ``found_value(t)`` is ``[S]``: the return of finding the goal on each cell at step ``t``.
    Returns the value at the episode's start per visited set, and the policies ``[H][sets, S]``
    when ``keep``.
    """
    M, S = len(space.masks), space.S
    u = np.repeat(after[:, None], S, axis=1)
    policies = []
    for t in reversed(range(len(found_value))):
        gain = found_value[t][space.move]  # [S, A]
        new_u = np.empty_like(u)
        policy = np.empty((M, S), dtype=np.int8) if keep else None
        flat = u.reshape(-1)
        for lo in range(0, M, CHUNK):
            rows = slice(lo, min(lo + CHUNK, M))
            nxt, found = space.next[rows], space.found[rows]
            rem = space.remaining[rows][:, None, None]
            q = np.where(found, gain[None] + step_reward * (rem - 1), step_reward * rem) + flat[nxt]
            best = q.max(-1)
            new_u[rows] = best
            if keep:
                policy[rows] = (q >= best[..., None] - TIE).argmax(-1)
        u = new_u
        policies.append(policy)
    return u[:, space.start], policies[::-1]


def solve(
    family: GridworldGoal, prior: Sequence[int], episodes: int | None = None, quiet: bool = False
) -> SearchPlan:
    """The Bayes-optimal search plan for goals uniform over ``prior`` in trials of ``episodes``."""
    c = family.config
    episodes = c.n if episodes is None else episodes
    prior = sorted({int(g) for g in prior})
    if not prior:
        raise ConfigError("bayes-optimal needs at least one candidate goal cell")
    move = family.move_table.numpy().astype(np.int64)
    space = _BeliefSpace(move, family.walls.numpy(), family.initial_state, prior)
    dist = shortest_path_lengths(family.move_table.long()).double().numpy()[family.initial_state]
    known = _known_goal_return(dist, c.horizon, c.step_reward)
    H, sr = c.horizon, c.step_reward

    def found_value(e: int) -> list[np.ndarray]:
        return [(H - t) + (episodes - 1 - e) * known for t in range(H)]

    # Values at each episode's start, last episode first; then a second pass per episode keeps
    # its policies, so only one episode's tables are in memory at a time.
    starts = [np.zeros(len(space.masks))]
    bar = progress(total=2 * episodes, description="bayes-optimal DP", quiet=quiet)
    for e in reversed(range(episodes)):
        starts.insert(0, _episode_backward(space, starts[0], found_value(e), sr, keep=False)[0])
        bar.advance()
    actions = np.zeros((episodes, H), dtype=np.int64)
    mask_index, cell = 0, family.initial_state  # the empty set sorts first
    for e in range(episodes):
        _, policies = _episode_backward(space, starts[e + 1], found_value(e), sr, keep=True)
        for t in range(H):
            a = int(policies[t][mask_index, cell])
            actions[e, t] = a
            cell = int(move[cell, a])
            new = space.masks[mask_index] | space.cand[cell]
            mask_index = int(np.searchsorted(space.masks, new))
        cell = family.initial_state
        bar.advance()
    bar.close()
    per_goal = np.stack([_trial_returns(actions, move, dist, g, family) for g in prior])
    return SearchPlan(
        actions=actions,
        value=float(starts[0][0] / len(prior)),
        episode_returns=per_goal.mean(0),
        prior=np.array(prior),
        beliefs=len(space.masks),
    )


def _trial_returns(
    actions: np.ndarray, move: np.ndarray, dist: np.ndarray, goal: int, family
) -> np.ndarray:
    """Per-episode returns of following ``actions`` until ``goal`` is found, then exploiting it."""
    sr, H = family.config.step_reward, family.config.horizon
    known = _known_goal_return(dist[goal : goal + 1], H, sr)[0]
    out = np.zeros(len(actions))
    found = False
    for e in range(len(actions)):
        if found:
            out[e] = known
            continue
        cell = family.initial_state
        for t in range(H):
            cell = int(move[cell, actions[e, t]])
            if cell == goal:
                out[e] += H - t  # this step and every later one on the goal
                found = True
                break
            out[e] += sr
    return out


_PLANS: dict[tuple, SearchPlan] = {}


def plan_for(family: GridworldGoal, split: str, episodes: int | None = None) -> SearchPlan:
    """:func:`solve` for the goal cells of ``split`` (``train``, ``test`` or ``all``), memoised."""
    cells = {"train": family.train_cells, "test": family.test_cells, "all": family.goal_cells}
    if split not in cells:
        raise ConfigError(f"bayes-optimal split must be one of {sorted(cells)}, got {split!r}")
    key = (family.config, split, episodes)
    if key not in _PLANS:
        _PLANS[key] = solve(family, cells[split].tolist(), episodes)
    return _PLANS[key]


class BayesOptimalAgent(TrialAgent):
    """Follows the Bayes-optimal search plan until the goal is found, then exploits it."""

    name: ClassVar[str] = "bayes-optimal"

    def __init__(self, family: TaskFamily, split: str = "test"):
        assert isinstance(family, GridworldGoal)
        self.plan = plan_for(family, split)
        self.actions = torch.as_tensor(self.plan.actions)
        self.moves = family.move_table.long()
        self.dist = shortest_path_lengths(self.moves)

    def begin_trial(self, env: BatchedEnv, tasks: TaskBatch, generator: torch.Generator) -> None:
        dev = env.device
        self.actions, self.moves, self.dist = (
            x.to(dev) for x in (self.actions, self.moves, self.dist)
        )
        zeros = torch.zeros(env.num_envs, dtype=torch.long, device=dev)
        self.episode, self.t, self.goal = zeros.clone(), zeros.clone(), zeros - 1

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        s = obs.long()
        episodes, horizon = self.actions.shape
        # Past the planned trial the plan has nothing left: stay.
        planned = torch.where(
            self.episode < episodes,
            self.actions[self.episode.clamp(max=episodes - 1), self.t.clamp(max=horizon - 1)],
            0,
        )
        # A shortest-path move to the known goal (the first such action; stay when on it).
        after = self.dist[self.moves[s], self.goal.clamp(min=0).unsqueeze(1)]
        exploit = after.argmin(dim=1)
        return torch.where(self.goal >= 0, exploit, planned)

    def observe(self, obs: torch.Tensor, action: torch.Tensor, step: Step) -> None:
        cell = step.final_obs.long()
        self.goal = torch.where((self.goal < 0) & (step.reward == 1.0), cell, self.goal)
        ended = step.terminated | step.truncated
        self.episode = self.episode + ended.long()
        self.t = torch.where(ended, 0, self.t + 1)


register_agent(
    AgentSpec(
        name="bayes-optimal",
        factory=BayesOptimalAgent,
        supports=lambda family: isinstance(family, GridworldGoal),
        description="exact Bayes-optimal search (DP over the sets of ruled-out goal cells)",
        params={"split": "test"},
    )
)

__all__ = ["BayesOptimalAgent", "SearchPlan", "plan_for", "solve"]
