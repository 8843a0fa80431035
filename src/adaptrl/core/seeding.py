"""Seeding. One integer seeds Python, NumPy and torch; task sampling and evaluation use their own
``torch.Generator`` derived from a seed and a purpose tag, so the same seed gives the same tasks
whatever else ran before."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, *tags: str | int) -> int:
    """A 63-bit seed derived from ``seed`` and purpose tags (domain separation by hashing).

    ``derive_seed(0, "tasks", "train")`` and ``derive_seed(0, "tasks", "test")`` give unrelated
    streams, so meta-train and meta-test tasks never share draws.
    """
    text = ":".join([str(int(seed)), *map(str, tags)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(
    seed: int, *tags: str | int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` ``(seed, *tags)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *tags) if tags else int(seed))
    return gen


def global_rng_state() -> dict[str, Any]:
    """The global generators' states, as JSON-friendly lists (for checkpoints)."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), *npst[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def generator_state(gen: torch.Generator) -> list[int]:
    """A generator's state as a list of ints (JSON-friendly)."""
    return gen.get_state().tolist()


def set_generator_state(gen: torch.Generator, state: list[int]) -> None:
    gen.set_state(torch.tensor(state, dtype=torch.uint8))
