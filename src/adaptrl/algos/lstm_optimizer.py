"""A learned optimizer: the coordinatewise LSTM of Andrychowicz et al. 2016 ("Learning to learn by
gradient descent by gradient descent"), the "meta-learner LSTM" of the source articles.

The inner loop trains a small network (the *optimizee*, here an MLP on a task's support set) from a
fresh random initialisation. Instead of ``theta -= lr * grad``, every coordinate of ``theta`` is
updated by ``theta += m(grad)``, where ``m`` is a two-layer LSTM applied to each coordinate
separately (shared weights, one hidden state per coordinate). The LSTM reads each gradient through
the paper's preprocessing: ``(log|g| / p, sign g)`` when ``|g| >= e^-p``, else ``(-1, e^p g)``,
so gradients of every scale reach it with inputs of order one.

The outer loop (meta-training) unrolls ``inner_steps`` optimisation steps on a batch of tasks and
minimises the sum of the optimizee's losses along the way, by truncated backpropagation through
time: every ``unroll`` steps the LSTM's parameters take an Adam step and the graph is cut.
As in the paper the gradients the LSTM reads are treated as inputs (their dependence on the LSTM is
dropped: no second derivatives); ``second_order=True`` keeps it (exact meta-gradient, slower).

Evaluation compares adaptation curves on held-out tasks with SGD and Adam whose learning rates are
tuned on meta-train tasks (:func:`tune_learning_rate`), all from the same initialisations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
import tyro
from torch import nn
from torch.func import functional_call

from adaptrl.algos.episodic import EpisodicLearner
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Config, Positive, Size
from adaptrl.core.errors import ConfigError
from adaptrl.fewshot import FewShotBatch, FewShotConfigUnion, SinusoidConfig
from adaptrl.nn.backbones import make_backbone
from adaptrl.rl.optim import adam_init, adam_step

LSTMState = list[tuple[torch.Tensor, torch.Tensor]]


# --- the LSTM optimizer ----------------------------------------------------------------------
def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al. 2016, appendix A: ``[...]`` gradients -> ``[..., 2]`` inputs.

    ``(log|g| / p, sign(g))`` if ``|g| >= e^-p``, otherwise ``(-1, e^p g)``.
    """
    big = grad.abs() >= math.exp(-p)
    log_mag = torch.log(grad.abs().clamp_min(torch.finfo(grad.dtype).tiny)) / p
    first = torch.where(big, log_mag, torch.full_like(grad, -1.0))
    second = torch.where(big, torch.sign(grad), math.exp(p) * grad)
    return torch.stack([first, second], dim=-1)


