"""Supervised few-shot task samplers (layer 5): N-way K-shot classification and regression.

Built-in families: ``sinusoid-v0`` (MAML's sine-wave regression), ``glyphs-v0`` (a procedurally
generated Omniglot-like character set that ships as code) and ``imagefolder`` (Omniglot or
mini-ImageNet, or any folder of class folders, already on disk).
"""

from typing import Annotated, Union

import tyro

from adaptrl.fewshot import glyphs, imagefolder, sinusoid  # noqa: F401  (registers the built-in families)
from adaptrl.fewshot.base import FewShotBatch, FewShotConfig, FewShotFamily, Split
from adaptrl.fewshot.glyphs import Glyphs, GlyphsConfig
from adaptrl.fewshot.imagefolder import ImageFolder, ImageFolderConfig
from adaptrl.fewshot.registry import (
    FEWSHOT_FAMILIES,
    make_fewshot_family,
    register_fewshot_family,
)
from adaptrl.fewshot.sinusoid import Sinusoid, SinusoidConfig

# One tyro subcommand per registered family, named by its id, taking its own config.
FewShotConfigUnion = Union[  # type: ignore[valid-type]  # noqa: UP007  (built from the registry)
    tuple(
        Annotated[
            cls.config_cls,
            tyro.conf.subcommand(
                fid, description=(cls.__doc__ or cls.config_cls.__doc__ or "").strip()
            ),
        ]
        for fid, cls in FEWSHOT_FAMILIES.items()
    )
]

__all__ = [
    "FEWSHOT_FAMILIES",
    "FewShotBatch",
    "FewShotConfig",
    "FewShotConfigUnion",
    "FewShotFamily",
    "Glyphs",
    "GlyphsConfig",
    "ImageFolder",
    "ImageFolderConfig",
    "Sinusoid",
    "SinusoidConfig",
    "Split",
    "make_fewshot_family",
    "register_fewshot_family",
]
