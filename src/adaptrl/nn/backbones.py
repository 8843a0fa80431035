"""Few-shot backbones: the 1-40-40-1 ReLU MLP (sinusoid) and the 4-block conv net (images).

Both are ordinary ``nn.Module`` s made of a ``trunk`` (the embedding, used alone by metric
learners such as Prototypical Networks) and a linear ``head``. Gradient meta-learners use them
functionally: ``torch.func.functional_call(model, params, (x,))`` with ``params`` a dict of
tensors named like ``model.named_parameters()`` (``"trunk.…"`` and ``"head.…"``).

BatchNorm here always normalises with the statistics of the batch it is given and keeps no
running statistics (the MAML convention): under ``vmap`` over tasks every task is normalised with
its own statistics, training and test behave alike, and nothing is written in place, so the layer
composes with ``grad`` to any order. :func:`forward_tasks` evaluates a backbone for many tasks
with their own parameters as one explicit graph (batched matmuls, grouped convolutions), an
alternative to ``vmap`` that is faster for some shapes (see ``adaptrl bench fewshot-speed``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptrl.core.errors import ConfigError

Pool = Literal["max", "stride"]


def batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise ``x`` ``[B, C, ...]`` per channel with the batch's own mean and biased variance."""
    dims = [0, *range(2, x.dim())]
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    shape = [1, -1] + [1] * (x.dim() - 2)
    scale = weight.view(shape) * torch.rsqrt(var + eps)
    # x * scale + (bias - mean * scale): one op on the large tensor (and in its backward passes)
    return torch.addcmul(bias.view(shape) - mean * scale, x, scale)


class BatchStatNorm(nn.Module):
    """BatchNorm with batch statistics always and no running statistics (functional, vmap-safe)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return batch_norm(x, self.weight, self.bias, self.eps)


class ConvBlock(nn.Module):
    """3x3 conv, batch-statistics BatchNorm, ReLU, then 2x2 max-pool (or a stride-2 conv)."""

    def __init__(self, in_channels: int, out_channels: int, pool: Pool = "max"):
        super().__init__()
        stride = 2 if pool == "stride" else 1
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm = BatchStatNorm(out_channels)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pool == "max" else x


class ConvTrunk(nn.Module):
    """``blocks`` conv blocks, then flatten (max-pool) or a spatial mean (stride, as MAML's
    Omniglot net)."""

    def __init__(self, in_channels: int, hidden: int, blocks: int, pool: Pool):
        super().__init__()
        channels = [in_channels] + [hidden] * blocks
        self.blocks = nn.Sequential(
            *(ConvBlock(channels[i], channels[i + 1], pool) for i in range(blocks))
        )
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(x)
        return x.flatten(1) if self.pool == "max" else x.mean((2, 3))


class FewShotNet(nn.Module):
    """A ``trunk`` (embedding) followed by a linear ``head``; ``embed`` is the trunk alone."""

    trunk: nn.Module
    head: nn.Module
    feature_dim: int

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))

    def embed(self, x: Tensor) -> Tensor:
        """The features the head reads, ``[B, feature_dim]``."""
        return self.trunk(x)


class MLP(FewShotNet):
    """``in -> hidden[0] -> ... -> out`` with ReLUs; MAML's sinusoid net is
    ``MLP(1, 1, (40, 40))``."""

    def __init__(
        self, in_features: int = 1, out_features: int = 1, hidden: Sequence[int] = (40, 40)
    ):
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"MLP hidden sizes must be positive, got {tuple(hidden)}")
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], out_features)
        self.feature_dim = sizes[-1]


class ConvNet(FewShotNet):
    """The 4-block few-shot conv net (Vinyals et al. 2016; MAML; ProtoNets).

    ``hidden=64`` filters for 28x28 Omniglot-like images, ``hidden=32`` for 84x84 mini-ImageNet.
    ``pool="max"``: 2x2 max-pool after each block, features flattened (28x28 -> 64 features,
    84x84 -> 32*5*5). ``pool="stride"``: stride-2 convs and a spatial mean (MAML's Omniglot net).
    ``out_features=None`` gives an embedding-only net (``head`` is the identity).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_features: int | None = 5,
        *,
        hidden: int = 64,
        blocks: int = 4,
        image_size: int = 28,
        pool: Pool = "max",
    ):
        super().__init__()
        if pool not in ("max", "stride"):
            raise ConfigError(f"pool must be 'max' or 'stride', got {pool!r}")
        if hidden < 1 or blocks < 1:
            raise ConfigError(f"ConvNet needs hidden >= 1 and blocks >= 1, got {hidden}, {blocks}")
        size = image_size
        for _ in range(blocks):
            size = size // 2 if pool == "max" else (size + 1) // 2
        if size < 1:
            raise ConfigError(
                f"{blocks} blocks shrink a {image_size}x{image_size} image to nothing; "
                "use fewer blocks or larger images"
            )
        self.trunk = ConvTrunk(in_channels, hidden, blocks, pool)
        self.feature_dim = hidden * size * size if pool == "max" else hidden
        self.head = (
            nn.Identity() if out_features is None else nn.Linear(self.feature_dim, out_features)
        )
        self.pool = pool


