"""The reach-margin study re-applies the kit's own reach rule to recorded checks and reads the env's verdicts."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import reach_margin


def record(seed, excess, members, reach_deployed, reach_score, penalised_score):
    choice = {"alpha": 1.0, "threshold_points": 2.0, "excess_points": {"1": -5.0}}
    verdict = {
        "reach": {"normalized_score": reach_score, "support_violation_rate": 0.02, "state_violation_rate": 0.05},
        "penalised": {"normalized_score": penalised_score, "support_violation_rate": 0.0, "state_violation_rate": 0.01},
    }
    deployed, other = ("reach", "penalised") if reach_deployed else ("penalised", "reach")
    return {
        "dataset": "spar/hopper/medium-replay-v0",
        "method": "spar",
        "seed": seed,
        **verdict[deployed],
        "alternative": verdict[other],
        "penalty_choice": {
            "deployed_penalty": 0.0 if reach_deployed else 0.25,
            "reach_penalty": 0.0,
            "rectifiers": {"0.25": choice, "0": choice},
            "anchor_advantage": -1.0,
            "weak_anchor_only": True,
            "reach_excess_points": excess,
            "reach_horizon": 300,
            "reach_excess_members_points": members,
        },
    }


def test_each_margin_deploys_what_the_rule_would_and_reads_that_policys_verdict(tmp_path):
    runs = [
        record(0, 8.6, [8.0, 9.0, 8.5, 9.5, 8.0], False, 91.0, 94.0),  # sure drift: refused at every margin
        record(1, 5.0, [0.0, 10.0, 2.0, 9.0, 4.0], False, 96.0, 50.0),  # within 2 + 2 x 1.95: refused at z <= 1
        record(3, 0.4, [5.0, -0.9, 1.8, 9.3, -4.7], True, 73.0, 49.0),  # deployed unless z < 0
        {"dataset": "spar/hopper/medium-v0", "method": "bc", "seed": 0, "normalized_score": 40.0},  # not a reach run
    ]
    results = tmp_path / "suite.json"
    results.write_text(json.dumps({"tier": "full", "runs": runs}))
    out = tmp_path / "margin.json"
    reach_margin.main(["--results", str(results), "--margins", "-1", "0", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    picks = {row["seed"]: row["deployed_at_margin"] for row in result["runs"]}
    assert picks == {
        0: {"-1": "penalised", "0": "penalised", "2": "penalised"},
        1: {"-1": "penalised", "0": "penalised", "2": "reach"},
        3: {"-1": "penalised", "0": "reach", "2": "reach"},
    }
    mean = result["mean_at_margin"]
    assert mean["0"]["normalized_score"] == pytest.approx((94.0 + 50.0 + 73.0) / 3)
    assert mean["2"]["normalized_score"] == pytest.approx((94.0 + 96.0 + 73.0) / 3)
    assert mean["-1"]["state_violation_rate"] == pytest.approx(0.01)
    assert result["runs"][1]["reach_model_se_points"] == pytest.approx(1.95, abs=0.01)


def test_a_run_recorded_in_two_files_counts_once(tmp_path):
    run = record(1, 5.0, [0.0, 10.0, 2.0, 9.0, 4.0], False, 96.0, 50.0)
    other_seed = record(2, 5.0, [0.0, 10.0, 2.0, 9.0, 4.0], False, 96.0, 50.0)
    first, second = tmp_path / "evidence.json", tmp_path / "suite.json"
    first.write_text(json.dumps({"tier": "full", "runs": [run]}))
    second.write_text(json.dumps({"tier": "full", "runs": [run, other_seed]}))
    runs = reach_margin.measured_runs([first, second])
    assert [(r["file"], r["seed"]) for r in runs] == [("evidence.json", 1), ("suite.json", 2)]


def test_no_measured_run_is_a_clear_error(tmp_path):
    results = tmp_path / "suite.json"
    results.write_text(json.dumps({"tier": "full", "runs": []}))
    with pytest.raises(SystemExit):
        reach_margin.main(["--results", str(results), "--out", str(tmp_path / "x.json")])
