"""Tasks/s of the few-shot samplers, with a reference and a floor measured in the same run.

* ``glyphs-v0`` 5-way 1-shot (15 queries, 80 images a task), meta-batch 32:
  - *warm*: every meta-train character's distance field already cached (the steady state);
  - *cold*: a fresh family, so the first meta-batches also build their characters' fields;
  - *reference*: direct rendering, every image drawn from its own jittered segments by
    distance-to-segment at 28x28 (no per-character distance field), vectorised over images;
  - *floor*: writing the same number of float32 pixels from the generator (``torch.rand``);
  - *context*: forward + backward of the 4-block conv net (64 filters) on the same batch.
* ``sinusoid-v0`` K=10, 10 queries, meta-batch 25: ours vs the NumPy sampler of the MAML reference
  code (vectorised over tasks), and ``torch.rand`` of the same size as the floor.

Run: ``OMP_NUM_THREADS=1 python benchmarks/fewshot_sampling.py [--out results.json]
[--preview docs/pending/glyphs.png]``. Prints a table; writes JSON with provenance.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adaptrl.core.provenance import provenance, write_json
from adaptrl.core.seeding import make_generator
from adaptrl.core.table import print_table
from adaptrl.eval.stats import mean_ci
from adaptrl.fewshot import make_fewshot_family
from adaptrl.fewshot.glyphs import Glyphs, glyph_segments

SEED = 0


def rates(fn: Callable[[], object], tasks: int, repeats: int) -> list[float]:
    """Tasks/s of ``repeats`` timed calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(tasks / (time.perf_counter() - start))
    return out


def direct_render(fam: Glyphs, classes: torch.Tensor, per_class: int, gen: torch.Generator):
    """The reference: each image rendered from its own affine-jittered segments at full cost."""
    c, size = fam.config, fam.config.image_size
    segs = torch.stack([glyph_segments(c.alphabet_seed, int(i)) for i in classes.reshape(-1)])
    segs = segs.repeat_interleave(per_class, dim=0)  # [n, M, 2, 2]
    n = segs.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(c.rotation_deg)
    scale = c.scale[0] + (c.scale[1] - c.scale[0]) * torch.rand(n, generator=gen)
    rot = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1)
    pts = torch.einsum("nij,nmkj->nmki", rot.view(n, 2, 2) * scale.view(n, 1, 1), segs)
    pts = pts + (torch.rand(n, 1, 1, 2, generator=gen) * 2 - 1) * (c.translate_px * 2 / size)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    px = coords.repeat(size).view(1, -1, 1)
    py = coords.repeat_interleave(size).view(1, -1, 1)
    ax, ay = pts[:, None, :, 0, 0], pts[:, None, :, 0, 1]
    abx, aby = pts[:, None, :, 1, 0] - ax, pts[:, None, :, 1, 1] - ay
    t = (((px - ax) * abx + (py - ay) * aby) / (abx**2 + aby**2).clamp_min(1e-12)).clamp(0, 1)
    dist = ((px - ax - t * abx) ** 2 + (py - ay - t * aby) ** 2).amin(-1).sqrt() * (size / 2)
    return (1.5 - dist).clamp(0, 1).view(n, 1, size, size)


def conv4(channels: int = 64) -> nn.Module:
    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)
        )

    return nn.Sequential(block(1, channels), *(block(channels, channels) for _ in range(3)))


