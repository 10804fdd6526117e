"""The candidate-rule study re-makes the in-sample candidate's deployment from recorded checks and reads the env's
verdict on what each rule deploys."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import candidate_rule

from spar_rectify.critic_gain import GainComparison
from spar_rectify.drift import in_sample_replaces


def verdict(score, off):
    return {"normalized_score": score, "support_violation_rate": off / 2, "state_violation_rate": off}


def gain(difference, se=0.01):
    return GainComparison(
        challenger=0.1 + difference, incumbent=0.1, difference=difference, difference_se=se, states=64
    )


def record(seed, lsi_alpha, gated, ungated, advantage, kit_deployed, lsi_score, candidate_score, compared=None):
    """A record as the harness writes it: the deployed rectifier's verdict at the top, the other one's in its folder's
    key; the candidate's gated and ungated checks, the anchor's advantage only with the reach policy's choice."""
    deployed, other = (candidate_score, lsi_score) if kit_deployed else (lsi_score, candidate_score)
    return {
        "dataset": "spar/hopper/medium-expert-v0",
        "method": "medium-rectified",
        "seed": seed,
        "variant": "isc",
        **verdict(deployed, 0.01),
        ("rectifier-lsi" if kit_deployed else "rectifier-insample"): verdict(other, 0.02),
        "penalty_choice": {"anchor_advantage": advantage},
        "in_sample_choice": {
            "alpha": {"alpha": gated},
            "gate_choice": {"gated_alpha": gated, "ungated": {"alpha": ungated}, "deployed_gate": "ungated"},
            "lsi_alpha": lsi_alpha,
            "deployed": kit_deployed,
            **({"gain": compared.to_dict()} if compared is not None else {}),
        },
    }


def test_each_rule_deploys_what_it_says_and_reads_that_rectifiers_verdict(tmp_path):
    runs = [
        record(0, 0.0, 0.5, 1.0, -0.1, True, 47.0, 54.0),  # LSI at 0: every rule but never takes the candidate
        record(1, 0.25, 0.5, 1.0, -0.2, False, 51.0, 100.0),  # LSI at 0.25, the candidate passes 1
        record(2, 0.5, 0.25, 0.0, +0.3, False, 60.0, 40.0),  # an anchor above the data: only always
        record(3, 0.75, 1.0, 1.0, -0.1, False, 64.0, 50.0, gain(-0.07)),  # the critic prefers LSI's
        record(4, 0.25, 0.5, 1.0, -0.1, False, 50.0, 99.0, gain(+0.10)),  # ... the candidate, clearly
        record(5, 0.25, 0.5, 1.0, -0.1, False, 50.0, 60.0, gain(+0.01)),  # ... the candidate, within noise
        {"dataset": "spar/hopper/medium-expert-v0", "method": "iql", "seed": 0, "normalized_score": 100.0},
        {"dataset": "spar/hopper/medium-expert-v0", "method": "iql", "seed": 1, "normalized_score": 102.0},
    ]
    results = tmp_path / "suite.json"
    results.write_text(json.dumps({"tier": "full", "runs": runs}))
    out = tmp_path / "rule.json"
    candidate_rule.main(["--results", str(results), "--out", str(out)])
    result = json.loads(out.read_text())
    picks = {name: [r["deployed"] for r in rule["runs"]] for name, rule in result["rules"].items()}
    assert picks == {
        # records 0-1 carry no critic comparison (trained before session 30): undecided, so no mean
        "larger-gain": [None, None, "lsi", "lsi", "candidate", "lsi"],
        "larger-alpha": ["candidate", "candidate", "lsi", "candidate", "candidate", "candidate"],
        "lsi-at-zero": ["candidate", "lsi", "lsi", "lsi", "lsi", "lsi"],
        "always": ["candidate"] * 6,
        "never": ["lsi"] * 6,
    }
    # these records were deployed under lsi_at_zero: the trainer's own rule, re-made
    assert [r["recorded_deployed"] for r in result["runs"]] == [p == "candidate" for p in picks["lsi-at-zero"]]
    larger_alpha = (54.0 + 100.0 + 60.0 + 50.0 + 99.0 + 60.0) / 6
    assert result["rules"]["larger-alpha"]["mean_score"] == pytest.approx(larger_alpha)
    key = "isc spar/hopper/medium-expert-v0 medium-rectified"
    assert result["rules"]["larger-alpha"]["mean_score_by_variant"][key] == pytest.approx(larger_alpha)
    assert result["rules"]["larger-gain"]["mean_score"] is None
    assert result["rules"]["larger-gain"]["runs"][4]["normalized_score"] == 99.0
    assert result["rules"]["never"]["runs"][0]["state_violation_rate"] == pytest.approx(0.02)
    assert result["iql"] == {"spar/hopper/medium-expert-v0": [100.0, 102.0]}


def test_a_rule_that_deploys_an_unmeasured_rectifier_leaves_the_mean_unknown(tmp_path):
    run = record(0, 0.0, 0.5, 1.0, -0.1, True, 47.0, 54.0)
    del run["rectifier-lsi"]  # LSI's folder was never evaluated
    results = tmp_path / "suite.json"
    results.write_text(json.dumps({"tier": "full", "runs": [run]}))
    result = candidate_rule.main(["--results", str(results), "--out", str(tmp_path / "rule.json")])
    assert result["rules"]["larger-alpha"]["mean_score"] == pytest.approx(54.0)
    assert result["rules"]["never"]["mean_score"] is None


def test_the_kits_rules_need_a_larger_candidate_alpha_and_a_weak_anchor():
    def larger(lsi, own, advantage):
        return in_sample_replaces(lsi, own, advantage, "larger_alpha")

    assert larger(0.0, 1.0, -0.1) and larger(0.25, 1.0, -0.1)
    assert not larger(1.0, 1.0, -0.1) and not larger(0.5, 0.25, -0.1)
    assert not larger(0.0, 0.0, -0.1)
    assert not larger(0.0, 1.0, 0.0)  # an anchor rated at the data's value
    # larger_gain, the default: the same conditions, and the critic's clear preference for the candidate
    assert in_sample_replaces(0.25, 1.0, -0.1, gain=gain(0.05, se=0.01))
    assert not in_sample_replaces(0.25, 1.0, -0.1, gain=gain(0.015, se=0.01))  # within two standard errors
    assert not in_sample_replaces(0.25, 1.0, -0.1, gain=gain(-0.07))
    assert not in_sample_replaces(1.0, 1.0, -0.1, gain=gain(0.5)) and not in_sample_replaces(
        0.0, 1.0, 0.1, gain=gain(0.5)
    )
    assert not in_sample_replaces(1.0, 1.0, -0.1)  # nothing to compare where the alphas already decide
    with pytest.raises(ValueError, match="larger_gain.*needs the critic's comparison"):
        in_sample_replaces(0.25, 1.0, -0.1)
    assert in_sample_replaces(0.0, 1.0, -0.1, "lsi_at_zero") and not in_sample_replaces(0.25, 1.0, -0.1, "lsi_at_zero")
    with pytest.raises(ValueError, match="in_sample_rule"):
        in_sample_replaces(0.0, 1.0, -0.1, "largest")


def test_results_without_a_candidate_run_name_the_fix(tmp_path, capsys):
    results = tmp_path / "suite.json"
    results.write_text(json.dumps({"tier": "full", "runs": [{"dataset": "d", "method": "bc", "seed": 0}]}))
    with pytest.raises(SystemExit):
        candidate_rule.main(["--results", str(results), "--out", str(tmp_path / "rule.json")])
    assert "in_sample_candidate=1" in capsys.readouterr().err
