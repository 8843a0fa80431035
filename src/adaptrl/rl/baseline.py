"""The linear feature baseline of Duan et al. (2016, "Benchmarking deep RL"), used by MAML-RL and
RL²'s TRPO variant: per task, a ridge regression of the returns on simple features of the
observation and the time step, refitted on every batch (no state carried between batches).

The fit is a batched ridge solve (``torch.linalg.solve`` on the normal equations) in float64, so
it is stable even though the time features span several orders of magnitude; results come back in
the input dtype. No host syncs.
"""

from __future__ import annotations

import torch

from adaptrl.rl.returns import discounted_returns, gae


def baseline_features(obs: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """``[clip(o, ±10), clip(o, ±10)**2, t/100, (t/100)**2, (t/100)**3, 1]`` on the last dimension.

    ``obs [T, ..., D]`` are float observations (encode discrete ones first, e.g. one-hot);
    ``timestep [T, ...]`` is the step index within the episode. Output ``[T, ..., 2 D + 4]``.
    """
    o = obs.clamp(-10.0, 10.0)
    t = (timestep.to(o.dtype) / 100.0).unsqueeze(-1)
    return torch.cat([o, o.square(), t, t.square(), t**3, torch.ones_like(t)], dim=-1)


def fit_linear_baseline(
    features: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    reg: float = 1e-5,
) -> torch.Tensor:
    """Ridge coefficients per group: ``argmin_w ||X_g w - y_g||^2 + reg ||w||^2`` over valid rows.

    ``features [G, M, F]``, ``targets [G, M]``, ``mask [G, M]`` (rows outside it are ignored, even if
    NaN). Returns ``[G, F]`` in the features' dtype.
    """
    x = features.double()
    y = targets.double()
    if mask is not None:
        valid = mask.bool()
        x = torch.where(valid.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        y = torch.where(valid, y, torch.zeros((), dtype=y.dtype, device=y.device))
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    gram = x.transpose(-1, -2) @ x + reg * eye
    rhs = (x.transpose(-1, -2) @ y.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve(gram, rhs).to(features.dtype)


def linear_baseline_values(
    obs: torch.Tensor,
    timestep: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor | None = None,
    reg: float = 1e-5,
) -> torch.Tensor:
    """Fit one linear baseline per group ``g`` on its ``T x E`` samples and predict them.

    ``obs [T, G, E, D]``, ``timestep``, ``returns`` and ``mask`` ``[T, G, E]`` (``G`` tasks, ``E``
    episodes or environments each). Returns values ``[T, G, E]`` in ``returns``' dtype. As in the
    original, the baseline is fitted on the same samples it then evaluates.
    """
    feats = baseline_features(obs.double(), timestep)  # [T, G, E, F]
    T, G, E, F = feats.shape
    per_group = feats.permute(1, 0, 2, 3).reshape(G, T * E, F)
    targets = returns.double().permute(1, 0, 2).reshape(G, T * E)
    group_mask = None if mask is None else mask.permute(1, 0, 2).reshape(G, T * E)
    coeffs = fit_linear_baseline(per_group, targets, group_mask, reg)
    return torch.einsum("tgef,gf->tge", feats, coeffs).to(returns.dtype)


def baseline_advantages(
    rewards: torch.Tensor,
    done: torch.Tensor,
    obs: torch.Tensor,
    timestep: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    gae_lambda: float | None = None,
) -> torch.Tensor:
    """Advantages against the linear baseline fitted per group, ``[T, G, E]``.

    ``rewards``, ``done``, ``timestep`` and ``mask`` are ``[T, G, E]`` (rewards already zero
    outside ``mask``), ``obs`` ``[T, G, E, D]``. The baseline is fitted to the discounted returns
    (episodes end at ``done``); the advantages are those returns minus it, or with ``gae_lambda``
    GAE(lambda) on its values (the value after the last collected step taken as 0).
    """
    shape = rewards.shape
    flat = rewards.reshape(shape[0], -1)
    ends = done.reshape(shape[0], -1)
    returns = discounted_returns(flat, ends, gamma).reshape(shape)
    values = linear_baseline_values(obs, timestep, returns, mask)
    if gae_lambda is None:
        return returns - values
    v = values.reshape(shape[0], -1)
    next_v = torch.cat([v[1:], torch.zeros_like(v[:1])])
    return gae(flat, v, next_v, ends, ends, gamma, gae_lambda).reshape(shape)
