"""Gittins indices of Bernoulli arms with Beta posteriors, computed by calibration.

The index of an arm in posterior state Beta(a, b) is the per-step reward ``λ`` of a known "retirement"
arm that makes us indifferent between retiring now and pulling the unknown arm once more (and then
continuing optimally, still free to retire later). We compute it by dynamic programming, not by a
closed-form approximation.

Finite horizon, ``r`` pulls remaining (the index RL² Table 1 needs, since a trial has ``n`` pulls)::

    V(a, b, r; λ) = max(r λ,  C(a, b, r; λ)),   V(·, ·, 0; λ) = 0
    C(a, b, r; λ) = p (1 + V(a+1, b, r-1; λ)) + (1 - p) V(a, b+1, r-1; λ),   p = a / (a + b)

and ``G(a, b, r)`` is the root of ``D(λ) = C(a, b, r; λ) - r λ``. ``D`` is convex and piecewise
linear in ``λ`` (a maximum of linear functions), with slope <= -1, ``D(p) >= 0`` and ``D(1) <= 0``,
so the root is unique and lies in ``[p, 1]``.

For a *fixed* ``λ`` the recursion is shared by every start state, so we run it once for a whole grid
of ``λ`` values (float64 tensors ``[cells, grid]``) over the cells reachable from the prior Beta(1, 1)
and, for every cell, locate the grid interval where ``D`` changes sign. ``V`` is exact at the grid
points; inside the interval we also carry ``dV/dλ`` through the recursion, so that the zeros of the
two end tangents (lower bounds, exact when ``D`` has at most one kink inside) and of the chord (an
upper bound) bracket the root; we return the lower one. With the default 512 points the error
stays below 1e-4: the tests compare the table with a per-cell bisection
(:func:`finite_horizon_index_bisect`); docs/results.md has the measured errors.

Cost: cells ``~H^3 / 6`` times grid points, reduced by skipping, per chunk of ``λ``, the cells
whose value is known in closed form (see :func:`_finite_horizon_flat`); memory stays at a few
hundred MB. A table is computed once per horizon (seconds for long horizons; timings in
docs/results.md) and then read from the cache.

Discounted (infinite horizon, factor ``γ``): the same calibration with retirement value
``λ / (1 - γ)`` and ``C = p (1 + γ V(a+1, b)) + (1 - p) γ V(a, b+1)``; the recursion is truncated at
``a + b = N`` with terminal value ``max(λ, p) / (1 - γ)`` (as if nothing more were learned from
there on). That terminal value underestimates the true value by at most ``1 / (1 - γ)``, reached
``N - (a + b)`` steps later, so the index error is below ``γ ** (N - a - b)`` times that (slope of
``D`` <= -1); we pick ``N`` so that this bound is below ``tol`` (1e-7 by default).

Tables are cached in memory and on disk as safetensors in ``$ADAPTRL_CACHE/gittins`` (default
``~/.cache/adaptrl/gittins``), written atomically; a file that cannot be read or does not match its
key is recomputed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from adaptrl.core.checkpoint import load_checkpoint, save_checkpoint
from adaptrl.core.errors import CheckpointError, ConfigError

#: Bump when the computation changes, so that stale cache files are ignored.
CACHE_VERSION = 2  # tables stored through core.checkpoint (hash-checked)
DEFAULT_GRID = 512
#: Grid points per chunk of λ (bounds memory; the chunks overlap by one point).
_CHUNK = 64

_MEMORY: dict[tuple, torch.Tensor] = {}


# --------------------------------------------------------------------------------------------
# Layout: cells of one "layer" (fixed remaining pulls r) are ordered by level n = s + f (pulls of
# this arm so far), then by successes s. Level n starts at n (n + 1) / 2.
# --------------------------------------------------------------------------------------------
def _tri(n: int) -> int:
    """Number of cells in levels 0..n-1."""
    return n * (n + 1) // 2


def _layer_cells(levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Successes and failures of the cells of levels ``0..levels-1`` in layout order."""
    n = torch.repeat_interleave(torch.arange(levels), torch.arange(1, levels + 1))
    s = torch.arange(_tri(levels)) - n * (n + 1) // 2
    return s, n - s


