"""Test-session settings: one torch thread per process. `make test` runs one pytest worker per
core; more threads than cores make OpenMP's waiting threads spin against each other, which slows
small-tensor code many times over."""

import torch

torch.set_num_threads(1)
