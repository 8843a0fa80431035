"""Shared pieces of the gradient-based few-shot meta-learners (MAML, first-order MAML, Meta-SGD,
ANIL, Reptile). Not an algorithm itself: each learner's file composes these.

* per-task losses and metrics (cross-entropy / accuracy, MSE / MSE) on functional parameters;
* :func:`sgd_adapt`: the functional SGD inner loop (``torch.func.grad``; optional first order,
  per-entry learning rates, a subset of adapted entries);
* :func:`map_tasks`: run a per-task function over a meta-batch, with ``vmap`` or a Python loop;
* :class:`GradientFewShotLearner`: the common learner boilerplate (family, backbone, optimizer,
  meta-batch sampling, checkpoints, evaluation hooks) with per-family defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor
from torch.func import functional_call, grad, vmap

from adaptrl.algos.base import MetaLearner
from adaptrl.core import distributed
from adaptrl.core.config import Config, Count, Positive, Size
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import derive_seed, generator_state, make_generator, set_generator_state
from adaptrl.fewshot import FewShotBatch, FewShotConfigUnion, SinusoidConfig, make_fewshot_family
from adaptrl.nn.backbones import MLP, Pool, forward_tasks, make_backbone

Params = dict[str, Tensor]
LossFn = Callable[[Mapping[str, Tensor], Tensor, Tensor], Tensor]
Strategy = Literal["auto", "vmap", "loop", "batched"]
Precision = Literal["float32", "bfloat16"]


# ----------------------------------------------------------------------------------------------
# losses and metrics of one task


def prediction_loss(kind: str, out: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy (classification, ``y`` int labels) or mean squared error (regression)."""
    return F.cross_entropy(out, y) if kind == "classification" else F.mse_loss(out, y)


def prediction_metric(kind: str, out: Tensor, y: Tensor) -> Tensor:
    """Accuracy (classification) or mean squared error (regression), a 0-d tensor."""
    if kind == "classification":
        return (out.argmax(-1) == y).float().mean()
    return (out - y).square().mean()


