"""``glyphs-v0``: a procedurally generated handwritten-character set in the spirit of Omniglot.

It ships as code, so tests and demos need no download. Like Omniglot it has 1623 characters
("classes") grouped into alphabets of 32 that share a drawing style (curvy or angular, short or long
strokes, how often strokes turn sharply or close into loops). Each character is 1-4 strokes, each
stroke a chain of 1-3 primitives (quadratic Bézier curves or circular arcs) that often starts on an
earlier stroke, the whole glyph centred and scaled to a similar size. Its geometry is a pure function
of ``(alphabet_seed, class id)``.

Rendering is vectorised in torch and has two stages:

1. Once per character (lazily, then cached): the distance from every pixel of a canvas at twice the
   image resolution to the nearest stroke segment (the *distance field*).
2. Per sample: a random affine map (rotation, scale, shear, translation) plus a smooth elastic
   displacement forms a sampling grid; ``grid_sample`` reads the distance field through it, and ink
   is ``clamp(width/2 + 1/2 - distance, 0, 1)`` with a per-sample stroke width (anti-aliased by
   construction), plus a little uniform noise. Images are float32 in [0, 1], shape ``[1, S, S]``,
   ink = 1. Sampling never depends on what is cached: the same generator gives the same images.

With ``rotations=True`` each character also appears rotated by 90, 180 and 270 degrees as three
extra classes (the MAML Omniglot protocol); class id ``4 * character + k`` is the character turned
by ``k * 90`` degrees, and all four belong to the character's split.

Splits: characters ``[0, train_classes - val_classes)`` are meta-train, the next ``val_classes``
validation, and ``[train_classes, num_classes)`` meta-test. A task never mixes splits.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Annotated

import torch
import torch.nn.functional as F

from adaptrl.core.config import Count, Ge, Positive, Size
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.fewshot.base import (
    FewShotBatch,
    FewShotConfig,
    FewShotFamily,
    Split,
    check_range,
    class_major_batch,
    sample_classes,
)
from adaptrl.fewshot.registry import register_fewshot_family

ALPHABET_SIZE = 32
"""Characters per alphabet (characters of one alphabet share a drawing style)."""
PIECES = 6
"""Straight pieces per curve primitive when a glyph is flattened to line segments."""
MAX_STROKES, MAX_PRIMITIVES = 4, 3
MAX_SEGMENTS = MAX_STROKES * MAX_PRIMITIVES * PIECES
WOBBLE_WIDTH = 0.5
"""Width (in [-1, 1] image units) of the Gaussian bumps that make the elastic displacement."""
RENDER_BLOCK = 4096
"""Images rendered at once (larger requests are split into blocks to bound memory)."""
_FAR = 100.0  # padding segments sit here, far from every pixel


@dataclasses.dataclass(frozen=True)
class GlyphsConfig(FewShotConfig):
    """N-way K-shot classification of procedurally generated handwritten characters."""

    ways: Annotated[int, Ge(2)] = 5
    """N: classes per task."""
    shots: Size = 1
    """K: support images per class."""
    queries: Size = 15
    """Q: query images per class."""
    num_classes: int = 1623
    """Characters in the set (Omniglot has 1623)."""
    train_classes: int = 1200
    """Characters [0, train_classes) are for meta-training (the last val_classes of them for
    validation); the rest are meta-test characters."""
    val_classes: Count = 100
    """The last val_classes meta-training characters form the validation split."""
    image_size: Annotated[int, Ge(8)] = 28
    """Images are [1, image_size, image_size]."""
    rotations: bool = False
    """Add each character turned by 90, 180 and 270 degrees as three extra classes (MAML's
    Omniglot protocol)."""
    alphabet_seed: int = 0
    """Seed of the character set itself (different seeds give different alphabets)."""
    rotation_deg: Annotated[float, Ge(0)] = 10.0
    """Per-sample rotation ~ U[-rotation_deg, rotation_deg] degrees."""
    scale: tuple[Positive, Positive] = (0.9, 1.1)
    """Per-sample scale ~ U[low, high]."""
    shear: Annotated[float, Ge(0)] = 0.15
    """Per-sample shear ~ U[-shear, shear]."""
    translate_px: Annotated[float, Ge(0)] = 2.0
    """Per-sample translation ~ U[-translate_px, translate_px] pixels in x and y."""
    elastic_px: Annotated[float, Ge(0)] = 1.5
    """Standard deviation (pixels) of a smooth random displacement, the wobble of a hand."""
    stroke_width_px: tuple[Positive, Positive] = (1.4, 2.4)
    """Per-sample stroke width ~ U[low, high] pixels at image_size 28 (scaled with the size)."""
    noise: Annotated[float, Ge(0)] = 0.03
    """Standard deviation of additive uniform pixel noise (images are clamped to [0, 1])."""

    def validate(self) -> None:
        if not self.val_classes < self.train_classes < self.num_classes:
            raise ConfigError(
                "need val_classes < train_classes < num_classes, got "
                f"{self.val_classes}, {self.train_classes}, {self.num_classes}"
            )
        check_range("scale", self.scale)
        check_range("stroke_width_px", self.stroke_width_px)


# --------------------------------------------------------------------------------------------
# glyph geometry: one character = up to MAX_SEGMENTS line segments in [-1, 1]^2 (y points down)


class _Uniforms:
    """A stream of U[0, 1) floats from a seeded generator, drawn in blocks (cheap per call)."""

    def __init__(self, seed: int, *tags: str | int):
        self.gen = make_generator(seed, *tags)
        self.buf: list[float] = []

    def __call__(self, low: float = 0.0, high: float = 1.0) -> float:
        if not self.buf:
            self.buf = torch.rand(64, generator=self.gen, dtype=torch.float64).tolist()[::-1]
        return low + (high - low) * self.buf.pop()


@dataclasses.dataclass(frozen=True)
class _Style:
    """An alphabet's drawing style."""

    curvature: float  # typical bend of a curve, as a fraction of its length
    corner: float  # probability that the next primitive turns sharply
    snap: float  # probability that a direction snaps to a multiple of 45 degrees
    length: float  # typical primitive length (glyph box is about 1.2 wide)
    arc: float  # probability that a primitive is a circular arc
    strokes: float  # typical number of strokes
    attach: float  # probability that a stroke starts on an earlier one


