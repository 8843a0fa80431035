"""Gittins indices by calibration: exact small cases, agreement with per-cell bisection, the classic
discounted value, monotonicity, and the on-disk cache."""

from __future__ import annotations

import pytest
import torch

from adaptrl.baselines import gittins
from adaptrl.baselines.gittins import (
    GittinsTable,
    discounted_gittins_table,
    discounted_index_bisect,
    finite_horizon_gittins_table,
    finite_horizon_index_bisect,
)
from adaptrl.core.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache directory and an empty in-memory cache."""
    monkeypatch.setenv("ADAPTRL_CACHE", str(tmp_path))
    monkeypatch.setattr(gittins, "_MEMORY", {})


def cells(horizon: int):
    """Every (successes, failures, remaining) reachable from Beta(1, 1) within ``horizon`` pulls."""
    for r in range(1, horizon + 1):
        for n in range(horizon - r + 1):
            for s in range(n + 1):
                yield s, n - s, r


def test_one_pull_left_is_the_posterior_mean():
    table = finite_horizon_gittins_table(15)
    for s, f, r in cells(15):
        if r == 1:
            assert float(table[s, f, 1]) == pytest.approx((1 + s) / (2 + s + f), abs=1e-12)


def test_two_pulls_left_closed_form():
    # With 2 pulls left and retirement worth λ per pull, pulling once and then taking the better of
    # retiring and pulling again is worth p + p max(λ, p_up) + (1 - p) max(λ, p_down), where
    # p_up = (a + 1) / (a + b + 1) and p_down = a / (a + b + 1) < p. For λ in [p, p_up] this is
    # p + p p_up + (1 - p) λ; setting it equal to 2λ gives G = p (1 + p_up) / (1 + p), which indeed
    # lies in [p, p_up].
    table = finite_horizon_gittins_table(12)
    for s, f, r in cells(12):
        if r != 2:
            continue
        a, b = 1 + s, 1 + f
        p, p_up = a / (a + b), (a + 1) / (a + b + 1)
        expected = p * (1 + p_up) / (1 + p)
        assert float(table[s, f, 2]) == pytest.approx(expected, abs=1e-10)
        assert finite_horizon_index_bisect(a, b, 2) == pytest.approx(expected, abs=1e-10)
    assert float(table[0, 0, 2]) == pytest.approx(5 / 9, abs=1e-12)


def test_grid_method_agrees_with_per_cell_bisection():
    horizon = 12
    table = finite_horizon_gittins_table(horizon)
    worst = max(
        abs(float(table[s, f, r]) - finite_horizon_index_bisect(1 + s, 1 + f, r))
        for s, f, r in cells(horizon)
    )
    assert worst < 1e-4


def test_error_bound_holds_on_a_coarse_grid():
    # With only 64 grid points the interpolation is visibly approximate; the reported per-cell
    # bracket (tangent zero .. chord zero) must still contain the exact index.
    horizon = 14
    values, gap = gittins._finite_horizon_flat(horizon, 64)
    table = GittinsTable(horizon, values)
    assert float(gap.max()) > 1e-4  # the test is not vacuous
    for s, f, r in cells(horizon):
        exact = finite_horizon_index_bisect(1 + s, 1 + f, r)
        i = int(table.flat_index(torch.tensor(s), torch.tensor(f), torch.tensor(r)))
        assert -1e-12 <= exact - float(values[i]) <= float(gap[i]) + 1e-12


def test_finite_horizon_monotone_and_bounded():
    h = 30
    dense = finite_horizon_gittins_table(h).dense()
    s = torch.arange(h + 1).view(-1, 1, 1)
    f = torch.arange(h + 1).view(1, -1, 1)
    mean = ((1 + s).double() / (2 + s + f)).expand_as(dense)
    ok = ~torch.isnan(dense)
    assert int(ok.sum()) == sum(1 for _ in cells(h))
    assert bool((dense[ok] >= mean[ok] - 1e-12).all()) and bool((dense[ok] <= 1.0).all())
    tol = 1e-9
    more_successes = dense[1:, :, :] - dense[:-1, :, :]
    more_failures = dense[:, 1:, :] - dense[:, :-1, :]
    more_remaining = dense[:, :, 1:] - dense[:, :, :-1]
    for diff, sign in ((more_successes, 1), (more_failures, -1), (more_remaining, 1)):
        d = diff[~torch.isnan(diff)] * sign
        assert d.numel() > 1000
        assert float(d.min()) > -tol
    # strictly: a success raises the index, a failure lowers it
    assert float(more_successes[~torch.isnan(more_successes)].min()) > 0
    assert float(more_failures[~torch.isnan(more_failures)].max()) < 0


def test_discounted_classic_value():
    # Gittins' tables: the index of Beta(1, 1) at discount 0.9 is 0.7029.
    table = discounted_gittins_table(0.9, 20)
    assert float(table[0, 0]) == pytest.approx(0.7029, abs=5e-5)
    reference = discounted_index_bisect(1, 1, 0.9)
    assert reference == pytest.approx(0.7029, abs=5e-5)
    assert float(table[0, 0]) == pytest.approx(reference, abs=1e-6)
    for s, f in [(0, 3), (2, 1), (5, 7)]:
        assert float(table[s, f]) == pytest.approx(
            discounted_index_bisect(1 + s, 1 + f, 0.9), abs=2e-5
        )
    assert torch.isnan(table[15, 6])  # outside s + f <= 20


def test_discounted_monotone_and_above_the_mean():
    t = discounted_gittins_table(0.95, 40)
    s = torch.arange(41).view(-1, 1)
    f = torch.arange(41).view(1, -1)
    ok = ~torch.isnan(t)
    mean = ((1 + s).double() / (2 + s + f)).expand_as(t)
    assert bool((t[ok] > mean[ok]).all())
    ds, df = t[1:] - t[:-1], t[:, 1:] - t[:, :-1]
    assert float(ds[~torch.isnan(ds)].min()) > 0
    assert float(df[~torch.isnan(df)].max()) < 0
    # a longer effective horizon (larger gamma) values exploration more
    assert float(discounted_gittins_table(0.9, 5)[0, 0]) < float(t[0, 0])


def test_cache_on_disk_roundtrip_and_corruption(tmp_path):
    first = finite_horizon_gittins_table(9)
    files = list((tmp_path / "gittins").glob("*.safetensors"))
    assert len(files) == 1 and not list((tmp_path / "gittins").glob("*.tmp"))
    gittins._MEMORY.clear()
    again = finite_horizon_gittins_table(9)
    assert torch.equal(first.values, again.values)
    files[0].write_bytes(b"not a safetensors file")
    gittins._MEMORY.clear()
    recomputed = finite_horizon_gittins_table(9)
    assert torch.equal(first.values, recomputed.values)
    # the corrupt file was replaced by a valid one
    gittins._MEMORY.clear()
    assert gittins._load(files[0], (first.values.numel(),)) is not None
    # a still-readable file whose numbers were altered fails its hash check and is not used
    data = bytearray(files[0].read_bytes())
    data[-3] ^= 0x01
    files[0].write_bytes(bytes(data))
    assert gittins._load(files[0], (first.values.numel(),)) is None
    assert torch.equal(finite_horizon_gittins_table(9).values, first.values)


def test_table_indexing_and_errors():
    table = finite_horizon_gittins_table(6)
    s = torch.tensor([[0, 1], [2, 0]])
    f = torch.tensor([[0, 0], [1, 3]])
    out = table[s, f, 2]
    assert out.shape == (2, 2)
    assert float(out[0, 0]) == pytest.approx(5 / 9)
    with pytest.raises(IndexError):
        table[3, 3, 1]  # 3 + 3 + 1 > 6
    with pytest.raises(IndexError):
        table[0, 0, 0]
    with pytest.raises(ConfigError):
        finite_horizon_gittins_table(0)
    with pytest.raises(ConfigError):
        discounted_gittins_table(1.0, 10)
