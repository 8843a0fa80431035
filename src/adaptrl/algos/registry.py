"""Registry of meta-learners by id (``rl2``, ``maml-rl``, ``maml``, ...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from adaptrl.algos.base import MetaLearner
from adaptrl.core.config import config_from_dict, merge
from adaptrl.core.errors import ConfigError
from adaptrl.core.presets import preset_data
from adaptrl.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class AlgoSpec:
    """One registered meta-learner: its id, config class and learner class."""

    name: str
    config_cls: type
    learner_cls: type[MetaLearner]
    description: str
    kind: str
    """"rl" (task families of adaptrl.envs) or "fewshot" (adaptrl.fewshot families)."""

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        missing = {"family", "iterations"} - names
        if missing:
            raise TypeError(f"{self.config_cls.__name__} lacks field(s) {sorted(missing)}")
        if self.kind not in ("rl", "fewshot"):
            raise TypeError(f"kind must be 'rl' or 'fewshot', got {self.kind!r}")


ALGOS: Registry[AlgoSpec] = Registry("algorithm")


def register_algo(spec: AlgoSpec) -> AlgoSpec:
    """Register ``spec`` under ``spec.name`` (and set the learner class's ``name``)."""
    ALGOS.add(spec.name, spec)
    spec.learner_cls.name = spec.name
    return spec


def algo_of_config(config: Any) -> AlgoSpec:
    """The registered algorithm whose config class ``config`` is an instance of."""
    for _, spec in ALGOS.items():
        if type(config) is spec.config_cls:
            return spec
    raise ConfigError(f"{type(config).__name__} is not the config of a registered algorithm")


def load_config(
    algo: str, name_or_path: str | Path, overrides: Mapping[str, Any] | None = None
) -> Any:
    """``algo``'s config from a shipped preset (``configs/ALGO/NAME.yaml``), a YAML file of its
    fields, or a training run's ``config.yaml`` (or its directory), to repeat that run;
    ``overrides`` (nested or ``"a.b"`` keys) on top."""
    spec = ALGOS.get(algo)
    data = preset_data(algo, name_or_path)
    if "algo" in data and "config" in data:  # a training run's record
        if data["algo"] != algo:
            raise ConfigError(
                f"{name_or_path} is a {data['algo']} run's configuration, not {algo}'s"
            )
        data = data["config"] or {}
    try:
        return config_from_dict(spec.config_cls, merge(data, overrides or {}))
    except ConfigError as exc:
        raise ConfigError(f"{name_or_path}: {exc}") from None


def make_learner(
    name: str, config: Any = None, *, seed: int = 0, device: str | torch.device = "cpu"
) -> MetaLearner:
    """Build the learner ``name`` from ``config`` (default: the config class's defaults)."""
    spec = ALGOS.get(name)
    config = spec.config_cls() if config is None else config
    if not isinstance(config, spec.config_cls):
        raise ConfigError(f"{name} takes a {spec.config_cls.__name__}, got {type(config).__name__}")
    return spec.learner_cls(config, seed=seed, device=device)
