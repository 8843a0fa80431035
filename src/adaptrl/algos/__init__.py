"""Meta-learners (layer 6): one file per algorithm, each registered in :data:`ALGOS` on import."""

# Algorithm modules (each registers itself on import); one per line.
from adaptrl.algos import maml_rl  # noqa: F401
from adaptrl.algos.base import MetaLearner
from adaptrl.algos.registry import ALGOS, AlgoSpec, make_learner, register_algo

__all__ = ["ALGOS", "AlgoSpec", "MetaLearner", "make_learner", "register_algo"]
