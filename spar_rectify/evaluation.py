"""Seeded evaluation of any `BasePolicy` in a Gymnasium env.

Defines `evaluate`, `reference_returns`, `make_env`, and `EVAL_SEED`, the default first reset seed of
evaluations: apart from `spar collect`'s default 0, so an evaluation does not replay the initial
states of the first collected episodes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from spar_rectify.rollout import batched, rollout

EVAL_SEED = 10_000


def make_env(env: Any) -> gym.Env:
    """An env from an id, an `EnvSpec` or an env (returned as is)."""
    if isinstance(env, gym.Env):
        return env
    if isinstance(env, (str, gym.envs.registration.EnvSpec)):
        return gym.make(env)
    raise TypeError(f"expected an env id, an EnvSpec or a gymnasium.Env, got {type(env).__name__}")


def evaluate(
    policy: Any,
    env: Any,
    episodes: int = 10,
    seed: int = EVAL_SEED,
    max_steps: int | None = None,
    visited: list | None = None,
) -> np.ndarray:
    """Undiscounted returns of `episodes` episodes, episode i reset with seed `seed + i`.

    Args:
        policy: a `BasePolicy` (`(B, obs_dim) -> (B, act_dim)` env units).
        env: env id, spec or env.
        max_steps: optional cap per episode (the env's own time limit applies anyway).
        visited: a list that receives every `(observation, action)` pair the policy executed
            (env units), e.g. for `SupportMetric`.

    Returns:
        (episodes,) float64 returns.
    """
    env = make_env(env)
    act = batched(policy)
    returns = np.zeros(episodes)
    for i in range(episodes):
        episode = rollout(env, act, seed + i, max_steps)
        returns[i] = episode.total
        if visited is not None:
            visited.extend(zip(np.asarray(episode.observations[:-1], np.float32), episode.actions))
    return returns


def reference_returns(env: Any, reference: Any, episodes: int = 10, seed: int = 123_456) -> tuple[float, float]:
    """(uniform random policy, `reference` policy) mean returns over the same `episodes` seeded
    episodes: the `ref_min_score` / `ref_max_score` of D4RL-style normalised scores
    `100 * (R - R_random) / (R_reference - R_random)`."""
    env = make_env(env)
    rng = np.random.default_rng(seed)
    space = env.action_space

    def uniform(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(space.low, space.high, (len(obs), space.shape[0])).astype(space.dtype)

    return float(evaluate(uniform, env, episodes, seed).mean()), float(evaluate(reference, env, episodes, seed).mean())
