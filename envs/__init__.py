"""Tasks for tests and demos, and their Gymnasium registration.

Call `register_envs()` once; afterwards `gym.make("PointReach-v0")` and `gym.make("PlanarArm-v0")`
work. On the command line, `--env envs:PlanarArm-v0` imports this module, which registers them.
"""

from __future__ import annotations

import gymnasium as gym

from envs.planar_arm import PlanarArmEnv, gravity_blind_controller
from envs.point_reach import CONTROLLER_BIAS, PointReachEnv, biased_controller

__all__ = [
    "register_envs",
    "PointReachEnv",
    "biased_controller",
    "CONTROLLER_BIAS",
    "PlanarArmEnv",
    "gravity_blind_controller",
]


def register_envs() -> None:
    """Register this folder's tasks with Gymnasium (idempotent)."""
    if "PointReach-v0" not in gym.registry:
        gym.register("PointReach-v0", entry_point="envs.point_reach:PointReachEnv", max_episode_steps=50)
    if "PlanarArm-v0" not in gym.registry:
        gym.register("PlanarArm-v0", entry_point="envs.planar_arm:PlanarArmEnv", max_episode_steps=100)


register_envs()  # so that gym.make("envs:PlanarArm-v0") works from any command line
