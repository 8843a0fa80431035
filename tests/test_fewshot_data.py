"""The few-shot data layer: task batches, the families' contracts, splits, determinism, configs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from adaptrl.core.config import (
    config_from_dict,
    config_to_dict,
    load_yaml_config,
    parse_cli,
    save_yaml_config,
)
from adaptrl.core.errors import ConfigError, UnknownIdError
from adaptrl.core.seeding import make_generator
from adaptrl.fewshot import (
    FEWSHOT_FAMILIES,
    FewShotBatch,
    FewShotConfigUnion,
    FewShotContractError,
    Glyphs,
    GlyphsConfig,
    ImageFolderConfig,
    SinusoidConfig,
    check_fewshot_family,
    make_fewshot_family,
)
from adaptrl.fewshot.glyphs import glyph_segments


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


@pytest.mark.parametrize(
    "cfg",
    [
        SinusoidConfig(shots=5, amplitude=(0.5, 2.0)),
        GlyphsConfig(ways=20, rotations=True),
        ImageFolderConfig(data=Path("/data/omniglot"), rotations=True, layout="omniglot"),
    ],
)
def test_config_yaml_round_trip(cfg, tmp_path):
    data = config_to_dict(cfg)
    assert data["family_id"] == cfg.family_id
    assert config_from_dict(type(cfg), data) == cfg
    path = save_yaml_config(_Holder(cfg), tmp_path / "c.yaml")
    assert load_yaml_config(_Holder, path) == _Holder(cfg)


# --------------------------------------------------------------------------------------------
# shared checks for classification families


def assert_classification_batch(b: FewShotBatch, tasks: int, ways: int, shots: int, queries: int):
    shape = b.support_x.shape[2:]
    assert len(b) == tasks and (b.ways, b.shots, b.queries) == (ways, shots, queries)
    assert b.support_x.shape == (tasks, ways * shots, *shape)
    assert b.query_x.shape == (tasks, ways * queries, *shape)
    assert b.support_x.dtype == b.query_x.dtype == torch.float32
    assert b.support_y.dtype == b.query_y.dtype == torch.int64
    assert b.support_x.min() >= 0 and b.support_x.max() <= 1
    # labels 0..N-1, class-major, exactly `shots` / `queries` of each per task
    expected = torch.arange(ways).repeat_interleave(shots)
    assert torch.equal(b.support_y, expected.expand(tasks, -1))
    assert torch.equal(b.query_y, torch.arange(ways).repeat_interleave(queries).expand(tasks, -1))
    for y, n in ((b.support_y, shots), (b.query_y, queries)):
        counts = torch.nn.functional.one_hot(y, ways).sum(1)
        assert torch.all(counts == n)
    # N distinct classes per task
    assert b.classes.shape == (tasks, ways)
    assert torch.all(b.classes.sort(1).values.diff(dim=1) > 0)


def assert_splits_disjoint(fam, tasks: int = 40) -> None:
    """Every split's tasks use only that split's classes, and the splits share none."""
    pools = {s: set(fam.split_classes(s).tolist()) for s in ("train", "val", "test")}
    assert not pools["train"] & pools["val"]
    assert not pools["train"] & pools["test"]
    assert not pools["val"] & pools["test"]
    for split, pool in pools.items():
        b = fam.sample(tasks, split, generator=gen(1), ways=2, shots=1, queries=1)
        assert set(b.classes.reshape(-1).tolist()) <= pool


# --------------------------------------------------------------------------------------------
# glyphs


@pytest.fixture(scope="module")
def glyphs():
    return make_fewshot_family("glyphs-v0")


def test_glyphs_shapes_labels_and_dtypes(glyphs):
    assert glyphs.kind == "classification" and glyphs.input_shape == (1, 28, 28)
    assert glyphs.output_dim == 5
    b = glyphs.sample(3, generator=gen())
    assert_classification_batch(b, 3, 5, 1, 15)
    b = glyphs.sample(2, "test", generator=gen(), ways=20, shots=2, queries=3)
    assert_classification_batch(b, 2, 20, 2, 3)


def test_glyphs_splits_are_disjoint(glyphs):
    assert len(glyphs.split_classes("train")) == 1100
    assert len(glyphs.split_classes("val")) == 100
    assert len(glyphs.split_classes("test")) == 423
    assert_splits_disjoint(glyphs)


def test_glyphs_rotation_classes_stay_in_their_characters_split():
    fam = make_fewshot_family(
        "glyphs-v0", num_classes=60, train_classes=40, val_classes=10, rotations=True
    )
    assert len(fam.split_classes("train")) == 120 and len(fam.split_classes("test")) == 80
    assert_splits_disjoint(fam)
    assert set((fam.split_classes("test") // 4).tolist()) == set(range(40, 60))


def test_glyphs_are_deterministic(glyphs):
    a = glyphs.sample(4, "val", generator=gen(7))
    fresh = make_fewshot_family("glyphs-v0")  # an empty glyph cache gives the same images
    assert_batches_equal(a, fresh.sample(4, "val", generator=gen(7)))
    assert not torch.equal(a.support_x, glyphs.sample(4, "val", generator=gen(8)).support_x)
    assert_batches_equal(glyphs.tasks(2, "test", seed=3), fresh.tasks(2, "test", seed=3))
    # the geometry is a function of (alphabet_seed, class id) only
    assert torch.equal(glyph_segments(0, 17), glyph_segments(0, 17))
    assert not torch.equal(glyph_segments(0, 17), glyph_segments(1, 17))
    assert not torch.equal(glyph_segments(0, 17), glyph_segments(0, 18))


def _blur(images: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    r = torch.arange(-4, 5.0)
    k = torch.exp(-(r**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = torch.nn.functional.conv2d(images.reshape(-1, 1, 28, 28), k, padding=(0, 4))
    return torch.nn.functional.conv2d(x, k.transpose(2, 3), padding=(4, 0))


def test_glyph_classes_differ_more_than_samples_of_a_class(glyphs):
    images = glyphs.render(torch.arange(1200, 1240), 6, gen())  # [40, 6, 1, 28, 28]
    for x, ratio in ((images.flatten(2), 0.95), (_blur(images).reshape(40, 6, -1), 0.8)):
        within = torch.stack([torch.pdist(v).mean() for v in x]).mean()
        between = torch.cdist(x[:, 0], x[:, 0]).sum() / (40 * 39)
        assert within < ratio * between
    ink = images.flatten(2).mean(-1)
    assert torch.all((ink > 0.015) & (ink < 0.5))  # every image has ink and background
    # distinguishable but not trivial: pixel nearest neighbour, 5-way 1-shot, chance 0.2
    b = glyphs.tasks(100, "test", seed=0, queries=5)
    nearest = torch.cdist(b.query_x.flatten(2), b.support_x.flatten(2)).argmin(-1)
    accuracy = (b.support_y.gather(1, nearest) == b.query_y).float().mean()
    assert 0.4 < accuracy < 0.85


def test_glyph_rotation_classes_are_quarter_turns():
    still = dict(rotation_deg=0.0, scale=(1.0, 1.0), shear=0.0, translate_px=0.0)
    fam = make_fewshot_family(
        "glyphs-v0", rotations=True, elastic_px=0.0, noise=0.0, stroke_width_px=(2.0, 2.0), **still
    )
    images = fam.render(torch.tensor([20, 21, 22, 23]), 2, gen())[:, :, 0]  # [4, 2, 28, 28]
    assert torch.equal(images[:, 0], images[:, 1])  # no jitter: identical samples
    for k in range(1, 4):
        turned = torch.rot90(images[0, 0], k=k, dims=(0, 1))
        torch.testing.assert_close(images[k, 0], turned, atol=1e-4, rtol=0)


def test_glyphs_bad_configs():
    with pytest.raises(ConfigError, match="val_classes < train_classes < num_classes"):
        GlyphsConfig(num_classes=100)
    with pytest.raises(ConfigError, match="ways must be >= 2"):
        GlyphsConfig(ways=1)
    fam = make_fewshot_family("glyphs-v0", num_classes=30, train_classes=20, val_classes=3)
    with pytest.raises(ConfigError, match="cannot draw 5-way tasks from a split with 3 classes"):
        fam.sample(1, "val", generator=gen())


def test_cli_subcommands_are_family_ids():
    argv = ["family:glyphs-v0", "--family.ways", "20", "--family.rotations"]
    parsed = parse_cli(_Holder, argv, config_flag=False)
    assert parsed.family == GlyphsConfig(ways=20, rotations=True)
    parsed = parse_cli(_Holder, ["family:sinusoid-v0", "--family.shots", "5"], config_flag=False)
    assert parsed.family == SinusoidConfig(shots=5)
    argv = ["family:imagefolder", "--family.data", "/data/omniglot", "--family.image-size", "84"]
    parsed = parse_cli(_Holder, argv, config_flag=False)
    assert parsed.family == ImageFolderConfig(data=Path("/data/omniglot"), image_size=84)


# --------------------------------------------------------------------------------------------
# imagefolder, on image trees written here. Image j of class c carries its identity in two
# pixels: (0, 0) = c + 1 and (0, 1) = j + 1 (everything else 0), so labels, distinctness and
# rotations can be checked exactly.


def write_class(folder, code: int, n: int, size: int = 10, suffix: str = ".png") -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for j in range(n):
        pixels = torch.zeros(size, size, dtype=torch.uint8)
        pixels[0, 0], pixels[0, 1] = code + 1, j + 1
        Image.fromarray(pixels.numpy(), mode="L").save(folder / f"img{j:02d}{suffix}")


def omniglot_tree(root, per_class: int = 6):
    codes = {}
    for part, alphabets in (
        ("images_background", ("Alpha", "Beta")),
        ("images_evaluation", ("Gamma",)),
    ):
        for alphabet in alphabets:
            for ch in range(5):
                folder = root / part / alphabet / f"character{ch + 1:02d}"
                codes[folder] = len(codes)
                write_class(folder, codes[folder], per_class)
    return codes


def identity(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class code, image code) of images ``[..., 1, S, S]`` in [0, 1]."""
    raw = (x[..., 0, 0, :2] * 255).round().long() - 1
    return raw[..., 0], raw[..., 1]


