"""Non-meta agents for comparison (layer 7): random, classic bandit agents (Gittins, UCB1,
Thompson sampling, ...), tabular planners (PSRL, certainty equivalence, oracle), the gridworld goal search, the exact Bayes-optimal gridworld agent and oracles.

Importing this package registers every agent id in :data:`AGENTS`; build one with
:func:`make_agent`.
"""

from adaptrl.baselines import (  # noqa: F401  (importing registers the agents)
    bandits,
    bayes_optimal,
    generic,
    gridworld,
    nav2d,
    tabular,
)
from adaptrl.baselines.base import TrialAgent
from adaptrl.baselines.registry import AGENTS, AgentSpec, make_agent

__all__ = ["AGENTS", "AgentSpec", "TrialAgent", "make_agent"]