class CoordinatewiseLSTM(nn.Module):
    """Two stacked LSTM cells shared by every coordinate, and a linear head giving the update."""

    def __init__(self, hidden: int = 20, p: float = 10.0, output_scale: float = 0.1):
        super().__init__()
        self.hidden, self.p, self.output_scale = hidden, p, output_scale
        self.cells = nn.ModuleList([nn.LSTMCell(2, hidden), nn.LSTMCell(hidden, hidden)])
        self.head = nn.Linear(hidden, 1)

    def initial_state(self, coords: int, like: torch.Tensor) -> LSTMState:
        zeros = like.new_zeros(coords, self.hidden)
        return [(zeros, zeros) for _ in self.cells]

    def forward(self, grad: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """``grad [C]`` (flat, one row per coordinate) -> update ``[C]`` and the next state."""
        x = preprocess_gradients(grad, self.p)
        new_state = []
        for cell, hc in zip(self.cells, state, strict=True):
            h, c = cell(x, hc)
            new_state.append((h, c))
            x = h
        return self.output_scale * self.head(x).squeeze(-1), new_state


def detach_state(state: LSTMState) -> LSTMState:
    return [(h.detach(), c.detach()) for h, c in state]


# --- the optimizee: any buffer-free module, with one flat parameter vector per task ----------
class Optimizee:
    """A module used functionally with a flat ``[T, P]`` parameter tensor (one row per task)."""

    def __init__(self, module: nn.Module):
        if any(True for _ in module.buffers()):
            raise ConfigError(
                "the learned optimizer's optimizee must have no buffers (no BatchNorm)"
            )
        self.module = module
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [p.numel() for _, p in module.named_parameters()]
        self.num_params = sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[T, P]`` -> ``{name: [T, *shape]}``."""
        parts = flat.split(self.sizes, dim=-1)
        return {
            n: x.reshape(*flat.shape[:-1], *s)
            for n, x, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def init(
        self, num_tasks: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """Fresh parameters ``[T, P]``: PyTorch's default Linear/Conv init ``U(+-1/sqrt(fan_in))``;
        a 1-D parameter (bias) uses the fan-in of the weight before it."""
        parts, fan_in = [], 1
        for shape in self.shapes:
            if len(shape) >= 2:
                fan_in = math.prod(shape[1:])
            bound = 1.0 / math.sqrt(fan_in)
            u = torch.rand(num_tasks, math.prod(shape), generator=generator, device=device)
            parts.append((2 * u - 1) * bound)
        return torch.cat(parts, dim=-1)

    def predict(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Outputs for inputs ``x [T, S, ...]`` under each task's parameters ``flat [T, P]``."""
        call = lambda p, xi: functional_call(self.module, p, (xi,))  # noqa: E731
        return torch.vmap(call)(self.unflatten(flat), x)

    def loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-task loss ``[T]``: MSE for float targets, cross-entropy for integer labels."""
        out = self.predict(flat, x)
        if y.is_floating_point():
            return (out - y).pow(2).flatten(1).mean(-1)
        return (
            F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(-1)
        )


def unrolled_loss(
    net: CoordinatewiseLSTM,
    optimizee: Optimizee,
    theta: torch.Tensor,
    state: LSTMState,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    *,
    second_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
    """Run ``steps`` learned updates from ``theta [T, P]``; returns the meta-loss (mean over tasks
    of the losses after each update, averaged over steps), the final parameters and LSTM state.

    With ``second_order=False`` the gradients fed to the LSTM are constants (the paper's choice).
    """
    theta = theta if theta.requires_grad else theta.detach().requires_grad_()
    loss = optimizee.loss(theta, x, y)
    total = theta.new_zeros(())
    for _ in range(steps):
        (grad,) = torch.autograd.grad(
            loss.sum(), theta, create_graph=second_order, retain_graph=True
        )
        update, state = net(grad.flatten(), state)
        theta = theta + update.view_as(theta)
        loss = optimizee.loss(theta, x, y)
        total = total + loss.mean()
    return total / steps, theta, state


# --- hand-designed baselines -----------------------------------------------------------------
def hand_designed_curve(
    optimizee: Optimizee,
    theta: torch.Tensor,
    tasks: FewShotBatch,
    steps: int,
    *,
    kind: str,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.Tensor:
    """Query loss ``[T, steps + 1]`` of SGD or Adam (``kind``) on each task's support loss, from
    ``theta [T, P]``; Adam keeps its moments per task (each task is its own optimisation)."""
    if kind not in ("sgd", "adam"):
        raise ConfigError(f"unknown hand-designed optimizer {kind!r}: use 'sgd' or 'adam'")
    theta = theta.detach().clone().requires_grad_()
    adam = adam_init({"theta": theta})
    curve = []
    for t in range(steps + 1):
        with torch.no_grad():
            curve.append(optimizee.loss(theta, tasks.query_x, tasks.query_y))
        if t == steps:
            break
        (grad,) = torch.autograd.grad(
            optimizee.loss(theta, tasks.support_x, tasks.support_y).sum(), theta
        )
        with torch.no_grad():
            if kind == "sgd":
                theta = theta - lr * grad
            else:
                new, adam = adam_step({"theta": theta}, {"theta": grad}, adam, lr, betas, eps)
                theta = new["theta"]
        theta = theta.detach().requires_grad_()
    return torch.stack(curve, dim=-1)


def tune_learning_rate(
    optimizee: Optimizee,
    theta: torch.Tensor,
    tasks: FewShotBatch,
    steps: int,
    *,
    kind: str,
    grid: Sequence[float],
) -> tuple[float, dict[float, float]]:
    """The learning rate in ``grid`` with the lowest mean query loss over the whole curve (area
    under the curve) on ``tasks`` (meta-train tasks); non-finite runs lose. Returns it and every
    score."""
    scores = {}
    for lr in grid:
        curve = hand_designed_curve(optimizee, theta, tasks, steps, kind=kind, lr=lr)
        score = float(curve.mean())
        scores[lr] = score if math.isfinite(score) else math.inf
    return min(scores, key=scores.__getitem__), scores


# --- learner ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LSTMOptimizerConfig(Config):
    """A coordinatewise LSTM optimizer meta-trained to train a small MLP on few-shot tasks."""

    family: Annotated[FewShotConfigUnion, tyro.conf.arg(name="")] = SinusoidConfig()
    """Task family whose support sets the optimizee is trained on (sinusoid-v0 or glyphs-v0)."""
    iterations: Size = 300
    """Outer iterations; each is one optimisation run of ``inner_steps`` on a fresh task batch."""
    tasks_per_batch: Size = 16
    """Tasks per outer iteration (each trains its own optimizee)."""
    inner_steps: Size = 100
    """Optimisation steps per run (the paper: 100); also the default evaluation budget."""
    unroll: Size = 20
    """Truncation length of backpropagation through time (the paper: 20)."""
    hidden: Size = 20
    """Hidden units of each of the two LSTM layers (the paper: 20)."""
    preprocess_p: Positive = 10.0
    """``p`` of the gradient preprocessing (the paper: 10)."""
    output_scale: Positive = 0.1
    """Scale of the LSTM's output update (the paper: 0.1)."""
    optimizee_hidden: tuple[Size, ...] = (40, 40)
    """Hidden layers of the optimizee MLP (40-40 for sinusoid); for images the first entry is the
    filter count of the conv net optimizee."""
    lr: Positive = 1e-3
    """Adam learning rate of the LSTM's parameters."""
    max_grad_norm: Positive = 1.0
    """Clip the meta-gradient's norm (the unrolled loss has occasional spikes)."""
    second_order: bool = False
    """Backpropagate through the gradients the LSTM reads (exact; the paper drops this term)."""


class LSTMOptimizerLearner(EpisodicLearner):
    """Meta-trains a :class:`CoordinatewiseLSTM` by truncated BPTT over inner optimisations."""

    name: ClassVar[str] = "lstm-optimizer"
    supports_classification: ClassVar[bool] = False
    """Trains an MLP on flat inputs: not one of the glyphs bench's image classifiers."""

    def __init__(
        self, config: LSTMOptimizerConfig, *, seed: int, device: torch.device | str = "cpu"
    ):
        build = lambda family: CoordinatewiseLSTM(  # noqa: E731
            config.hidden, config.preprocess_p, config.output_scale
        )
        super().__init__(config, seed=seed, device=device, build=build)
        self.metric = "mse" if self.family.kind == "regression" else "cross-entropy"
        self.higher_is_better = False
        self.default_eval_steps = config.inner_steps
        shape = self.family.input_shape
        hidden = config.optimizee_hidden if len(shape) == 1 else config.optimizee_hidden[0]
        self.optimizee = Optimizee(make_backbone(shape, self.family.output_dim, hidden=hidden))

    def meta_train_step(self) -> dict[str, float | torch.Tensor]:
        cfg = self.config
        tasks = self.family.sample(
            cfg.tasks_per_batch, "train", generator=self.generator, device=self.device
        )
        theta = self.optimizee.init(cfg.tasks_per_batch, self.generator, self.device)
        state = self.net.initial_state(theta.numel(), theta)
        done, losses = 0, []
        while done < cfg.inner_steps:
            steps = min(cfg.unroll, cfg.inner_steps - done)
            loss, theta, state = unrolled_loss(
                self.net,
                self.optimizee,
                theta,
                state,
                tasks.support_x,
                tasks.support_y,
                steps,
                second_order=cfg.second_order,
            )
            self.optimizer_step(loss, max_grad_norm=cfg.max_grad_norm)
            theta, state = theta.detach(), detach_state(state)
            losses.append(loss.detach())
            done += steps
        self.iteration += 1
        final = self.optimizee.loss(theta, tasks.query_x, tasks.query_y).mean().detach()
        return {"loss": torch.stack(losses).mean(), "final_query_loss": final}

    def _run(
        self, tasks: FewShotBatch, steps: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tasks = tasks.to(self.device)
        theta = self.optimizee.init(len(tasks), generator, self.device).requires_grad_()
        state = self.net.initial_state(theta.numel(), theta)
        curve = []
        for t in range(steps + 1):
            with torch.no_grad():
                curve.append(self.optimizee.loss(theta, tasks.query_x, tasks.query_y))
            if t == steps:
                break
            loss = self.optimizee.loss(theta, tasks.support_x, tasks.support_y)
            (grad,) = torch.autograd.grad(loss.sum(), theta)
            with torch.no_grad():
                update, state = self.net(grad.flatten(), state)
            theta = (theta + update.view_as(theta)).detach().requires_grad_()
        return torch.stack(curve, dim=-1).cpu(), theta.detach()

    def adaptation_curve(
        self, tasks: FewShotBatch, steps: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Query loss ``[T, steps + 1]`` (MSE on sinusoid) after 0..steps learned updates on the
        support set, from fresh initialisations drawn from ``generator``."""
        return self._run(tasks, steps, generator)[0]

    def adapt(
        self, tasks: FewShotBatch, steps: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The optimizee parameters after ``steps`` learned updates, each ``[T, *shape]``."""
        theta = self._run(tasks, steps, generator)[1]
        return {k: v.cpu() for k, v in self.optimizee.unflatten(theta).items()}


register_algo(
    AlgoSpec(
        name="lstm-optimizer",
        config_cls=LSTMOptimizerConfig,
        learner_cls=LSTMOptimizerLearner,
        description="Learned coordinatewise LSTM optimizer (Andrychowicz et al. 2016)",
        kind="fewshot",
    )
)