def functional_loss(model: torch.nn.Module, kind: str) -> LossFn:
    """``loss(params, x, y)`` of ``model`` called with ``params`` on one task's data."""

    def loss(params: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return prediction_loss(kind, functional_call(model, dict(params), (x,)), y)

    return loss


# ----------------------------------------------------------------------------------------------
# the inner loop


def sgd_step(
    params: Mapping[str, Tensor], grads: Mapping[str, Tensor], lr: float | Mapping[str, Tensor]
) -> Params:
    """``params - lr * grads`` entry by entry; ``lr`` is one number or one tensor per entry."""
    if isinstance(lr, Mapping):
        return {k: p - lr[k] * grads[k] for k, p in params.items()}
    return {k: p - lr * grads[k] for k, p in params.items()}


def sgd_adapt(
    loss: LossFn,
    params: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    lr: float | Mapping[str, Tensor],
    keys: tuple[str, ...] | None = None,
    first_order: bool = False,
) -> Params:
    """``steps`` steps of gradient descent on ``loss(params, x, y)`` for one task.

    Only the entries named in ``keys`` (all by default) are adapted; the others stay fixed.
    The result stays differentiable with respect to ``params`` (and ``lr``): the outer loss can
    backpropagate through the whole inner loop (second order). ``first_order`` detaches the inner
    gradients, dropping the second-order term (first-order MAML).
    """
    fast = {k: params[k] for k in (keys if keys is not None else params)}
    fixed = {k: v for k, v in params.items() if k not in fast}

    def fast_loss(fast_params: Params) -> Tensor:
        return loss({**fixed, **fast_params}, x, y)

    for _ in range(steps):
        grads = grad(fast_loss)(fast)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        fast = sgd_step(fast, grads, lr)
    return {**fixed, **fast}


def sgd_curve(
    loss: LossFn,
    metric: Callable[[Mapping[str, Tensor], Tensor, Tensor], Tensor],
    params: Mapping[str, Tensor],
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    *,
    steps: int,
    lr: float | Mapping[str, Tensor],
    keys: tuple[str, ...] | None = None,
) -> Tensor:
    """The query metric after 0, 1, ..., ``steps`` inner steps on the support set: ``[steps+1]``."""
    values = [metric(params, *query)]
    for _ in range(steps):
        params = sgd_adapt(loss, params, *support, steps=1, lr=lr, keys=keys)
        values.append(metric(params, *query))
    return torch.stack(values)


def task_losses(kind: str, out: Tensor, y: Tensor) -> Tensor:
    """Each task's mean loss, ``[T]``, from outputs ``[T, B, out]`` and targets ``[T, B(, 1)]``."""
    if kind == "classification":
        return (
            F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        )
    return (out - y).square().flatten(1).mean(1)


def batched_sgd_adapt(
    net: torch.nn.Module,
    kind: str,
    params: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    lr: float | Mapping[str, Tensor],
    first_order: bool = False,
) -> Params:
    """:func:`sgd_adapt` for all ``T`` tasks at once as one explicit batched graph.

    ``params`` have a leading task dim (e.g. ``θ.expand(T, ...)``); ``x``, ``y`` are
    ``[T, B, ...]``. The tasks' parameters are separate tensors along the task dim, so the
    gradient of the *sum* of the tasks' losses holds each task's own gradient. Differentiable
    with respect to the inputs (second order) unless ``first_order``.
    """
    params = dict(params)
    for _ in range(steps):
        total = task_losses(kind, forward_tasks(net, params, x), y).sum()
        grads = torch.autograd.grad(total, list(params.values()), create_graph=not first_order)
        params = sgd_step(params, dict(zip(params, grads, strict=True)), lr)
    return params


def expand_tasks(params: Mapping[str, Tensor], tasks: int) -> Params:
    """Every entry with a leading task dim of size ``tasks`` (a view, no copy)."""
    return {k: v.expand(tasks, *v.shape) for k, v in params.items()}


def maml_query_losses(
    model: torch.nn.Module,
    kind: str,
    params: Mapping[str, Tensor],
    batch: FewShotBatch,
    *,
    steps: int,
    lr: float | Mapping[str, Tensor],
    first_order: bool = False,
    strategy: Strategy = "vmap",
) -> Tensor:
    """Each task's query loss after ``steps`` SGD steps from ``params`` on its support set, ``[T]``.

    The MAML objective (Meta-SGD with per-entry ``lr``), differentiable with respect to
    ``params`` and ``lr`` through the inner steps. ``strategy`` picks how tasks are batched; the
    numbers are the same.
    """
    if strategy == "auto":
        strategy = best_strategy(model)
    if strategy == "batched":
        adapted = batched_sgd_adapt(
            model,
            kind,
            expand_tasks(params, len(batch)),
            batch.support_x,
            batch.support_y,
            steps=steps,
            lr=lr,
            first_order=first_order,
        )
        return task_losses(kind, forward_tasks(model, adapted, batch.query_x), batch.query_y)
    loss = functional_loss(model, kind)

    def task(p: Params, lr_: Any, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        adapted = sgd_adapt(loss, p, xs, ys, steps=steps, lr=lr_, first_order=first_order)
        return loss(adapted, xq, yq)

    return map_tasks(
        task,
        (params, lr),
        (batch.support_x, batch.support_y, batch.query_x, batch.query_y),
        strategy,
    )


def best_strategy(model: torch.nn.Module) -> Strategy:
    """The faster strategy for ``model`` in ``adaptrl bench fewshot-speed`` (meta-batch 25-32;
    docs/results.md): the explicit batched graph for the MLP, vmap for the conv net (grouped
    convolutions pay a per-group loop in PyTorch's convolution double backward)."""
    return "batched" if isinstance(model, MLP) else "vmap"


def map_tasks(
    fn: Callable[..., Any],
    shared: tuple[Any, ...],
    per_task: tuple[Tensor, ...],
    strategy: Strategy,
) -> Any:
    """``fn(*shared, *task_t)`` for every task ``t`` (the leading dim of ``per_task``), stacked.

    ``"vmap"`` (and ``"auto"`` / ``"batched"``, which only meta-training losses implement
    differently) vectorises over tasks with ``torch.func.vmap``; ``"loop"`` calls ``fn`` task by
    task. Results (tensors or dicts of tensors) gain a leading task dim.
    """
    if strategy in ("auto", "vmap", "batched"):
        return vmap(fn, in_dims=(None,) * len(shared) + (0,) * len(per_task))(*shared, *per_task)
    if strategy != "loop":
        raise ConfigError(f"strategy must be 'auto', 'vmap', 'batched' or 'loop', got {strategy!r}")
    outs = [fn(*shared, *(a[t] for a in per_task)) for t in range(per_task[0].shape[0])]
    if isinstance(outs[0], Mapping):
        return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
    return torch.stack(outs)


# ----------------------------------------------------------------------------------------------
# configs and the learner base


FamilyField = Annotated[FewShotConfigUnion, tyro.conf.arg(name="")]


@dataclasses.dataclass(frozen=True)
class GradientConfig(Config):
    """Options shared by the gradient-based few-shot learners. ``None`` means the family's default
    (MAML's settings: sinusoid regression, or Omniglot-like N-way classification)."""

    family: FamilyField = SinusoidConfig()
    """Task family (ways/shots/queries are the family's options)."""
    iterations: Size = 10000
    """Outer iterations (meta-batches)."""
    meta_batch: Size | None = None
    """Tasks per outer iteration (default: 25 regression, 32 classification, 16 for 20+ ways)."""
    inner_steps: Size | None = None
    """Inner gradient steps during meta-training (default 1; 5 for 20+ ways)."""
    inner_lr: Positive | None = None
    """Inner SGD step size (default: 0.01 regression, 0.4 classification, 0.1 for 20+ ways)."""
    outer_lr: Positive = 1e-3
    """Adam step size of the outer loop."""
    eval_steps: Count | None = None
    """Inner steps reported by `adaptrl eval` (default: 10 regression, 3 classification, 5 for
    20+ ways)."""
    filters: Size | None = None
    """Conv filters (default 64 for images up to 32 px, 32 above); ignored for vectors."""
    pool: Pool = "max"
    """Conv blocks end in 2x2 max-pooling ("max") or use stride-2 convs ("stride", as MAML's
    Omniglot net)."""
    strategy: Strategy = "auto"
    """MAML/Meta-SGD meta-training over tasks: one explicit batched graph ("batched": batched
    matmuls, grouped convs), a vmapped graph ("vmap"), a Python loop ("loop"), or "auto" (the
    fastest measured: batched for the MLP, vmap for the conv net); same numbers. ANIL, Reptile
    and evaluation always vmap unless "loop"."""
    eval_chunk: Size = 50
    """Tasks per evaluation chunk (bounds memory)."""
    grad_chunks: Size = 1
    """The meta-gradient is the sum, in order, of the gradients of this many fixed chunks of the
    meta-batch's tasks (each weighted by its share of the tasks). Training depends on it but never
    on the number of ``torchrun`` processes, which must divide it."""
    precision: Precision = "float32"
    """Arithmetic of meta-training's forward passes: "bfloat16" runs convolutions and matrix
    products in bfloat16 under autocast (fast on CPUs with AVX-512 BF16 or AMX, and on CUDA);
    parameters, optimiser state and evaluation stay float32."""


def autocast(device: torch.device, precision: Precision) -> Any:
    """The autocast context of ``precision`` on ``device`` (a no-op for float32)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def family_default(kind: str, ways: int, regression: Any, classification: Any, many: Any) -> Any:
    """The default for a regression family, an N-way family, or one with 20 or more ways."""
    if kind == "regression":
        return regression
    return many if ways >= 20 else classification


class GradientFewShotLearner(MetaLearner):
    """Common machinery: builds the family and backbone, samples meta-batches from the train split
    with the learner's own generator, steps Adam on :meth:`meta_loss`, evaluates with
    :meth:`task_curve`, and saves / restores everything for bit-identical resumption."""

    config: GradientConfig
    distributed = True

    def __init__(
        self, config: GradientConfig, *, seed: int = 0, device: str | torch.device = "cpu"
    ):
        super().__init__(config, seed=seed, device=device)
        self.family = make_fewshot_family(config.family)
        self.kind = self.family.kind
        ways = getattr(self.family.config, "ways", 0)
        self.metric = "accuracy" if self.kind == "classification" else "mse"
        self.higher_is_better = self.kind == "classification"
        self.meta_batch = config.meta_batch or family_default(self.kind, ways, 25, 32, 16)
        self.inner_steps = config.inner_steps or family_default(self.kind, ways, 1, 1, 5)
        self.inner_lr = config.inner_lr or family_default(self.kind, ways, 0.01, 0.4, 0.1)
        self.default_eval_steps = (
            config.eval_steps
            if config.eval_steps is not None
            else family_default(self.kind, ways, 10, 3, 5)
        )
        with torch.random.fork_rng(devices=[]):  # module init draws from the global generator
            torch.manual_seed(derive_seed(seed, self.name, "init"))
            self.model = make_backbone(
                self.family.input_shape,
                self.family.output_dim,
                hidden=config.filters if len(self.family.input_shape) == 3 else None,
                pool=config.pool,
            ).to(self.device)
        self.loss = functional_loss(self.model, self.kind)
        self.generator = make_generator(seed, self.name, "meta-batch")
        self.optimizer = self.make_optimizer()
        self.world = distributed.current()
        self.chunks = distributed.chunk_bounds(self.meta_batch, config.grad_chunks)
        """Tasks ``[lo, hi)`` of each of the meta-batch's gradient chunks."""
        distributed.check_chunks(self.world, config.grad_chunks)

    # --- hooks for the algorithms --------------------------------------------------------------
    def make_optimizer(self) -> torch.optim.Optimizer | None:
        """Adam over :meth:`meta_parameters` (Reptile returns None: it has its own outer rule)."""
        return torch.optim.Adam(self.meta_parameters(), lr=self.config.outer_lr)

    def meta_parameters(self) -> list[torch.nn.Parameter]:
        """Everything the outer loop learns (Meta-SGD adds its step sizes)."""
        return list(self.model.parameters())

    def meta_loss(self, batch: FewShotBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The outer loss of one meta-batch and extra metrics to log."""
        raise NotImplementedError

    def adaptation_lr(self) -> float | Mapping[str, Tensor]:
        """The inner step size of evaluation: one number (Meta-SGD: one tensor per entry)."""
        return self.inner_lr

    def task_curve(
        self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor, steps: int
    ) -> Tensor:
        """Query metric after 0..steps inner steps for one task, ``[steps + 1]``: SGD on every
        parameter at :meth:`adaptation_lr` (ANIL overrides it to adapt only the head)."""
        support, query = (xs, ys), (xq, yq)
        lr = self.adaptation_lr()
        return sgd_curve(self.loss, self.query_metric, params, support, query, steps=steps, lr=lr)

    def task_adapt(self, params: Params, xs: Tensor, ys: Tensor, steps: int) -> Params:
        """One task's adapted parameters after ``steps`` inner steps (SGD, as :meth:`task_curve`)."""
        return sgd_adapt(self.loss, params, xs, ys, steps=steps, lr=self.adaptation_lr())

    def query_losses(
        self,
        batch: FewShotBatch,
        *,
        lr: float | Mapping[str, Tensor],
        first_order: bool = False,
    ) -> Tensor:
        """MAML's objective for each task, ``[T]``: the query loss after ``inner_steps`` SGD steps
        at ``lr`` from the current parameters (:func:`maml_query_losses`)."""
        return maml_query_losses(
            self.model,
            self.kind,
            self.params(),
            batch,
            steps=self.inner_steps,
            lr=lr,
            first_order=first_order,
            strategy=self.config.strategy,
        )

    # --- the outer loop ------------------------------------------------------------------------
    def params(self) -> Params:
        """The model's parameters by name (the meta-learned initialisation)."""
        return dict(self.model.named_parameters())

    def sample_meta_batch(self) -> FewShotBatch:
        return self.family.sample(
            self.meta_batch, "train", generator=self.generator, device=self.device
        )

    def meta_train_step(self) -> dict[str, float | Tensor]:
        """One Adam step on :meth:`meta_loss` of a meta-batch, its gradient summed over the
        ``grad_chunks`` chunks of tasks (each process computes its share of them)."""
        batch = self.sample_meta_batch()
        assert self.optimizer is not None
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        keys: list[str] = []

        def chunk_loss(c: int) -> tuple[Tensor, Tensor]:
            lo, hi = self.chunks[c]
            with autocast(self.device, self.config.precision):
                loss, metrics = self.meta_loss(batch.chunk(lo, hi))
            keys[:] = ["meta_loss", *metrics]
            share = (hi - lo) / len(batch)
            values = [loss.detach(), *metrics.values()]
            return loss.float() * share, torch.stack([v.float() for v in values]) * share

        grads, stats = distributed.chunk_gradients(self.world, len(self.chunks), params, chunk_loss)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        self.optimizer.step()
        self.iteration += 1
        return dict(zip(keys, stats, strict=True))

    # --- evaluation hooks ----------------------------------------------------------------------
    def adaptation_curve(
        self, tasks: FewShotBatch, steps: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Query accuracy (or MSE) after 0..steps inner steps on each task's support set,
        ``[num_tasks, steps + 1]`` on the CPU. Deterministic: ``generator`` is not used."""
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        params = {k: v.detach() for k, v in self.params().items()}
        out = []
        for start in range(0, len(tasks), self.config.eval_chunk):
            chunk = tasks.chunk(start, start + self.config.eval_chunk).to(self.device)
            out.append(
                map_tasks(
                    lambda p, xs, ys, xq, yq: self.task_curve(p, xs, ys, xq, yq, steps),
                    (params,),
                    (chunk.support_x, chunk.support_y, chunk.query_x, chunk.query_y),
                    self.config.strategy,
                ).cpu()
            )
        return torch.cat(out)

    def adapt(
        self, tasks: FewShotBatch, steps: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Each task's adapted parameters after ``steps`` inner steps, ``[num_tasks, ...]``."""
        params = {k: v.detach() for k, v in self.params().items()}
        out: list[Params] = []
        for start in range(0, len(tasks), self.config.eval_chunk):
            chunk = tasks.chunk(start, start + self.config.eval_chunk).to(self.device)
            adapted = map_tasks(
                lambda p, xs, ys: self.task_adapt(p, xs, ys, steps),
                (params,),
                (chunk.support_x, chunk.support_y),
                self.config.strategy,
            )
            out.append({k: v.detach().cpu() for k, v in adapted.items()})
        return {k: torch.cat([o[k] for o in out]) for k in out[0]}

    def query_metric(self, params: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return prediction_metric(self.kind, functional_call(self.model, dict(params), (x,)), y)

    # --- checkpoints ---------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "generator": generator_state(self.generator),
            "iteration": self.iteration,
            **self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.load_extra_state(state)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        set_generator_state(self.generator, state["generator"])
        self.iteration = int(state["iteration"])
