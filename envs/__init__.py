"""Tasks for tests and demos, and their Gymnasium registration.

Call `register_envs()` once; afterwards `gym.make("PointReach-v0")` works.
"""

from __future__ import annotations

import gymnasium as gym

from envs.point_reach import CONTROLLER_BIAS, PointReachEnv, biased_controller

__all__ = ["register_envs", "PointReachEnv", "biased_controller", "CONTROLLER_BIAS"]


def register_envs() -> None:
    """Register this folder's tasks with Gymnasium (idempotent)."""
    if "PointReach-v0" not in gym.registry:
        gym.register("PointReach-v0", entry_point="envs.point_reach:PointReachEnv", max_episode_steps=50)