def save_preview(path: Path) -> None:
    """20 meta-test characters x 5 samples of glyphs-v0 as a PNG grid (4 rows of 5 characters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fam = make_fewshot_family("glyphs-v0")
    images = fam.render(torch.arange(1200, 1220), 5, make_generator(SEED, "preview"))[:, :, 0]
    s, pad = images.shape[-1], 2
    grid = torch.ones(4 * (s + 2 * pad), 25 * (s + pad) + 4 * 3 * pad)
    for i in range(20):
        row, col = divmod(i, 5)
        for j in range(5):
            y = row * (s + 2 * pad)
            x = (col * 5 + j) * (s + pad) + col * 3 * pad
            grid[y : y + s, x : x + s] = 1 - images[i, j]
    big = grid.repeat_interleave(3, 0).repeat_interleave(3, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, big.numpy(), cmap="gray", vmin=0, vmax=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--preview", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[float]] = {}
    gen = make_generator(SEED, "bench")

    # glyphs, 5-way 1-shot, 15 queries, meta-batch 32
    batch = 32
    fresh = make_fewshot_family("glyphs-v0")
    cold = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fresh.sample(batch, generator=gen)
        cold.append(batch / (time.perf_counter() - start))
    results["glyphs 5w1s cold cache"] = cold
    fam = make_fewshot_family("glyphs-v0")
    start = time.perf_counter()
    fam.fields(torch.tensor(fam.split_chars("train")))
    build_all = time.perf_counter() - start
    results["glyphs 5w1s warm (ours)"] = rates(
        lambda: fam.sample(batch, generator=gen), batch, args.repeats
    )
    classes = torch.randint(0, 1100, (batch, 5), generator=gen)
    results["glyphs 5w1s reference: direct rendering"] = rates(
        lambda: direct_render(fam, classes, 16, gen), batch, max(3, args.repeats // 4)
    )
    results["glyphs 5w1s floor: torch.rand of the batch"] = rates(
        lambda: torch.rand(batch, 80, 1, 28, 28, generator=gen), batch, args.repeats
    )
    net = conv4()
    x = fam.sample(batch, generator=gen)

    def step() -> None:
        z = net(torch.cat([x.support_x, x.query_x], 1).flatten(0, 1))
        z.square().mean().backward()

    results["context: conv-4 forward+backward on the batch"] = rates(step, batch, 5)

    # sinusoid, K=10, 10 queries, meta-batch 25
    sin = make_fewshot_family("sinusoid-v0")
    rng = np.random.default_rng(SEED)

    def maml_numpy() -> None:  # the MAML reference code's generator, vectorised over tasks
        amp = rng.uniform(0.1, 5.0, [25])
        phase = rng.uniform(0, np.pi, [25])
        x = rng.uniform(-5.0, 5.0, [25, 20, 1])
        y = amp[:, None, None] * np.sin(x - phase[:, None, None])
        torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))

    results["sinusoid K=10 (ours)"] = rates(lambda: sin.sample(25, generator=gen), 25, 200)
    results["sinusoid reference: MAML's NumPy sampler"] = rates(maml_numpy, 25, 200)
    results["sinusoid floor: torch.rand of the batch"] = rates(
        lambda: torch.rand(25, 20, 1, generator=gen), 25, 200
    )

    def fmt(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"

    rows = []
    for name, values in results.items():
        mean, half = mean_ci(values)
        rows.append(
            (name, f"{fmt(mean)} ± {fmt(half)}", fmt(float(np.median(values))), len(values))
        )
    print_table(
        "few-shot sampling, tasks/s (mean ± 95% CI over repeats)",
        ["what", "tasks/s", "median", "repeats"],
        rows,
    )
    warm = np.median(results["glyphs 5w1s warm (ours)"])
    ref = np.median(results["glyphs 5w1s reference: direct rendering"])
    floor = np.median(results["glyphs 5w1s floor: torch.rand of the batch"])
    print(
        f"glyphs warm: {warm / ref:.1f}x direct rendering, {floor / warm:.1f}x the floor's time; "
        f"one meta-batch of 32 tasks: {1000 * batch / warm:.1f} ms; building all 1100 train "
        f"characters' fields once: {build_all:.1f} s"
    )
    s_ours = np.median(results["sinusoid K=10 (ours)"])
    s_ref = np.median(results["sinusoid reference: MAML's NumPy sampler"])
    print(f"sinusoid: {s_ours / s_ref:.2f}x MAML's NumPy sampler")
    if args.out:
        payload = {
            "provenance": provenance(seeds=[SEED]),
            "tasks_per_s": results,
            "build_all_train_fields_s": build_all,
        }
        write_json(args.out, payload)
    if args.preview:
        save_preview(args.preview)


if __name__ == "__main__":
    main()
