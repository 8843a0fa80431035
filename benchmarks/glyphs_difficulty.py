"""How hard is glyphs-v0? Raw-pixel nearest-neighbour accuracy on held-out characters.

The same baseline as the "Pixels" row of Matching Networks' Omniglot table (Vinyals et al. 2016,
Table 1): each query takes the label of the support image with the highest cosine similarity of raw
pixels. It needs no training, so it calibrates the set's difficulty against Omniglot's.

Run: ``OMP_NUM_THREADS=1 python benchmarks/glyphs_difficulty.py [--tasks 600] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import print_table
from adaptrl.eval.stats import mean_ci
from adaptrl.fewshot import make_fewshot_family

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
EVAL_SEED = 0


def pixel_nn_accuracy(family, tasks: int, ways: int, shots: int, queries: int) -> torch.Tensor:
    """Per-task accuracy of cosine nearest neighbour on raw pixels, over ``tasks`` test tasks."""
    gen = make_generator(EVAL_SEED, "glyphs-difficulty", ways, shots)
    out = []
    for start in range(0, tasks, 100):
        n = min(100, tasks - start)
        b = family.sample(n, "test", generator=gen, ways=ways, shots=shots, queries=queries)
        s = torch.nn.functional.normalize(b.support_x.flatten(2), dim=-1)
        q = torch.nn.functional.normalize(b.query_x.flatten(2), dim=-1)
        nearest = (q @ s.mT).argmax(-1)
        out.append((b.support_y.gather(1, nearest) == b.query_y).float().mean(1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    family = make_fewshot_family("glyphs-v0")
    rows, results = [], {}
    for ways, shots in SETTINGS:
        acc = pixel_nn_accuracy(family, args.tasks, ways, shots, args.queries)
        mean, half = mean_ci(acc.numpy())
        results[f"{ways}w{shots}s"] = {"mean": mean, "ci95": half, "tasks": args.tasks}
        rows.append((f"{ways}-way {shots}-shot", f"{100 * mean:.1f} ± {100 * half:.1f}"))
    print_table(
        f"glyphs-v0 pixel nearest neighbour (cosine), {args.tasks} test tasks, "
        f"{args.queries} queries per class, eval seed {EVAL_SEED}",
        ["setting", "accuracy % (95% CI)"],
        rows,
    )
    if args.out:
        write_json(args.out, {"provenance": provenance(seeds=[EVAL_SEED]), "accuracy": results})


if __name__ == "__main__":
    main()
