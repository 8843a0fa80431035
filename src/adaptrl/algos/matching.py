"""Matching Networks (Vinyals et al. 2016): few-shot classification by attention over the support set.

A query's class distribution is an attention-weighted sum of the support labels,
``p(y | x, S) = sum_i a(x, x_i) onehot(y_i)``, with ``a`` a softmax over cosine similarities
between the query's embedding ``f(x)`` and each support embedding ``g(x_i)``. Training maximises
``log p(y | x, S)`` of the queries over episodes from meta-train classes.

Full context embeddings (FCE, the paper's section 2.1.2) make both embeddings depend on the whole
support set: ``g`` adds a bidirectional LSTM over the support embeddings to each one, and ``f``
refines the query embedding with an attention LSTM that reads the support set for ``K`` steps.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
import tyro
from torch import nn

from adaptrl.algos.episodic import (
    SupportSetClassifier,
    embed_episodes,
    embedding_net,
)
from adaptrl.algos.registry import AlgoSpec, register_algo
from adaptrl.core.config import Config, Ge, Positive, Size
from adaptrl.fewshot import FewShotBatch, FewShotConfigUnion, FewShotFamily
from adaptrl.fewshot.glyphs import GlyphsConfig


# --- kernels ---------------------------------------------------------------------------------
def cosine_attention(
    query_emb: torch.Tensor, support_emb: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Attention ``[T, Q, S]`` of each query over the support set: softmax of ``scale`` times the
    cosine similarities. The paper's softmax has no scale (1); every row sums to one.
    """
    q = F.normalize(query_emb, dim=-1, eps=1e-8)
    s = F.normalize(support_emb, dim=-1, eps=1e-8)
    return torch.softmax(scale * (q @ s.transpose(1, 2)), dim=-1)


