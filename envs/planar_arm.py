"""PlanarArm: a two-link MuJoCo arm in a vertical plane reaching a target under gravity.

Defines `PlanarArmEnv`, `gravity_blind_controller`, `LINKS`.

Observation `(10,)` float32: cos and sin of the two joint angles (4), joint velocities (2,
rad/s), fingertip position (2, x and z in metres), target position (2). Action `(2,)` in [-1, 1]:
shoulder and elbow torque (gears 8 and 4 N m). Reward per step: minus the fingertip-target
distance (metres) minus `0.01 * |action|^2`. Episodes are cut at 100 steps (5 s) by the
registered TimeLimit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv

XML = Path(__file__).parent / "assets" / "planar_arm.xml"
#: Link lengths (metres) and actuator gears (N m per unit action).
LINKS = (0.3, 0.25)
GEARS = (8.0, 4.0)


class PlanarArmEnv(MujocoEnv):
    """Reach a target drawn uniformly in a ring around the shoulder; gravity pulls the arm down."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, width: int = 480, height: int = 480, **kwargs):
        obs_space = spaces.Box(-np.inf, np.inf, (10,), np.float64)
        super().__init__(
            str(XML),
            5,
            obs_space,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config={
                "distance": 1.6,
                "elevation": 0.0,
                "azimuth": 90.0,
                "lookat": np.array([0.0, 0.0, 0.0]),
            },
            **kwargs,
        )
        self.metadata["render_fps"] = int(np.round(1.0 / self.dt))

    def _tip(self) -> np.ndarray:
        pos = self.data.site("tip").xpos
        return np.array([pos[0], pos[2]])

    def _target(self) -> np.ndarray:
        pos = self.data.mocap_pos[0]
        return np.array([pos[0], pos[2]])

    def _get_obs(self) -> np.ndarray:
        q, qd = self.data.qpos[:2], self.data.qvel[:2]
        return np.concatenate([np.cos(q), np.sin(q), qd, self._tip(), self._target()])

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.do_simulation(action, self.frame_skip)
        distance = float(np.linalg.norm(self._tip() - self._target()))
        reward = -distance - 0.01 * float(action @ action)
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), reward, False, False, {"distance": distance}

    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos + self.np_random.uniform(-0.3, 0.3, self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-0.1, 0.1, self.model.nv)
        self.set_state(qpos, qvel)
        radius = self.np_random.uniform(0.2, 0.5)
        angle = self.np_random.uniform(-np.pi / 2, np.pi / 2)
        self.data.mocap_pos[0] = [radius * np.cos(angle), 0.0, radius * np.sin(angle)]
        return self._get_obs()


def gravity_blind_controller(obs: np.ndarray) -> np.ndarray:
    """Task-space PD (Jacobian transpose) that ignores gravity: `(B, 10) -> (B, 2)` actions.

    Good at reaching, imperfect: without gravity compensation the fingertip settles below the
    target, so a state-dependent residual (the missing gravity torque) improves it.
    """
    obs = np.asarray(obs, np.float64)
    c1, c2, s1, s2 = obs[:, 0], obs[:, 1], obs[:, 2], obs[:, 3]
    qd, tip, target = obs[:, 4:6], obs[:, 6:8], obs[:, 8:10]
    l1, l2 = LINKS
    c12, s12 = c1 * c2 - s1 * s2, s1 * c2 + c1 * s2
    # MuJoCo's hinge about +y: x = l cos(q), z = -l sin(q); the Jacobian of (x, z) w.r.t. (q1, q2).
    jac = np.stack(
        [np.stack([-l1 * s1 - l2 * s12, -l2 * s12], -1), np.stack([-l1 * c1 - l2 * c12, -l2 * c12], -1)], 1
    )  # (B, 2, 2)
    force = 80.0 * (target - tip)
    torque = np.einsum("bij,bi->bj", jac, force) - 1.0 * qd
    return np.clip(torque / np.array(GEARS), -1.0, 1.0).astype(np.float32)
