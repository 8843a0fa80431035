"""A replay buffer with a task dimension, for the off-policy meta-learners.

Every field is one tensor ``[tasks, capacity, *shape]``: task ``t`` keeps its own ring of the
``capacity`` most recent transitions, so sampling a batch for each of many tasks is one gather and
never a Python loop over transitions. Writes go to the slots after each task's newest one, oldest
first overwritten. Besides the fields a learner stores (observation, action, reward, next
observation, terminated, ...), two integer fields are always kept: ``episode`` and ``trial``, the
index of the episode within its trial and a running trial counter per task, so a context window
can refuse to mix two trials and a learner can ask for the first episodes of a trial only.

The buffer's state (the fields and the write pointers) is a flat dict of tensors: it goes into a
learner's safetensors checkpoint, so a resumed run samples exactly what the killed one would have.
"""

from __future__ import annotations

import math
import os

import torch

from adaptrl.core.errors import BufferTooLargeError, CheckpointError

INDEX_FIELDS = ("episode", "trial")
"""Integer fields every buffer keeps beside the learner's own."""


def available_bytes() -> int | None:
    """Memory the OS reports as available (Linux ``/proc/meminfo``), else ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class TaskReplay:
    """Ring buffers of transitions, one per task, stored as ``[tasks, capacity, ...]`` tensors.

    ``fields`` maps a name to ``(shape, dtype)`` of one transition's entry (``()`` for a scalar).
    ``capacity_option`` names the setting that sets ``capacity`` (counted in segments when
    ``segment`` is set), for the error raised when the buffer would not fit in memory. With ``segment`` set, data arrives in whole segments of that
    many transitions (a learner's trials): ``capacity`` and every ``add`` are multiples of it, so
    segments stay aligned in the ring and :meth:`sample_segments` can return whole ones.
    """

    def __init__(
        self,
        tasks: int,
        capacity: int,
        fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
        device: str | torch.device = "cpu",
        *,
        capacity_option: str = "--replay-capacity",
        memory_fraction: float = 0.8,
        segment: int | None = None,
    ):
        if tasks < 1 or capacity < 1:
            raise ValueError(
                f"TaskReplay needs tasks >= 1 and capacity >= 1, got {tasks}, {capacity}"
            )
        if segment is not None and (segment < 1 or capacity % segment):
            raise ValueError(
                f"TaskReplay: capacity {capacity} is not a multiple of segment {segment}"
            )
        self.segment = segment
        clash = set(fields) & set(INDEX_FIELDS)
        if clash:
            raise ValueError(f"TaskReplay: {sorted(clash)} are kept by the buffer itself")
        self.tasks, self.capacity = tasks, capacity
        self.device = torch.device(device)
        specs = dict(fields) | {name: ((), torch.int64) for name in INDEX_FIELDS}
        sizes = {
            name: tasks * capacity * math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            for name, (shape, dtype) in specs.items()
        }
        total = sum(sizes.values())
        free = available_bytes() if self.device.type == "cpu" else None
        if free is not None and total > memory_fraction * free:
            largest = max(sizes, key=sizes.__getitem__)
            fit = int(capacity * memory_fraction * free / total) // (segment or 1)
            raise BufferTooLargeError(
                f"replay buffer of {tasks} tasks x {capacity:,} transitions would take "
                f"{_gib(total)} ({largest}: {_gib(sizes[largest])}), more than "
                f"{memory_fraction:.0%} of the {_gib(free)} available; lower {capacity_option} "
                f"(at most ~{fit:,} fits)"
            )
        self.nbytes = total
        self.data = {
            name: torch.zeros((tasks, capacity, *shape), dtype=dtype, device=self.device)
            for name, (shape, dtype) in specs.items()
        }
        self.pos = torch.zeros(tasks, dtype=torch.int64, device=self.device)
        """Slot the next transition of each task goes to."""
        self.size = torch.zeros(tasks, dtype=torch.int64, device=self.device)
        """Transitions each task holds (at most ``capacity``)."""

    # -- writing -----------------------------------------------------------------------------

    def add(self, batch: dict[str, torch.Tensor], tasks: torch.Tensor | None = None) -> None:
        """Append ``n`` transitions to each task: every field ``[len(tasks), n, *shape]``.

        ``tasks`` (default: all, in order) says which tasks the rows of the batch belong to. When
        ``n`` exceeds the capacity only the last ``capacity`` transitions are kept.
        """
        if set(batch) != set(self.data):
            missing, extra = set(self.data) - set(batch), set(batch) - set(self.data)
            raise KeyError(
                f"TaskReplay.add: missing fields {sorted(missing)}, unknown {sorted(extra)}"
            )
        rows = self._rows(tasks)
        n = next(iter(batch.values())).shape[1]
        if self.segment is not None and n % self.segment:
            raise ValueError(
                f"TaskReplay.add: {n} transitions are not whole segments of {self.segment}"
            )
        keep = min(n, self.capacity)
        for name, value in batch.items():
            want = (rows.numel(), n, *self.data[name].shape[2:])
            if tuple(value.shape) != want:
                raise ValueError(
                    f"TaskReplay.add: {name} has shape {tuple(value.shape)}, want {want}"
                )
        # Slots of the last `keep` transitions of the batch, per task: [rows, keep].
        offsets = torch.arange(n - keep, n, device=self.device)
        slots = (self.pos[rows, None] + offsets) % self.capacity
        for name, value in batch.items():
            self.data[name][rows[:, None], slots] = value[:, n - keep :].to(
                self.device, self.data[name].dtype
            )
        self.pos[rows] = (self.pos[rows] + n) % self.capacity
        self.size[rows] = torch.clamp(self.size[rows] + n, max=self.capacity)

    # -- reading -----------------------------------------------------------------------------

    def _rows(self, tasks: torch.Tensor | None) -> torch.Tensor:
        if tasks is None:
            return torch.arange(self.tasks, device=self.device)
        return torch.as_tensor(tasks, dtype=torch.int64, device=self.device).reshape(-1)

    def _slot(self, rows: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        """Slot of the transition ``age`` steps before the newest one (0 = newest) of each row."""
        return (self.pos[rows].unsqueeze(-1) - 1 - age) % self.capacity

    def _gather(self, rows: torch.Tensor, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        index = rows.reshape(-1, *([1] * (slots.dim() - 1)))
        return {name: value[index, slots] for name, value in self.data.items()}

    def sample(
        self,
        batch_size: int,
        tasks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        recent: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """``batch_size`` transitions per task, uniform with replacement: fields ``[tasks, batch, ...]``.

        ``recent`` limits each task's draw to its ``recent`` newest transitions (PEARL samples its
        context from recent data only). Every sampled task must hold at least one transition.
        """
        rows = self._rows(tasks)
        held = self._held(rows, recent)
        u = torch.rand((rows.numel(), batch_size), generator=generator, device=self.device)
        age = (u * held.unsqueeze(-1)).long().clamp_max(held.unsqueeze(-1) - 1)
        return self._gather(rows, self._slot(rows, age))

    def _held(self, rows: torch.Tensor, recent: int | None) -> torch.Tensor:
        held = self.size[rows] if recent is None else self.size[rows].clamp_max(recent)
        if bool((held == 0).any()):
            empty = rows[held == 0].tolist()
            raise ValueError(f"TaskReplay: tasks {empty} hold no transitions yet")
        return held

    def sample_segments(
        self,
        count: int,
        tasks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """``count`` whole segments per task, uniform with replacement over those held: fields
        ``[tasks, count, segment, ...]`` in time order."""
        if self.segment is None:
            raise ValueError("TaskReplay.sample_segments needs a buffer built with segment=")
        rows = self._rows(tasks)
        held = self._held(rows, None) // self.segment
        u = torch.rand((rows.numel(), count), generator=generator, device=self.device)
        newest_first = (u * held.unsqueeze(-1)).long().clamp_max(held.unsqueeze(-1) - 1)
        back = torch.arange(self.segment - 1, -1, -1, device=self.device)
        age = newest_first.unsqueeze(-1) * self.segment + back
        return self._gather(rows, self._slot(rows.unsqueeze(-1), age))

    def windows(
        self,
        batch_size: int,
        length: int,
        tasks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``batch_size`` sequences of ``length`` consecutive transitions per task, each ending at
        a uniformly drawn transition: fields ``[tasks, batch, length, ...]`` in time order.

        The mask ``[tasks, batch, length]`` is False where a step is not held or belongs to
        another trial than the window's last step (windows are left-padded, as a recurrent
        context encoder reading the history before a transition wants them).
        """
        if length < 1:
            raise ValueError(f"TaskReplay.windows: length must be >= 1, got {length}")
        rows = self._rows(tasks)
        held = self._held(rows, None)
        u = torch.rand((rows.numel(), batch_size), generator=generator, device=self.device)
        end_age = (u * held.unsqueeze(-1)).long().clamp_max(held.unsqueeze(-1) - 1)
        back = torch.arange(length - 1, -1, -1, device=self.device)
        age = end_age.unsqueeze(-1) + back  # [tasks, batch, length], oldest first
        out = self._gather(rows, self._slot(rows.unsqueeze(-1), age))
        mask = (age < held.reshape(-1, 1, 1)) & (out["trial"] == out["trial"][..., -1:])
        return out, mask

    def recent(
        self, length: int, tasks: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Each task's ``length`` newest transitions in time order, fields ``[tasks, length, ...]``,
        and a mask that is False where fewer were held (left padding)."""
        rows = self._rows(tasks)
        back = torch.arange(length - 1, -1, -1, device=self.device).expand(rows.numel(), length)
        out = self._gather(rows, self._slot(rows, back))
        return out, back < self.size[rows].unsqueeze(-1)

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self, prefix: str = "replay.") -> dict[str, torch.Tensor]:
        """Fields and pointers as a flat dict of tensors (safetensors-ready)."""
        state = {f"{prefix}{name}": value for name, value in self.data.items()}
        return state | {f"{prefix}_pos": self.pos, f"{prefix}_size": self.size}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "replay.") -> None:
        """Restore what :meth:`state_dict` returned; shapes and dtypes must match this buffer."""
        mine = self.state_dict(prefix)
        missing = sorted(set(mine) - set(state))
        if missing:
            raise CheckpointError(f"TaskReplay.load_state_dict: checkpoint lacks {missing}")
        for key, target in mine.items():
            value = state[key]
            if value.shape != target.shape or value.dtype != target.dtype:
                raise CheckpointError(
                    f"TaskReplay.load_state_dict: {key} is {tuple(value.shape)} {value.dtype} in the "
                    f"checkpoint, {tuple(target.shape)} {target.dtype} in this buffer"
                )
            target.copy_(value)
