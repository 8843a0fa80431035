"""Run directories: one folder per training run holding its config, metrics and checkpoints.

::

    <root>/<name>/
        config.yaml        the full config (written once, read on --resume)
        metrics.csv        one row per logged iteration (core.logging.MetricLogger)
        tb/                TensorBoard events
        checkpoints/       ckpt-<step>.safetensors + ckpt-<step>.json (core.checkpoint)
        plots/             figures

A new run never overwrites a non-empty directory; resuming goes through :meth:`RunDir.open`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any, TypeVar

from adaptrl.core.checkpoint import checkpoint_path, latest_checkpoint, prune_checkpoints
from adaptrl.core.config import config_hash, load_yaml_config, read_yaml, save_yaml_config
from adaptrl.core.errors import ConfigError

T = TypeVar("T")

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The directory of one run. Build with :meth:`create` (new run) or :meth:`open` (resume)."""

    path: Path
    resumed: bool = False

    @classmethod
    def create(cls, root: str | Path, name: str | None = None, config: Any = None) -> RunDir:
        """Make ``root/<name>`` (default name: ``<UTC timestamp>-<config hash>``).

        An existing non-empty directory is refused with a :class:`ConfigError`. When ``config``
        is given it is saved as ``config.yaml``.
        """
        root = Path(root)
        if name is not None:
            if not name or Path(name).name != name or name in (".", ".."):
                raise ConfigError(f"run name {name!r} must be a plain folder name (no '/')")
            path = root / name
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise ConfigError(
                    f"run directory {path} already exists and is not empty; to continue that "
                    f"run use --resume {path}, otherwise choose a new name"
                )
        else:
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            stem = f"{stamp}-{config_hash(config)}" if config is not None else stamp
            path, i = root / stem, 1
            while path.exists() and (not path.is_dir() or any(path.iterdir())):
                path, i = root / f"{stem}-{i}", i + 1
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.checkpoint_dir.mkdir(exist_ok=True)
        run.plots_dir.mkdir(exist_ok=True)
        if config is not None:
            run.save_config(config)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run to resume it; it must exist and hold a ``config.yaml``."""
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"cannot resume {path}: no such run directory; check the path")
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(
                f"cannot resume {path}: it has no {CONFIG_FILE}, so it is not a run directory "
                "(or the run never started); start a new run instead"
            )
        run = cls(path, resumed=True)
        run.checkpoint_dir.mkdir(exist_ok=True)
        run.plots_dir.mkdir(exist_ok=True)
        return run

    # --- layout ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tb_dir(self) -> Path:
        return self.path / "tb"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    # --- config ---------------------------------------------------------------------------
    def save_config(self, cfg: Any) -> Path:
        """Write ``config.yaml`` atomically."""
        return save_yaml_config(cfg, self.config_path)

    def load_config(self, cls: type[T]) -> T:
        """Read ``config.yaml`` back into ``cls`` (strict)."""
        return load_yaml_config(cls, self.config_path)

    def config_dict(self) -> dict[str, Any]:
        """``config.yaml`` as plain data (for code that does not know the config class)."""
        return read_yaml(self.config_path)

    # --- checkpoints ----------------------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` goes (pass to ``save_checkpoint``)."""
        return checkpoint_path(self.checkpoint_dir, step)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or ``None`` when there is none yet."""
        return latest_checkpoint(self.checkpoint_dir)

    def prune_checkpoints(self, keep: int = 2) -> list[Path]:
        """Keep the newest ``keep`` checkpoints."""
        return prune_checkpoints(self.checkpoint_dir, keep)

    def __fspath__(self) -> str:
        return str(self.path)


__all__ = ["CONFIG_FILE", "METRICS_FILE", "RunDir"]
