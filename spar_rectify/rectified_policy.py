"""`RectifiedPolicy`: base policy + rectifier behind SB3's `predict` signature.

Defines `RectifiedPolicy`. It works wherever SB3 expects a `PolicyPredictor`
(`evaluate_policy`, `minari.DataCollector` loops), and as a `BasePolicy` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from spar_rectify.checkpoint import load_rectifier
from spar_rectify.correction import Correction, build_corrector
from spar_rectify.policies import as_base_policy


class RectifiedPolicy:
    """Base action from the anchor, corrected by the rectifier (shared correction path).

    Args:
        base_policy: SB3 model, `BCPolicy`, `BasePolicy` or callable (the anchor).
        rectifier: checkpoint folder or `RectifierCheckpoint`.
        observation_space, action_space: default to the checkpoint's spaces.
        alpha: residual scale in [0, 1]; None: the checkpoint's default.
        check_anchor: verify that `base_policy` is the anchor the rectifier was trained with.
        gate: the critic gate (see `SPARRectifierWrapper`); None: the checkpoint's default (on when the
            rectifier has a critic, unless it was chosen offline to deploy ungated).
    """

    action_units = "env"

    def __init__(
        self,
        base_policy: Any,
        rectifier: Any,
        observation_space: spaces.Box | None = None,
        action_space: spaces.Box | None = None,
        alpha: float | None = None,
        check_anchor: bool = True,
        gate: bool | None = None,
    ):
        if not hasattr(rectifier, "rectifier"):
            rectifier = load_rectifier(rectifier)
        self.observation_space = observation_space or rectifier.observation_space
        self.action_space = action_space or rectifier.action_space
        self.base_policy = as_base_policy(base_policy, self.action_space)
        self.corrector = build_corrector(
            rectifier,
            self.observation_space,
            self.action_space,
            self.base_policy if check_anchor else None,
            alpha,
            "RectifiedPolicy",
            gate,
        )
        self.name = f"rectified:{getattr(self.base_policy, 'name', 'base')}"
        self.last_correction: Correction | None = None

    def correct(self, obs: np.ndarray) -> Correction:
        """(B, obs_dim) observations -> the full `Correction` (base, residual, executed, ...)."""
        obs = np.asarray(obs, np.float32).reshape(-1, self.observation_space.shape[0])
        self.last_correction = self.corrector(obs, self.base_policy(obs))
        return self.last_correction

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim) -> (B, act_dim) executed actions, env units (the `BasePolicy` protocol)."""
        return self.correct(obs).executed_action

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """SB3's signature. The rectified policy is deterministic; `deterministic` is accepted for
        compatibility. A single observation gives a single action, a batch a batch."""
        observation = np.asarray(observation, np.float32)
        single = observation.ndim == len(self.observation_space.shape)
        actions = self(observation.reshape(1, -1) if single else observation)
        return (actions[0] if single else actions), state