def _style(alphabet_seed: int, alphabet: int) -> _Style:
    u = _Uniforms(alphabet_seed, "glyphs-v0", "alphabet", alphabet)
    return _Style(
        curvature=u(0.0, 0.45),
        corner=u(0.2, 0.8),
        snap=u(0.0, 0.8) if u() < 0.5 else 0.0,
        length=u(0.35, 0.7),
        arc=u(0.0, 0.35),
        strokes=u(1.8, 3.4),
        attach=u(0.4, 0.9),
    )


def _bezier(p0, p1, p2) -> list[tuple[float, float]]:
    pts = []
    for i in range(1, PIECES + 1):
        t = i / PIECES
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        pts.append((a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]))
    return pts


def _glyph_strokes(alphabet_seed: int, char: int) -> list[list[tuple[float, float]]]:
    """The strokes (polylines) of character ``char``; a pure function of its arguments."""
    style = _style(alphabet_seed, char // ALPHABET_SIZE)
    u = _Uniforms(alphabet_seed, "glyphs-v0", "char", char)
    n_strokes = min(MAX_STROKES, max(1, int(style.strokes + u(-1.0, 1.0) + 0.5)))
    strokes: list[list[tuple[float, float]]] = []
    for _ in range(n_strokes):
        if strokes and u() < style.attach:
            prev = strokes[int(u() * len(strokes))]
            p = prev[int(u() * len(prev))]
        else:
            p = (u(-0.5, 0.5), u(-0.5, 0.5))
        theta = u(0.0, 2 * math.pi)
        pts = [p]
        for _ in range(1 + int(u() * MAX_PRIMITIVES) if strokes else 2 + int(u() * 2)):
            if u() < style.snap:
                theta = round(theta / (math.pi / 4)) * (math.pi / 4)
            if u() < style.arc:
                radius = style.length * u(0.25, 0.6)
                sweep = u(0.6, 1.9) * math.pi * (1 if u() < 0.5 else -1)
                # the centre lies to the side the arc turns towards
                side = theta + math.copysign(math.pi / 2, sweep)
                cx, cy = p[0] + radius * math.cos(side), p[1] + radius * math.sin(side)
                a0 = math.atan2(p[1] - cy, p[0] - cx)
                new = [
                    (cx + radius * math.cos(a0 + sweep * i / PIECES),
                     cy + radius * math.sin(a0 + sweep * i / PIECES))
                    for i in range(1, PIECES + 1)
                ]  # fmt: skip
                theta += sweep
            else:
                length = style.length * u(0.6, 1.4)
                end = (p[0] + length * math.cos(theta), p[1] + length * math.sin(theta))
                bend = style.curvature * u(-2.0, 2.0) * length
                mid = ((p[0] + end[0]) / 2 - bend * math.sin(theta),
                       (p[1] + end[1]) / 2 + bend * math.cos(theta))  # fmt: skip
                new = _bezier(p, mid, end)
                theta = math.atan2(end[1] - mid[1], end[0] - mid[0])
            pts.extend(new)
            p = new[-1]
            if u() < style.corner:
                theta += (1 if u() < 0.5 else -1) * u(math.pi / 3, 5 * math.pi / 6)
            else:
                theta += u(-math.pi / 8, math.pi / 8)
        strokes.append(pts)
    # centre the glyph and give it a typical size (its larger side 60-72% of the image)
    xs = [x for s in strokes for x, _ in s]
    ys = [y for s in strokes for _, y in s]
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    size = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)
    k = u(1.2, 1.45) / size
    return [[((x - cx) * k, (y - cy) * k) for x, y in s] for s in strokes]


