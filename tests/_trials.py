"""Shared test helper: run one trial of an agent through the evaluation protocol's own loop."""

from __future__ import annotations

import torch

from adaptrl.baselines.base import TrialAgent
from adaptrl.core.seeding import make_generator
from adaptrl.eval import run_trials


class Recording(TrialAgent):
    """Wraps an agent and keeps every action it takes (for determinism checks)."""

    name = "recording"

    def __init__(self, agent: TrialAgent):
        self.agent, self.actions = agent, []

    def begin_trial(self, env, tasks, generator):
        self.agent.begin_trial(env, tasks, generator)

    def act(self, obs):
        action = self.agent.act(obs)
        self.actions.append(action.clone())
        return action

    def observe(self, obs, action, step):
        self.agent.observe(obs, action, step)


def run_trial(family, agent, num_tasks, seed=0, task_seed=11, env_seed=5, record=False):
    """Per-episode returns ``[tasks, n]`` of one trial on test tasks (and the actions taken)."""
    tasks = family.tasks(num_tasks, "test", task_seed)
    runner = Recording(agent) if record else agent
    gen = make_generator(seed, "agent")
    out = run_trials(
        runner, family.make_env(num_tasks), tasks, family.episodes_per_trial, gen, env_seed
    )
    out = out.double()
    return (out, torch.stack(runner.actions)) if record else out
