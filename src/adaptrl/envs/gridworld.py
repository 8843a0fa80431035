"""``gridworld-goal-v0``: find a hidden goal cell in a small grid, then stay on it.

Per task one goal cell is hidden among the non-wall cells at Chebyshev distance at least
``goal_exclusion`` from the start (1: any cell but the start). Each episode starts at ``start``;
actions are stay, up, right, down, left (``up`` decreases the row); a move into a wall or off the
grid leaves the agent in place. Every step that ends on the goal pays 1.0 (the agent may stay there
to keep collecting), every other step ``step_reward``. Nothing terminates: episodes last
``horizon`` steps (a time limit, reported as ``truncated``); a trial is ``n`` episodes. The
observation is the agent's cell index ``row * width + col``.

The VariBAD protocol (Zintgraf et al. 2020: 5x5, start in a corner, the goal uniform over the 21
cells outside the 2x2 block at the start, 15 steps, 4 episodes, -0.1 per step off the goal, every
goal cell seen in meta-training) is ``gridworld-goal-v0 --step-reward -0.1 --goal-exclusion 2
--test-fraction 0``: the other defaults already match it.

``--layout four-rooms`` adds the walls of a four-room grid (rooms joined by doorways, Sutton,
Precup & Singh 1999), e.g. ``--height 9 --width 9 --layout four-rooms``.

The task space is finite, so :meth:`GridworldGoal.tasks` partitions the candidate goal cells once,
from ``split_seed``, into meta-train and meta-test cells: held-out goals are never trained on
(``test_fraction`` 0: both splits draw from every cell). The dynamics are deterministic and known,
and :meth:`GridworldGoal.tabular_model` exposes them in the same ``(P, R)`` form as
``tabular-mdp-v0`` so tabular planners (value iteration, PSRL) run here too.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import gymnasium as gym
import torch

from adaptrl.core.config import Ge, Interval, Lt, Size
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs.base import BatchedEnv, FamilyConfig, Split, TaskBatch, TaskFamily, positive
from adaptrl.envs.registry import register_family

# (row, col) offsets of the actions stay, up, right, down, left.
MOVES: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (0, 1), (1, 0), (0, -1))
ACTION_NAMES: tuple[str, ...] = ("stay", "up", "right", "down", "left")


@dataclasses.dataclass(frozen=True)
class GridworldConfig(FamilyConfig):
    """Grid size, walls, start cell, horizon and train/test split of the goal cells."""

    height: Annotated[int, Ge(2)] = 5
    """Number of rows (>= 2)."""
    width: Annotated[int, Ge(2)] = 5
    """Number of columns (>= 2)."""
    walls: tuple[tuple[int, int], ...] = ()
    """Blocked cells as (row, col) pairs; every other cell must be reachable from the start."""
    layout: Literal["open", "four-rooms"] = "open"
    """Walls drawn from a named layout, added to ``walls``: "four-rooms" splits the grid into four
    rooms by a wall across its middle row and one down its middle column, each with two doorways
    (at a quarter and three quarters of its length), as Sutton, Precup & Singh (1999)."""
    start: tuple[int, int] = (0, 0)
    """(row, col) where every episode starts."""
    horizon: Size = 15
    """Steps per episode (a time limit, reported as truncated)."""
    n: Size = 4
    """Episodes per trial."""
    step_reward: Annotated[float, Lt(1)] = 0.0
    """Reward of a step that does not end on the goal (the goal pays 1; VariBAD: -0.1)."""
    goal_exclusion: Size = 1
    """Goals lie at Chebyshev distance >= this from the start (2 at a corner: not in its 2x2 block)."""
    test_fraction: Annotated[float, Interval(ge=0, lt=1)] = 0.2
    """Share of the candidate goal cells held out for meta-test (at least one cell each side;
    0: no held-out cells, meta-train and meta-test tasks draw from all of them)."""
    split_seed: int = 0
    """Seed of the train/test partition of the goal cells (independent of task-sampling seeds)."""

    def validate(self) -> None:
        if not self._inside(self.start):
            raise ConfigError(
                f"start {tuple(self.start)} lies outside the {self.height}x{self.width} grid"
            )
        if self.layout == "four-rooms" and (self.height < 5 or self.width < 5):
            raise ConfigError(
                f"the four-rooms layout needs a grid of at least 5x5, got {self.height}x{self.width}"
            )
        for wall in self.walls:
            if not self._inside(wall):
                raise ConfigError(
                    f"wall {tuple(wall)} lies outside the {self.height}x{self.width} grid "
                    f"(rows 0..{self.height - 1}, columns 0..{self.width - 1})"
                )
        walls = self.blocked()
        if tuple(self.start) in walls:
            raise ConfigError(f"start {tuple(self.start)} is a wall")
        free = sum(
            1
            for r in range(self.height)
            for c in range(self.width)
            if (r, c) not in walls and self.goal_allowed((r, c))
        )
        if free < 2:
            raise ConfigError(
                f"only {free} goal cell(s) left (non-wall cells at distance >= goal_exclusion="
                f"{self.goal_exclusion} from the start); a train/test split needs at least 2"
            )
        unreachable = self._unreachable(walls)
        if unreachable:
            raise ConfigError(
                f"cells {unreachable} cannot be reached from start {tuple(self.start)}; "
                "add them to walls or open a path"
            )

    def blocked(self) -> set[tuple[int, int]]:
        """Every wall cell: ``walls`` and those of the ``layout``."""
        walls = {(int(r), int(c)) for r, c in self.walls}
        if self.layout == "four-rooms":
            h, w = self.height, self.width
            mid_r, mid_c = h // 2, w // 2
            doors_r = {(h // 4, mid_c), ((3 * h) // 4, mid_c)}
            doors_c = {(mid_r, w // 4), (mid_r, (3 * w) // 4)}
            walls |= {(r, mid_c) for r in range(h)} - doors_r
            walls |= {(mid_r, c) for c in range(w)} - doors_c
        return walls

    def goal_allowed(self, cell: tuple[int, int]) -> bool:
        """Whether ``goal_exclusion`` lets a goal sit on ``cell`` (walls aside)."""
        r0, c0 = self.start
        return max(abs(cell[0] - r0), abs(cell[1] - c0)) >= self.goal_exclusion

    def _inside(self, cell: tuple[int, ...]) -> bool:
        return len(cell) == 2 and 0 <= cell[0] < self.height and 0 <= cell[1] < self.width

    def _unreachable(self, walls: set[tuple[int, ...]]) -> list[tuple[int, int]]:
        """Non-wall cells a goal could sit on but the agent can never reach (flood fill)."""
        seen = {tuple(self.start)}
        frontier = [tuple(self.start)]
        while frontier:
            r, c = frontier.pop()
            for dr, dc in MOVES[1:]:
                nxt = (r + dr, c + dc)
                if self._inside(nxt) and nxt not in walls and nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        cells = [(r, c) for r in range(self.height) for c in range(self.width)]
        return [cell for cell in cells if cell not in walls and cell not in seen]


@register_family
class GridworldGoal(TaskFamily):
    """A grid with a hidden goal cell per task; reward 1 per step on the goal, ``step_reward``
    elsewhere; trials of n episodes."""

    family_id = "gridworld-goal-v0"
    config_cls = GridworldConfig
    config: GridworldConfig

    def __init__(self, config: GridworldConfig | None = None):
        super().__init__(config)
        c = self.config
        self.num_states = c.height * c.width
        self.num_actions = len(MOVES)
        self.initial_state = c.start[0] * c.width + c.start[1]
        self.observation_space = gym.spaces.Discrete(self.num_states)
        self.action_space = gym.spaces.Discrete(self.num_actions)
        self.max_episode_steps = c.horizon
        self.episodes_per_trial = c.n
        self.walls = torch.zeros(self.num_states, dtype=torch.bool)
        for r, col in c.blocked():
            self.walls[r * c.width + col] = True
        self.move_table = self._build_move_table()
        allowed = [c.goal_allowed(divmod(cell, c.width)) for cell in range(self.num_states)]
        candidate = ~self.walls & torch.tensor(allowed)
        self.goal_cells = candidate.nonzero().squeeze(1)
        self.train_cells, self.test_cells = self._split_cells()

    def _build_move_table(self) -> torch.Tensor:
        """``[S, A]`` next cell of every (cell, action); blocked moves stay in place."""
        c = self.config
        cells = torch.arange(self.num_states)
        row, col = cells // c.width, cells % c.width
        offsets = torch.tensor(MOVES)
        nrow = row.unsqueeze(1) + offsets[:, 0]
        ncol = col.unsqueeze(1) + offsets[:, 1]
        inside = (nrow >= 0) & (nrow < c.height) & (ncol >= 0) & (ncol < c.width)
        target = (nrow.clamp(0, c.height - 1) * c.width + ncol.clamp(0, c.width - 1)).long()
        free = inside & ~self.walls[target]
        return torch.where(free, target, cells.unsqueeze(1))

    def _split_cells(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Partition the goal cells into (train, test) reproducibly from ``split_seed``."""
        count = len(self.goal_cells)
        if self.config.test_fraction == 0:
            return self.goal_cells, self.goal_cells
        n_test = min(max(1, round(self.config.test_fraction * count)), count - 1)
        gen = make_generator(self.config.split_seed, self.family_id, "split")
        perm = torch.randperm(count, generator=gen)
        test = self.goal_cells[perm[:n_test]].sort().values
        train = self.goal_cells[perm[n_test:]].sort().values
        return train, test

    def sample_tasks(self, n: int, generator: torch.Generator) -> TaskBatch:
        return self._draw(self.goal_cells, n, generator)

    def tasks(
        self, n: int, split: Split, seed: int, device: str | torch.device = "cpu"
    ) -> TaskBatch:
        """``n`` goals drawn with replacement from the cells of ``split`` only."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        positive("number of tasks", n)
        cells = self.train_cells if split == "train" else self.test_cells
        gen = make_generator(seed, self.family_id, "tasks", split, device=device)
        return self._draw(cells, n, gen)

    @staticmethod
    def _draw(cells: torch.Tensor, n: int, generator: torch.Generator) -> TaskBatch:
        dev = generator.device
        idx = torch.randint(len(cells), (n,), generator=generator, device=dev)
        return TaskBatch({"goal": cells.to(dev)[idx]})

    def tabular_model(self, tasks: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P [n, S, A, S], R [n, S, A])``: deterministic transitions and mean rewards.

        ``R[s, a]`` is 1 where the move from ``s`` by ``a`` ends on the goal (the reward is paid
        for the cell a step ends on), as in ``TabularMDP.tabular_model``, else ``step_reward``.
        """
        goal = tasks.goal
        move = self.move_table.to(goal.device)
        n = len(goal)
        p = torch.nn.functional.one_hot(move, self.num_states).float()
        on_goal = move.unsqueeze(0) == goal.view(n, 1, 1)
        r = torch.where(on_goal, 1.0, self.config.step_reward)
        return p.unsqueeze(0).repeat(n, 1, 1, 1), r

    def make_env(self, num_envs: int, device: str | torch.device = "cpu") -> GridworldEnv:
        return GridworldEnv(self, num_envs, device)


class GridworldEnv(BatchedEnv):
    family: GridworldGoal

    def __init__(self, family: GridworldGoal, num_envs: int, device: str | torch.device = "cpu"):
        super().__init__(family, num_envs, device)
        self._move = family.move_table.to(self.device)
        self._start = family.initial_state
        self._step_reward = family.config.step_reward

    def _bind_tasks(self, tasks: TaskBatch) -> None:
        self._goal = tasks.goal
        self.state = torch.full((self.num_envs,), self._start, dtype=torch.long, device=self.device)

    def _reset_rows(self, mask: torch.Tensor) -> torch.Tensor:
        self.state = torch.where(mask, self._start, self.state)
        return self.state

    def _transition(self, action):
        self.state = self._move[self.state, action.long()]
        reward = torch.where(self.state == self._goal, 1.0, self._step_reward)
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self.state, reward, terminated
