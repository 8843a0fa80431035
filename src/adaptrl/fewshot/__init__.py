"""Supervised few-shot task samplers (layer 5): N-way K-shot classification and regression.

Built-in families: ``sinusoid-v0`` (MAML's sine-wave regression), ``glyphs-v0`` (a procedurally
generated Omniglot-like character set that ships as code) and ``imagefolder`` (Omniglot or
mini-ImageNet, or any folder of class folders, already on disk).
"""

from adaptrl.fewshot import glyphs, imagefolder, sinusoid  # noqa: F401  (registers the built-in families)
from adaptrl.fewshot.base import FewShotBatch, FewShotConfig, FewShotFamily, Split
from adaptrl.fewshot.check import FewShotContractError, check_fewshot_family
from adaptrl.fewshot.glyphs import Glyphs, GlyphsConfig
from adaptrl.fewshot.imagefolder import ImageFolder, ImageFolderConfig
from adaptrl.fewshot.registry import (
    FEWSHOT_FAMILIES,
    fewshot_config_union,
    make_fewshot_family,
    register_fewshot_family,
)
from adaptrl.fewshot.sinusoid import Sinusoid, SinusoidConfig

# One tyro subcommand per registered family, named by its id, taking its own config.
FewShotConfigUnion = fewshot_config_union()

__all__ = [
    "FEWSHOT_FAMILIES",
    "FewShotBatch",
    "FewShotConfig",
    "FewShotConfigUnion",
    "FewShotContractError",
    "FewShotFamily",
    "Glyphs",
    "GlyphsConfig",
    "ImageFolder",
    "ImageFolderConfig",
    "Sinusoid",
    "SinusoidConfig",
    "Split",
    "check_fewshot_family",
    "fewshot_config_union",
    "make_fewshot_family",
    "register_fewshot_family",
]
