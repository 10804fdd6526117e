"""The alpha-margin study re-makes a run's offline alpha (and policy) from its recorded checks by the kit's rules
and reads the env's verdict on what each margin would deploy."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import alpha_margin
import suite_bench

MEMBERS = [1.0, 2.0, 3.0, 4.0, 5.0]  # standard error sqrt(2.5) / sqrt(5) = 0.707
SE = float(np.std(MEMBERS, ddof=1) / np.sqrt(5))


def check(excess_at_1, alpha):
    return {
        "alpha": alpha,
        "threshold_points": 2.0,
        "excess_points": {"1": excess_at_1, "0.75": 1.0, "0.5": 0.0, "0.25": 0.0},
        "excess_members_points": {a: [m - 3.0 + e for m in MEMBERS] for a, e in (("1", excess_at_1), ("0.75", 1.0))}
        | {"0.5": MEMBERS, "0.25": MEMBERS},
        "model_margin": 0.0,
    }


def verdict(score):
    return {"normalized_score": score, "support_violation_rate": 0.01, "state_violation_rate": 0.02}


def test_alpha_at_margin_follows_the_kits_rule_and_needs_members_for_a_margin():
    c = check(2.0 + 1.5 * SE, 0.75)  # above the threshold alone, within 2 standard errors
    assert suite_bench.alpha_at_margin(c, 0.0) == 0.75
    assert suite_bench.alpha_at_margin(c, 1.0) == 0.75
    assert suite_bench.alpha_at_margin(c, 2.0) == 1.0
    without = {k: v for k, v in c.items() if k != "excess_members_points"}
    assert suite_bench.alpha_at_margin(without, 0.0) == 0.75 and suite_bench.alpha_at_margin(without, 2.0) is None


def test_each_margin_reads_the_verdict_of_what_it_would_deploy(tmp_path):
    plain = check(2.0 + 1.5 * SE, 0.75)
    run = {"dataset": "spar/hopper/medium-expert-v0", "method": "medium-rectified", "seed": 2, "alpha": 0.75}
    run |= verdict(60.0) | {"auto_alpha": plain}
    raw = {"dataset": run["dataset"], "method": "medium-raw", "seed": 2, "alpha": 0.0} | verdict(47.0)
    reach_check, penalised = check(2.0 + 1.5 * SE, 0.75), check(-1.0, 1.0)
    two = {"dataset": "spar/hopper/medium-replay-v0", "method": "spar", "seed": 0, "alpha": 1.0} | verdict(50.0)
    two |= {
        "auto_alpha": penalised,
        "alternative": {"alpha": 0.75} | verdict(55.0),
        "penalty_choice": {
            "deployed_penalty": 0.25,
            "reach_penalty": 0.0,
            "rectifiers": {"0.25": penalised, "0": reach_check},
            "anchor_advantage": -0.5,
            "weak_anchor_only": True,
            "reach_excess_points": None,
        },
    }
    ungated = dict(run, seed=3, gate=False)  # deployed ungated by gate_check: not its gated check's choice
    results = tmp_path / "suite_full.json"
    results.write_text(json.dumps({"runs": [raw, run, two, ungated]}))
    sweep = {"dataset": run["dataset"], "method": run["method"], "seed": 2, "which": "deployed", "auto_alpha": plain}
    sweep["rows"] = [{"alpha": 1.0} | verdict(100.0), {"alpha": 0.75} | verdict(61.0)]
    other_run = dict(sweep, auto_alpha=check(9.0, 0.75), rows=[{"alpha": 1.0} | verdict(5.0)])  # another training
    paths = []
    for i, s in enumerate((sweep, other_run)):
        paths.append(tmp_path / f"alpha_sweep_{i}.json")
        paths[-1].write_text(json.dumps(s))

    result = alpha_margin.study(alpha_margin.measured_runs([results], paths), [0.0, 2.0, -50.0])
    assert [r["seed"] for r in result["runs"]] == [2, 0]
    rows = {r["method"]: r["deployed_at_margin"] for r in result["runs"]}
    assert rows["medium-rectified"]["0"] == {"policy": "deployed", "alpha": 0.75, "verdict": verdict(60.0)}
    assert rows["medium-rectified"]["2"]["alpha"] == 1.0
    assert rows["medium-rectified"]["2"]["verdict"] == verdict(100.0)  # the sweep of this run, not the other one
    assert rows["medium-rectified"]["-50"]["alpha"] == 0.0 and rows["medium-rectified"]["-50"]["verdict"] == verdict(
        47.0
    )
    # the reach policy: refused at 0 (alpha 0.75 < 1), eligible at 2, but its reach check never ran
    assert rows["spar"]["0"] == {"policy": "deployed", "alpha": 1.0, "verdict": verdict(50.0)}
    assert rows["spar"]["2"]["policy"] == "unknown" and rows["spar"]["2"]["verdict"] is None
    assert result["runs_in_means"] == 1
    assert result["mean_at_margin"]["2"]["normalized_score"] == pytest.approx(100.0)
    assert "reach check not run" in alpha_margin.table(result)


def test_the_command_line_names_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        alpha_margin.main(["--results", str(tmp_path / "nope.json"), "--sweeps", str(tmp_path / "s.json")])
    assert "--results: no such file" in capsys.readouterr().err
