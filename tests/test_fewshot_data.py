"""The few-shot data layer: task batches, the families' contracts, splits, determinism, configs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from adaptrl.core.config import (
    config_from_dict,
    config_to_dict,
    load_yaml_config,
    save_yaml_config,
)
from adaptrl.core.errors import ConfigError, UnknownIdError
from adaptrl.core.seeding import make_generator
from adaptrl.fewshot import (
    FEWSHOT_FAMILIES,
    FewShotBatch,
    FewShotConfigUnion,
    SinusoidConfig,
    make_fewshot_family,
)


def gen(seed: int = 0) -> torch.Generator:
    return make_generator(seed)


def assert_batches_equal(a: FewShotBatch, b: FewShotBatch) -> None:
    for f in dataclasses.fields(FewShotBatch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f.name
        else:
            assert x == y, f.name


# --------------------------------------------------------------------------------------------
# sinusoid


def test_sinusoid_shapes_and_targets():
    fam = make_fewshot_family("sinusoid-v0")
    assert fam.kind == "regression" and fam.input_shape == (1,) and fam.output_dim == 1
    b = fam.sample(25, generator=gen())
    assert len(b) == 25 and (b.ways, b.shots, b.queries) == (0, 10, 10)
    assert b.support_x.shape == (25, 10, 1) and b.support_y.shape == (25, 10, 1)
    assert b.query_x.shape == (25, 10, 1) and b.query_y.shape == (25, 10, 1)
    for t in (b.support_x, b.support_y, b.query_x, b.query_y):
        assert t.dtype == torch.float32
    amp, phase = b.params[:, 0], b.params[:, 1]
    assert amp.min() >= 0.1 and amp.max() <= 5.0 and phase.min() >= 0 and phase.max() <= math.pi
    assert b.support_x.abs().max() <= 5.0 and b.query_x.abs().max() <= 5.0
    for x, y in ((b.support_x, b.support_y), (b.query_x, b.query_y)):
        expected = amp[:, None, None] * torch.sin(x - phase[:, None, None])
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(fam.curve(b.params, b.query_x), b.query_y)


def test_sinusoid_overrides_and_ranges():
    fam = make_fewshot_family("sinusoid-v0", amplitude=(1.0, 1.0), phase=(0.5, 0.5))
    b = fam.sample(4, generator=gen(), shots=5, queries=3)
    assert b.support_x.shape == (4, 5, 1) and b.query_y.shape == (4, 3, 1)
    torch.testing.assert_close(b.query_y, torch.sin(b.query_x - 0.5))
    with pytest.raises(ConfigError, match="no ways"):
        fam.sample(4, generator=gen(), ways=5)
    with pytest.raises(ConfigError, match="shots must be >= 1"):
        fam.sample(4, generator=gen(), shots=0)
    with pytest.raises(ConfigError, match="amplitude must be a"):
        SinusoidConfig(amplitude=(2.0, 1.0))


def test_sinusoid_determinism_and_independent_splits():
    fam = make_fewshot_family("sinusoid-v0")
    assert_batches_equal(fam.sample(8, generator=gen(3)), fam.sample(8, generator=gen(3)))
    assert not torch.equal(
        fam.sample(8, generator=gen(3)).params, fam.sample(8, generator=gen(4)).params
    )
    a = fam.tasks(8, "test", seed=1)
    assert_batches_equal(a, fam.tasks(8, "test", seed=1))
    params = {s: fam.tasks(50, s, seed=1).params for s in ("train", "val", "test")}
    for s, t in (("train", "val"), ("train", "test"), ("val", "test")):
        assert torch.cdist(params[s], params[t]).min() > 0
    assert not torch.equal(fam.tasks(8, "test", seed=2).params, a.params)
    # tasks() accepts the same overrides as sample()
    assert fam.tasks(3, "test", seed=1, shots=5).support_x.shape == (3, 5, 1)
    with pytest.raises(ConfigError, match="split must be one of"):
        fam.tasks(3, "eval")
    with pytest.raises(ConfigError, match="not ways_"):
        fam.tasks(3, "test", ways_=5)


# --------------------------------------------------------------------------------------------
# batches, registry, configs


def test_batch_chunk_and_to():
    b = make_fewshot_family("sinusoid-v0").sample(6, generator=gen())
    c = b.chunk(2, 5)
    assert len(c) == 3 and torch.equal(c.support_x, b.support_x[2:5])
    assert torch.equal(c.params, b.params[2:5]) and c.shots == b.shots
    assert_batches_equal(b.to("cpu"), b)


def test_registry_errors():
    assert "sinusoid-v0" in FEWSHOT_FAMILIES
    with pytest.raises(UnknownIdError, match="sinusoid-v0"):
        make_fewshot_family("sinusoid-v1")
    with pytest.raises(ConfigError, match="no option"):
        make_fewshot_family("sinusoid-v0", ways=5)
    fam = make_fewshot_family(SinusoidConfig(shots=5), queries=7)
    assert (fam.config.shots, fam.config.queries) == (5, 7)


@dataclasses.dataclass(frozen=True)
class _Holder:
    family: FewShotConfigUnion = dataclasses.field(default_factory=SinusoidConfig)  # type: ignore[valid-type]


@pytest.mark.parametrize("cfg", [SinusoidConfig(shots=5, amplitude=(0.5, 2.0))])
def test_config_yaml_round_trip(cfg, tmp_path):
    data = config_to_dict(cfg)
    assert data["family_id"] == cfg.family_id
    assert config_from_dict(type(cfg), data) == cfg
    path = save_yaml_config(_Holder(cfg), tmp_path / "c.yaml")
    assert load_yaml_config(_Holder, path) == _Holder(cfg)
