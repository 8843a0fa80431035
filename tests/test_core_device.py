"""Device choice and the process-level CPU allocator setting."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from adaptrl.core.device import resolve_device, tune_cpu_allocator
from adaptrl.core.errors import DeviceError


def test_resolve_device_and_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu-9")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cpu"):
            resolve_device("cuda")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_allocator_tuning_applies_on_glibc_and_can_be_turned_off():
    code = (
        "import ctypes, os; from adaptrl.core.device import tune_cpu_allocator as t; "
        "print(t(), os.environ.get('ADAPTRL_MALLOC_TUNING'))"
    )
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True)
    if "GNU" in libc.stdout + libc.stderr or "GLIBC" in (libc.stdout + libc.stderr).upper():
        assert on.stdout.split() == ["True", "None"]
    off = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"ADAPTRL_MALLOC_TUNING": "0", "PATH": "/usr/bin:/bin"},
    )
    assert off.stdout.split() == ["False", "0"]
    # tensors allocated and freed afterwards still hold what was written
    tune_cpu_allocator()
    for n in (1 << 20, 1 << 23):
        x = torch.arange(n, dtype=torch.float32)
        assert float(x[-1]) == n - 1
        del x
