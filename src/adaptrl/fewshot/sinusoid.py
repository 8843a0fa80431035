"""``sinusoid-v0``: few-shot regression of sine waves (MAML, Finn et al. 2017 §5.1).

A task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]`` and phase ``phi ~ U[0, pi]``; its
inputs are ``x ~ U[-5, 5]``. The loss is the mean squared error. There is no finite task set, so
the train / val / test splits are independent generator streams (:meth:`FewShotFamily.tasks`).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from adaptrl.core.config import Size
from adaptrl.fewshot.base import FewShotBatch, FewShotConfig, FewShotFamily, Split, check_range
from adaptrl.fewshot.registry import register_fewshot_family


@dataclasses.dataclass(frozen=True)
class SinusoidConfig(FewShotConfig):
    """Amplitude, phase and input ranges of sine-wave regression, and the points per task."""

    shots: Size = 10
    """K: support points per task (MAML trains with K=10)."""
    queries: Size = 10
    """Query points per task."""
    amplitude: tuple[float, float] = (0.1, 5.0)
    """Amplitude A ~ U[low, high]."""
    phase: tuple[float, float] = (0.0, math.pi)
    """Phase phi ~ U[low, high]."""
    x_range: tuple[float, float] = (-5.0, 5.0)
    """Inputs x ~ U[low, high]."""

    def validate(self) -> None:
        check_range("amplitude", self.amplitude)
        check_range("phase", self.phase)
        check_range("x_range", self.x_range)


def _scale(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Map U[0, 1) draws to U[low, high)."""
    low, high = bounds
    return low + (high - low) * u


@register_fewshot_family
class Sinusoid(FewShotFamily):
    """Sine waves A sin(x - phi), A ~ U[0.1,5], phi ~ U[0,pi], x ~ U[-5,5] (MAML §5.1)."""

    family_id = "sinusoid-v0"
    config_cls = SinusoidConfig
    kind = "regression"
    config: SinusoidConfig
    input_shape = (1,)

    def _sample(
        self,
        num_tasks: int,
        split: Split,
        generator: torch.Generator,
        ways: int,
        shots: int,
        queries: int,
    ) -> FewShotBatch:
        c = self.config
        u = torch.rand(
            num_tasks, 2 + shots + queries, 1, generator=generator, device=generator.device
        )
        amplitude = _scale(u[:, :1], c.amplitude)  # [T, 1, 1]
        phase = _scale(u[:, 1:2], c.phase)
        x = _scale(u[:, 2:], c.x_range)  # [T, K+Q, 1]
        y = amplitude * torch.sin(x - phase)
        return FewShotBatch(
            support_x=x[:, :shots],
            support_y=y[:, :shots],
            query_x=x[:, shots:],
            query_y=y[:, shots:],
            ways=0,
            shots=shots,
            queries=queries,
            params=torch.cat([amplitude, phase], dim=2).reshape(num_tasks, 2),
        )

    def curve(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The true targets of tasks ``params [T, 2]`` at inputs ``x [T, M, 1]`` (for plots)."""
        return params[:, 0, None, None] * torch.sin(x - params[:, 1, None, None])
