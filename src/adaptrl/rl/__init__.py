"""The RL kernel (layer 4): small, pure, separately tested functions every algorithm reuses."""

from adaptrl.rl.returns import discounted_returns, gae, masked_mean, normalize

__all__ = ["discounted_returns", "gae", "masked_mean", "normalize"]
