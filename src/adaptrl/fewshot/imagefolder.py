"""``imagefolder``: N-way K-shot tasks over a folder of class folders already on disk.

A *class* is a folder that directly holds image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``,
``.gif``, ``.webp``), or a label of a split file. Four layouts are understood (``layout="auto"``
picks the first that fits):

* ``omniglot``: ``images_background/<alphabet>/<character>/*.png`` are meta-train classes (a
  ``val_fraction`` of them, drawn with ``split_seed``, is the validation split) and
  ``images_evaluation/<alphabet>/<character>/*.png`` the meta-test classes (the layout of the
  official Omniglot archives).
* ``csv``: ``images/*.jpg`` with ``train.csv``, ``val.csv``, ``test.csv`` of ``filename,label``
  rows (Ravi & Larochelle's mini-ImageNet split files); without ``val.csv`` a ``val_fraction`` of
  the train labels is held out. A label in two split files is refused.
* ``splits``: ``train/<class>/*``, ``val/<class>/*``, ``test/<class>/*`` (mini-ImageNet's
  ``train/<wnid>/*.jpg`` layout); without ``val/`` a ``val_fraction`` of the train classes is held
  out.
* ``tree``: any folder of class folders, split into train / val / test classes by fraction with
  ``split_seed``.

Images are read with Pillow, converted to grayscale (or RGB), resized to ``image_size`` squared and
cached in memory as one uint8 tensor per class, loaded the first time a task needs the class
(``preload`` loads a whole split with a progress bar). With ``rotations=True`` every class also
appears turned by 90, 180 and 270 degrees as three extra classes of the same split (the MAML
Omniglot protocol); class id ``4 * folder + k`` is folder ``folder`` turned by ``torch.rot90(k)``.
Nothing is ever downloaded.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import torch

from adaptrl.core.config import Ge, Interval, Size
from adaptrl.core.errors import ConfigError
from adaptrl.core.progress import progress
from adaptrl.core.seeding import make_generator
from adaptrl.fewshot.base import (
    SPLITS,
    FewShotBatch,
    FewShotConfig,
    FewShotFamily,
    Split,
    class_major_batch,
    sample_classes,
)
from adaptrl.fewshot.registry import register_fewshot_family

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
LAYOUT_HELP = (
    "expected a folder of class folders: Omniglot (images_background/<alphabet>/<character>/"
    "*.png and images_evaluation/...), mini-ImageNet (train/<wnid>/*.jpg, val/..., test/..., or "
    "images/*.jpg with train.csv, val.csv and test.csv of filename,label rows) "
    "or any <class>/*.png tree"
)
PRELOAD_QUIET_BELOW = 64
"""Lazy loads of fewer classes than this show no progress bar."""


@dataclasses.dataclass(frozen=True)
class ImageFolderConfig(FewShotConfig):
    """N-way K-shot classification over a folder of class folders (Omniglot, mini-ImageNet, ...)."""

    data: Path
    """Root folder of the images (see the layouts in `adaptrl.fewshot.imagefolder`)."""
    ways: Annotated[int, Ge(2)] = 5
    """N: classes per task."""
    shots: Size = 1
    """K: support images per class."""
    queries: Size = 15
    """Q: query images per class."""
    image_size: Annotated[int, Ge(4)] = 28
    """Images are resized to image_size x image_size (28 for Omniglot, 84 for mini-ImageNet)."""
    grayscale: bool = True
    """One channel (True) or RGB (False)."""
    invert: bool = False
    """Use 1 - pixel (Omniglot draws black ink on white; True makes ink 1 as in glyphs-v0)."""
    rotations: bool = False
    """Add each class turned by 90, 180 and 270 degrees as three extra classes (MAML's Omniglot
    protocol)."""
    layout: Literal["auto", "omniglot", "csv", "splits", "tree"] = "auto"
    """Folder layout; auto: omniglot if images_background/ or images_evaluation/ exists, else csv
    if images/ and a train.csv, val.csv or test.csv exist, else splits if train/, val/ or test/
    exists, else tree."""
    val_fraction: Annotated[float, Interval(ge=0, lt=1)] = 0.1
    """Fraction of the meta-train classes held out for validation when there is no val folder."""
    test_fraction: Annotated[float, Interval(ge=0, lt=1)] = 0.2
    """tree layout: fraction of all classes held out for meta-test."""
    split_seed: int = 0
    """Seed of the class splits drawn by fraction (fixed, so runs agree on them)."""

    def validate(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction must be < 1 (train needs classes)")


def find_class_folders(root: Path) -> list[tuple[Path, list[Path]]]:
    """Every folder below ``root`` that directly holds images, with its sorted image files."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        images = sorted(f for f in files if f.lower().endswith(IMAGE_SUFFIXES))
        if images and Path(folder) != root:
            found.append((Path(folder), [Path(folder) / f for f in images]))
    return sorted(found)


