"""The task replay buffer (adaptrl.rl.replay): ring order and wrap-around against a plain-Python
deque per task, the sampling distribution, context windows that never mix trials, and the
checkpoint round trip through safetensors."""

from __future__ import annotations

from collections import deque

import pytest
import torch
from safetensors.torch import load_file, save_file

from adaptrl.core.errors import CheckpointError
from adaptrl.rl.replay import TaskReplay

FIELDS = {"obs": ((2,), torch.float32), "reward": ((), torch.float32)}


def batch(tasks: int, n: int, start: int, trial: int = 0) -> dict[str, torch.Tensor]:
    """Transitions numbered ``start..start+n`` per task; task ``t``'s value is ``1000 t + number``."""
    number = torch.arange(start, start + n, dtype=torch.float32)
    value = 1000 * torch.arange(tasks, dtype=torch.float32)[:, None] + number
    return {
        "obs": torch.stack([value, -value], dim=-1),
        "reward": value,
        "episode": torch.zeros(tasks, n, dtype=torch.int64),
        "trial": torch.full((tasks, n), trial, dtype=torch.int64),
    }


def test_ring_keeps_the_newest_transitions_of_each_task_in_order():
    buf = TaskReplay(tasks=3, capacity=5, fields=FIELDS)
    reference = [deque(maxlen=5) for _ in range(3)]
    start = 0
    for n, rows in [(2, [0, 1, 2]), (4, [0, 2]), (7, [1]), (1, [0, 1, 2]), (5, [2])]:
        b = batch(3, n, start)
        b = {k: v[rows] for k, v in b.items()}
        buf.add(b, tasks=torch.tensor(rows))
        for i, t in enumerate(rows):
            reference[t].extend(b["reward"][i].tolist())
        start += n
        out, mask = buf.recent(5)
        for t in range(3):
            held = list(reference[t])
            assert buf.size[t].item() == len(held)
            assert out["reward"][t][mask[t]].tolist() == held
            assert out["obs"][t][mask[t]][:, 1].tolist() == [-x for x in held]
            assert mask[t].tolist() == [False] * (5 - len(held)) + [True] * len(held)


def test_sampling_is_uniform_over_each_tasks_held_transitions():
    buf = TaskReplay(tasks=2, capacity=8, fields=FIELDS)
    buf.add(batch(2, 11, 0))  # wraps: numbers 3..10 are held
    buf.add({k: v[:1] for k, v in batch(2, 2, 100).items()}, tasks=torch.tensor([0]))
    gen = torch.Generator().manual_seed(0)
    out = buf.sample(40_000, generator=gen)
    assert out["reward"].shape == (2, 40_000) and out["obs"].shape == (2, 40_000, 2)
    held = {0: [5, 6, 7, 8, 9, 10, 100, 101], 1: [1003 + i for i in range(8)]}
    for t in (0, 1):
        values, counts = out["reward"][t].unique(return_counts=True)
        assert sorted(values.long().tolist()) == sorted(held[t])
        # Each of 8 values has probability 1/8; 5000 expected, sd ~66.
        assert (counts - 5000).abs().max().item() < 400
    recent = buf.sample(8000, tasks=torch.tensor([0]), generator=gen, recent=2)
    assert set(recent["reward"][0].long().tolist()) == {100, 101}


def test_sampling_is_reproducible_from_the_generator():
    buf = TaskReplay(tasks=2, capacity=6, fields=FIELDS)
    buf.add(batch(2, 4, 0))
    draw = [buf.sample(16, generator=torch.Generator().manual_seed(3))["reward"] for _ in range(2)]
    assert torch.equal(draw[0], draw[1])


