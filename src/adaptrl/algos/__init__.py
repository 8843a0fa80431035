"""Meta-learners (layer 6): one file per algorithm, each registered in :data:`ALGOS` on import."""

# Algorithm modules (each registers itself on import); one per line.
from adaptrl.algos import (
    anil,  # noqa: F401
    hyper_policy,  # noqa: F401
    lstm_optimizer,  # noqa: F401
    maml,  # noqa: F401
    maml_rl,  # noqa: F401
    matching,  # noqa: F401
    meta_dqn,  # noqa: F401
    meta_q,  # noqa: F401
    metasgd,  # noqa: F401
    mktn,  # noqa: F401
    mpo,  # noqa: F401
    pearl,  # noqa: F401
    protonet,  # noqa: F401
    reptile,  # noqa: F401
    rl2,  # noqa: F401
)
from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import ALGOS, AlgoSpec, load_config, make_learner, register_algo

__all__ = ["ALGOS", "AlgoSpec", "MetaLearner", "load_config", "make_learner", "register_algo"]
