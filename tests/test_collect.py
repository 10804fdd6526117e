"""Collection into Minari: round trip, interruption, base actions, errors, CLI."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import envs
from spar_rectify import CallablePolicy, SPARRectifierWrapper, load_rectifier
from spar_rectify.cli import main as cli
from spar_rectify.collect import Exploration, collect
from spar_rectify.data import load_minari


@pytest.fixture
def policy(point_env):
    return CallablePolicy(envs.biased_controller, point_env.action_space, name="biased")


def _episodes(ds):
    return list(ds.iterate_episodes())


def test_collect_round_trip(point_env, policy):
    ds = collect(
        policy,
        point_env,
        "t/point/rt-v0",
        500,
        exploration=Exploration("gaussian", 0.2),
        seed=3,
        chunk_steps=120,
        progress=False,
        ref_min_score=-60.0,
        ref_max_score=-15.0,
    )
    assert ds.total_steps == 500 and ds.total_episodes == 10
    # Replay the same seeds by hand: identical observations, actions and rewards.
    env = gym.make("PointReach-v0")
    for i, ep in enumerate(_episodes(ds)):
        obs, _ = env.reset(seed=3 + i)
        np.testing.assert_array_equal(ep.observations[0], obs)
        for t, action in enumerate(ep.actions):
            obs, reward, *_ = env.step(action)
            np.testing.assert_array_equal(ep.observations[t + 1], obs)
            assert ep.rewards[t] == pytest.approx(reward)
        np.testing.assert_allclose(ep.infos["base_action"][:-1], envs.biased_controller(ep.observations[:-1]))
        assert not np.allclose(ep.actions, ep.infos["base_action"][:-1])  # exploration happened
    data = load_minari("t/point/rt-v0")
    assert len(data) == 500 and data.env_spec.id == "PointReach-v0"
    assert data.normalized_score(-37.5) == pytest.approx(50.0)


def test_interrupted_collection_keeps_episodes_and_continues(point_env, policy):
    reference = collect(
        policy,
        point_env,
        "t/point/ref-v0",
        400,
        exploration=Exploration("epsilon", 0.3),
        progress=False,
        chunk_steps=100,
    )
    calls = {"n": 0}

    def flaky(obs):
        calls["n"] += 1
        if calls["n"] == 230:  # mid-way through episode 5
            raise KeyboardInterrupt
        return envs.biased_controller(obs)

    interrupted = CallablePolicy(flaky, point_env.action_space)
    with pytest.raises(KeyboardInterrupt):
        collect(
            interrupted,
            point_env,
            "t/point/int-v0",
            400,
            exploration=Exploration("epsilon", 0.3),
            progress=False,
            chunk_steps=100,
        )
    partial = load_minari("t/point/int-v0")
    assert len(partial) == 200  # the 4 complete episodes, none lost, the partial one dropped
    ds = collect(
        policy,
        point_env,
        "t/point/int-v0",
        400,
        exploration=Exploration("epsilon", 0.3),
        progress=False,
        append=True,
        chunk_steps=100,
    )
    assert ds.total_steps == 400
    for a, b in zip(_episodes(ds), _episodes(reference)):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)


def test_existing_dataset_is_never_destroyed_by_mistake(point_env, policy):
    collect(policy, point_env, "t/point/keep-v0", 100, progress=False)
    with pytest.raises(FileExistsError, match="already exists.*Nothing was changed"):
        collect(policy, point_env, "t/point/keep-v0", 100, progress=False)
    assert load_minari("t/point/keep-v0").rewards.shape[0] == 100
    with pytest.raises(ValueError, match="not both"):
        collect(policy, point_env, "t/point/keep-v0", 100, progress=False, overwrite=True, append=True)
    ds = collect(policy, point_env, "t/point/keep-v0", 150, progress=False, overwrite=True)
    assert ds.total_steps == 150


def test_bad_inputs(point_env, policy):
    other = CallablePolicy(lambda o: np.zeros((len(o), 3)), gym.spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(ValueError, match="policy acts in"):
        collect(other, point_env, "t/point/bad-v0", 10, progress=False)
    with pytest.raises(TypeError, match="exploration 'stochastic' needs a policy that samples"):
        collect(policy, point_env, "t/point/bad-v0", 10, exploration=Exploration("stochastic"), progress=False)
    with pytest.raises(ValueError, match="Exploration.kind must be"):
        Exploration("random")
    with pytest.raises(ValueError, match="Exploration.scale must be >= 0"):
        Exploration("epsilon", 2.0)


def test_collect_through_the_wrapper_stores_executed_actions(point_env, policy, point_checkpoint):
    env = SPARRectifierWrapper(point_env, point_checkpoint, base_policy=policy)
    ds = collect(policy, env, "t/point/rect-v0", 100, progress=False)
    ep = _episodes(ds)[0]
    assert not np.allclose(ep.actions, ep.infos["base_action"][:-1])
    assert np.all(np.abs(ep.actions) <= 1.0)


def test_cli_collect_train_evaluate(tmp_path, point_env, policy, capsys):
    collect(policy, point_env, "t/point/cli-v0", 1000, exploration=Exploration("gaussian", 0.4), progress=False)
    small = ["--config.hidden", "32", "32", "--config.eval-episodes", "2", "--config.log-every", "10"]
    cli(
        [
            "train",
            "--dataset",
            "t/point/cli-v0",
            "--run-dir",
            str(tmp_path / "bc"),
            "--config.algo",
            "bc",
            "--config.steps",
            "30",
            "--env",
            "envs:PointReach-v0",
            *small,
        ]
    )
    assert (tmp_path / "bc" / "policy" / "bc_policy.json").is_file()
    cli(
        [
            "train",
            "--dataset",
            "t/point/cli-v0",
            "--run-dir",
            str(tmp_path / "spar"),
            "--base-policy",
            str(tmp_path / "bc" / "policy"),
            "--config.steps",
            "30",
            "--config.drift-model-steps",
            "30",
            *small,
        ]
    )
    assert (tmp_path / "spar" / "rectifier" / "rectifier.json").is_file()
    # auto_alpha (on by default): the default alpha was chosen offline, written into the rectifier and said
    said = json.loads((tmp_path / "spar" / "summary.json").read_text())["auto_alpha"]
    assert load_rectifier(tmp_path / "spar" / "rectifier").alpha == said["alpha"]
    assert set(said["excess_points"]) == {"1", "0.75", "0.5", "0.25"} and said["horizon"] == 100
    trained = capsys.readouterr().out
    assert "default alpha, chosen offline (auto_alpha)" in trained
    # each offline check says what it is doing before it starts (they run for minutes on a real dataset)
    assert "offline check (" in trained and "s): rectifier: drift in the dynamics model at each alpha" in trained
    assert json.loads(trained[trained.rindex("{\n") :])["default_alpha"] == said["alpha"]  # the final summary
    cli(
        [
            "collect",
            "--policy",
            str(tmp_path / "bc" / "policy"),
            "--env",
            "envs:PointReach-v0",
            "--dataset",
            "t/point/cli-rect-v0",
            "--steps",
            "100",
            "--rectifier",
            str(tmp_path / "spar" / "rectifier"),
        ]
    )
    cli(
        [
            "evaluate",
            "--policy",
            str(tmp_path / "bc" / "policy"),
            "--env",
            "envs:PointReach-v0",
            "--rectifier",
            str(tmp_path / "spar" / "rectifier"),
            "--episodes",
            "2",
            "--dataset",
            "t/point/cli-v0",
        ]
    )
    out = capsys.readouterr().out
    assert "t/point/cli-rect-v0: 2 episodes, 100 steps, written to " in out
    assert "--exploration.kind none" not in out  # rectified behaviour: no hint about training around it
    # no bars in a log: the budget, then the measured pace
    assert "training spar on t/point/cli-v0: 30 gradient steps to go of 30" in trained and "steps/s" in trained
    table = out[out.index("mean return") :]
    assert "raw" in table and "rectified" in table and "support ratio" in table and "violations" in table
    # evaluation seeds start apart from collection's 0, and the line says which alpha and seeds ran
    assert "seeds 10000..10001 for every policy; rectified at alpha 1.0, gate on" in table
    cli(
        ["evaluate", "--policy", str(tmp_path / "bc" / "policy"), "--env", "envs:PointReach-v0"]
        + ["--episodes", "2", "--dataset", "t/point/cli-v0", "--json"]
    )
    raw = json.loads(capsys.readouterr().out)["raw"]
    # the policy's own actions: the closing line says that a rectifier around the same policy needs exploration
    own = ["collect", "--policy", str(tmp_path / "bc" / "policy"), "--env", "envs:PointReach-v0"]
    cli([*own, "--dataset", "t/point/cli-own-v0", "--steps", "50"])
    assert "(--exploration.kind none). To train a rectifier around this same policy" in capsys.readouterr().out
    assert raw["seeds"] == "10000..10001" and 0 <= raw["support_violation_rate"] <= 1
    assert raw["support_ratio_median"] > 0 and raw["support_dataset"] == "t/point/cli-v0"
    rect = str(tmp_path / "spar" / "rectifier")
    drift = ["drift", "--policy", str(tmp_path / "bc" / "policy"), "--dataset", "t/point/cli-v0"]
    drift += ["--model-steps", "30", "--horizon", "4", "--starts", "20", "--rectifier", rect]
    cli([*drift, "--members", "2", "--model-dir", str(tmp_path / "dyn")])
    out = capsys.readouterr().out
    assert "dynamics model saved to" in out and "excess:" in out and "rectified" in out
    kappa = load_rectifier(rect).config["lsi_anchor_penalty"]  # 0.25, or 0 where the reach policy was deployed
    assert "pick: " in out and f"lsi_anchor_penalty {kappa}" in out
    # two rectifiers (here the same one twice), from the saved model, not a new fit
    cli([*drift, rect, "--model-dir", str(tmp_path / "dyn"), "--json"])
    out = capsys.readouterr().out
    assert out.startswith("dynamics model loaded from")
    report = json.loads(out[out.index("{") :])
    assert report["horizon"] == 4 and len(report["policies"]["rectified 2"]["per_step_violation"]) == 4
    assert report["policies"]["rectified 1"] == report["policies"]["rectified 2"]
    assert report["pick"] in (None, rect)
    # --alphas: one rectifier at several residual scales; --save stores the largest within the threshold
    cli([*drift, "--model-dir", str(tmp_path / "dyn"), "--alphas", "0.5", "1", "--threshold", "100", "--save"])
    out = capsys.readouterr().out
    assert "1.00" in out and "<- default" in out and f"default alpha of {rect} is now 1" in out
    assert load_rectifier(rect).alpha == 1.0
    # --per-member: each alpha through each member alone (the saved model has 2), as spar train records it
    cli([*drift, "--model-dir", str(tmp_path / "dyn"), "--alphas", "1", "--per-member", "--json"])
    out = capsys.readouterr().out
    apart = json.loads(out[out.index("{") :])["excess_members_points"]
    assert list(apart) == ["1"] and len(apart["1"]) == 2
    # --gate False: the rectified policies checked without the critic gate; --save stores the gate with the alpha
    cli([*drift, "--model-dir", str(tmp_path / "dyn"), "--alphas", "1", "--gate", "False", "--json"])
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["gate"] is False and load_rectifier(rect).gate is None
    cli(
        [
            *drift,
            "--model-dir",
            str(tmp_path / "dyn"),
            "--alphas",
            "1",
            "--threshold",
            "100",
            "--gate",
            "False",
            "--save",
        ]
    )
    assert f"default alpha of {rect} is now 1, gate off" in capsys.readouterr().out
    assert load_rectifier(rect).gate is False
    for bad, words in (
        ([rect, "--alphas", "1"], "--alphas: give one --rectifier"),
        (["--alphas", "1.5"], "--alphas 1.5: each residual scale must lie in"),
        (["--save"], "--save stores the alpha --alphas chooses"),
        (["--per-member"], "--per-member checks the alphas --alphas tries"),
        (["--alphas", "1", "--model-margin", "2"], "--model-margin 2.0 is in the members' spread: add --per-member"),
        (["--alphas", "1", "--per-member", "--model-margin", "inf"], "--model-margin inf: give a finite number"),
    ):
        with pytest.raises(SystemExit, match=words):
            cli([*drift, *bad])
    with pytest.raises(SystemExit, match="--horizon 0: use at least 1"):
        cli([*drift, "--horizon", "0"])
    other = [*drift, "--dataset", "t/point/cli-rect-v0", "--model-dir", str(tmp_path / "dyn")]
    with pytest.raises(
        SystemExit, match="holds a dynamics model of t/point/cli-v0, not of --dataset t/point/cli-rect-v0"
    ):
        cli(other)
    cli(
        ["train", "--dataset", "t/point/cli-v0", "--run-dir", str(tmp_path / "bc2"), "--quiet"]
        + ["--config.algo", "bc", "--config.steps", "20", "--env", "envs:PointReach-v0", *small]
    )
    assert "training" not in capsys.readouterr().out  # --quiet: only the final summary


def test_cli_collect_records_reference_returns(tmp_path, point_env, policy, capsys):
    from spar_rectify.evaluation import evaluate, reference_returns
    from spar_rectify.policies import load_policy

    collect(policy, point_env, "t/point/ref-src-v0", 200, progress=False)
    cli(
        ["train", "--dataset", "t/point/ref-src-v0", "--run-dir", str(tmp_path / "bc"), "--quiet"]
        + ["--config.algo", "bc", "--config.steps", "20", "--config.hidden", "16", "--config.eval-episodes", "1"]
        + ["--env", "envs:PointReach-v0"]
    )
    bc = tmp_path / "bc" / "policy"
    base = ["collect", "--policy", str(bc), "--env", "envs:PointReach-v0", "--steps", "100"]
    cli([*base, "--dataset", "t/point/ref-given-v0", "--ref-min-score", "-50", "--ref-max-score", "-10"])
    data = load_minari("t/point/ref-given-v0")
    assert (data.ref_min_score, data.ref_max_score) == (-50, -10)
    assert data.normalized_score(-30.0) == pytest.approx(50.0)
    cli([*base, "--dataset", "t/point/ref-measured-v0", "--ref-policy", str(bc), "--ref-episodes", "3"])
    data = load_minari("t/point/ref-measured-v0")
    lo, hi = reference_returns("PointReach-v0", load_policy(bc), 3)
    assert (data.ref_min_score, data.ref_max_score) == pytest.approx((lo, hi))
    assert hi == pytest.approx(evaluate(load_policy(bc), "PointReach-v0", 3, seed=123_456).mean()) and lo != hi
    assert "reference returns over 3 episodes" in capsys.readouterr().out
    cli([*base, "--dataset", "t/point/ref-given-v0", "--append", "--ref-min-score", "-40", "--ref-max-score", "0"])
    assert load_minari("t/point/ref-given-v0").ref_min_score == -40  # recorded on an existing dataset too
    with pytest.raises(SystemExit, match="--ref-min-score and --ref-max-score go together"):
        cli([*base, "--dataset", "t/point/ref-bad-v0", "--ref-max-score", "3"])
    with pytest.raises(SystemExit, match=r"--ref-max-score \(-60.0\) must be above --ref-min-score"):
        cli([*base, "--dataset", "t/point/ref-bad-v0", "--ref-min-score", "-50", "--ref-max-score", "-60"])


def test_cli_reports_user_errors_without_a_traceback(tmp_path, point_env, policy):
    collect(policy, point_env, "t/point/err-v0", 100, progress=False)
    with pytest.raises(SystemExit, match="spar: error: SPAR needs the frozen anchor policy"):
        cli(["train", "--dataset", "t/point/err-v0", "--run-dir", str(tmp_path / "r"), "--config.steps", "5"])
    with pytest.raises(SystemExit, match=r"spar: error: Minari dataset 'nope/x-v0' not found"):
        cli(["train", "--dataset", "nope/x-v0", "--run-dir", str(tmp_path / "r")])


def test_append_refuses_another_env_and_records_another_policy(point_env, policy):
    import json

    collect(policy, point_env, "t/point/app-v0", 100, progress=False)
    arm = gym.make("PlanarArm-v0")
    arm_policy = CallablePolicy(
        lambda obs: np.zeros((len(obs), arm.action_space.shape[0]), np.float32), arm.action_space, name="zeros"
    )
    with pytest.raises(
        ValueError,
        match=r"cannot append.*'PlanarArm-v0' \(the dataset's: 'PointReach-v0'\)"
        r".*observation space.*nothing was changed",
    ):
        collect(arm_policy, arm, "t/point/app-v0", 300, progress=False, append=True)
    assert load_minari("t/point/app-v0").rewards.shape[0] == 100  # untouched
    other = CallablePolicy(lambda obs: 0.5 * envs.biased_controller(obs), point_env.action_space, name="half")
    ds = collect(other, point_env, "t/point/app-v0", 200, seed=7, progress=False, append=True)
    assert ds.total_steps == 200
    log = json.loads(ds.storage.metadata["spar_collect_appends"])
    assert log == [{"first_episode": 2, "policy": "half", "seed": 7}]


@pytest.mark.parametrize("damage", ["stale counts", "truncated json"])
def test_an_append_killed_after_the_hdf5_write_is_repaired_on_open(point_env, policy, damage):
    import json

    from minari.storage import get_dataset_path

    collect(policy, point_env, "t/point/rep-v0", 100, progress=False, chunk_steps=50)
    meta_path = get_dataset_path("t/point/rep-v0") / "data" / "metadata.json"
    before = meta_path.read_text()
    collect(policy, point_env, "t/point/rep-v0", 200, progress=False, append=True, chunk_steps=50)
    # Undo Minari's metadata write of the last append, as a kill right after the HDF5 append would.
    meta_path.write_text(before if damage == "stale counts" else before[: len(before) // 2])
    with pytest.warns(UserWarning, match="repaired from its HDF5 episodes"):
        data = load_minari("t/point/rep-v0")
    assert len(data) == 200
    assert json.loads(meta_path.read_text())["total_steps"] == 200
    ds = collect(policy, point_env, "t/point/rep-v0", 300, progress=False, append=True)
    assert ds.total_steps == 300 and len(load_minari("t/point/rep-v0")) == 300
