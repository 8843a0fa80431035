"""The RL kernel (layer 4): small, pure, separately tested functions every algorithm reuses."""

from adaptrl.rl.losses import entropy_loss, ppo_clip_loss, value_loss, vpg_loss
from adaptrl.rl.returns import discounted_returns, gae, masked_mean, normalize

__all__ = [
    "discounted_returns",
    "entropy_loss",
    "gae",
    "masked_mean",
    "normalize",
    "ppo_clip_loss",
    "value_loss",
    "vpg_loss",
]
