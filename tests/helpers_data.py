"""Small datasets made here: PointReach rolled out with the biased controller plus noise."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import envs
from spar_rectify.data import OfflineData, from_arrays


def point_rollouts(episodes: int = 100, noise: float = 0.5, seed: int = 0) -> dict:
    """Flat transition arrays from the biased controller with Gaussian action noise."""
    envs.register_envs()
    env = gym.make("PointReach-v0")
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc")}
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + ep)
        done = False
        while not done:
            action = envs.biased_controller(obs[None])[0] + rng.normal(0.0, noise, 2)
            action = np.clip(action, -1, 1).astype(np.float32)
            nxt, rew, term, trunc, _ = env.step(action)
            for key, value in zip(cols, (obs, action, rew, nxt, term, trunc)):
                cols[key].append(value)
            obs, done = nxt, term or trunc
    return {k: np.asarray(v) for k, v in cols.items()} | {"env": env}


def point_data(episodes: int = 100, noise: float = 0.5, seed: int = 0) -> OfflineData:
    r = point_rollouts(episodes, noise, seed)
    env = r["env"]
    return from_arrays(
        r["obs"],
        r["act"],
        r["rew"],
        r["next"],
        r["term"],
        r["trunc"],
        env.observation_space,
        env.action_space,
        name="point-noisy",
    )


def write_point_dataset(dataset_id: str, episodes: int = 4, **refs: float) -> int:
    """A Minari dataset of noisy PointReach rollouts that records PointReach's env spec; `refs`: optional
    `ref_min_score` / `ref_max_score` (for normalised scores). Returns its number of transitions."""
    from spar_rectify.collect import write_arrays

    r = point_rollouts(episodes=episodes)
    env = r["env"]
    keys = ("obs", "act", "rew", "next", "term", "trunc")
    write_arrays(
        dataset_id,
        *(r[k] for k in keys),
        observation_space=env.observation_space,
        action_space=env.action_space,
        env_spec=env.spec,
        **refs,
    )
    return len(r["obs"])
