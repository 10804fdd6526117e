"""The offline drift check: a dynamics ensemble fitted to the data, and rollouts of two policies through it."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

import envs
from spar_rectify.drift import (
    DriftReport,
    DynamicsEnsemble,
    StateBox,
    drift_check,
    live_starts,
    model_rollout,
    rollout_draws,
    state_support,
)
from spar_rectify.spaces import ActionScaler
from tests.helpers import make_checkpoint
from tests.helpers_data import point_data

SMALL = dict(members=3, steps=600, hidden=(64, 64))


@pytest.fixture(scope="module")
def data():
    return point_data(episodes=40)


@pytest.fixture(scope="module")
def model(data):
    return DynamicsEnsemble.fit(data, **SMALL)


def test_fit_learns_the_point_mass_dynamics(data, model):
    # PointReach's step is linear in (state, action): a fitted ensemble predicts it far better than the
    # mean change (MSE 1 in these units) on held-out transitions
    assert model.validation_mse < 0.05
    obs, act = data.observations[:256], data.actions[:256]
    nxt, spread = model.step(obs, act, torch.zeros(256, dtype=torch.long))
    err = (nxt - data.next_observations[:256]).abs().mean() / (data.next_observations - data.observations).abs().mean()
    assert err < 0.3 and spread.shape == (256,) and torch.all(spread >= 0)


def test_save_load_round_trip_without_pickle(tmp_path, data, model):
    model.save(tmp_path / "dyn")
    again = DynamicsEnsemble.load(tmp_path / "dyn")
    pick = torch.arange(50) % SMALL["members"]
    a, _ = model.step(data.observations[:50], data.actions[:50], pick)
    b, _ = again.step(data.observations[:50], data.actions[:50], pick)
    assert torch.equal(a, b) and again.validation_mse == model.validation_mse
    assert again.dataset == model.dataset == data.name
    with pytest.raises(FileNotFoundError, match="spar drift --model-dir"):
        DynamicsEnsemble.load(tmp_path / "empty")


def test_fit_is_seeded_and_leaves_the_global_rng_alone(data):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = DynamicsEnsemble.fit(data, members=2, steps=20, hidden=(16,), seed=5)
    after = torch.rand(3)
    b = DynamicsEnsemble.fit(data, members=2, steps=20, hidden=(16,), seed=5)
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.net.parameters(), b.net.parameters()))


def test_drift_separates_a_policy_that_leaves_the_data(data, model):
    controller = envs.biased_controller

    def runaway(obs):  # full force in one direction: the point leaves the region the data covers
        return np.ones((len(obs), 2), np.float32)

    report = drift_check({"base": controller, "same": controller, "rectified": runaway}, data, model, 200, 30)
    assert np.array_equal(report.per_step["base"], report.per_step["same"])  # the same draws for every policy
    assert report.excess("same") == 0.0
    assert report.excess() > 20.0 and report.per_step["rectified"][-1] > 0.5
    d = report.to_dict()
    assert (
        d["excess_points"] == pytest.approx(report.excess()) and len(d["policies"]["base"]["per_step_violation"]) == 30
    )
    assert "rectified" in report.table()


def test_the_excess_comes_with_its_standard_error_over_the_start_states(data, model):
    def half(obs):  # half of the start states run away, the others stay with the controller
        act = np.asarray(envs.biased_controller(obs), np.float32)
        act[obs[:, 0] > np.median(obs[:, 0])] = 1.0
        return act

    policies = {"base": envs.biased_controller, "same": envs.biased_controller, "rectified": half}
    report = drift_check(policies, data, model, 200, 30)
    for name, shares in report.per_rollout.items():  # each rollout's share, averaging to the per-step shares
        assert shares.shape == (200,) and np.mean(shares) == pytest.approx(np.mean(report.per_step[name]))
    diff = 100 * (report.per_rollout["rectified"] - report.per_rollout["base"])
    assert report.excess_se() == pytest.approx(np.std(diff, ddof=1) / np.sqrt(200)) and report.excess_se() > 0
    assert report.excess_se("same") == 0.0  # the same draws: no spread between a policy and itself
    assert report.to_dict()["excess_se_points"] == pytest.approx(report.excess_se(), abs=1e-3)
    bare = DriftReport(
        {n: np.full(5, 0.1) for n in ("base", "rectified")}, dict.fromkeys(("base", "rectified"), 0.0), 10, 5, 0.0
    )
    assert np.isnan(bare.excess_se()) and bare.to_dict()["excess_se_points"] is None  # shares not kept

    # 200 rollouts where half leave the data and half do not: about 50 points, with a standard error
    # near 50 / sqrt(200) = 3.5 (seeds of the start states move it by that much, not by 20)
    assert 35 < report.excess() < 60 and 2 < report.excess_se() < 5
    again = drift_check(policies, data, model, 200, 30, seed=1)
    assert abs(again.excess() - report.excess()) < 5 * max(report.excess_se(), again.excess_se())


def test_drift_check_can_roll_one_member_alone(data, model):
    from spar_rectify.support import SupportMetric

    alone = drift_check({"base": envs.biased_controller}, data, model, 40, 6, seed=2, member=1)
    first, picks = rollout_draws(data, model, 40, 6, seed=2)  # the same starts, member 1 at every step
    box, scaler = StateBox.of(data.observations), ActionScaler(data.action_space)
    support = SupportMetric(data.observations.numpy())
    steps = model_rollout(envs.biased_controller, first, torch.ones_like(picks), model, box, scaler)
    expected = [support.violations(step.next_states.numpy()).mean() for step in steps]
    assert np.allclose(alone.per_step["base"], expected)
    with pytest.raises(ValueError, match="member=3: the ensemble has members 0..2"):
        drift_check({"base": envs.biased_controller}, data, model, 40, 6, member=3)


def test_state_support_is_built_once_per_dataset(data):
    first = state_support(data)
    assert state_support(data) is first  # the same observations tensor: the same metric, not a rebuild
    other = replace(data, observations=data.observations.clone())
    rebuilt = state_support(other)
    assert rebuilt is not first and rebuilt.threshold == first.threshold  # equal data, built anew
    assert state_support(data) is not first  # one entry: the other dataset took its place


def test_drift_check_rejects_bad_input(data, model):
    with pytest.raises(ValueError, match="horizon=0: use at least 1"):
        drift_check({"base": envs.biased_controller}, data, model, 100, 0)
    with pytest.raises(ValueError, match="starts=3"):
        drift_check({"base": envs.biased_controller}, data, model, 3, 10)
    with pytest.raises(ValueError, match="returned a non-finite action at model step 0"):
        drift_check({"nan": lambda obs: np.full((len(obs), 2), np.nan)}, data, model, 20, 5)
    with pytest.raises(ValueError, match="members=1"):
        DynamicsEnsemble(6, 2, members=1)


def test_model_states_stay_in_the_box_and_rollouts_start_from_live_states(data):
    class Runaway:  # a diverging model: every step moves +100 in the first coordinate
        members = 1

        def step(self, states, actions, pick):
            moved = states.clone()
            moved[:, 0] += 100.0
            return moved, torch.zeros(len(states))

    states = torch.tensor([[0.0, 0.0], [1.0, 4.0]])
    box = StateBox.of(states)  # the range widened by its span: x in [-1, 2], y in [-4, 8]
    nxt, _ = box.step(Runaway(), states, torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    assert nxt.tolist() == [[2.0, 0.0], [2.0, 4.0]]

    some_end = copy.copy(data)
    some_end.terminations = data.terminations.clone()
    some_end.terminations[:10] = 1
    live = live_starts(some_end)
    assert len(live) == len(data) - 10 and torch.equal(live, data.observations[10:])
    ended = copy.copy(data)
    ended.terminations = torch.ones_like(data.terminations)
    with pytest.raises(ValueError, match="every transition is terminal"):
        live_starts(ended)


def test_model_rollouts_share_their_draws_and_chain_their_steps(data, model):
    first, picks = rollout_draws(data, model, starts=16, horizon=5, seed=3)
    again = rollout_draws(data, model, starts=16, horizon=5, seed=3)
    assert torch.equal(first, again[0]) and torch.equal(picks, again[1]) and picks.shape == (5, 16)
    assert int(picks.max()) < model.members and (live_starts(data) == first[:, None]).all(-1).any(-1).all()
    box, scaler = StateBox.of(data.observations), ActionScaler(data.action_space)
    high = data.action_space.high

    def push(states):  # beyond the action range: the model sees it clipped
        return np.tile(3 * high, (len(states), 1))

    steps = list(model_rollout(push, first, picks, model, box, scaler))
    assert len(steps) == 5 and torch.equal(steps[0].states, first)
    for before, after in zip(steps, steps[1:]):
        assert torch.equal(before.next_states, after.states)
    assert all(torch.equal(s.normalised, torch.ones_like(s.normalised)) for s in steps)
    replay = model_rollout(push, *again, model, box, scaler)
    assert all(torch.equal(a.next_states, b.next_states) for a, b in zip(steps, replay, strict=True))


def test_the_pick_is_the_least_penalised_rectifier_that_does_not_drift():
    from spar_rectify.drift import DriftReport, least_penalised_within

    shares = {"base": 0.10, "k025": 0.15, "k05": 0.11, "k1": 0.105, "unknown": 0.10}
    report = DriftReport({n: np.full(5, v) for n, v in shares.items()}, dict.fromkeys(shares, 0.0), 10, 5, 0.0)
    assert report.excess("k025") == pytest.approx(5.0)
    penalties = {"k025": 0.25, "k05": 0.5, "k1": 1.0, "unknown": None}
    assert least_penalised_within(report, penalties) == "k05"  # k025 drifts (+5 > +2)
    assert least_penalised_within(report, penalties, threshold=6.0) == "k025"
    assert least_penalised_within(report, {"k025": 0.25}) is None
    assert least_penalised_within(report, {"k1": 1.0, "unknown": None}) == "k1"  # unknown counts as the largest


def test_the_table_aligns_long_policy_names():
    from spar_rectify.drift import DriftReport

    names = ("base", "rectified 1", "a much longer policy name")
    report = DriftReport({n: np.zeros(3) for n in names}, dict.fromkeys(names, 0.0), 10, 3, 0.0)
    lines = report.table().splitlines()
    assert len({len(line) for line in lines}) == 1 and lines[3].startswith("a much longer policy name")


def test_choose_alpha_keeps_the_largest_alpha_within_the_threshold(monkeypatch, data, point_anchor, point_checkpoint):
    from spar_rectify import drift
    from spar_rectify.drift import DriftReport, choose_alpha

    shares = {"base": 0.10, "alpha 1": 0.15, "alpha 0.75": 0.13, "alpha 0.5": 0.11, "alpha 0.25": 0.10}
    seen = {}

    def fake_check(policies, *args):  # the rollouts are drift_check's test; here the rule on its report
        seen.update(policies)
        return DriftReport({n: np.full(4, shares[n]) for n in policies}, dict.fromkeys(policies, 0.0), 10, 4, 0.0)

    monkeypatch.setattr(drift, "drift_check", fake_check)
    chosen = choose_alpha(point_anchor, point_checkpoint, data, None)
    assert chosen.alpha == 0.5 and chosen.excess[1.0] == pytest.approx(5.0)  # 1 and 0.75 drift (+5, +3 > +2)
    assert [p.corrector.alpha for n, p in seen.items() if n != "base"] == [1.0, 0.75, 0.5, 0.25]
    assert choose_alpha(point_anchor, point_checkpoint, data, None, threshold=3.5).alpha == 0.75
    refused = choose_alpha(point_anchor, point_checkpoint, data, None, alphas=(1, 0.75))
    assert refused.alpha == 0.0  # none within: the base policy, and the table says what the user can do
    assert "the default is 0" in refused.table() and "spar tune-alpha" in refused.table()
    table = chosen.table()
    assert "0.50     +1.0  within  <- default" in table and "drifts" in table
    assert chosen.to_dict()["excess_points"] == {"1": 5.0, "0.75": 3.0, "0.5": 1.0, "0.25": 0.0}
    for bad, words in (({"alphas": (1.5,)}, "alpha must be in"), ({"threshold": -1}, "threshold=-1")):
        with pytest.raises(ValueError, match=words):
            choose_alpha(point_anchor, point_checkpoint, data, None, **bad)
    # the gate as deployed (on where the rectifier carries its critic), or checked ungated
    with_critic = make_checkpoint(
        point_checkpoint.observation_space, point_checkpoint.action_space, point_anchor, critic=True
    )
    for gate, expected in ((None, True), (False, False)):
        seen.clear()
        assert choose_alpha(point_anchor, with_critic, data, None, gate=gate).alpha == 0.5
        assert [p.corrector.gate for n, p in seen.items() if n != "base"] == [expected] * 4


def test_choose_alpha_records_each_member_and_allows_for_their_spread(
    monkeypatch, data, point_anchor, point_checkpoint
):
    from types import SimpleNamespace

    from spar_rectify import drift
    from spar_rectify.drift import DriftReport, choose_alpha

    # mixed draws: alpha 1 at +3.7 (seed 0 of hopper medium-expert); each member alone apart by about 3.6 points
    mixed = {"base": 0.10, "alpha 1": 0.137, "alpha 0.5": 0.11}
    apart = {0: 0.01, 1: 0.08, 2: 0.045, 3: 0.03, 4: 0.10}
    calls = []

    def fake_check(policies, data_, model, starts, horizon, seed, member=None):
        calls.append((member, starts))
        shares = dict(mixed) if member is None else {**mixed, "alpha 1": 0.10 + apart[member]}
        return DriftReport({n: np.full(4, shares[n]) for n in policies}, dict.fromkeys(policies, 0.0), 10, 4, 0.0)

    monkeypatch.setattr(drift, "drift_check", fake_check)
    model = SimpleNamespace(members=5)
    plain = choose_alpha(point_anchor, point_checkpoint, data, model, alphas=(1, 0.5))
    assert plain.alpha == 0.5 and plain.members is None and calls == [(None, 1000)]  # no members unless asked
    calls.clear()
    recorded = choose_alpha(point_anchor, point_checkpoint, data, model, alphas=(1, 0.5), members=True)
    assert calls == [(None, 1000)] + [(k, 200) for k in range(5)]  # a fifth of the starts each: one more check
    assert recorded.alpha == 0.5  # recorded, margin 0: the threshold alone decides
    assert recorded.members[1.0] == pytest.approx((1.0, 8.0, 4.5, 3.0, 10.0)) and recorded.model_se(
        0.5
    ) == pytest.approx(0.0, abs=1e-9)
    se = float(np.std([1.0, 8.0, 4.5, 3.0, 10.0], ddof=1) / np.sqrt(5))
    assert recorded.model_se(1.0) == pytest.approx(se)
    saved = recorded.to_dict()
    assert saved["excess_members_points"]["1"] == pytest.approx([1.0, 8.0, 4.5, 3.0, 10.0])
    assert saved["model_margin"] == 0.0 and "each member alone: +1.0, +8.0" in recorded.table()
    allowed = choose_alpha(point_anchor, point_checkpoint, data, model, alphas=(1, 0.5), members=True, model_margin=2)
    assert allowed.alpha == 1.0 and allowed.bar(1.0) == pytest.approx(2 + 2 * se)  # 3.7 <= 2 + 2 x 1.6
    assert "+ 2 x the members' s.e." in allowed.table()
    # the rule re-made from the recorded numbers, under another margin (benchmarks/alpha_margin.py does this)
    assert recorded.offline_alpha() == 0.5 and replace(recorded, model_margin=2).offline_alpha() == 1.0
    with pytest.raises(ValueError, match="model_margin=1 needs members=True"):
        choose_alpha(point_anchor, point_checkpoint, data, model, model_margin=1)
    with pytest.raises(ValueError, match="model_margin=inf"):
        choose_alpha(point_anchor, point_checkpoint, data, model, members=True, model_margin=float("inf"))


def test_load_or_fit_reuses_a_saved_model_and_refuses_another_datasets(tmp_path, data):
    from spar_rectify.drift import load_or_fit

    said = []
    first = load_or_fit(data, tmp_path / "dyn", members=2, steps=5, progress=said.append)
    again = load_or_fit(data, tmp_path / "dyn", members=2, steps=5, progress=said.append)
    assert said[0].startswith("fitting a 2-member") and said[-1] == f"dynamics model loaded from {tmp_path / 'dyn'}"
    assert all(torch.equal(a, b) for a, b in zip(first.net.parameters(), again.net.parameters()))
    other = copy.copy(data)
    other.name = "other"
    with pytest.raises(ValueError, match="holds a dynamics model of .*, not of other; pass an empty folder"):
        load_or_fit(other, tmp_path / "dyn")


def test_the_reach_policy_is_deployed_only_when_its_whole_residual_stays_on_the_data():
    from spar_rectify.drift import AlphaChoice, DriftReport, choose_penalty

    def choice(alpha, excess_at_1):
        return AlphaChoice(alpha, {1.0: excess_at_1, 0.75: 0.5}, 2.0, DriftReport({}, {}, 10, 100, 0.0))

    kept = choose_penalty({0.25: choice(0.75, 4.0), 0.0: choice(1.0, -3.5)}, reach=0.0)
    assert kept.deployed == 0.0
    assert kept.table().splitlines()[2].endswith("-3.5  <- deployed")
    fell_back = choose_penalty({0.25: choice(0.75, 4.0), 0.0: choice(0.75, 7.0)}, reach=0.0)
    assert fell_back.deployed == 0.25  # the reach policy drifts at alpha 1: the penalised one, at its own alpha
    assert fell_back.to_dict()["rectifiers"]["0.25"]["alpha"] == 0.75
    assert fell_back.to_dict()["deployed_penalty"] == 0.25 and fell_back.to_dict()["reach_penalty"] == 0.0
    with pytest.raises(ValueError, match="reach policy's choice"):
        choose_penalty({0.25: choice(1.0, 0.0)}, reach=0.0)


def test_with_weak_anchor_only_the_reach_policy_needs_an_anchor_the_critic_rates_below_the_data():
    from spar_rectify.drift import AlphaChoice, DriftReport, choose_penalty

    def choice(alpha):
        return AlphaChoice(alpha, {1.0: 0.0}, 2.0, DriftReport({}, {}, 10, 100, 0.0))

    both_stay = {0.25: choice(1.0), 0.0: choice(1.0)}
    weak = choose_penalty(both_stay, reach=0.0, anchor_advantage=-0.9, weak_anchor_only=True)
    sound = choose_penalty(both_stay, reach=0.0, anchor_advantage=1.6, weak_anchor_only=True)
    assert weak.deployed == 0.0 and sound.deployed == 0.25  # a sound anchor keeps its penalty
    assert "+1.600 (the critic rates the anchor at or above what the data does)" in sound.table()
    assert sound.to_dict()["anchor_advantage"] == 1.6 and sound.to_dict()["weak_anchor_only"] is True
    # without the switch the advantage is only recorded; a drifting reach policy is refused either way
    assert choose_penalty(both_stay, reach=0.0, anchor_advantage=1.6).deployed == 0.0
    drifts = {0.25: choice(1.0), 0.0: choice(0.75)}
    assert choose_penalty(drifts, reach=0.0, anchor_advantage=-0.9, weak_anchor_only=True).deployed == 0.25
    with pytest.raises(ValueError, match="needs anchor_advantage"):
        choose_penalty(both_stay, reach=0.0, weak_anchor_only=True)


def test_reach_gains_needs_a_kept_out_reach_policy_above_alpha_0_and_a_clear_critic_preference():
    from spar_rectify.critic_gain import GainComparison
    from spar_rectify.drift import AlphaChoice, DriftReport, choose_penalty, reach_gains

    def choice(alpha):
        return AlphaChoice(alpha, {1.0: 4.1}, 2.0, DriftReport({}, {}, 10, 100, 0.0))

    kept_out = choose_penalty({0.25: choice(1.0), 0.0: choice(0.75)}, reach=0.0, anchor_advantage=1.66)
    assert kept_out.deployed == 0.25
    clear, close = GainComparison(1.56, 1.35, 0.21, 0.013, 4096), GainComparison(1.36, 1.35, 0.02, 0.013, 4096)
    assert reach_gains(choice(0.75), kept_out, clear)  # hopper medium-replay around the SB3 policy, bound 2
    assert not reach_gains(choice(0.75), kept_out, close)  # within two standard errors: the penalty stays
    assert not reach_gains(choice(0.0), kept_out, clear)  # alpha 0 executes the anchor: nothing to deploy
    assert not reach_gains(choice(0.75), kept_out, None)
    assert replace(kept_out, reach_gain=clear.to_dict()).to_dict()["reach_gain"]["difference"] == 0.21


def test_the_reach_policy_must_not_leave_the_data_more_than_the_policy_it_would_replace():
    from spar_rectify.drift import AlphaChoice, DriftReport, choose_penalty

    def choice(alpha):
        return AlphaChoice(alpha, {1.0: -2.0}, 2.0, DriftReport({}, {}, 10, 100, 0.0))

    both_stay = {0.25: choice(1.0), 0.0: choice(1.0)}
    rule = dict(reach=0.0, anchor_advantage=-0.7, weak_anchor_only=True, reach_horizon=300, threshold=2.0)
    drifts = choose_penalty(both_stay, reach_excess=8.6, **rule)  # hopper medium-replay seed 0 at 200k
    stays = choose_penalty(both_stay, reach_excess=0.6, **rule)  # seed 2
    assert drifts.deployed == 0.25 and stays.deployed == 0.0
    assert choose_penalty(both_stay, reach_excess=2.0, **rule).deployed == 0.0  # the threshold itself is within
    assert drifts.to_dict()["reach_excess_points"] == 8.6 and drifts.to_dict()["reach_horizon"] == 300
    assert "over 300 model steps: +8.6 points off the data (deployed within +2)" in drifts.table()
    with_se = choose_penalty(both_stay, reach_excess=8.6, reach_excess_se=1.25, **rule)
    assert with_se.deployed == 0.25 and with_se.to_dict()["reach_excess_se_points"] == 1.25  # recorded, not used
    assert "+8.6 +- 1.2 points off the data" in with_se.table() and drifts.to_dict()["reach_excess_se_points"] is None
    apart = choose_penalty(both_stay, reach_excess=6.1, reach_excess_members=(1.0, 8.5, 4.0), **rule)
    assert apart.deployed == 0.25 and apart.to_dict()["reach_excess_members_points"] == [1.0, 8.5, 4.0]  # margin 0
    assert "each dynamics member alone: +1.0, +8.5, +4.0; the model's standard error 2.2" in apart.table()
    assert drifts.to_dict()["reach_excess_members_points"] is None and drifts.to_dict()["reach_model_se_points"] is None
    unmeasured = choose_penalty(both_stay, **{**rule, "reach_horizon": 0})  # the check off: the first two decide
    assert unmeasured.deployed == 0.0 and "model steps" not in unmeasured.table()


def test_the_reach_check_allows_for_the_models_own_spread_by_reach_model_margin():
    from spar_rectify.drift import AlphaChoice, DriftReport, choose_penalty

    both_stay = {0.25: AlphaChoice(1.0, {1.0: -2.0}, 2.0, DriftReport({}, {}, 10, 100, 0.0))}
    both_stay[0.0] = both_stay[0.25]
    rule = dict(reach=0.0, anchor_advantage=-0.7, weak_anchor_only=True, reach_horizon=300, threshold=2.0)
    members = (4.96, -0.91, 1.76, 9.26, -4.65)  # hopper medium-replay seed 3: standard error 2.39
    se = float(np.std(members, ddof=1) / np.sqrt(5))

    def pick(excess, margin, members=members):
        return choose_penalty(both_stay, reach_excess=excess, reach_excess_members=members, model_margin=margin, **rule)

    assert pick(6.1, 0.0).deployed == 0.25  # the threshold alone
    lenient = pick(6.1, 2.0)  # 6.1 <= 2 + 2 x 2.39: within what another fit of the model could read
    assert lenient.deployed == 0.0 and lenient.reach_model_se == pytest.approx(se)
    assert lenient.reach_bar == pytest.approx(2.0 + 2 * se) and pick(7.0, 2.0).deployed == 0.25
    assert lenient.to_dict()["reach_bar_points"] == pytest.approx(6.78, abs=0.01)
    assert "deployed within +6.8 = 2 + 2 x 2.4" in lenient.table()
    strict = pick(0.35, -1.0)  # 0.35 > 2 - 2.39: the model is not sure it stays within the threshold
    assert strict.deployed == 0.25 and pick(0.35, 0.0).deployed == 0.0
    # with one member, or none, there is no spread to allow for: the threshold alone
    assert pick(6.1, 2.0, members=(6.0,)).deployed == 0.25 and pick(6.1, 2.0, members=None).reach_bar == 2.0
    # a policy the first two conditions refuse stays refused whatever the margin
    refused = choose_penalty(
        both_stay, reach_excess=0.0, reach_excess_members=members, model_margin=5.0, **{**rule, "anchor_advantage": 1.0}
    )
    assert refused.deployed == 0.25
    with pytest.raises(ValueError, match="model_margin=nan"):
        pick(1.0, float("nan"))


def test_compare_reach_rolls_both_rectifiers_on_the_same_draws(monkeypatch, data, point_anchor, point_checkpoint):
    from spar_rectify import drift

    seen = {}

    def fake_check(policies, data_, model_, starts, horizon, seed, member=None):
        seen.update(policies=policies, starts=starts, horizon=horizon, seed=seed, member=member)
        shares = {"reach": 0.30, "penalised": 0.25}
        return drift.DriftReport(
            {n: np.full(horizon, shares[n]) for n in policies}, dict.fromkeys(policies, 0.0), 10, 4, 0.0
        )

    monkeypatch.setattr(drift, "drift_check", fake_check)
    report = drift.compare_reach(point_anchor, point_checkpoint, point_checkpoint, 0.5, data, None, horizon=7, seed=3)
    assert report.excess("reach", "penalised") == pytest.approx(5.0)
    assert {n: p.corrector.alpha for n, p in seen["policies"].items()} == {"reach": 1.0, "penalised": 0.5}
    assert (seen["starts"], seen["horizon"], seen["seed"], seen["member"]) == (1000, 7, 3, None)
    drift.compare_reach(point_anchor, point_checkpoint, point_checkpoint, 0.5, data, None, horizon=7, member=2)
    assert seen["member"] == 2  # one member alone, the same start states


def test_compare_reach_puts_one_rectifier_at_zero_against_itself(data, model, point_anchor, point_checkpoint):
    from spar_rectify.drift import compare_reach

    same = compare_reach(point_anchor, point_checkpoint, point_checkpoint, 1.0, data, model, horizon=5, starts=50)
    assert (
        same.excess("reach", "penalised") == 0.0 and same.horizon == 5 and set(same.per_step) == {"reach", "penalised"}
    )
