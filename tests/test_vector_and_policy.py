"""The vector wrapper and RectifiedPolicy share the single wrapper's correction path."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import envs
from spar_rectify import RectifiedPolicy, SPARRectifierVectorWrapper, SPARRectifierWrapper, save_rectifier


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_wrapper_equals_single_wrapper(tmp_path, point_checkpoint, mode):
    path = str(save_rectifier(point_checkpoint, tmp_path / "rect"))
    n = 3
    vec = SPARRectifierVectorWrapper(gym.make_vec("PointReach-v0", num_envs=n, vectorization_mode=mode), path)
    singles = [SPARRectifierWrapper(gym.make("PointReach-v0"), path) for _ in range(n)]
    obs, _ = vec.reset(seed=[10, 11, 12])
    single_obs = [env.reset(seed=10 + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    try:
        for t in range(50):  # the whole episode, up to the time limit
            actions = envs.biased_controller(obs)
            obs, rewards, term, trunc, info = vec.step(actions)
            for i, env in enumerate(singles):
                o, r, te, tr, inf = env.step(actions[i])
                np.testing.assert_array_equal(info["executed_action"][i], inf["executed_action"])
                np.testing.assert_array_equal(info["residual"][i], inf["residual"])
                np.testing.assert_array_equal(obs[i], o)
                assert info["_executed_action"][i]
                assert rewards[i] == pytest.approx(r) and (term[i], trunc[i]) == (te, tr)
        assert trunc.all()
        # Next-step autoreset: this step's actions are ignored and every sub-env resets.
        obs, _, _, _, info = vec.step(envs.biased_controller(obs))
        assert np.isfinite(obs).all() and info["executed_action"].shape == (n, 2)
    finally:
        vec.close()


def test_vector_wrapper_errors(point_checkpoint):
    vec = SPARRectifierVectorWrapper(gym.make_vec("PointReach-v0", num_envs=2), point_checkpoint)
    from gymnasium.error import ResetNeeded

    with pytest.raises(ResetNeeded, match="before reset"):
        vec.step(np.zeros((2, 2), np.float32))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 2\), got \(2,\)"):
        vec.step(np.zeros(2, np.float32))
    vec.close()


def test_rectified_policy_predict_matches_wrapper(point_env, point_anchor, point_checkpoint):
    policy = RectifiedPolicy(point_anchor, point_checkpoint)
    env = SPARRectifierWrapper(gym.make("PointReach-v0"), point_checkpoint)
    obs, _ = env.reset(seed=4)
    for _ in range(10):
        action, state = policy.predict(obs, deterministic=True)
        assert state is None and action.shape == (2,)
        obs, _, _, _, info = env.step(point_anchor(obs[None])[0])
        np.testing.assert_array_equal(action, info["executed_action"])
    batch, _ = policy.predict(np.stack([obs, obs]))
    assert batch.shape == (2, 2)


def test_rectified_policy_works_with_sb3_evaluate_policy(point_anchor, point_checkpoint):
    venv = make_vec_env("PointReach-v0", n_envs=2, seed=0)
    policy = RectifiedPolicy(point_anchor, point_checkpoint)
    mean, std = evaluate_policy(policy, venv, n_eval_episodes=4, deterministic=True)
    assert np.isfinite(mean) and mean < 0.0 and std >= 0.0


def test_rectified_policy_rejects_wrong_anchor(point_env, point_checkpoint):
    other = lambda o: np.zeros((len(o), 2), np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="is not the anchor"):
        RectifiedPolicy(other, point_checkpoint, action_space=point_env.action_space)
