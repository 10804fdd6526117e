"""The tasks in envs/: conformance and the imperfection their base policies are built to have."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs


@pytest.mark.parametrize("env_id", ["PointReach-v0", "PlanarArm-v0"])
def test_envs_pass_check_env(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def _returns(env_id, act, episodes=5):
    env = gym.make(env_id)
    out = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(env, obs))
            total += reward
            done = terminated or truncated
        out.append(total)
    return np.mean(out)


def test_point_reach_controller_is_biased():
    biased = _returns("PointReach-v0", lambda env, o: envs.biased_controller(o[None])[0])
    fixed = _returns(
        "PointReach-v0", lambda env, o: np.clip(envs.biased_controller(o[None])[0] - envs.CONTROLLER_BIAS, -1, 1)
    )
    assert fixed > biased + 3.0


def test_planar_arm_controller_misses_gravity():
    blind = _returns("PlanarArm-v0", lambda env, o: envs.gravity_blind_controller(o[None])[0])

    def compensated(env, obs):  # oracle: add MuJoCo's gravity/bias torque
        bias = env.unwrapped.data.qfrc_bias[:2] / np.array([8.0, 4.0])
        return np.clip(envs.gravity_blind_controller(obs[None])[0] + bias, -1, 1)

    oracle = _returns("PlanarArm-v0", compensated)
    zero = _returns("PlanarArm-v0", lambda env, o: np.zeros(2))
    assert zero < blind < oracle - 5.0  # good (far better than doing nothing), imperfect (gravity)


def test_planar_arm_renders(tmp_path):
    env = gym.make("PlanarArm-v0", render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 64, 3) and frame.std() > 0