def read_split_file(path: Path) -> dict[str, list[str]]:
    """``label -> [filename, ...]`` (file order) from a ``filename,label`` CSV with a header row."""
    classes: dict[str, list[str]] = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = [h.strip().lower() for h in next(rows, [])]
        if header[:2] != ["filename", "label"]:
            raise ConfigError(f"imagefolder: {path} must start with a 'filename,label' header row")
        for row in rows:
            if len(row) >= 2:
                classes.setdefault(row[1].strip(), []).append(row[0].strip())
    return classes


def _hold_out(n: int, fraction: float, seed: int, tag: str) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (kept, held out) with ``round(fraction * n)`` held out, by seed."""
    order = torch.randperm(n, generator=make_generator(seed, "imagefolder", tag)).tolist()
    cut = round(fraction * n)
    return sorted(order[cut:]), sorted(order[:cut])


@register_fewshot_family
class ImageFolder(FewShotFamily):
    """N-way K-shot over class folders on disk: Omniglot, mini-ImageNet or any <class>/*.png tree."""

    family_id = "imagefolder"
    config_cls = ImageFolderConfig
    kind = "classification"
    config: ImageFolderConfig

    def __init__(self, config: ImageFolderConfig | None = None):
        if config is None:
            raise ConfigError(f"imagefolder needs data=PATH: {LAYOUT_HELP}")
        super().__init__(config)
        c = self.config
        root = Path(c.data).expanduser()
        if not root.is_dir():
            raise ConfigError(f"imagefolder: {root} is not a folder; {LAYOUT_HELP}")
        self.root = root
        self.layout = self._detect_layout(root)
        self.folders: list[Path] = []
        self.files: list[list[Path]] = []
        self._split_folders: dict[str, list[int]] = {}
        self._scan()
        self.input_shape = (1 if c.grayscale else 3, c.image_size, c.image_size)
        self._cache: dict[int, torch.Tensor] = {}
        self.counts = torch.tensor([len(f) for f in self.files])
        self._check_counts(c.shots + c.queries)

    # --- scanning -------------------------------------------------------------------------------
    def _detect_layout(self, root: Path) -> str:
        layout = self.config.layout
        if layout != "auto":
            return layout
        if any((root / d).is_dir() for d in ("images_background", "images_evaluation")):
            return "omniglot"
        if (root / "images").is_dir() and any((root / f"{s}.csv").is_file() for s in SPLITS):
            return "csv"
        if any((root / d).is_dir() for d in SPLITS):
            return "splits"
        return "tree"

    def _add(self, folder: Path) -> list[int]:
        """Register the class folders under ``folder``; return their indices."""
        start = len(self.folders)
        for path, files in find_class_folders(folder) if folder.is_dir() else []:
            self.folders.append(path)
            self.files.append(files)
        return list(range(start, len(self.folders)))

    def _add_split_file(self, path: Path) -> list[int]:
        """Register the labels of split file ``path`` as classes; return their indices."""
        if not path.is_file():
            return []
        start = len(self.folders)
        images = self.root / "images"
        for label, names in sorted(read_split_file(path).items()):
            if label in self._labels:
                raise ConfigError(
                    f"imagefolder: label {label!r} is in {self._labels[label].name} and "
                    f"{path.name}; a class must belong to one split"
                )
            self._labels[label] = path
            files = [images / n for n in names]
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise ConfigError(
                    f"imagefolder: {len(missing)} image(s) listed in {path.name} are not in "
                    f"{images}, e.g. {missing[0].name}"
                )
            self.folders.append(path / label)  # shown as <split>.csv/<label> in messages
            self.files.append(files)
        return list(range(start, len(self.folders)))

    def _train_val_test(self, add: Callable[[str], list[int]]) -> None:
        """Register each split's classes with ``add(split)``; with no val classes, hold out a
        ``val_fraction`` of the train classes instead."""
        c, split = self.config, self._split_folders
        train = add("train")
        split["val"], split["test"] = add("val"), add("test")
        if split["val"]:
            split["train"] = train
        else:
            keep, val = _hold_out(len(train), c.val_fraction, c.split_seed, "val")
            split["train"], split["val"] = [train[i] for i in keep], [train[i] for i in val]

    def _scan(self) -> None:
        c, root, split = self.config, self.root, self._split_folders
        self._labels: dict[str, Path] = {}
        if self.layout == "csv":
            self._train_val_test(lambda s: self._add_split_file(root / f"{s}.csv"))
        elif self.layout == "omniglot":
            background = self._add(root / "images_background")
            split["test"] = self._add(root / "images_evaluation")
            keep, val = _hold_out(len(background), c.val_fraction, c.split_seed, "val")
            split["train"], split["val"] = (
                [background[i] for i in keep],
                [background[i] for i in val],
            )
        elif self.layout == "splits":
            self._train_val_test(lambda s: self._add(root / s))
        else:
            everything = self._add(root)
            rest, test = _hold_out(len(everything), c.test_fraction, c.split_seed, "test")
            frac = c.val_fraction / (1 - c.test_fraction)
            keep, val = _hold_out(len(rest), frac, c.split_seed, "val")
            split["train"], split["val"] = [rest[i] for i in keep], [rest[i] for i in val]
            split["test"] = test
        if not self.folders:
            raise ConfigError(
                f"imagefolder: no class folders (folders holding images) under {root} "
                f"(layout {self.layout}); {LAYOUT_HELP}"
            )

    def _check_counts(self, needed: int, folders: list[int] | None = None) -> None:
        """Raise unless every class folder (of ``folders``) holds at least ``needed`` images."""
        folders = list(range(len(self.folders))) if folders is None else folders
        short = [i for i in folders if len(self.files[i]) < needed]
        if short:
            worst = min(short, key=lambda i: len(self.files[i]))
            raise ConfigError(
                f"imagefolder: class folder {self.folders[worst]} has {len(self.files[worst])} "
                f"images, fewer than shots + queries = {needed} ({len(short)} class folder(s) "
                "are that small); lower shots/queries or remove them"
            )

    # --- classes and splits ---------------------------------------------------------------------
    @property
    def rotations(self) -> int:
        """Classes per folder: 4 with rotations, else 1."""
        return 4 if self.config.rotations else 1

    def split_folders(self, split: Split) -> list[Path]:
        """The class folders of ``split``."""
        return [self.folders[i] for i in self._split_folders[split]]

    def split_classes(self, split: Split) -> torch.Tensor:
        """Global class ids of ``split`` (``4 * folder + k`` with rotations)."""
        folders = torch.tensor(self._split_folders[split], dtype=torch.long)
        return (folders[:, None] * self.rotations + torch.arange(self.rotations)).reshape(-1)

    # --- loading --------------------------------------------------------------------------------
    def _load_folder(self, i: int) -> torch.Tensor:
        from PIL import Image  # Pillow comes with matplotlib

        c = self.config
        mode = "L" if c.grayscale else "RGB"
        size = (c.image_size, c.image_size)
        arrays = []
        for path in self.files[i]:
            try:
                with Image.open(path) as im:
                    im = im.convert(mode)
                    if im.size != size:
                        im = im.resize(size, Image.Resampling.LANCZOS)
                    arrays.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8))
            except OSError as exc:
                raise ConfigError(f"imagefolder: cannot read image {path}: {exc}") from None
        images = torch.stack(arrays).reshape(len(arrays), *size, -1)
        return images.permute(0, 3, 1, 2).contiguous()  # [n, C, H, W] uint8

    def preload(self, split: Split | None = None, quiet: bool = False) -> None:
        """Load the images of ``split`` (all splits when None) into memory, with a progress bar."""
        wanted = range(len(self.folders)) if split is None else self._split_folders.get(split, [])
        todo = [i for i in wanted if i not in self._cache]
        if not todo:
            return
        for i in progress(todo, description=f"loading {len(todo)} classes", quiet=quiet):
            self._cache[i] = self._load_folder(i)

    def folder_images(self, i: int) -> torch.Tensor:
        """The uint8 images ``[n, C, S, S]`` of class folder ``i`` (loaded once, then cached)."""
        if i not in self._cache:
            self._cache[i] = self._load_folder(i)
        return self._cache[i]

    # --- sampling -------------------------------------------------------------------------------
    def _sample(
        self,
        num_tasks: int,
        split: Split,
        generator: torch.Generator,
        ways: int,
        shots: int,
        queries: int,
    ) -> FewShotBatch:
        folders_of_split = self._split_folders[split]
        if not folders_of_split:
            raise ConfigError(
                f"imagefolder: {self.root} has no {split} classes ({self.layout} layout); "
                + LAYOUT_HELP
            )
        per_class = shots + queries
        self._check_counts(per_class, folders_of_split)
        if generator.device.type != "cpu":
            raise ConfigError("imagefolder samples with a CPU generator (the images live in RAM)")
        pool = self.split_classes(split)
        classes = pool[sample_classes(num_tasks, len(pool), ways, generator)]  # [T, N]
        folders, quarters = classes // self.rotations, classes % self.rotations
        # per (task, class): `per_class` distinct images out of that folder's count
        counts = self.counts[folders]
        keys = torch.rand(num_tasks, ways, int(counts.max()), generator=generator)
        keys.masked_fill_(torch.arange(keys.shape[-1]) >= counts[..., None], 2.0)
        picks = keys.argsort(dim=-1)[..., :per_class]  # [T, N, K+Q]
        missing = {i for i in folders.unique().tolist() if i not in self._cache}
        if len(missing) >= PRELOAD_QUIET_BELOW:
            for i in progress(sorted(missing), description=f"loading {len(missing)} classes"):
                self._cache[i] = self._load_folder(i)
        rows = []
        pairs = zip(folders.reshape(-1).tolist(), quarters.reshape(-1).tolist(), strict=True)
        for (folder, quarter), pick in zip(pairs, picks.flatten(0, 1), strict=True):
            images = self.folder_images(folder)[pick]
            rows.append(torch.rot90(images, quarter, dims=(-2, -1)) if quarter else images)
        x = torch.stack(rows).to(torch.float32).div_(255)
        if self.config.invert:
            x = 1 - x
        return class_major_batch(
            x.reshape(num_tasks, ways, per_class, *self.input_shape), shots, classes
        )
