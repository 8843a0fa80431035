"""Memories for RL²: shapes, step-by-step == whole sequence, causality, carried state, errors."""

from __future__ import annotations

import pytest
import torch

from adaptrl.core.errors import ConfigError
from adaptrl.nn.memory import GRUMemory, TransformerMemory, make_memory


def memories():
    torch.manual_seed(0)
    return [GRUMemory(7, 16), TransformerMemory(7, 16, layers=2, heads=4, max_len=20)]


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("memory", memories(), ids=["gru", "transformer"])
def test_shapes_and_step_equals_sequence(memory, grad):
    # no_grad is how a policy acts: the transformer then grows its key/value cache in place
    x = torch.randn(12, 3, 7)
    y, _ = memory(x, memory.initial_state(3))
    assert y.shape == (12, 3, 16)
    state, ys = memory.initial_state(3), []
    with torch.set_grad_enabled(grad):
        for t in range(12):
            yt, state = memory.step(x[t], state)
            ys.append(yt)
        chunks, state2 = [], memory.initial_state(3)
        for part in x.split([5, 1, 6]):
            out, state2 = memory(part, state2)
            chunks.append(out)
    torch.testing.assert_close(torch.stack(ys), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(chunks), y, atol=1e-5, rtol=1e-5)


def test_transformer_states_stay_valid_when_stepped_from_twice():
    memory = memories()[1]
    x, other, more = torch.randn(8, 2, 7), torch.randn(3, 2, 7), torch.randn(2, 2, 7)
    whole, _ = memory(x)
    whole_branch, _ = memory(torch.cat([x[:5], other, more]))
    with torch.no_grad():
        mid = memory.initial_state(2)
        for t in range(5):  # step by step: the buffer has grown to 8 steps, 3 of them free
            _, mid = memory.step(x[t], mid)
        _, branch = memory(other, mid)  # fills mid's free steps
        rest, _ = memory(x[5:], mid)  # mid again: must neither read nor overwrite the branch's
        tail, _ = memory(more, branch)
    torch.testing.assert_close(rest, whole[5:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tail, whole_branch[8:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("memory", memories(), ids=["gru", "transformer"])
def test_causal_future_inputs_do_not_change_earlier_outputs(memory):
    x = torch.randn(12, 3, 7)
    y, _ = memory(x)
    x2 = x.clone()
    x2[6:] += torch.randn(6, 3, 7)
    y2, _ = memory(x2)
    torch.testing.assert_close(y2[:6], y[:6], atol=0, rtol=0)
    assert (y2[6:] - y[6:]).abs().max() > 1e-3  # the later outputs do read the later inputs


@pytest.mark.parametrize("memory", memories(), ids=["gru", "transformer"])
def test_state_carries_the_past_and_the_initial_state_forgets_it(memory):
    x = torch.randn(10, 2, 7)
    whole, _ = memory(x)
    first, state = memory(x[:4])
    rest, _ = memory(x[4:], state)
    torch.testing.assert_close(torch.cat([first, rest]), whole, atol=1e-5, rtol=1e-5)
    fresh, _ = memory(x[4:], memory.initial_state(2))
    assert (fresh - rest).abs().max() > 1e-3  # the memory of x[:4] mattered


def test_rows_are_independent():
    for memory in memories():
        x = torch.randn(8, 4, 7)
        y, _ = memory(x)
        x2 = x.clone()
        x2[:, 0] += 1.0
        y2, _ = memory(x2)
        torch.testing.assert_close(y2[:, 1:], y[:, 1:], atol=1e-6, rtol=1e-6)


def test_initial_states():
    assert torch.equal(GRUMemory(3, 5).initial_state(4), torch.zeros(4, 5))
    state = TransformerMemory(3, 8, heads=2, max_len=5).initial_state(4)
    assert state.cache.shape == (2, 2, 4, 2, 0, 4) and state.length == 0


def test_errors_name_the_fix():
    with pytest.raises(ConfigError, match="divisible"):
        TransformerMemory(3, 10, heads=4)
    with pytest.raises(ConfigError, match="max_len"):
        TransformerMemory(3, 8, heads=2, max_len=5)(torch.zeros(6, 1, 3))
    with pytest.raises(ConfigError, match="'gru' or 'transformer'"):
        make_memory("lstm", 3, 8)
    with pytest.raises(ConfigError, match=">= 1"):
        GRUMemory(0, 8)
    assert isinstance(make_memory("transformer", 3, 8, max_len=9, heads=2), TransformerMemory)
