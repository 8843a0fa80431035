"""Paper reproductions and speed benchmarks (layer 9), registered in :data:`BENCHES` on import."""

from adaptrl.bench import (  # noqa: F401  (one module per line below)
    baselines,
    compare,
    fewshot,
    fewshot_speed,
    maml_rl,
    maml_speed,
    metaworld,
    mpo,
    offpolicy,
    offpolicy_speed,
    rl2,
    scaling,
    sinusoid,
    speed,
    throughput,
)
from adaptrl.bench.registry import BENCHES, BenchSpec, register_bench

__all__ = ["BENCHES", "BenchSpec", "register_bench"]
