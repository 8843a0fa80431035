"""The RL kernel (layer 4): small, pure, separately tested functions every algorithm reuses."""

from adaptrl.rl.baseline import (
    baseline_advantages,
    baseline_features,
    fit_linear_baseline,
    linear_baseline_values,
)
from adaptrl.rl.losses import entropy_loss, ppo_clip_loss, value_loss, vpg_loss
from adaptrl.rl.replay import TaskReplay
from adaptrl.rl.returns import discounted_returns, explained_variance, gae, masked_mean, normalize
from adaptrl.rl.rollout import (
    Rollout,
    collect,
    episode_success,
    first_episode_mask,
    step_budget_mask,
    step_in_episode,
)
from adaptrl.rl.td import (
    discrete_sac_actor_loss,
    discrete_sac_target,
    double_dqn_target,
    sac_actor_loss,
    sac_alpha_loss,
    sac_target,
    smoothed_target_action,
    soft_update,
    td3_target,
    td_loss,
)
from adaptrl.rl.trpo import (
    conjugate_gradient,
    conjugate_gradient_with_product,
    fisher_vector_product,
    flat,
    line_search,
    max_kl_step,
    trpo_step,
    unflat,
)

__all__ = [
    "Rollout",
    "TaskReplay",
    "baseline_advantages",
    "baseline_features",
    "collect",
    "conjugate_gradient",
    "conjugate_gradient_with_product",
    "discounted_returns",
    "discrete_sac_actor_loss",
    "discrete_sac_target",
    "double_dqn_target",
    "entropy_loss",
    "episode_success",
    "explained_variance",
    "first_episode_mask",
    "fisher_vector_product",
    "fit_linear_baseline",
    "flat",
    "gae",
    "line_search",
    "linear_baseline_values",
    "masked_mean",
    "max_kl_step",
    "normalize",
    "ppo_clip_loss",
    "sac_actor_loss",
    "sac_alpha_loss",
    "sac_target",
    "smoothed_target_action",
    "soft_update",
    "step_budget_mask",
    "step_in_episode",
    "td3_target",
    "td_loss",
    "trpo_step",
    "unflat",
    "value_loss",
    "vpg_loss",
]