def test_imagefolder_omniglot_layout(tmp_path):
    codes = omniglot_tree(tmp_path)
    fam = make_fewshot_family(
        "imagefolder", data=tmp_path, image_size=10, shots=2, queries=3, val_fraction=0.2
    )
    assert fam.layout == "omniglot" and fam.input_shape == (1, 10, 10)
    test_folders = set(fam.split_folders("test"))
    assert test_folders == {f for f in codes if "images_evaluation" in f.parts}
    assert len(fam.split_folders("val")) == 2 and len(fam.split_folders("train")) == 8
    assert_splits_disjoint(fam)
    b = fam.sample(20, "train", generator=gen())
    assert_classification_batch(b, 20, 5, 2, 3)
    # each label's images come from the task's class behind that label, all distinct
    folder_code = torch.tensor([codes[f] for f in fam.folders])
    for x, y in ((b.support_x, b.support_y), (b.query_x, b.query_y)):
        cls, _ = identity(x)
        assert torch.equal(cls, folder_code[b.classes.gather(1, y)])
    cls, img = identity(torch.cat([b.support_x, b.query_x], dim=1))
    for t in range(20):
        pairs = set(zip(cls[t].tolist(), img[t].tolist(), strict=True))
        assert len(pairs) == 25  # no image twice in a task
    assert_batches_equal(b, fam.sample(20, "train", generator=gen()))
    assert_batches_equal(fam.tasks(4, "test", seed=1), fam.tasks(4, "test", seed=1))


