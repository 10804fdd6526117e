"""The reach-case table reads both latent policies' scores out of a record whichever was deployed, and scores rules."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import reach_cases


def record(deployed_penalty: float, in_sample: bool = False, reach_alpha: float = 1.0, excess=None, bar=None) -> dict:
    other_penalty = 0.25 if deployed_penalty == 0.0 else 0.0
    return {
        "normalized_score": 90.0,
        "alpha": 1.0,
        "state_violation_rate": 0.01,
        "penalty_choice": {
            "deployed_penalty": deployed_penalty,
            "reach_penalty": 0.0,
            "rectifiers": {"0.25": {"alpha": 0.5}, "0": {"alpha": reach_alpha}},
            "reach_excess_points": excess,
            "reach_bar_points": bar,
        },
        "alternative": {
            "lsi_anchor_penalty": other_penalty,
            "alpha": 0.5,
            "normalized_score": 60.0,
            "state_violation_rate": 0.02,
        },
        "in_sample_choice": {"deployed": in_sample},
        "rectifier-lsi": {"normalized_score": 70.0, "alpha": 0.25, "state_violation_rate": 0.03},
    }


def test_both_scores_follow_which_policy_was_deployed():
    reach_deployed = reach_cases.both_scores(record(0.0))
    assert reach_deployed["reach_deployed"] and reach_deployed["reach"]["score"] == 90.0
    assert reach_deployed["penalised"]["score"] == 60.0 and reach_deployed["penalised"]["alpha"] == 0.5
    penalised_deployed = reach_cases.both_scores(record(0.25))
    assert not penalised_deployed["reach_deployed"] and penalised_deployed["reach"]["score"] == 60.0
    assert penalised_deployed["penalised"]["score"] == 90.0
    # the in-sample candidate deployed: the LSI policy's own score stands for the deployed latent policy
    candidate = reach_cases.both_scores(record(0.25, in_sample=True))
    assert candidate["in_sample_deployed"] and candidate["penalised"]["score"] == 70.0
    assert candidate["reach"]["score"] == 60.0
    without = record(0.25, in_sample=True)
    del without["rectifier-lsi"]
    assert reach_cases.both_scores(without) is None
    assert reach_cases.both_scores({"penalty_choice": None, "alternative": None}) is None


def test_eligibility_without_the_anchor_condition_needs_alpha_one_and_the_reach_bar():
    assert reach_cases.eligible_any_anchor(record(0.25, reach_alpha=1.0))
    assert not reach_cases.eligible_any_anchor(record(0.25, reach_alpha=0.75))
    assert reach_cases.eligible_any_anchor(record(0.25, excess=1.0, bar=2.4))
    assert not reach_cases.eligible_any_anchor(record(0.25, excess=3.0, bar=2.4))


def test_return_split_tells_two_groups_from_one():
    rng = np.random.default_rng(0)
    two = np.r_[rng.normal(1000, 50, 300), rng.normal(3000, 50, 300)]
    one = rng.normal(1000, 50, 600)
    assert reach_cases.return_split(two) > 0.95
    assert reach_cases.return_split(one) == pytest.approx(2 / np.pi, abs=0.05)  # a normal's best split
    assert reach_cases.return_split(np.full(5, 3.0)) == 0.0


def test_rule_scores_count_the_better_pick_and_the_shortfall():
    def case(reach, penalised, deployed, eligible, critic):
        return {
            "reach": {"score": reach[0], "state_off": reach[1], "alpha": 0.5},
            "penalised": {"score": penalised[0], "state_off": penalised[1]},
            "reach_deployed": deployed,
            "eligible_any_anchor": eligible,
            "critic_prefers_reach": critic,
        }

    rows = [
        case((90.0, 0.1), (60.0, 0.0), False, True, True),
        case((50.0, 0.3), (80.0, 0.0), True, False, True),
        case((70.0, 0.2), (70.5, 0.0), True, True, None),
    ]
    rules = reach_cases.rule_scores(rows)
    recorded = rules["recorded"]
    assert recorded["mean"] == pytest.approx(60.0) and recorded["better_or_tie"] == 1 and recorded["shortfall"] == 60.5
    assert recorded["mean_state_off"] == pytest.approx(0.5 / 3, abs=1e-4) and recorded["worst_state_off"] == 0.3
    assert rules["penalised"]["worst_state_off"] == 0.0
    assert rules["reach"]["better_or_tie"] == 2 and rules["reach"]["shortfall"] == 30.5
    assert rules["penalised"]["better_or_tie"] == 2 and rules["penalised"]["shortfall"] == 30.0
    assert rules["eligible_any_anchor"]["better_or_tie"] == 3 and rules["eligible_any_anchor"]["shortfall"] == 0.5
    assert rules["critic"]["cases"] == 2 and rules["critic"]["better_or_tie"] == 1
    # larger_gain: row 1 kept out and the critic prefers it (reach), row 2 deployed (reach), row 3 deployed (reach)
    assert rules["larger_gain"]["cases"] == 3 and rules["larger_gain"]["shortfall"] == 30.5
    unknown = dict(rows[0], critic_prefers_reach=None)
    assert reach_cases.larger_gain(unknown) is None
    assert reach_cases.larger_gain(dict(unknown, reach={"score": 1.0, "state_off": 0.0, "alpha": 0.0})) is False