def glyph_segments(alphabet_seed: int, char: int) -> torch.Tensor:
    """Character ``char`` as ``[MAX_SEGMENTS, 2, 2]`` line segments (padding far off-canvas)."""
    segs = torch.full((MAX_SEGMENTS, 2, 2), _FAR, dtype=torch.float32)
    flat = [(a, b) for s in _glyph_strokes(alphabet_seed, char) for a, b in itertools.pairwise(s)]
    segs[: len(flat)] = torch.tensor(flat, dtype=torch.float32)
    return segs


def _rbf_basis(size: int, device: torch.device) -> torch.Tensor:
    """``[4, size]`` Gaussian bumps at 4 knots across the image, columns of unit norm, so a
    displacement ``basis.T @ N(0, 1) knots @ basis`` has unit standard deviation at every pixel."""
    coords = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size * 2 - 1
    knots = torch.linspace(-1, 1, 4, device=device)
    basis = torch.exp(-((coords[None] - knots[:, None]) ** 2) / (2 * WOBBLE_WIDTH**2))
    return basis / basis.norm(dim=0, keepdim=True)


def distance_fields(segments: torch.Tensor, resolution: int) -> torch.Tensor:
    """Distance from each pixel centre of a ``resolution``² canvas over [-1, 1]² to the nearest
    segment: ``segments [C, M, 2, 2] -> [C, resolution, resolution]`` (in canvas units)."""
    used = int((segments[..., 0, 0] < _FAR).sum(-1).max())  # drop all-padding columns
    segments = segments[:, :used]
    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    px = coords.repeat(resolution).reshape(1, -1, 1)  # [1, P, 1], row-major pixel order
    py = coords.repeat_interleave(resolution).reshape(1, -1, 1)
    ax, ay = segments[:, None, :, 0, 0], segments[:, None, :, 0, 1]  # [C, 1, M]
    abx, aby = segments[:, None, :, 1, 0] - ax, segments[:, None, :, 1, 1] - ay
    inv_len2 = 1.0 / (abx * abx + aby * aby).clamp_min(1e-12)
    dx, dy = px - ax, py - ay  # [C, P, M]
    t = ((dx * abx + dy * aby) * inv_len2).clamp_(0, 1)
    ex, ey = dx.sub_(t * abx), dy.sub_(t * aby)
    dist = (ex * ex + ey * ey).amin(dim=-1).sqrt()  # [C, P]
    return dist.reshape(-1, resolution, resolution)


# --------------------------------------------------------------------------------------------
# the family


