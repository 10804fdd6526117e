"""Sweeps on local Ray: the grid, settings parsing, records, resume from a job's own checkpoint, retries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spar_rectify.config import TrainConfig
from spar_rectify.sweep import grid, parse_settings, run_jobs, sweep

ray = pytest.importorskip("ray")


def test_parse_settings_and_grid():
    settings = parse_settings(["lsi_temperature=0.5,1,2", "lsi_normalize=none"])
    assert settings == {"lsi_temperature": [0.5, 1, 2], "lsi_normalize": ["none"]}
    jobs = grid(["a", "b"], [0, 1], settings)
    assert len(jobs) == 12 and jobs[0] == {
        "dataset": "a",
        "seed": 0,
        "overrides": {"lsi_temperature": 0.5, "lsi_normalize": "none"},
    }
    with pytest.raises(ValueError, match="--set expects KEY=V1,V2"):
        parse_settings(["lsi_temperature"])
    with pytest.raises(ValueError, match=r"--set \{'lsi_temperature': -1\}: TrainConfig.lsi_temperature must be > 0"):
        parse_settings(["lsi_temperature=1,-1"])
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        parse_settings(["lsi_temprature=1"])
    # a switch reads as a bool in any case: the text "False" would be truthy
    assert parse_settings(["lsi_agreement=False,true"]) == {"lsi_agreement": [False, True]}
    with pytest.raises(ValueError, match="lsi_agreement must be true or false, got 'maybe'"):
        parse_settings(["lsi_agreement=maybe"])


def test_a_small_sweep_on_local_ray_resumes_and_retries(tmp_path):
    from spar_rectify.data import load_minari
    from spar_rectify.trainer import Trainer
    from tests.helpers_data import write_point_dataset

    write_point_dataset("t/point/sweep-v0", episodes=20)
    config = TrainConfig(algo="bc", steps=40, hidden=(32, 32), batch_size=64, checkpoint_every=10, log_every=10)
    out = tmp_path / "sweep"
    # An earlier, interrupted attempt at one job: 20 of its 40 steps are in its checkpoint.
    partial = Trainer(config.replace(seed=1, lr=1e-3, eval_episodes=2), load_minari("t/point/sweep-v0"))
    list(partial.fit(until=20))
    partial.save_state(out / "t_point_sweep-v0" / "lr=0.001" / "seed1" / "checkpoint")

    root = str(Path(__file__).resolve().parent.parent)  # workers import the envs module from here
    os.environ.setdefault("RAY_worker_niceness", "0")  # as run_jobs does for a local Ray
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={
            "env_vars": {
                "MINARI_DATASETS_PATH": os.environ["MINARI_DATASETS_PATH"],
                "MUJOCO_GL": "egl",
                "PYTHONPATH": root,
            }
        },
    )
    try:

        def run():  # the same sweep command, run twice
            return sweep(
                ["t/point/sweep-v0"],
                [1],
                {"lr": [1e-3, 3e-4]},
                out,
                config,
                episodes=2,
                progress=False,
                env="envs:PointReach-v0",
            )

        records = run()
        assert len(records) == 2 and {r["steps"] for r in records} == {40}
        resumed = [r for r in records if r["resumed"]]
        assert [(r["seed"], r["overrides"]) for r in resumed] == [(1, {"lr": 1e-3})]
        assert all(r["normalized_score"] is None and r["return"] < 0 for r in records)  # PointReach: costs
        table = (out / "sweep.md").read_text()
        assert '| t/point/sweep-v0 | {"lr": 0.001} |' in table and "| 1 |" in table
        # The same command again finds every record and runs nothing.
        again = run()
        assert json.dumps(again, sort_keys=True) == json.dumps(records, sort_keys=True)

        # A job that fails once is retried by Ray, and a job that always fails is reported, not fatal.
        marker = tmp_path / "failed-once"

        def flaky(job):
            if job["fail"] == "always" or not marker.exists():
                marker.touch()
                raise RuntimeError("simulated failure")
            return {"ok": job["fail"]}

        done, failed = run_jobs(flaky, [{"fail": "once"}, {"fail": "always"}], max_retries=1, progress=False)
        assert done == [{"ok": "once"}] and len(failed) == 1 and "simulated failure" in failed[0][1]
    finally:
        ray.shutdown()
