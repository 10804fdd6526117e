"""One episode in a Gymnasium env, recorded: the loop every evaluation, collection, video and
benchmark of the kit runs.

Defines `Episode`, `rollout`, `batched`.

Units: observations, actions and rewards as the env gives and takes them (env units). A wrapper
that changes the action on the way in (`SPARRectifierWrapper`) reports what it executed in
`info["executed_action"]`; `Episode.actions` holds that executed action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np


@dataclass
class Episode:
    """One recorded episode of T steps.

    Attributes:
        observations: `(T + 1, obs_dim)`, the reset observation first and the final one last.
        actions: `(T, act_dim)` executed actions, env units.
        rewards: `(T,)` float64.
        infos: the T step infos.
        terminated: it ended by termination (a fall, a goal), not by a time limit or `max_steps`.
        truncated: it ended by the env's time limit.
        seed: the reset seed (None: not seeded).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    infos: list[dict]
    terminated: bool
    truncated: bool
    seed: int | None

    @property
    def total(self) -> float:
        """Undiscounted return (summed in step order, as a running total would)."""
        return float(sum(self.rewards.tolist(), 0.0))

    def __len__(self) -> int:
        return len(self.rewards)


def batched(policy: Any) -> Callable[[np.ndarray], np.ndarray]:
    """`act(obs) -> action` for one `(obs_dim,)` observation from a batch policy
    (`(B, obs_dim) -> (B, act_dim)`, e.g. a `BasePolicy` or `RectifiedPolicy`)."""

    def act(obs: np.ndarray) -> np.ndarray:
        return np.asarray(policy(np.asarray(obs, np.float32)[None]))[0]

    return act


def rollout(
    env: gym.Env,
    act: Callable[[np.ndarray], np.ndarray],
    seed: int | None = None,
    max_steps: int | None = None,
    on_step: Callable[[dict, float, int], None] | None = None,
) -> Episode:
    """Run one episode: reset with `seed`, then `act` on each observation until the env ends the
    episode or `max_steps` steps have run.

    Args:
        env: the env (not closed here).
        act: `(obs_dim,) -> (act_dim,)` action in env units (see `batched` for batch policies).
        seed: reset seed.
        max_steps: optional cap (the env's own time limit applies anyway).
        on_step: called after every step with `(info, return so far, steps so far)` (e.g. to
            render a frame).

    Returns:
        The `Episode`.
    """
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, infos = [obs], [], [], []
    terminated = truncated = False
    total = 0.0
    while not (terminated or truncated) and (max_steps is None or len(rewards) < max_steps):
        action = act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(info.get("executed_action", action))
        rewards.append(float(reward))
        infos.append(info)
        total += float(reward)
        if on_step is not None:
            on_step(info, total, len(rewards))
    return Episode(
        observations=np.asarray(observations),
        actions=np.asarray(actions),
        rewards=np.asarray(rewards, np.float64),
        infos=infos,
        terminated=bool(terminated),
        truncated=bool(truncated),
        seed=seed,
    )
