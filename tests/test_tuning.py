"""Choosing the deployed residual scale: `tune_alpha`, `set_default_alpha`, `spar tune-alpha`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spar_rectify import (
    RectifiedPolicy,
    load_rectifier,
    save_choice,
    save_rectifier,
    set_default_alpha,
    tune_alpha,
    tune_run,
)
from spar_rectify.cli import main as cli
from spar_rectify.evaluation import evaluate
from spar_rectify.tuning import OFFLINE, AlphaSweep, PolicySweep, run_rectifiers


def test_sweep_rows_are_the_rectified_policy_at_each_alpha(point_anchor, point_checkpoint):
    sweep = tune_alpha(point_anchor, point_checkpoint, "PointReach-v0", alphas=(1.0, 0.0, 0.5), episodes=3, seed=7)
    assert sweep.alphas.tolist() == [0.0, 0.5, 1.0] and sweep.returns.shape == (3, 3)
    # alpha 0 is the base policy itself, on the same seeded episodes.
    assert np.array_equal(sweep.returns[0], evaluate(point_anchor, "PointReach-v0", 3, seed=7))
    half = RectifiedPolicy(point_anchor, point_checkpoint, alpha=0.5)
    assert np.array_equal(sweep.returns[1], evaluate(half, "PointReach-v0", 3, seed=7))
    assert not np.array_equal(sweep.returns[0], sweep.returns[2])  # the residual changes the episodes
    gain, se = sweep.gains
    best = int(np.argmax(sweep.returns.mean(1)))
    expected = sweep.alphas[best] if gain[best] > 2 * se[best] else 0.0
    assert sweep.best_alpha == expected
    assert "<- picked" in sweep.table() and json.dumps(sweep.to_dict())


def test_a_gain_within_the_noise_keeps_the_conservative_alpha():
    noisy = AlphaSweep(np.array([0.0, 1.0]), np.array([[0.0, 10.0, -10.0], [5.0, 0.0, 5.0]]), 0)
    gain, se = noisy.gains
    assert gain[1] == pytest.approx(10 / 3) and se[1] == pytest.approx(np.std([5, -10, 15], ddof=1) / np.sqrt(3))
    assert noisy.best_alpha == 0.0  # +3.3 against a standard error of 7.3: not clearly above noise
    clear = AlphaSweep(np.array([0.0, 1.0]), np.array([[0.0, 10.0, -10.0], [9.0, 20.0, 0.0]]), 0)
    assert clear.best_alpha == 1.0  # +9.7 +- 0.3
    assert clear.to_dict()["gain_se"][1] == pytest.approx(np.std([9, 10, 10], ddof=1) / np.sqrt(3))


def test_ties_go_to_the_smaller_alpha():
    sweep = AlphaSweep(np.array([0.0, 0.5, 1.0]), np.array([[1.0, 2.0], [3.0, 3.0], [3.0, 3.0]]), 0)
    assert sweep.best_alpha == 0.5


@pytest.mark.parametrize("alphas, match", [((), "at least one"), ((0.5, 1.5), r"\[1.5\]"), ((float("nan"),), "nan")])
def test_bad_alphas_are_named(point_anchor, point_checkpoint, alphas, match):
    with pytest.raises(ValueError, match=match):
        tune_alpha(point_anchor, point_checkpoint, "PointReach-v0", alphas=alphas, episodes=1)


def test_default_alpha_is_stored_and_used(tmp_path, point_env, point_anchor, point_checkpoint):
    folder = save_rectifier(point_checkpoint, tmp_path / "rect")
    weights = (folder / "rectifier.safetensors").read_bytes()
    set_default_alpha(folder, 0.25)
    assert load_rectifier(folder).alpha == 0.25
    assert (folder / "rectifier.safetensors").read_bytes() == weights  # only the default changes
    obs = np.stack([point_env.observation_space.sample() for _ in range(5)]).astype(np.float32)
    stored = RectifiedPolicy(point_anchor, folder)(obs)
    assert np.array_equal(stored, RectifiedPolicy(point_anchor, folder, alpha=0.25)(obs))
    assert not np.array_equal(stored, RectifiedPolicy(point_anchor, folder, alpha=1.0)(obs))
    with pytest.raises(ValueError, match="1.5"):
        set_default_alpha(folder, 1.5)


def test_cli_tunes_saves_and_evaluates(tmp_path, capsys, point_env):
    from spar_rectify import BCPolicy
    from tests.helpers import make_checkpoint

    obs_dim = point_env.observation_space.shape[0]
    base = BCPolicy(point_env.observation_space, point_env.action_space, np.zeros(obs_dim), np.ones(obs_dim), (8,))
    base_dir = base.save(tmp_path / "base")
    folder = save_rectifier(
        make_checkpoint(point_env.observation_space, point_env.action_space, base), tmp_path / "rect"
    )
    cli(
        [
            "tune-alpha",
            "--policy",
            str(base_dir),
            "--rectifier",
            str(folder),
            "--env",
            "PointReach-v0",
            "--alphas",
            "0",
            "1",
            "--episodes",
            "2",
            "--save",
        ]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rectifier"] == "rectifier" and list(result["policies"]) == ["rectifier"]
    assert load_rectifier(folder).alpha == result["best_alpha"]
    result = result["policies"]["rectifier"]
    assert result["alphas"] == [0.0, 1.0]
    cli(
        [
            "evaluate",
            "--policy",
            str(base_dir),
            "--rectifier",
            str(folder),
            "--env",
            "PointReach-v0",
            "--episodes",
            "2",
            "--seed",
            "20000",
            "--alpha",
            "0",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["rectified"]["return_mean"] == pytest.approx(result["return_mean"][0])  # alpha 0 on the same seeds
    assert out["raw"]["return_mean"] == pytest.approx(out["rectified"]["return_mean"])  # alpha 0 is the base policy
    assert out["rectified"]["episodes"] == 2 and 0 < out["rectified"]["support_score_mean"] <= 1


def _sweep(*rows):
    """An AlphaSweep over alphas (0, 1) from two rows of returns (alpha 0's, alpha 1's)."""
    return AlphaSweep(np.array([0.0, 1.0]), np.array(rows, dtype=float), 0)


def test_another_rectifier_replaces_the_deployed_one_only_when_clearly_better(tmp_path):
    base = [10.0, 11.0, 9.0, 10.0]
    deployed = _sweep(base, [20.0, 21.0, 19.0, 20.0])  # alpha 1: +10 +- 0
    folders = (tmp_path / "rectifier", tmp_path / "rectifier-alternative")
    close = PolicySweep(folders, (deployed, _sweep(base, [21.0, 20.0, 20.0, 21.0])))  # +0.5 +- 0.3 over it
    assert close.choice == (0, 1.0) and close.folder == folders[0]
    assert "kept" in close.table() and close.to_dict()["rectifier"] == "rectifier"
    clear = PolicySweep(folders, (deployed, _sweep(base, [30.0, 31.0, 29.0, 30.5])))
    assert clear.choice == (1, 1.0) and clear.folder == folders[1]
    gain, se = clear.gain_over_deployed
    assert gain == pytest.approx(10.125) and se == pytest.approx(np.std([10, 10, 10, 10.5], ddof=1) / 2)
    assert clear.to_dict()["rectifier"] == "rectifier-alternative"
    assert f"picked {folders[1]} at alpha 1: +10.1 ± 0.1 (paired) over {folders[0]} at alpha 1" in clear.table()
    assert "\nkept " not in clear.table() and "\npicked " not in close.table()
    # clearly above the noise but a sliver of the return (under MIN_GAIN): the offline checks' choice stays
    steady = _sweep(base, [1000.0, 1000.0, 1000.0, 1000.0])
    sliver = _sweep(base, [1020.0, 1021.0, 1020.0, 1021.0])  # +20.5 +- 0.3 on 1000
    assert PolicySweep(folders, (steady, sliver)).choice == (0, 1.0)
    assert PolicySweep(folders, (steady, _sweep(base, [1060.0, 1061.0, 1060.0, 1061.0]))).choice == (1, 1.0)
    # the deployed rectifier kept at alpha 0 (no clear gain): another must clearly beat the base policy itself
    flat = _sweep(base, [10.0, 12.0, 8.0, 10.0])
    assert PolicySweep(folders, (flat, _sweep(base, [12.0, 13.0, 11.0, 12.0]))).choice == (1, 1.0)
    noisy_other = _sweep(base, [30.0, 0.0, 20.0, 10.0])  # its own gain over the base is noise
    assert PolicySweep(folders, (flat, noisy_other)).choice == (0, 0.0)


def _run_folder(tmp_path, point_env, point_anchor):
    from tests.helpers import make_checkpoint

    run = tmp_path / "run"
    spaces = point_env.observation_space, point_env.action_space
    save_rectifier(make_checkpoint(*spaces, point_anchor, seed=0), run / "rectifier")
    save_rectifier(make_checkpoint(*spaces, point_anchor, seed=1, bound=0.6), run / "rectifier-alternative")
    return run


def test_tune_run_sweeps_every_rectifier_of_a_run_on_the_same_episodes(tmp_path, point_env, point_anchor):
    run = _run_folder(tmp_path, point_env, point_anchor)
    (run / "rectifier-insample").mkdir()  # an empty folder is not a rectifier
    assert list(run_rectifiers(run)) == ["rectifier", "rectifier-alternative"]
    assert list(run_rectifiers(run / "rectifier")) == ["rectifier"]
    with pytest.raises(FileNotFoundError, match="spar train --run-dir"):
        run_rectifiers(tmp_path)
    sweep = tune_run(point_anchor, run, "PointReach-v0", alphas=(0.0, 1.0), episodes=3, seed=7)
    assert sweep.folders == (run / "rectifier", run / "rectifier-alternative")
    for folder, rows in zip(sweep.folders, sweep.sweeps):
        assert np.array_equal(rows.returns[0], evaluate(point_anchor, "PointReach-v0", 3, seed=7))  # alpha 0: base
        full = RectifiedPolicy(point_anchor, folder, alpha=1.0)
        assert np.array_equal(rows.returns[1], evaluate(full, "PointReach-v0", 3, seed=7))
    assert not np.array_equal(sweep.sweeps[0].returns[1], sweep.sweeps[1].returns[1])
    assert list(sweep.to_dict()["policies"]) == ["rectifier", "rectifier-alternative"]
    # a rectifier trained around another anchor in the run folder is named, not swept around this one
    from spar_rectify import CallablePolicy
    from tests.helpers import make_checkpoint

    other = CallablePolicy(lambda obs: np.zeros((len(obs), 2), np.float32), point_env.action_space, name="zeros")
    save_rectifier(make_checkpoint(point_env.observation_space, point_env.action_space, other), run / "rectifier-lsi")
    with pytest.raises(ValueError, match="rectifier-lsi"):
        tune_run(point_anchor, run, "PointReach-v0", alphas=(0.0, 1.0), episodes=1, seed=7)


def test_save_choice_deploys_the_pick_and_keeps_the_offline_choice(tmp_path, point_env, point_anchor):
    run = _run_folder(tmp_path, point_env, point_anchor)
    offline = (run / "rectifier" / "rectifier.safetensors").read_bytes()
    other = load_rectifier(run / "rectifier-alternative")
    base = [1.0, 2.0, 3.0]
    picked = PolicySweep(
        (run / "rectifier", run / "rectifier-alternative"),
        (_sweep(base, [1.0, 2.0, 3.0]), _sweep(base, [5.0, 6.1, 7.0])),
    )
    assert picked.choice == (1, 1.0)
    assert save_choice(picked) == run / "rectifier"
    deployed = load_rectifier(run)
    assert deployed.alpha == 1.0 and np.allclose(deployed.rectifier.residual_bound, other.rectifier.residual_bound)
    assert (run / OFFLINE / "rectifier.safetensors").read_bytes() == offline  # undo: copy it back
    save_choice(picked)  # a second save keeps the first offline choice, not the copy now deployed
    assert (run / OFFLINE / "rectifier.safetensors").read_bytes() == offline
    kept = PolicySweep((run / "rectifier",), (_sweep(base, [1.0, 2.0, 3.0]),))
    assert save_choice(kept) == run / "rectifier" and load_rectifier(run).alpha == 0.0


def test_with_the_training_data_a_replacement_may_not_leave_the_support_more():
    base = [10.0, 11.0, 9.0, 10.0]
    folders = (Path("run/rectifier"), Path("run/rectifier-alternative"))

    def swept(rows, shares):
        return AlphaSweep(np.array([0.0, 1.0]), np.array(rows, dtype=float), 0, np.array(shares))

    deployed = swept([base, [20.0, 21.0, 19.0, 20.0]], [0.001, 0.04])
    far = swept([base, [30.0, 31.0, 29.0, 30.0]], [0.001, 0.19])  # +10 on every episode, off the data
    near = swept([base, [30.0, 31.0, 29.0, 30.0]], [0.001, 0.045])  # within SUPPORT_SLACK of the deployed pick
    assert PolicySweep(folders, (deployed, far)).choice == (0, 1.0)
    assert PolicySweep(folders, (deployed, near)).choice == (1, 1.0)
    assert "beyond support" in deployed.table() and "19.0%" in far.table()
    assert deployed.to_dict()["support_violation_rate"] == [0.001, 0.04]
    kept = PolicySweep(folders, (deployed, far))
    assert "on the data's support" in kept.table() and kept.to_dict()["support_checked"]
    assert "\npicked " not in kept.table() and "support not checked" not in kept.table()
    # without the data, return alone decides, and the table says support was not checked
    blind = PolicySweep(folders, (_sweep(base, [20.0, 21.0, 19.0, 20.0]), _sweep(base, [30.0, 31.0, 29.0, 30.0])))
    assert blind.choice == (1, 1.0) and "support not checked" in blind.table()


def test_tune_run_measures_each_sweeps_support_on_the_training_data(tmp_path, point_env, point_anchor):
    from tests.helpers_data import point_data

    run = _run_folder(tmp_path, point_env, point_anchor)
    data = point_data(episodes=20)
    sweep = tune_run(point_anchor, run, "PointReach-v0", alphas=(0.0, 1.0), episodes=2, seed=7, data=data)
    for rows in sweep.sweeps:
        assert rows.violations is not None and np.all((rows.violations >= 0) & (rows.violations <= 1))
    assert sweep.sweeps[0].violations[0] == sweep.sweeps[1].violations[0]  # alpha 0: the base, measured once
    visited: list = []
    full = RectifiedPolicy(point_anchor, run / "rectifier-alternative", alpha=1.0)
    evaluate(full, "PointReach-v0", 2, 7, visited=visited)
    from spar_rectify.support import DatasetSupport

    assert sweep.sweeps[1].violations[1] == pytest.approx(DatasetSupport(data).share(visited))
    one = dict(alphas=(0.0, 1.0), episodes=2, seed=7, data=data)
    alone = tune_alpha(point_anchor, run / "rectifier", "PointReach-v0", **one)
    assert np.array_equal(alone.violations, sweep.sweeps[0].violations)  # one rectifier: the same measurement
    assert tune_alpha(point_anchor, run / "rectifier", "PointReach-v0", alphas=(0.0,), episodes=1).violations is None


def test_cli_tunes_a_run_folder_on_its_own_datasets_support(tmp_path, capsys, point_env, point_anchor, monkeypatch):
    from tests.helpers_data import write_point_dataset

    run = _run_folder(tmp_path, point_env, point_anchor)
    monkeypatch.setattr("spar_rectify.cli.load_policy", lambda path, vec_normalize=None: point_anchor)
    args = ["tune-alpha", "--policy", "anchor", "--rectifier", str(run), "--env", "PointReach-v0"]
    args += ["--alphas", "0", "1", "--episodes", "2"]
    (run / "summary.json").write_text(json.dumps({"dataset": "test/point/missing-v0"}))
    cli(args)
    out = capsys.readouterr().out
    assert "support not checked: the run's dataset test/point/missing-v0 does not load here" in out
    assert not json.loads(out.strip().splitlines()[-1])["support_checked"]
    write_point_dataset("test/point/logged-v0", episodes=4)
    (run / "summary.json").write_text(json.dumps({"dataset": "test/point/logged-v0"}))
    cli(args)
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert "beyond support" in out and result["support_checked"]
    assert list(result["policies"]) == ["rectifier", "rectifier-alternative"]
