"""The interface every meta-learner implements.

A meta-learner is built from ``(config, seed, device)``. ``meta_train_step`` runs one outer iteration;
``state_dict`` / ``load_state_dict`` capture everything needed to continue bit-identically (parameters,
optimizer state, every generator). Evaluation lives in :mod:`adaptrl.eval.learners` (a higher layer) and
talks to a learner through optional hooks:

* ``trial_agent()`` for memory learners (RL²): an object with ``begin_trial(env, tasks, generator)``,
  ``act(obs)`` and ``observe(obs, action, step)``, the protocol of the classic trial agents, so a
  trained learner is scored on exactly the tasks the baselines see;
* ``adaptation_curve(tasks, steps, generator)`` for gradient learners: the metric after 0..steps inner
  steps, shape ``[num_tasks, steps + 1]``;
* ``adaptation_success(tasks, steps, generator)``: beside the curve, on families that report success
  (Meta-World), the success rate of each task's episodes after 0..steps inner steps (same shape);
* ``adapt(tasks, steps, generator)``: adapted parameters with a leading ``[num_tasks]`` dim.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from adaptrl.core.errors import ConfigError


class MetaLearner(abc.ABC):
    """Base class of meta-learners (see the module docstring for the optional hooks)."""

    name: ClassVar[str] = ""
    default_eval_steps: ClassVar[int] = 3
    """Inner steps of ``adaptation_curve`` when the user gives none."""
    metric: ClassVar[str] = "return"
    """What evaluation measures: "return", "accuracy" or "mse"."""
    higher_is_better: ClassVar[bool] = True
    distributed: ClassVar[bool] = False
    """Whether the learner splits its meta-batch across ``torchrun`` processes
    (:mod:`adaptrl.core.distributed`) with a result independent of their number."""
    training_only: ClassVar[tuple[str, ...]] = ()
    """Top-level ``state_dict`` entries only continuing training needs (an optimizer's state):
    exported models leave them out (``algos.trainer.export_model``) and ``load_state_dict``
    accepts a state without them."""

    def __init__(self, config: Any, *, seed: int = 0, device: str | torch.device = "cpu"):
        self.config = config
        self.seed = int(seed)
        self.device = torch.device(device)
        self.iteration = 0

    @abc.abstractmethod
    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        """Run one outer iteration, increment ``self.iteration`` and return its metrics.

        Metrics may be 0-d tensors: the trainer copies them to the host once per iteration.
        """

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Nested dicts/lists of tensors and JSON-able values; enough to resume bit-identically."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # Optional hooks. ``hasattr``-style checks in eval use ``supports()``.
    def trial_agent(self) -> Any:
        raise ConfigError(f"{self.name} is not evaluated by trials; use adaptation curves")

    def trial_agents(self) -> dict[str, Callable[[], Any]]:
        """The agents evaluation scores, by label: the trial agent, or several ways of adapting
        it (meta-q with and without propensity adaptation)."""
        return {self.name: self.trial_agent}

    def env_steps(self, iterations: int) -> int | None:
        """Environment steps the first ``iterations`` meta-training iterations collect (at most,
        where episodes may end early); None for learners without an environment."""
        return None

    def adaptation_curve(self, tasks: Any, steps: int, generator: torch.Generator) -> torch.Tensor:
        raise ConfigError(f"{self.name} does not adapt by gradient steps; evaluate it by trials")

    def adaptation_success(
        self, tasks: Any, steps: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(curve, success)``: :meth:`adaptation_curve` and, from the same episodes, each task's
        success rate after 0..steps inner steps, both ``[num_tasks, steps + 1]``."""
        raise ConfigError(f"{self.name} does not measure success after gradient steps")

    def adapt(self, tasks: Any, steps: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise ConfigError(
            f"{self.name} adapts by reading experience into its memory, not by gradient steps, so "
            "there are no adapted parameters to save; use `adaptrl eval RUN_DIR` instead"
        )

    @classmethod
    def supports(cls, hook: str) -> bool:
        """Whether a subclass overrides the optional ``hook`` ("trial_agent", "adapt", ...)."""
        return getattr(cls, hook) is not getattr(MetaLearner, hook)
