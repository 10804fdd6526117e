"""Gymnasium wrappers that rectify the base policy's action at every `step`.

Defines `SPARRectifierWrapper` (single env) and `SPARRectifierVectorWrapper` (vector env, one
forward pass per batch). Both use `spar_rectify.correction.Corrector`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from spar_rectify.correction import build_corrector

INFO_KEYS = ("base_action", "residual", "executed_action", "support_score", "rectifier_fallback", "rectifier_gate_held")


def _check_step(last_obs, action, shape: tuple, who: str, what: str) -> np.ndarray:
    """The base action(s) as an array, after the checks both wrappers make before rectifying."""
    if last_obs is None:
        raise ResetNeeded(f"{who}.step called before reset(); call reset() first.")
    base = np.asarray(action)
    if base.shape != shape:
        raise ValueError(
            f"{who}.step expected {what} of shape {shape}, got {base.shape}; pass the base "
            "policy's action in env units."
        )
    return base


def _record_args(rectifier, base_policy, alpha, gate) -> dict:
    # A path is recorded as a string so `gym.make(env.spec)` can rebuild the wrapper stack.
    return {
        "rectifier": str(rectifier) if isinstance(rectifier, Path) else rectifier,
        "base_policy": base_policy,
        "alpha": alpha,
        "gate": gate,
    }


class SPARRectifierWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Corrects each action with the rectifier's bounded residual before the env sees it.

    `step(action)` treats `action` as the base policy's action (env units) at the last
    observation and executes `clip(base + alpha * residual(obs, base))` (normalised units,
    mapped back to env units and cast to the action space's dtype). `info` gains `base_action`,
    `residual` (normalised units), `executed_action`, `support_score`, `rectifier_fallback`
    ("" or why the base action was executed unchanged) and `rectifier_gate_held` (True where the
    critic gate kept the base action because the rectifier's own pessimistic critic did not score
    the rectified action above it).

    Args:
        env: env with 1-D Box observation and (finite) action spaces.
        rectifier: checkpoint folder (str or Path) or a `RectifierCheckpoint`.
        base_policy: optional; checked to be the anchor the rectifier was trained with.
        alpha: residual scale in [0, 1]; 0 is an exact pass-through; None: checkpoint default.
        gate: the critic gate; None (default): the checkpoint's own default, i.e. on when the rectifier
            carries its critic (every rectifier trained by this version does) unless `spar train`'s gate check
            (`TrainConfig.gate_check`) chose to deploy it ungated; False: always execute the residual.

    Example:
        >>> env = SPARRectifierWrapper(gym.make("Hopper-v5"), rectifier="runs/hopper")  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)                                                # doctest: +SKIP
        >>> obs, reward, terminated, truncated, info = env.step(base_action)             # doctest: +SKIP
    """

    def __init__(
        self,
        env: gym.Env,
        rectifier: Any,
        base_policy: Any = None,
        alpha: float | None = None,
        gate: bool | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(self, **_record_args(rectifier, base_policy, alpha, gate))
        gym.Wrapper.__init__(self, env)
        self.corrector = build_corrector(
            rectifier, env.observation_space, env.action_space, base_policy, alpha, "SPARRectifierWrapper", gate
        )
        self._act_shape = env.action_space.shape
        self._last_obs: np.ndarray | None = None

    @property
    def alpha(self) -> float:
        """The residual scale in use."""
        return float(self.corrector.alpha)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = np.asarray(obs).reshape(1, -1)
        return obs, info

    def step(self, action):
        base = _check_step(self._last_obs, action, self._act_shape, "SPARRectifierWrapper", "an action")
        c = self.corrector(self._last_obs, base.reshape(1, -1))
        executed = c.executed_action[0]
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._last_obs = np.asarray(obs).reshape(1, -1)
        info.update(
            base_action=base,
            residual=c.residual[0],
            executed_action=executed,
            support_score=float(c.support_score[0]),
            rectifier_fallback=c.fallback[0],
            rectifier_gate_held=bool(c.gate_held[0]),
        )
        return obs, reward, terminated, truncated, info


class SPARRectifierVectorWrapper(gym.vector.VectorWrapper):
    """Vector-env version: the whole batch of base actions is rectified in one forward pass.

    Works with `gym.make_vec(..., vectorization_mode="sync" | "async")` in either autoreset
    mode: the stored observation is whatever `step` returned, and an env whose action is ignored
    because it is resetting is unaffected. `info` gains the `INFO_KEYS` arrays (with their `_key`
    masks, Gymnasium's vector-info convention).

    Args:
        env: a vector env whose single spaces are 1-D Boxes.
        rectifier, base_policy, alpha, gate: as for `SPARRectifierWrapper`.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        rectifier: Any,
        base_policy: Any = None,
        alpha: float | None = None,
        gate: bool | None = None,
    ):
        super().__init__(env)
        self.corrector = build_corrector(
            rectifier,
            env.single_observation_space,
            env.single_action_space,
            base_policy,
            alpha,
            "SPARRectifierVectorWrapper",
            gate,
        )
        self._act_shape = (env.num_envs, *env.single_action_space.shape)
        self._last_obs: np.ndarray | None = None

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = np.asarray(obs)
        return obs, info

    def step(self, actions):
        base = _check_step(self._last_obs, actions, self._act_shape, "SPARRectifierVectorWrapper", "actions")
        c = self.corrector(self._last_obs, base)
        obs, reward, terminated, truncated, info = self.env.step(c.executed_action)
        self._last_obs = np.asarray(obs)
        info = dict(info)
        mask = np.ones(self.num_envs, dtype=bool)
        for key, value in zip(
            INFO_KEYS, (base, c.residual, c.executed_action, c.support_score, c.fallback, c.gate_held)
        ):
            info[key], info[f"_{key}"] = value, mask
        return obs, reward, terminated, truncated, info
