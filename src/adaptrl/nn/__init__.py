"""Networks (layer 3): MLP backbones and action-distribution heads, all usable functionally."""

from adaptrl.nn.context import (
    ProbabilisticContextEncoder,
    RecurrentContextEncoder,
    kl_to_standard_normal,
    posterior_from_sums,
    product_of_gaussians,
    transition_dim,
    transition_features,
)
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
    "ProbabilisticContextEncoder",
    "RecurrentContextEncoder",
    "action_input_dim",
    "encode_action",
    "entropy",
    "fisher_product",
    "kl",
    "kl_to_standard_normal",
    "log_prob",
    "make_head",
    "mlp",
    "mode",
    "posterior_from_sums",
    "product_of_gaussians",
    "sample",
    "spec_for",
    "transition_dim",
    "transition_features",
]
