"""Seeded evaluation of any `BasePolicy` in a Gymnasium env.

Defines `evaluate`, `make_env`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def make_env(env: Any) -> gym.Env:
    """An env from an id, an `EnvSpec` or an env (returned as is)."""
    if isinstance(env, gym.Env):
        return env
    if isinstance(env, (str, gym.envs.registration.EnvSpec)):
        return gym.make(env)
    raise TypeError(f"expected an env id, an EnvSpec or a gymnasium.Env, got {type(env).__name__}")


def evaluate(policy: Any, env: Any, episodes: int = 10, seed: int = 0, max_steps: int | None = None) -> np.ndarray:
    """Undiscounted returns of `episodes` episodes, episode i reset with seed `seed + i`.

    Args:
        policy: a `BasePolicy` (`(B, obs_dim) -> (B, act_dim)` env units).
        env: env id, spec or env.
        max_steps: optional cap per episode (the env's own time limit applies anyway).

    Returns:
        (episodes,) float64 returns.
    """
    env = make_env(env)
    returns = np.zeros(episodes)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, t = False, 0
        while not done:
            action = np.asarray(policy(np.asarray(obs, np.float32)[None]))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[i] += float(reward)
            t += 1
            done = terminated or truncated or (max_steps is not None and t >= max_steps)
    return returns