def make_backbone(
    input_shape: Sequence[int],
    output_dim: int | None,
    *,
    hidden: int | Sequence[int] | None = None,
    pool: Pool = "max",
) -> FewShotNet:
    """The standard backbone for a family's input: an MLP for vectors, the conv net for images.

    ``hidden`` defaults to (40, 40) for an MLP, 64 filters for images up to 32 pixels and 32 above.
    """
    shape = tuple(input_shape)
    if len(shape) == 1:
        sizes = (40, 40) if hidden is None else hidden
        sizes = (sizes,) if isinstance(sizes, int) else tuple(sizes)
        return MLP(shape[0], 1 if output_dim is None else output_dim, sizes)
    if len(shape) == 3:
        channels, height, width = shape
        if height != width:
            raise ConfigError(f"the conv backbone needs square images, got {height}x{width}")
        filters = (64 if height <= 32 else 32) if hidden is None else hidden
        if not isinstance(filters, int):
            raise ConfigError(f"the conv backbone takes one filter count, got {filters!r}")
        return ConvNet(channels, output_dim, hidden=filters, image_size=height, pool=pool)
    raise ConfigError(f"no backbone for inputs of shape {shape}: expected [D] or [C, H, W]")


def parameters_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's parameters by name, as ``functional_call`` takes them (not copies)."""
    return dict(model.named_parameters())


def sub_params(params: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix.`` with the prefix removed (e.g. the trunk's own parameters)."""
    start = prefix + "."
    return {k[len(start) :]: v for k, v in params.items() if k.startswith(start)}


def mlp_tasks(net: MLP, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Run ``net`` for ``T`` tasks at once with their own parameters (batched matmuls).

    ``params`` hold a leading task dim for every entry of ``net.named_parameters()``; ``x`` is
    ``[T, B, in]``; returns ``[T, B, out]``. Equal to ``vmap(functional_call)`` over tasks.
    """
    h = x
    linears = [i for i, m in enumerate(net.trunk) if isinstance(m, nn.Linear)]
    for i in linears:
        h = F.relu(_batched_linear(params[f"trunk.{i}.weight"], params[f"trunk.{i}.bias"], h))
    return _batched_linear(params["head.weight"], params["head.bias"], h)


def _batched_linear(weight: Tensor, bias: Tensor, h: Tensor) -> Tensor:
    """``h @ weight^T + bias`` per task: ``[T, out, in]``, ``[T, out]``, ``[T, B, in]``."""
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def forward_tasks(net: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """:func:`mlp_tasks` or :func:`conv_net_tasks` for ``net``: ``[T, B, ...] -> [T, B, out]``."""
    if isinstance(net, MLP):
        return mlp_tasks(net, params, x)
    if isinstance(net, ConvNet):
        return conv_net_tasks(net, params, x)
    raise ConfigError(f"no multi-task forward for {type(net).__name__}; use vmap instead")


def conv_net_tasks(net: ConvNet, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Run ``net`` for ``T`` tasks at once, each with its own parameters, as grouped convolutions.

    ``params`` hold a leading task dim (``[T, *shape]``) for every entry of
    ``net.named_parameters()``; ``x`` is ``[T, B, C, H, W]``; returns ``[T, B, out]``. Equal to
    ``vmap(functional_call)`` over tasks: the T tasks' channels are laid side by side (channel
    ``t*C + c``), so each grouped conv sees only its task's channels and plain per-channel batch
    statistics are per-task statistics.
    """
    tasks, batch = x.shape[:2]
    h = x.transpose(0, 1).reshape(batch, tasks * x.shape[2], *x.shape[3:])
    for i, block in enumerate(net.trunk.blocks):
        pre = f"trunk.blocks.{i}."
        weight = params[pre + "conv.weight"]
        h = F.conv2d(
            h,
            weight.reshape(-1, *weight.shape[2:]),
            params[pre + "conv.bias"].reshape(-1),
            stride=block.conv.stride,
            padding=1,
            groups=tasks,
        )
        h = batch_norm(
            h, params[pre + "norm.weight"].reshape(-1), params[pre + "norm.bias"].reshape(-1)
        )
        h = F.relu(h)
        if net.pool == "max":
            h = F.max_pool2d(h, 2)
    h = h.reshape(batch, tasks, -1, *h.shape[2:])
    feats = h.flatten(2) if net.pool == "max" else h.mean((3, 4))
    feats = feats.transpose(0, 1)  # [T, B, F]
    if isinstance(net.head, nn.Identity):
        return feats
    return _batched_linear(params["head.weight"], params["head.bias"], feats)
