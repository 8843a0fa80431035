"""Layer 1: seeding, typed configs, run directories, metric logging, checkpoints, progress, errors.

Nothing here imports a higher layer. TensorBoard and tyro are imported only when used.
"""

from __future__ import annotations

from adaptrl.core import errors
from adaptrl.core.checkpoint import (
    atomic_write,
    checkpoint_path,
    flatten_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_state,
    prune_checkpoints,
    read_checkpoint_meta,
    save_checkpoint,
    save_state,
    unflatten_state,
)
from adaptrl.core.config import (
    Config,
    check_fields,
    config_from_dict,
    config_hash,
    config_to_dict,
    family_id_of,
    load_yaml_config,
    parse_cli,
    read_yaml,
    save_yaml_config,
)
from adaptrl.core.device import resolve_device
from adaptrl.core.errors import (
    AdaptrlError,
    CheckpointError,
    ConfigError,
    DeviceError,
    MissingExtraError,
    UnknownIdError,
    require,
)
from adaptrl.core.logging import MetricLogger, read_metrics
from adaptrl.core.progress import Progress, console, plain_output, progress
from adaptrl.core.registry import Registry
from adaptrl.core.rundir import RunDir
from adaptrl.core.seeding import (
    derive_seed,
    generator_state,
    global_rng_state,
    make_generator,
    seed_everything,
    set_generator_state,
    set_global_rng_state,
)
from adaptrl.core.table import markdown_table, print_table

__all__ = [
    "AdaptrlError",
    "CheckpointError",
    "Config",
    "ConfigError",
    "DeviceError",
    "MetricLogger",
    "MissingExtraError",
    "Progress",
    "Registry",
    "RunDir",
    "UnknownIdError",
    "atomic_write",
    "check_fields",
    "checkpoint_path",
    "config_from_dict",
    "config_hash",
    "config_to_dict",
    "console",
    "derive_seed",
    "errors",
    "family_id_of",
    "flatten_state",
    "generator_state",
    "global_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_state",
    "load_yaml_config",
    "make_generator",
    "markdown_table",
    "parse_cli",
    "plain_output",
    "print_table",
    "progress",
    "prune_checkpoints",
    "read_checkpoint_meta",
    "read_metrics",
    "read_yaml",
    "require",
    "resolve_device",
    "save_checkpoint",
    "save_state",
    "save_yaml_config",
    "seed_everything",
    "set_generator_state",
    "set_global_rng_state",
    "unflatten_state",
]
