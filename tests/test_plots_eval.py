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


def test_side_by_side_labels_the_episode_that_ended_first():
    pytest.importorskip("PIL")
    from spar_rectify import video

    black = [np.zeros((32, 40, 3), np.uint8)] * 2
    long = [np.zeros((32, 40, 3), np.uint8)] * 4
    frames = video.side_by_side(black, [["a"]] * 2, long, [["b"]] * 4)
    assert len(frames) == 4 and frames[0].shape[1] % 16 == 0
    # the held panel (left) carries one more text line from frame 2 on: pixels drawn where the
    # extra line goes, and nowhere there while the episode still ran
    line3 = (slice(4 + 13, 4 + 26), slice(0, 40))
    assert frames[1][line3].max() == 0 and frames[2][line3].max() > 0
    right_line3 = (slice(4 + 13, 4 + 26), slice(frames[2].shape[1] - 40, None))
    assert frames[3][right_line3].max() == 0  # the episode still running is not labelled


def test_rollout_records_the_executed_episode(point_checkpoint):
    from spar_rectify import CallablePolicy, SPARRectifierWrapper, rollout
    from spar_rectify.rollout import batched

    policy = CallablePolicy(envs.biased_controller, gym.make("PointReach-v0").action_space)
    env = gym.make("PointReach-v0")
    ep = rollout(env, batched(policy), seed=3)
    assert ep.observations.shape == (len(ep) + 1, env.observation_space.shape[0])
    assert ep.actions.shape == (len(ep), env.action_space.shape[0]) and len(ep.infos) == len(ep)
    assert ep.truncated != ep.terminated and ep.seed == 3
    assert ep.total == pytest.approx(evaluate(policy, env, 1, seed=3)[0])
    assert len(rollout(env, batched(policy), seed=3, max_steps=5)) == 5
    # through the wrapper the record holds what was executed, not what the policy proposed
    wrapped = SPARRectifierWrapper(gym.make("PointReach-v0"), point_checkpoint, base_policy=policy, gate=False)
    ep = rollout(wrapped, batched(policy), seed=3, max_steps=20)
    assert np.allclose(ep.actions, [i["executed_action"] for i in ep.infos])
    assert not np.allclose(ep.actions, [i["base_action"] for i in ep.infos])
