"""Paper reproductions and speed benchmarks (layer 9), registered in :data:`BENCHES` on import."""

from adaptrl.bench import baselines, maml_rl, maml_speed, throughput  # noqa: F401  (one module per line below)  # noqa: F401
from adaptrl.bench.registry import BENCHES, BenchSpec, register_bench

__all__ = ["BENCHES", "BenchSpec", "register_bench"]