def _cache_dir() -> Path:
    root = os.environ.get("ADAPTRL_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "adaptrl"
    return base / "gittins"


def _load(path: Path, expect_shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached table, or ``None`` if missing, truncated, tampered with (hash-checked by
    :func:`~adaptrl.core.checkpoint.load_checkpoint`) or of the wrong shape."""
    try:
        tensors, _ = load_checkpoint(path)
    except CheckpointError:
        return None
    table = tensors.get("index")
    if table is None or tuple(table.shape) != expect_shape or table.dtype != torch.float64:
        return None
    if not bool(torch.isfinite(table).all()):
        return None
    return table


def _save(path: Path, table: torch.Tensor, meta: dict[str, str]) -> None:
    """Write atomically through the checkpoint format; a failure to write only costs a recompute."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, {"index": table.contiguous()}, meta)
    except OSError:
        pass


def _cached(key: tuple, name: str, shape: tuple[int, ...], compute, use_cache: bool):
    if key in _MEMORY:
        return _MEMORY[key]
    path = _cache_dir() / name
    table = _load(path, shape) if use_cache else None
    if table is None:
        table = compute()
        if use_cache:
            _save(path, table, {"key": repr(key)})
    _MEMORY[key] = table
    return table


def _grid(size: int) -> torch.Tensor:
    if size < 3:
        raise ConfigError(f"the λ grid needs at least 3 points, got {size}")
    return torch.linspace(0.0, 1.0, size, dtype=torch.float64)


def _roots(
    ndiff: torch.Tensor, slope: torch.Tensor, retire_slope: float, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Root in λ of every row of ``D = -ndiff`` (convex, decreasing), an upper bound of its error,
    and whether the sign change lies in this chunk of the grid.

    ``slope - retire_slope`` is a subgradient of ``D`` at each grid point. Between the two grid
    points around the sign change the chord's zero is an upper bound of the root and the zeros of
    the two tangents are lower bounds (a convex function lies above its tangents and below its chords);
    with at most one kink inside the interval the larger tangent zero is exact. We return that
    lower bound and ``gap`` = chord zero minus it.
    """
    m = ndiff.shape[1]
    zero = torch.zeros(ndiff.shape[0], 1, dtype=ndiff.dtype)
    k = torch.searchsorted(ndiff, zero, right=True).squeeze(1)  # entries with D >= 0
    found = (k >= 1) & (k <= m - 1)
    j = k.clamp(1, m - 1)
    i0, i1 = (j - 1).unsqueeze(1), j.unsqueeze(1)
    d0, d1 = -ndiff.gather(1, i0).squeeze(1), -ndiff.gather(1, i1).squeeze(1)
    g0 = slope.gather(1, i0).squeeze(1) - retire_slope
    g1 = slope.gather(1, i1).squeeze(1) - retire_slope
    l0, l1 = lam[j - 1], lam[j]
    chord = l0 + d0 / (d0 - d1) * (l1 - l0)
    lower = torch.maximum(l0 - d0 / g0, l1 - d1 / g1).clamp(min=l0)
    lower = torch.minimum(lower, chord)
    return lower, chord - lower, found


# --------------------------------------------------------------------------------------------
# Finite horizon
# --------------------------------------------------------------------------------------------
def _finite_horizon_flat(horizon: int, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of every reachable cell, layers r = 1..horizon concatenated (see GittinsTable),
    and per cell an upper bound of their error.

    For each chunk of the λ grid (in increasing order), layer r stores per level n a contiguous
    range of cells: those that need the recursion and the children of the layer above's, whose
    values are known in closed form. ``x[:, 0]`` holds ``V(·; λ)`` and ``x[:, 1]`` its right
    derivative in λ, used to tighten the root (see :func:`_roots`). A cell needs the recursion
    unless pulling to the end is optimal (``λ < a / (a + b + r - 1)``, the smallest posterior mean
    reachable, so ``V = r p``) or retiring now is (its index lies below the chunk: found in an
    earlier chunk, or below the largest reachable mean ``(a + r - 1) / (a + b + r - 1)``;
    ``V = r λ``). Successes of these cells form a contiguous range per level (the index increases
    with successes).
    """
    h = horizon
    lam_all = _grid(grid)
    sizes = [_tri(h - r + 1) for r in range(1, h + 1)]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    out = torch.full((offsets[-1],), float("nan"), dtype=torch.float64)
    gap = torch.zeros(offsets[-1], dtype=torch.float64)
    levels = np.arange(h + 1)
    r_col = np.arange(h + 1)[:, None]
    d = (levels[None, :] + r_col + 1).astype(np.float64)  # a + b + r - 1
    n_found = np.zeros((h + 1, h + 1), dtype=np.int64)  # per (r, n): cells whose root is known
    reachable = levels[None, :] <= h - r_col
    eps = 1e-9
    for c0 in range(0, grid - 1, _CHUNK - 1):
        lam = lam_all[c0 : min(c0 + _CHUNK, grid)]
        m = lam.numel()
        l0, l1 = float(lam[0]), float(lam[-1])
        # active successes [s0, s1] per (r, n); r = 0 has V = 0 and nothing to compute
        s0 = np.maximum(np.floor((l0 - eps) * d - r_col + 1), 0).astype(np.int64)
        s0 = np.maximum(s0, n_found)
        s1 = np.minimum(np.floor((l1 + eps) * d) - 1, levels[None, :]).astype(np.int64)
        s1[0] = -1
        empty = s0 > s1
        # hull with the children of layer r + 1's active cells: successes [s0, s1 + 1] at level n
        cs0 = np.full_like(s0, h + 5)
        cs1 = np.full_like(s1, -1)
        cs0[:-1, 1:] = np.where(empty[1:, :-1], h + 5, s0[1:, :-1])
        cs1[:-1, 1:] = np.where(empty[1:, :-1], -1, s1[1:, :-1] + 1)
        hs0 = np.maximum(np.minimum(np.where(empty, h + 5, s0), cs0), 0)
        hs1 = np.minimum(np.maximum(np.where(empty, -1, s1), cs1), levels[None, :])
        count = np.where(reachable, np.maximum(hs1 - hs0 + 1, 0), 0)
        prev = prev_start = None
        for r in range(h + 1):
            # Each level's block holds its cells plus one pad row, so that the children of a
            # block are one contiguous run of the layer below: a single gather then serves as
            # both "down" (rows i) and "up" (rows i + 1) children. Pad rows hold garbage.
            cnt = count[r]
            blk = cnt + (cnt > 0)
            start = np.concatenate([[0], np.cumsum(blk)])
            total = int(start[-1])
            row_n = np.repeat(levels, blk)
            local = np.arange(total) - start[row_n]
            row_s = hs0[r, row_n] + local
            if r == 0 or total == 0:
                prev, prev_start = torch.zeros(total, 2, m, dtype=torch.float64), start
                continue
            row_n, row_s = row_n[:-1], row_s[:-1]  # the last pad row is never needed
            real = local[:-1] < cnt[row_n]
            rs, rn = torch.from_numpy(row_s), torch.from_numpy(row_n)
            p = ((rs + 1).double() / (rn + 2).double()).view(-1, 1, 1)
            pos = prev_start[row_n + 1] + row_s - hs0[r - 1, row_n + 1]
            pos = np.append(pos, pos[-1] + 1)
            if prev.shape[0]:
                y = prev.index_select(0, torch.from_numpy(np.clip(pos, 0, prev.shape[0] - 1)))
            else:  # only closed-form cells in this layer: their children are not needed
                y = torch.zeros(pos.size, 2, m, dtype=torch.float64)
            x = torch.lerp(y[:-1], y[1:], p)  # p V_up + (1 - p) V_down, and the same for slopes
            del y
            value, slope = x[:, 0], x[:, 1]
            value.add_(p[:, 0])  # + p: the reward of the pull
            retire = r * lam
            ndiff = retire - value  # r λ - C(λ), increasing
            active_np = real & (row_s >= s0[r, row_n]) & (row_s <= s1[r, row_n])
            root, err, found = _roots(ndiff, slope, r, lam)
            found &= torch.from_numpy(active_np)
            idx = (offsets[r - 1] + rn * (rn + 1) // 2 + rs)[found]
            out[idx] = root[found]
            gap[idx] = err[found]
            n_found[r] += np.bincount(row_n[found.numpy()], minlength=h + 1)
            slope.masked_fill_(ndiff >= 0, float(r))  # retiring is optimal: dV/dλ = r
            value.clamp_(min=retire)
            # cells kept only as children of the layer above: closed form
            fill = np.nonzero(real & ~active_np)[0]
            if fill.size:
                ret = torch.from_numpy(row_s[fill] < s0[r, row_n[fill]]).view(-1, 1)
                pf = p[fill].view(-1, 1)
                x[fill, 0] = torch.where(ret, retire, r * pf)
                x[fill, 1] = (ret.double() * r).expand(-1, m)
            prev, prev_start = x, start
    if bool(torch.isnan(out).any()):  # cannot happen: D(0) >= 0 > D(1) for every cell
        raise RuntimeError("Gittins calibration failed to bracket a root")
    return out, gap


class GittinsTable:
    """Finite-horizon Gittins indices ``G(1 + successes, 1 + failures, remaining)``.

    Only reachable cells are stored (``successes + failures <= horizon - remaining``): a dense
    ``[H+1, H+1, H+1]`` tensor would be ~6x larger (1 GB in float64 for H = 500). Index it like a
    tensor, ``table[s, f, r]``, with ints or broadcastable integer tensors.
    """

    def __init__(self, horizon: int, values: torch.Tensor):
        self.horizon = horizon
        self.values = values
        sizes = [_tri(horizon - r + 1) for r in range(1, horizon + 1)]
        self._offsets = torch.tensor([0, 0, *np.cumsum(sizes)[:-1].tolist()], dtype=torch.long)

    def to(self, device: str | torch.device) -> GittinsTable:
        """The same table with its values on ``device`` (move it once, not on every lookup)."""
        moved = GittinsTable.__new__(GittinsTable)
        moved.horizon, moved.values = self.horizon, self.values.to(device)
        moved._offsets = self._offsets.to(device)
        return moved

    def flat_index(self, s: torch.Tensor, f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Positions in :attr:`values` (no range checks; see :meth:`__getitem__`)."""
        n = s + f
        return self._offsets[r] + n * (n + 1) // 2 + s

    def lookup(self, s: torch.Tensor, f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Indices for integer tensors (broadcast), without range checks (for agents' hot loops)."""
        s, f, r = torch.broadcast_tensors(s, f, r)
        return self.values[self.flat_index(s, f, r)]

    def __getitem__(self, key: tuple) -> torch.Tensor:
        s, f, r = (torch.as_tensor(k, dtype=torch.long) for k in key)
        bad = (s < 0) | (f < 0) | (r < 1) | (s + f + r > self.horizon)
        if bool(bad.any()):
            raise IndexError(
                f"Gittins table of horizon {self.horizon} holds successes, failures >= 0 and "
                f"1 <= remaining <= horizon - successes - failures"
            )
        return self.lookup(s, f, r)

    def dense(self) -> torch.Tensor:
        """``[H+1, H+1, H+1]`` tensor indexed by (s, f, r), NaN where unreachable (small H only)."""
        h = self.horizon
        out = torch.full((h + 1, h + 1, h + 1), float("nan"), dtype=torch.float64)
        for r in range(1, h + 1):
            s, f = _layer_cells(h - r + 1)
            out[s, f, r] = self.lookup(s, f, torch.full_like(s, r))
        return out


def finite_horizon_gittins_table(
    horizon: int, grid: int = DEFAULT_GRID, *, use_cache: bool = True
) -> GittinsTable:
    """Finite-horizon Gittins indices for every state reachable from Beta(1, 1) within ``horizon``
    pulls: ``table[s, f, r]`` is the index of Beta(1 + s, 1 + f) with ``r`` pulls remaining."""
    if horizon < 1:
        raise ConfigError(f"the horizon must be >= 1, got {horizon}")
    key = ("finite", int(horizon), int(grid), CACHE_VERSION)
    size = sum(_tri(horizon - r + 1) for r in range(1, horizon + 1))
    values = _cached(
        key,
        f"finite-h{horizon}-grid{grid}-v{CACHE_VERSION}.safetensors",
        (size,),
        lambda: _finite_horizon_flat(horizon, grid)[0],
        use_cache,
    )
    return GittinsTable(horizon, values)


def _root_in_index_range(diff, lo: float, tol: float) -> float:
    """The root of the calibration difference in ``[p, 1]``, where it is >= 0 at ``p`` and <= 0
    at 1 (Brent's method; the reference against which the grid tables are tested)."""
    from scipy.optimize import brentq

    if diff(1.0) >= 0:  # continuing is worth it even against a sure reward of 1 per pull
        return 1.0
    if diff(lo) <= 0:  # indifferent already at the posterior mean (e.g. one pull left)
        return lo
    return float(brentq(diff, lo, 1.0, xtol=tol))


def finite_horizon_index_bisect(a: float, b: float, r: int, tol: float = 1e-12) -> float:
    """Reference: the finite-horizon index of Beta(a, b) with ``r`` pulls left by bisection on λ,
    running the exact recursion over the cells reachable from (a, b) for each trial λ."""

    def diff(lam: float) -> float:
        # level d below the start has successes j = 0..d; V at remaining r - d
        v = np.zeros(r + 1)
        for d in range(r - 1, -1, -1):
            j = np.arange(d + 1)
            p = (a + j) / (a + b + d)
            cont = p * (1.0 + v[1 : d + 2]) + (1.0 - p) * v[: d + 1]
            if d == 0:
                return float(cont[0] - r * lam)
            v = np.maximum(cont, (r - d) * lam)
        raise AssertionError

    return _root_in_index_range(diff, a / (a + b), tol)


# --------------------------------------------------------------------------------------------
# Discounted
# --------------------------------------------------------------------------------------------
def truncation_depth(gamma: float, max_total: int, tol: float = 1e-7) -> int:
    """Total pulls ``N`` at which the discounted recursion stops so that indices of cells with
    ``s + f <= max_total`` are within ``tol`` (bound ``γ^(N - a - b) / (1 - γ)``, module doc)."""
    extra = math.log(tol * (1.0 - gamma)) / math.log(gamma)
    return max_total + max(1, math.ceil(extra))


def _check_gamma(gamma: float) -> None:
    if not 0.0 < gamma < 1.0:
        raise ConfigError(f"the discount gamma must be in (0, 1), got {gamma}")


def _discounted_dense(
    gamma: float, max_total: int, depth: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``[s, f]`` for ``s + f <= max_total`` (NaN elsewhere) and their error bounds."""
    lam_all = _grid(grid)
    out = torch.full((max_total + 1, max_total + 1), float("nan"), dtype=torch.float64)
    gap = torch.zeros_like(out)
    scale = 1.0 / (1.0 - gamma)
    for c0 in range(0, grid - 1, _CHUNK - 1):
        lam = lam_all[c0 : min(c0 + _CHUNK, grid)]
        retire = lam * scale
        # x[:, 0] = V(·; λ), x[:, 1] = dV/dλ, level by level in m = s + f, from the terminal one
        s = torch.arange(depth + 1, dtype=torch.float64).view(-1, 1)
        p = (s + 1) / (depth + 2)
        x = torch.stack([torch.maximum(p, lam) * scale, (lam >= p).double() * scale], dim=1)
        for m in range(depth - 1, -1, -1):
            p = ((torch.arange(m + 1, dtype=torch.float64) + 1) / (m + 2)).view(-1, 1, 1)
            x_up, x_down = x[1 : m + 2] * gamma, x[: m + 1] * gamma
            x_up[:, 0].add_(1.0)
            cont = torch.lerp(x_down, x_up, p)
            diff = cont[:, 0] - retire
            if m <= max_total:
                root, err, found = _roots(-diff, cont[:, 1], scale, lam)
                si = torch.arange(m + 1)
                out[si, m - si] = torch.where(found, root, out[si, m - si])
                gap[si, m - si] = torch.where(found, err, gap[si, m - si])
            stop = diff <= 0
            cont[:, 0] = torch.where(stop, retire, cont[:, 0])
            cont[:, 1] = torch.where(stop, scale, cont[:, 1])
            x = cont
    return out, gap


def discounted_gittins_table(
    gamma: float,
    max_total: int,
    grid: int = DEFAULT_GRID,
    *,
    tol: float = 1e-7,
    use_cache: bool = True,
) -> torch.Tensor:
    """Discounted Gittins indices ``[max_total + 1, max_total + 1]``: entry ``[s, f]`` is the index
    of Beta(1 + s, 1 + f) for ``s + f <= max_total`` (NaN elsewhere)."""
    _check_gamma(gamma)
    if max_total < 0:
        raise ConfigError(f"max_total must be >= 0, got {max_total}")
    depth = truncation_depth(gamma, max_total, tol)
    key = ("discounted", float(gamma).hex(), int(max_total), depth, int(grid), CACHE_VERSION)
    return _cached(
        key,
        f"discounted-g{float(gamma).hex()}-n{max_total}-d{depth}-grid{grid}-v{CACHE_VERSION}"
        ".safetensors",
        (max_total + 1, max_total + 1),
        lambda: _discounted_dense(gamma, max_total, depth, grid)[0],
        use_cache,
    )


def discounted_index_bisect(
    a: float, b: float, gamma: float, depth: int | None = None, tol: float = 1e-12
) -> float:
    """Reference: the discounted index of Beta(a, b) by bisection on λ, with the recursion run over
    the cells reachable from (a, b) down to ``depth`` further pulls (default: error < 1e-9)."""
    _check_gamma(gamma)
    if depth is None:
        depth = truncation_depth(gamma, 0, 1e-9)
    scale = 1.0 / (1.0 - gamma)

    def diff(lam: float) -> float:
        j = np.arange(depth + 1)
        v = np.maximum((a + j) / (a + b + depth), lam) * scale
        for d in range(depth - 1, -1, -1):
            j = np.arange(d + 1)
            p = (a + j) / (a + b + d)
            cont = p * (1.0 + gamma * v[1 : d + 2]) + (1.0 - p) * gamma * v[: d + 1]
            if d == 0:
                return float(cont[0] - lam * scale)
            v = np.maximum(cont, lam * scale)
        raise AssertionError

    return _root_in_index_range(diff, a / (a + b), tol)
