"""Logs without a live policy: .npz arrays, an SB3 replay buffer, episode dicts."""

from __future__ import annotations

import numpy as np
import pytest

from spar_rectify.cli import main as cli
from spar_rectify.data import load_minari
from spar_rectify.importing import KEYS, arrays_from_episodes, arrays_from_sb3_replay_buffer, import_transitions
from tests.helpers_data import point_rollouts


@pytest.fixture
def log():
    r = point_rollouts(episodes=6)
    n = len(r["rew"]) - 7  # cut the last episode off mid-way, as a live log would be
    return {k: v[:n] for k, v in zip(KEYS, (r["obs"], r["act"], r["rew"], r["next"], r["term"], r["trunc"]))}


def test_npz_import_round_trips_and_marks_the_cut_off_end(tmp_path, log, capsys):
    np.savez(tmp_path / "log.npz", **log)
    cli(["import", "--env", "envs:PointReach-v0", "--dataset", "t/point/npz-v0", "--npz", str(tmp_path / "log.npz")])
    out = capsys.readouterr().out
    assert f"t/point/npz-v0: {len(log['rewards'])} transitions in 6 episodes" in out and "written to" in out
    data = load_minari("t/point/npz-v0")
    np.testing.assert_allclose(data.observations.numpy(), log["observations"])
    np.testing.assert_allclose(data.rewards.numpy(), log["rewards"])
    assert data.truncations[-1] == 1 and data.truncations.sum() == 6  # five time limits and the cut-off end


def test_bad_logs_are_refused_with_the_fix(tmp_path, log, point_env):
    bad = dict(log, actions=log["actions"][:, :1])
    with pytest.raises(ValueError, match=r"actions has shape \(\d+, 1\), the env PointReach-v0 needs \(\d+, 2\)"):
        import_transitions(bad, point_env, "t/point/bad-v0")
    far = dict(log, actions=log["actions"] * 10)
    with pytest.raises(ValueError, match="outside the env's action space.*other units"):
        import_transitions(far, point_env, "t/point/bad-v0")
    nan = dict(log, rewards=np.where(np.arange(len(log["rewards"])) == 3, np.nan, log["rewards"]))
    with pytest.raises(ValueError, match="rewards is not finite in 1 transitions \\(first at index 3\\)"):
        import_transitions(nan, point_env, "t/point/bad-v0")
    np.savez(tmp_path / "partial.npz", observations=log["observations"])
    with pytest.raises(SystemExit, match="lacks arrays"):
        cli(
            [
                "import",
                "--env",
                "envs:PointReach-v0",
                "--dataset",
                "t/point/p-v0",
                "--npz",
                str(tmp_path / "partial.npz"),
            ]
        )


def test_sb3_replay_buffer_import(tmp_path, log, point_env):
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.common.save_util import save_to_pkl

    buf = ReplayBuffer(1000, point_env.observation_space, point_env.action_space, n_envs=1)
    for i in range(len(log["rewards"])):
        buf.add(
            log["observations"][i][None],
            log["next_observations"][i][None],
            log["actions"][i][None],
            log["rewards"][i : i + 1],
            (log["terminations"] | log["truncations"])[i : i + 1],
            [{"TimeLimit.truncated": bool(log["truncations"][i])}],
        )
    save_to_pkl(tmp_path / "buffer.pkl", buf)
    arrays = arrays_from_sb3_replay_buffer(tmp_path / "buffer.pkl")
    np.testing.assert_allclose(arrays["actions"], log["actions"])
    np.testing.assert_array_equal(arrays["terminations"], log["terminations"])
    assert arrays["truncations"][:-1].tolist() == log["truncations"][:-1].tolist() and arrays["truncations"][-1]
    summary = import_transitions(arrays, point_env, "t/point/sb3-v0")
    assert summary["transitions"] == len(log["rewards"]) and summary["episodes"] == 6


def test_episode_dicts(point_env):
    r = point_rollouts(episodes=2)
    ends = np.flatnonzero(r["term"] | r["trunc"])
    starts = np.r_[0, ends[:-1] + 1]
    episodes = [
        {
            "observations": np.concatenate([r["obs"][s : e + 1], r["next"][e : e + 1]]),
            "actions": r["act"][s : e + 1],
            "rewards": r["rew"][s : e + 1],
        }
        for s, e in zip(starts, ends)
    ]
    arrays = arrays_from_episodes(episodes)
    assert arrays["truncations"].sum() == 2 and not arrays["terminations"].any()
    assert import_transitions(arrays, point_env, "t/point/eps-v0")["episodes"] == 2
    with pytest.raises(ValueError, match="episode 0: .* expected T \\+ 1 observations"):
        arrays_from_episodes([{"observations": r["obs"][:3], "actions": r["act"][:3], "rewards": r["rew"][:3]}])