def test_windows_are_consecutive_and_never_cross_a_trial():
    buf = TaskReplay(tasks=1, capacity=10, fields=FIELDS)
    buf.add(batch(1, 3, 0, trial=0))
    buf.add(batch(1, 4, 3, trial=1))
    out, mask = buf.windows(2000, length=4, generator=torch.Generator().manual_seed(1))
    assert out["reward"].shape == (1, 2000, 4) and mask.shape == (1, 2000, 4)
    reward, trial, mask = out["reward"][0], out["trial"][0], mask[0]
    last = reward[:, -1].long()
    assert set(last.tolist()) == set(range(7))
    for w in range(2000):
        end = int(last[w])
        # Valid steps: the same trial as the window's end, consecutive up to it.
        first_of_trial = 0 if end < 3 else 3
        want = [s >= first_of_trial and s >= 0 for s in range(end - 3, end + 1)]
        assert mask[w].tolist() == want
        valid = reward[w][mask[w]].long().tolist()
        assert valid == list(range(max(end - 3, first_of_trial), end + 1))
        assert (trial[w][mask[w]] == trial[w, -1]).all()


def test_state_round_trip_through_safetensors_resumes_the_same_samples(tmp_path):
    buf = TaskReplay(tasks=2, capacity=4, fields=FIELDS)
    buf.add(batch(2, 6, 0))
    save_file(buf.state_dict(), tmp_path / "replay.safetensors")
    other = TaskReplay(tasks=2, capacity=4, fields=FIELDS)
    other.load_state_dict(load_file(tmp_path / "replay.safetensors"))
    for b in (buf, other):
        b.add(batch(2, 1, 50))
    a = buf.sample(32, generator=torch.Generator().manual_seed(9))
    b = other.sample(32, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(a[k], b[k]) for k in a)
    wrong = TaskReplay(tasks=2, capacity=5, fields=FIELDS)
    with pytest.raises(CheckpointError, match=r"replay.obs is \(2, 4, 2\)"):
        wrong.load_state_dict(buf.state_dict())
    with pytest.raises(CheckpointError, match="lacks"):
        wrong.load_state_dict({})


def test_bad_input_gives_clear_errors():
    buf = TaskReplay(tasks=2, capacity=4, fields=FIELDS)
    with pytest.raises(ValueError, match="hold no transitions"):
        buf.sample(4)
    with pytest.raises(KeyError, match=r"missing fields \['trial'\]"):
        buf.add({k: v for k, v in batch(2, 1, 0).items() if k != "trial"})
    bad = batch(2, 1, 0) | {"obs": torch.zeros(2, 1, 3)}
    with pytest.raises(ValueError, match=r"obs has shape \(2, 1, 3\), want \(2, 1, 2\)"):
        buf.add(bad)
    with pytest.raises(ValueError, match="kept by the buffer"):
        TaskReplay(tasks=1, capacity=1, fields={"trial": ((), torch.int64)})
    with pytest.raises(
        MemoryError, match=r"would take .* lower --buffer-size \(at most ~[\d,]+ fits\)"
    ):
        TaskReplay(
            tasks=1000,
            capacity=10**9,
            fields={"obs": ((64,), torch.float32)},
            capacity_option="--buffer-size",
        )


def test_whole_segments_come_back_whole_and_uniform():
    buf = TaskReplay(tasks=2, capacity=9, fields=FIELDS, segment=3)
    for trial in range(5):  # the ring keeps the newest three trials of each row
        buf.add(batch(2, 3, 3 * trial, trial=trial))
    out = buf.sample_segments(3000, generator=torch.Generator().manual_seed(0))
    assert out["reward"].shape == (2, 3000, 3)
    trial = out["trial"]
    assert bool((trial == trial[..., :1]).all())  # one trial per segment
    first = out["reward"][0, :, 0].long()
    assert set(first.tolist()) == {6, 9, 12}  # trials 2, 3, 4 start at numbers 6, 9, 12
    assert torch.equal(out["reward"][0], first[:, None].float() + torch.arange(3.0))
    counts = torch.bincount(trial[1, :, 0])[2:]
    assert (counts - 1000).abs().max().item() < 120
    with pytest.raises(ValueError, match="not whole segments of 3"):
        buf.add(batch(2, 2, 0))
    with pytest.raises(ValueError, match="not a multiple of segment"):
        TaskReplay(tasks=1, capacity=10, fields=FIELDS, segment=3)
    with pytest.raises(ValueError, match="segment="):
        TaskReplay(tasks=1, capacity=10, fields=FIELDS).sample_segments(1)
