"""Task families and batched environments (layer 2: knows nothing of learning)."""

# Importing these registers the built-in families (mujoco and metaworld declare their families
# without MuJoCo or metaworld installed).
from adaptrl.envs import bandit, gridworld, metaworld, mujoco, nav2d, tabular  # noqa: F401
from adaptrl.envs.base import BatchedEnv, FamilyConfig, Step, TaskBatch, TaskFamily
from adaptrl.envs.check import FamilyContractError, check_family
from adaptrl.envs.gym_adapter import FamilyEnv, GymVectorFamily, family_env
from adaptrl.envs.registry import FAMILIES, family_config_union, make_family

# Union of every registered family config, named by family id for tyro (algorithm configs use it as
# the type of their ``family`` field). Built after the built-in families have registered.
FamilyConfigUnion = family_config_union()

__all__ = [
    "FAMILIES",
    "BatchedEnv",
    "FamilyConfig",
    "FamilyConfigUnion",
    "FamilyContractError",
    "FamilyEnv",
    "GymVectorFamily",
    "Step",
    "TaskBatch",
    "TaskFamily",
    "check_family",
    "family_config_union",
    "family_env",
    "make_family",
]
