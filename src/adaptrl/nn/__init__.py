"""Networks (layer 3): MLP backbones and action-distribution heads, all usable functionally."""

from adaptrl.nn.heads import (
    CategoricalHead,
    DistSpec,
    GaussianHead,
    action_input_dim,
    encode_action,
    entropy,
    fisher_product,
    kl,
    log_prob,
    make_head,
    mode,
    sample,
    spec_for,
)
from adaptrl.nn.mlp import mlp

__all__ = [
    "CategoricalHead",
    "DistSpec",
    "GaussianHead",
    "action_input_dim",
    "encode_action",
    "entropy",
    "fisher_product",
    "kl",
    "log_prob",
    "make_head",
    "mlp",
    "mode",
    "sample",
    "spec_for",
]
