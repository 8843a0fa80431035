"""Shared test helper: train a trial learner on Bernoulli bandits and score it beside Gittins."""

from __future__ import annotations

from typing import Any

from adaptrl.algos.trainer import train
from adaptrl.eval import evaluate


def train_and_score(learner: Any, num_tasks: int = 500) -> tuple[float, float, float]:
    """Train ``learner`` (in place) to its configured iterations; the mean trial return of its
    trial agent, of Gittins and of random on the same ``num_tasks`` held-out tasks."""
    train(learner, iterations=learner.config.iterations, show_progress=False)
    res = evaluate(
        learner.family,
        [(learner.name, lambda f: learner.trial_agent()), "gittins", "random"],
        num_tasks=num_tasks,
        show_progress=False,
    )
    ours, gittins, random = (a.trial_return()[0] for a in res.agents)
    return ours, gittins, random
