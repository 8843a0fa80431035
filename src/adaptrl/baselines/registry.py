"""Registry of trial agents (baselines) by id, with the families each one supports."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from adaptrl.core.errors import ConfigError
from adaptrl.core.registry import Registry
from adaptrl.envs.base import TaskFamily


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """How to build an agent: ``factory(family, **params)``; ``supports(family)`` says where it runs."""

    name: str
    factory: Callable[..., Any]
    supports: Callable[[TaskFamily], bool]
    description: str
    #: Tunable parameters with defaults (e.g. UCB1's ``c``), shown by ``adaptrl list``.
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


AGENTS: Registry[AgentSpec] = Registry("agent")


def register_agent(spec: AgentSpec) -> AgentSpec:
    AGENTS.add(spec.name, spec)
    return spec


def make_agent(name: str, family: TaskFamily, **params: Any):
    """Build agent ``name`` for ``family``; clear errors for unknown names, params or families."""
    spec = AGENTS.get(name)
    if not spec.supports(family):
        ok = [n for n, s in AGENTS.items() if s.supports(family)]
        raise ConfigError(
            f"agent {name!r} does not run on {family.family_id}; agents that do: {', '.join(ok)}"
        )
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ConfigError(
            f"agent {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"its parameters are {', '.join(sorted(spec.params)) or 'none'}"
        )
    return spec.factory(family, **{**spec.params, **params})
