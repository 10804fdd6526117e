"""PointReach: a 2-D point mass pushed toward a goal; a tiny, fast task for tests and demos.

Defines `PointReachEnv` and `biased_controller`.

Observation `(6,)` float32: position (2), velocity (2), goal (2), in metres and metres/second.
Action `(2,)` float32 in [-1, 1]: force. Reward: minus the distance to the goal (metres) each
step; episodes are cut at 50 steps by the registered TimeLimit.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: The deliberate bias of `biased_controller`, in action units: it settles off the goal.
CONTROLLER_BIAS = np.array([0.5, -0.4], np.float32)


class PointReachEnv(gym.Env):
    """Point mass with damping; `dt = 0.1 s`, unit mass, goal drawn uniformly in [-1, 1]^2."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None):
        high = np.array([2.0, 2.0, 1.0, 1.0, 1.0, 1.0], np.float32)
        self.observation_space = spaces.Box(-high, high, (6,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.render_mode = render_mode
        self._state = np.zeros(6, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        pos = self.np_random.uniform(-1.0, 1.0, 2)
        goal = self.np_random.uniform(-1.0, 1.0, 2)
        self._state = np.concatenate([pos, np.zeros(2), goal]).astype(np.float32)
        return self._state.copy(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        pos, vel, goal = self._state[:2], self._state[2:4], self._state[4:]
        vel = 0.8 * vel + 0.1 * 2.0 * action
        pos = np.clip(pos + 0.1 * vel, -2.0, 2.0)
        self._state = np.concatenate([pos, vel, goal]).astype(np.float32)
        distance = float(np.linalg.norm(pos - goal))
        return self._state.copy(), -distance, False, False, {"distance": distance}

    def render(self):
        """A 64x64 RGB frame: the goal in green, the point in red."""
        frame = np.full((64, 64, 3), 255, np.uint8)
        for xy, color in ((self._state[4:], (0, 160, 0)), (self._state[:2], (200, 0, 0))):
            col, row = (np.clip((xy + 2.0) / 4.0 * 63, 0, 63)).astype(int)
            frame[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = color
        return frame


def biased_controller(obs: np.ndarray) -> np.ndarray:
    """A PD controller with a constant bias: `(B, 6) -> (B, 2)` actions in env units.

    Good but imperfect: it settles about 0.3 m off the goal, so a residual of about
    `-CONTROLLER_BIAS` fixes it.
    """
    obs = np.asarray(obs, np.float32)
    action = 2.0 * (obs[:, 4:] - obs[:, :2]) - 1.0 * obs[:, 2:4] + CONTROLLER_BIAS
    return np.clip(action, -1.0, 1.0).astype(np.float32)