def matching_probs(attention: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """Class probabilities ``[T, Q, ways]``: the attention-weighted sum of one-hot support labels."""
    return attention @ F.one_hot(support_y, ways).to(attention.dtype)


class FullContextEmbedding(nn.Module):
    """The FCE option: support embeddings read by a bidirectional LSTM, queries by an attention LSTM.

    ``g(x_i, S) = g'(x_i) + h_fwd_i + h_bwd_i`` (skip connection plus both directions), and for a
    query ``f(x, S)``, ``K`` processing steps of
    ``h_k, c_k = LSTM([f'(x), r_{k-1}], (h_{k-1}, c_{k-1}))``, ``h_k += f'(x)``,
    ``r_k = sum_i softmax_i(h_k . g_i) g_i``. The paper feeds ``r_{k-1}`` through the LSTM's hidden
    state (concatenated to ``h``); we concatenate it to the input instead so that a standard
    ``LSTMCell`` applies (same information, same number of steps).
    """

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.dim, self.steps = dim, steps
        self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.query_lstm = nn.LSTMCell(2 * dim, dim)

    def support(self, g: torch.Tensor) -> torch.Tensor:
        """``[T, S, D]`` -> ``[T, S, D]``: each support embedding in the context of the others."""
        out, _ = self.support_lstm(g)  # [T, S, 2D]: forward and backward hidden states
        return g + out[..., : self.dim] + out[..., self.dim :]

    def query(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``[T, Q, D]`` query embeddings refined by ``steps`` attention reads of ``g [T, S, D]``."""
        t, q, d = f.shape
        f_flat = f.reshape(t * q, d)
        h, c = torch.zeros_like(f_flat), torch.zeros_like(f_flat)
        r = torch.zeros_like(f_flat)
        for _ in range(self.steps):
            h, c = self.query_lstm(torch.cat([f_flat, r], -1), (h, c))
            h = h + f_flat
            att = torch.softmax(h.reshape(t, q, d) @ g.transpose(1, 2), dim=-1)  # [T, Q, S]
            r = (att @ g).reshape(t * q, d)
        return h.reshape(t, q, d)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.support(g)
        return self.query(f, g), g


class MatchingNet(nn.Module):
    """Embedding network, optional FCE, cosine attention: ``forward`` gives ``[T, Q, ways]`` probs."""

    def __init__(
        self, embedding: nn.Module, dim: int, fce: bool, fce_steps: int, scale: float = 1.0
    ):
        super().__init__()
        self.embedding, self.scale = embedding, scale
        self.fce = FullContextEmbedding(dim, fce_steps) if fce else None

    def attention(self, batch: FewShotBatch) -> torch.Tensor:
        f, g = embed_episodes(self.embedding, batch)
        if self.fce is not None:
            f, g = self.fce(f, g)
        return cosine_attention(f, g, self.scale)

    def forward(self, batch: FewShotBatch) -> torch.Tensor:
        return matching_probs(self.attention(batch), batch.support_y, batch.ways)


def matching_loss(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the query labels under the attention distribution."""
    picked = probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -picked.clamp_min(1e-12).log().mean()


# --- learner ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MatchingConfig(Config):
    """Matching Networks on a few-shot classification family."""

    family: Annotated[FewShotConfigUnion, tyro.conf.arg(name="")] = GlyphsConfig()
    """Few-shot classification family; its ways / shots / queries are the test episode shape."""
    iterations: Size = 2000
    """Outer iterations (each one Adam step on ``tasks_per_batch`` episodes)."""
    tasks_per_batch: Size = 1
    """Episodes per outer step (1, as ProtoNets: the same number of episodes per step)."""
    train_ways: Annotated[int, Ge(2)] | None = None
    """Ways of the training episodes; None = the family's ways."""
    fce: bool = False
    """Full context embeddings (bidirectional LSTM over the support set, attention LSTM queries)."""
    fce_steps: Size = 5
    """Processing steps ``K`` of the attention LSTM when --fce is on."""
    cosine_scale: Positive = 1.0
    """Multiply the cosine similarities by this before the softmax. 1 is the paper; with it the
    attention can never be sharp (cosines lie in [-1, 1]), so the loss stays high and learning is
    slow; later reimplementations use about 10."""
    filters: Size = 64
    """Filters of each of the 4 conv blocks."""
    lr: Positive = 1e-3
    """Adam learning rate."""
    grad_chunks: Size = 1
    """The gradient is the sum, in order, of the gradients of this many fixed chunks of the
    episodes (each weighted by its share). Training depends on it but never on the number of
    ``torchrun`` processes, which must divide it."""


class MatchingLearner(SupportSetClassifier):
    """Meta-trains the embeddings (and FCE LSTMs) with episodes; adapts by reading the support set."""

    name: ClassVar[str] = "matching"

    def __init__(self, config: MatchingConfig, *, seed: int, device: torch.device | str = "cpu"):
        def build(family: FewShotFamily) -> MatchingNet:
            emb = embedding_net(family.input_shape, config.filters)
            return MatchingNet(
                emb, emb.feature_dim, config.fce, config.fce_steps, config.cosine_scale
            )

        super().__init__(config, seed=seed, device=device, build=build)

    def query_logits(self, batch: FewShotBatch) -> torch.Tensor:
        return self.net(batch)

    def query_loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return matching_loss(scores, labels)

    @torch.no_grad()
    def adapt(
        self, tasks: FewShotBatch, steps: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The adapted model of each task: its (context) support embeddings and labels."""

        def support(b: FewShotBatch) -> torch.Tensor:
            g = embed_episodes(self.net.embedding, b)[1]  # same batch statistics as evaluation
            return g if self.net.fce is None else self.net.fce.support(g)

        g = self.eval_chunks(support, tasks)
        return {"support_embeddings": g, "support_labels": tasks.support_y.cpu()}


register_algo(
    AlgoSpec(
        name="matching",
        config_cls=MatchingConfig,
        learner_cls=MatchingLearner,
        description="Matching Networks: cosine attention over the support set (optional FCE)",
        kind="fewshot",
    )
)