@register_fewshot_family
class Glyphs(FewShotFamily):
    """Procedurally generated handwritten characters: 1623 classes, 28x28, Omniglot-like."""

    family_id = "glyphs-v0"
    config_cls = GlyphsConfig
    kind = "classification"
    config: GlyphsConfig

    def __init__(self, config: GlyphsConfig | None = None):
        super().__init__(config)
        c = self.config
        self.input_shape = (1, c.image_size, c.image_size)
        self.resolution = 2 * c.image_size
        self._fields = torch.zeros(c.num_classes, self.resolution, self.resolution)
        self._ready = torch.zeros(c.num_classes, dtype=torch.bool)

    # --- classes and splits -------------------------------------------------------------------
    @property
    def rotations(self) -> int:
        """Classes per character: 4 with rotations, else 1."""
        return 4 if self.config.rotations else 1

    def split_chars(self, split: Split) -> range:
        """The characters of ``split``."""
        c = self.config
        first_val = c.train_classes - c.val_classes
        bounds = {
            "train": (0, first_val),
            "val": (first_val, c.train_classes),
            "test": (c.train_classes, c.num_classes),
        }[split]
        return range(*bounds)

    def split_classes(self, split: Split) -> torch.Tensor:
        """Global class ids of ``split`` (``4 * char + k`` with rotations)."""
        chars = torch.tensor(self.split_chars(split))
        return (chars[:, None] * self.rotations + torch.arange(self.rotations)).reshape(-1)

    # --- rendering ------------------------------------------------------------------------------
    def fields(self, chars: torch.Tensor) -> torch.Tensor:
        """Distance fields ``[len(chars), 2S, 2S]`` of characters, computed once and cached."""
        for i in chars[~self._ready[chars]].unique().tolist():
            # one character at a time: its [pixels, segments] temporaries stay small enough for
            # the CPU cache (faster than one batched call on this machine)
            segs = glyph_segments(self.config.alphabet_seed, i)[None]
            self._fields[i] = distance_fields(segs, self.resolution)[0]
            self._ready[i] = True
        return self._fields[chars]

    def render(
        self, classes: torch.Tensor, per_class: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``per_class`` jittered images of each class: ``[*classes.shape, per_class, 1, S, S]``.

        Large requests are rendered in blocks of about ``RENDER_BLOCK`` images (bounded memory),
        each block drawing from ``generator`` in turn.
        """
        size = self.config.image_size
        flat = classes.reshape(-1)
        out = torch.empty(len(flat), per_class, 1, size, size, device=generator.device)
        step = max(1, RENDER_BLOCK // per_class)
        for start in range(0, len(flat), step):
            block = flat[start : start + step]
            out[start : start + step] = self._render_block(block, per_class, generator)
        return out.view(*classes.shape, per_class, 1, size, size)

    def _render_block(
        self, flat: torch.Tensor, per_class: int, generator: torch.Generator
    ) -> torch.Tensor:
        c = self.config
        size = c.image_size
        m = flat.numel()
        chars, quarter = flat // self.rotations, flat % self.rotations
        dev = generator.device

        def u(low: float, high: float) -> torch.Tensor:  # one number per sample, [m, P, 1, 1]
            r = torch.rand(m, per_class, 1, 1, generator=generator, device=dev)
            return low + (high - low) * r

        # The sampling grid (output pixel -> canvas point) is built as [m, 2 (x, y), P, S, S] by
        # one matrix product, each row of it [.., row, :] @ basis: a smooth elastic displacement
        # (4x4 Gaussian knots blended by RBFs) plus the affine map (rotation with the class's
        # quarter turns, scale, shear, translation), which is linear in the column coordinate x.
        # grid_sample then reads it as a permuted view [m, P*S, S, 2] (no interleaving copy),
        # one call per class over all its P samples stacked along the height.
        coords = (torch.arange(size, dtype=torch.float32, device=dev) + 0.5) / size * 2 - 1
        if c.elastic_px > 0:
            knots = torch.randn(m, 2, per_class, 4, 4, generator=generator, device=dev)
            knots *= c.elastic_px * 2 / size  # pixels -> [-1, 1] image units
            basis = _rbf_basis(size, dev)  # [4, S]
            rows = (knots @ basis).mT  # [m, 2, P, S, 4]
        else:
            basis = torch.empty(0, size, device=dev)
            rows = torch.empty(m, 2, per_class, size, 0, device=dev)
        angle = u(-1, 1) * math.radians(c.rotation_deg)
        angle += (math.pi / 2) * quarter.to(dev).view(m, 1, 1, 1)
        scale, shear = u(*c.scale), u(-c.shear, c.shear)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # [m, P, 1, 1]
        reach = c.translate_px * 2 / size
        y = coords.view(1, 1, size, 1)
        x_coef = torch.stack([cos, sin], dim=1).expand(m, 2, per_class, size, 1)
        rest = torch.stack(
            [
                (shear * cos - sin) * y + u(-reach, reach),
                (shear * sin + cos) * y + u(-reach, reach),
            ],
            dim=1,
        )  # [m, 2, P, S, 1]: the part that depends on the row only
        ones = torch.ones(1, size, device=dev)
        grid = torch.cat([rows, x_coef, rest], dim=-1) @ torch.cat([basis, coords[None], ones])
        grid = grid.view(m, 2, per_class * size, size).permute(0, 2, 3, 1)
        fields = self.fields(chars.cpu()).to(dev).unsqueeze(1)  # [m, 1, 2S, 2S]
        dist = F.grid_sample(
            fields, grid, mode="bilinear", padding_mode="border", align_corners=False
        ).view(m, per_class, size, size)
        # ink = clamp(width / 2 + 1/2 - distance in output pixels, 0, 1)
        ink = dist.mul_(-size / 2).add_(u(*c.stroke_width_px) * (size / 56) + 0.5)
        if c.noise > 0:  # uniform noise with standard deviation `noise` (cheaper than Gaussian)
            noise = torch.rand(ink.shape, generator=generator, device=dev)
            ink.add_(noise.sub_(0.5).mul_(c.noise * math.sqrt(12)))
        return ink.clamp_(0, 1).view(m, per_class, 1, size, size)

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
        pool = self.split_classes(split).to(generator.device)
        classes = pool[sample_classes(num_tasks, len(pool), ways, generator)]  # [T, N]
        images = self.render(classes, shots + queries, generator)  # [T, N, K+Q, 1, S, S]
        return class_major_batch(images, shots, classes)
