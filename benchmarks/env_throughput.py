"""Env-steps/s of the batched families vs Gymnasium; same as `adaptrl bench env-throughput`."""

import tyro

from adaptrl.bench.throughput import ThroughputConfig, main

if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(ThroughputConfig)))