def test_imagefolder_splits_layout_rgb_resize_and_jpg(tmp_path):
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        for c in range(n):
            write_class(tmp_path / split / f"n{split}{c}", c, 5, size=20, suffix=".jpg")
    fam = make_fewshot_family(
        "imagefolder", data=tmp_path, image_size=8, grayscale=False, ways=3, shots=1, queries=4
    )
    assert fam.layout == "splits" and fam.input_shape == (3, 8, 8)
    assert [len(fam.split_folders(s)) for s in ("train", "val", "test")] == [6, 3, 4]
    assert all(p.parent.name == "test" for p in fam.split_folders("test"))
    b = fam.sample(2, "val", generator=gen())
    assert b.support_x.shape == (2, 3, 3, 8, 8) and b.query_x.shape == (2, 12, 3, 8, 8)
    assert_splits_disjoint(fam)
    # without val/, a val_fraction of the train classes is held out
    (tmp_path / "val").rename(tmp_path / "elsewhere")
    fam = make_fewshot_family("imagefolder", data=tmp_path, val_fraction=0.5, shots=1, queries=4)
    assert [len(fam.split_folders(s)) for s in ("train", "val", "test")] == [3, 3, 4]


def csv_tree(root, splits=(("train", 4), ("val", 2), ("test", 3)), per_class: int = 5):
    """mini-ImageNet's split-file layout: images/<file>.png and <split>.csv (filename,label)."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    codes = {}
    for split, n in splits:
        rows = ["filename,label"]
        for c in range(n):
            label = f"n{split}{c}"
            codes[label] = len(codes)
            for j in range(per_class):
                name = f"{label}{j:03d}.png"
                pixels = torch.zeros(10, 10, dtype=torch.uint8)
                pixels[0, 0], pixels[0, 1] = codes[label] + 1, j + 1
                Image.fromarray(pixels.numpy(), mode="L").save(root / "images" / name)
                rows.append(f"{name},{label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return codes


def test_imagefolder_csv_split_files(tmp_path):
    codes = csv_tree(tmp_path)
    fam = make_fewshot_family("imagefolder", data=tmp_path, image_size=10, ways=2, queries=3)
    assert fam.layout == "csv"
    assert [len(fam.split_folders(s)) for s in ("train", "val", "test")] == [4, 2, 3]
    assert {p.name for p in fam.split_folders("test")} == {"ntest0", "ntest1", "ntest2"}
    assert all(p.parent.name == "test.csv" for p in fam.split_folders("test"))
    assert_splits_disjoint(fam)
    b = fam.sample(6, "test", generator=gen())
    assert_classification_batch(b, 6, 2, 1, 3)
    folder_code = torch.tensor([codes[p.name] for p in fam.folders])
    for x, y in ((b.support_x, b.support_y), (b.query_x, b.query_y)):
        cls, _ = identity(x)
        assert torch.equal(cls, folder_code[b.classes.gather(1, y)])
    # without val.csv a val_fraction of the train labels is held out
    (tmp_path / "val.csv").unlink()
    fam = make_fewshot_family("imagefolder", data=tmp_path, val_fraction=0.5, queries=3)
    assert [len(fam.split_folders(s)) for s in ("train", "val", "test")] == [2, 2, 3]


def test_imagefolder_csv_errors(tmp_path):
    csv_tree(tmp_path)
    test_csv = tmp_path / "test.csv"
    good = test_csv.read_text()
    test_csv.write_text(good + "gone.png,ntest0\n")
    with pytest.raises(ConfigError, match=r"1 image\(s\) listed in test.csv .* e.g. gone.png"):
        make_fewshot_family("imagefolder", data=tmp_path, queries=3)
    test_csv.write_text(good + "ntrain0000.png,ntrain0\n")
    with pytest.raises(ConfigError, match=r"ntrain0.* in train\.csv and test\.csv"):
        make_fewshot_family("imagefolder", data=tmp_path, queries=3)
    test_csv.write_text("file,class\n")
    with pytest.raises(ConfigError, match="filename,label"):
        make_fewshot_family("imagefolder", data=tmp_path, queries=3)


def test_imagefolder_plain_tree_split_by_fraction(tmp_path):
    for c in range(20):
        write_class(tmp_path / f"class{c:02d}", c, 4)
    kwargs = dict(data=tmp_path, image_size=10, shots=1, queries=3)
    fam = make_fewshot_family("imagefolder", **kwargs)
    assert fam.layout == "tree"
    sizes = [len(fam.split_folders(s)) for s in ("train", "val", "test")]
    assert sizes == [14, 2, 4]
    assert_splits_disjoint(fam)
    again = make_fewshot_family("imagefolder", **kwargs)
    assert again.split_folders("test") == fam.split_folders("test")  # fixed split seed
    other = make_fewshot_family("imagefolder", split_seed=1, **kwargs)
    assert other.split_folders("test") != fam.split_folders("test")
    inverted = make_fewshot_family("imagefolder", invert=True, **kwargs)
    a, b = fam.tasks(2, seed=0, ways=3), inverted.tasks(2, seed=0, ways=3)
    torch.testing.assert_close(b.support_x, 1 - a.support_x)


def test_imagefolder_rotations(tmp_path):
    codes = omniglot_tree(tmp_path)
    fam = make_fewshot_family(
        "imagefolder", data=tmp_path, image_size=10, rotations=True, shots=1, queries=2
    )  # val: 1 folder, 4 classes
    assert len(fam.split_classes("test")) == 4 * 5
    assert_splits_disjoint(fam)
    b = fam.sample(30, "test", generator=gen())
    quarters = b.classes % 4
    assert set(quarters.reshape(-1).tolist()) == {0, 1, 2, 3}
    folder_code = torch.tensor([codes[f] for f in fam.folders])
    x = torch.cat([b.support_x, b.query_x], dim=1)
    y = torch.cat([b.support_y, b.query_y], dim=1)
    k = quarters.gather(1, y)  # [T, 3N] quarter turns per image
    for t in range(30):
        for i in range(x.shape[1]):
            upright = torch.rot90(x[t, i], -int(k[t, i]), dims=(-2, -1))
            cls, _ = identity(upright)
            assert cls == folder_code[b.classes[t, y[t, i]] // 4]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder; expected a folder of class folders"):
        make_fewshot_family("imagefolder", data=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"needs data=\.\.\."):
        make_fewshot_family("imagefolder")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"no class folders .*images_background"):
        make_fewshot_family("imagefolder", data=tmp_path / "empty")
    loose = tmp_path / "loose"
    write_class(loose, 0, 3)  # images directly in the root are not a class folder
    with pytest.raises(ConfigError, match="no class folders"):
        make_fewshot_family("imagefolder", data=loose)
    few = tmp_path / "few"
    write_class(few / "a", 0, 20)
    write_class(few / "b", 1, 3)
    with pytest.raises(ConfigError, match=r"b has 3 images, fewer than shots \+ queries = 16"):
        make_fewshot_family("imagefolder", data=few)
    fam = make_fewshot_family("imagefolder", data=few, shots=1, queries=2, test_fraction=0.5)
    with pytest.raises(ConfigError, match=r"has 3 images, fewer than shots \+ queries = 5"):
        fam.sample(1, "train", generator=gen(), shots=1, queries=4, ways=2)
    with pytest.raises(ConfigError, match="cannot draw 5-way tasks from a split with 1 classes"):
        fam.sample(1, "train", generator=gen())
    with pytest.raises(ConfigError, match="has no val classes"):
        fam.sample(1, "val", generator=gen())
    background_only = tmp_path / "bg"
    write_class(background_only / "images_background" / "A" / "c1", 0, 3)
    write_class(background_only / "images_background" / "A" / "c2", 1, 3)
    fam = make_fewshot_family("imagefolder", data=background_only, shots=1, queries=1)
    with pytest.raises(ConfigError, match=r"no test classes .*omniglot layout"):
        fam.sample(1, "test", generator=gen())
    bad = tmp_path / "bad"
    write_class(bad / "a", 0, 2)
    write_class(bad / "b", 1, 2)
    (bad / "a" / "img00.png").write_bytes(b"not a png")
    fam = make_fewshot_family("imagefolder", data=bad, shots=1, queries=1, test_fraction=0.0)
    with pytest.raises(ConfigError, match=r"cannot read image .*img00.png"):
        fam.preload(quiet=True)


def test_imagefolder_preload_and_cache(tmp_path):
    omniglot_tree(tmp_path)
    fam = make_fewshot_family("imagefolder", data=tmp_path, image_size=10, shots=1, queries=1)
    fam.preload("test", quiet=True)
    assert len(fam._cache) == 5
    images = fam.folder_images(fam._split_folders["test"][0])
    assert images.dtype == torch.uint8 and images.shape == (6, 1, 10, 10)


# --------------------------------------------------------------------------------------------
# the contract checker


def test_every_builtin_family_passes_the_contract_checker(tmp_path):
    check_fewshot_family(make_fewshot_family("sinusoid-v0"))
    check_fewshot_family(make_fewshot_family("glyphs-v0", queries=2), num_tasks=3)
    check_fewshot_family(make_fewshot_family("glyphs-v0", rotations=True, queries=2), num_tasks=3)
    omniglot_tree(tmp_path)
    fam = make_fewshot_family(
        "imagefolder", data=tmp_path, image_size=10, ways=3, shots=1, queries=2, val_fraction=0.3
    )
    check_fewshot_family(fam)


class _Unshuffled(Glyphs):
    """Broken on purpose: labels follow the global class order instead of 0..N-1 per task."""

    def _sample(self, *args, **kwargs):
        b = super()._sample(*args, **kwargs)
        order = b.classes.argsort(dim=1).argsort(dim=1)  # rank of each class in the task
        b.support_y = order.gather(1, b.support_y)
        return b


class _Leaky(Glyphs):
    """Broken on purpose: validation tasks draw from the meta-train characters."""

    def split_chars(self, split):
        return super().split_chars("train" if split == "val" else split)


def test_the_checker_catches_broken_families():
    small = GlyphsConfig(queries=2, num_classes=60, train_classes=40, val_classes=10)
    with pytest.raises(
        FewShotContractError, match=r"support_y must hold labels 0\.\.4 in class-major"
    ):
        check_fewshot_family(_Unshuffled(small))
    with pytest.raises(FewShotContractError, match="splits train and val share classes"):
        check_fewshot_family(_Leaky(small))


def test_glyphs_render_large_requests_in_blocks(glyphs, monkeypatch):
    import adaptrl.fewshot.glyphs as glyphs_module

    monkeypatch.setattr(glyphs_module, "RENDER_BLOCK", 7)  # 2 classes of 3 images per block
    classes = torch.arange(1200, 1210).view(2, 5)
    images = glyphs.render(classes, 3, gen())
    assert images.shape == (2, 5, 3, 1, 28, 28)
    assert torch.equal(images, glyphs.render(classes, 3, gen()))
    one_block = glyphs.render(classes[0, :2], 3, gen())
    assert torch.equal(images[0, :2], one_block)  # the first block is the same either way
