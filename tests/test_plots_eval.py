"""Pictures, evaluation helpers and policy loading by name."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from spar_rectify import load_policy
from spar_rectify.evaluation import evaluate, make_env
from spar_rectify.logger import RunLogger


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from spar_rectify import plots

    logger = RunLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log(step * 10, {"q_loss": 1.0 / step})
    logger.log(60, {"eval_return": -3.0})  # a new column widens the CSV
    assert logger.rows()[-1]["eval_return"] == "-3.0" and logger.rows()[0]["eval_return"] == ""
    paths = [
        plots.plot_learning_curves(tmp_path, tmp_path / "curves.png"),
        plots.plot_returns([1.0, 2.0], [2.0, 3.0], tmp_path / "returns.png"),
        plots.plot_support_scores(np.linspace(0.1, 1.0, 50), tmp_path / "support.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_is_seeded_and_make_env_checks_its_input():
    policy = load_policy("envs:biased_controller", action_space=gym.make("PointReach-v0").action_space)
    a, b = evaluate(policy, "PointReach-v0", 3, seed=7), evaluate(policy, "PointReach-v0", 3, seed=7)
    assert a.shape == (3,) and np.array_equal(a, b)
    assert not np.array_equal(a, evaluate(policy, "PointReach-v0", 3, seed=8))
    with pytest.raises(TypeError, match="expected an env id, an EnvSpec or a gymnasium.Env"):
        make_env(3)


def test_load_policy_errors(tmp_path):
    with pytest.raises(ValueError, match="needs an existing callable and action_space"):
        load_policy("envs:biased_controller")
    with pytest.raises(FileNotFoundError, match="base policy not found"):
        load_policy(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="neither a BCPolicy folder"):
        load_policy(tmp_path / "junk")
    assert envs.biased_controller  # the module the by-name policy came from


def test_rendering_failure_names_the_backends_to_try():
    from spar_rectify import video

    class Broken(gym.Wrapper):
        def render(self):
            raise RuntimeError("gladLoadGL error")

    with pytest.raises(RuntimeError, match="rendering failed with MUJOCO_GL=.*set MUJOCO_GL=egl.*osmesa"):
        video.check_rendering(Broken(gym.make("PointReach-v0", render_mode="rgb_array")))
