"""FQE estimates a policy's own value: the next action is the policy's, not the data's."""

import numpy as np
import pytest
from gymnasium import spaces

from spar_rectify.data import from_arrays
from spar_rectify.fqe import episode_starts, fitted_q_evaluation, paired_difference


def bandit_chain(terminate: bool, n: int = 4000, length: int = 10, seed: int = 0):
    """States drawn at random whatever the action, reward = the action (one dimension in [-1, 1]), episodes of
    `length` steps that end in a termination (`terminate`) or a time-limit truncation."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    nxt = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    last = (np.arange(n) % length) == length - 1
    term = np.ones(n, np.float32) if terminate else np.zeros(n, np.float32)
    box = spaces.Box(-1.0, 1.0, (1,), np.float32)
    return from_arrays(obs, act, act[:, 0].copy(), nxt, term, last.astype(np.float32), box, box, name="chain")


def constant(c):
    return lambda states: np.full((len(states), 1), c)


def fit(policy, data, **kw):
    return fitted_q_evaluation(policy, data, steps=1500, gamma=0.5, hidden=(32, 32), lr=3e-3, tau=0.05, **kw)


def test_fqe_values_the_policys_own_next_actions():
    data = bandit_chain(terminate=False)
    # every step pays the action: a constant policy c earns c / (1 - gamma) = 2c; the data's own next actions
    # (mean 0) would give c
    high, low = fit(constant(0.5), data, name="high"), fit(constant(-0.5), data, name="low")
    assert high.value == pytest.approx(1.0, abs=0.1) and low.value == pytest.approx(-1.0, abs=0.1)
    diff, se = paired_difference(high, low)
    assert diff == pytest.approx(2.0, abs=0.2) and se < 0.1
    assert high.state_value == pytest.approx(1.0, abs=0.1) and len(high.state_values) == 4000  # fewer rows than asked
    assert paired_difference(high, low, on="states")[0] == pytest.approx(2.0, abs=0.2)
    assert len(high.start_values) == len(episode_starts(data)) == 400 and high.to_dict()["name"] == "high"


def test_fqe_stops_at_terminations_and_bootstraps_through_truncations():
    ended = fit(constant(0.5), bandit_chain(terminate=True))
    assert ended.value == pytest.approx(0.5, abs=0.1)  # nothing after a termination: the action's reward alone


def test_fqe_refuses_bad_settings_and_non_finite_actions():
    data = bandit_chain(terminate=False, n=200)
    with pytest.raises(ValueError, match="gamma=1.0"):
        fitted_q_evaluation(constant(0.0), data, gamma=1.0)
    with pytest.raises(ValueError, match="tau=0.0"):
        fitted_q_evaluation(constant(0.0), data, tau=0.0)
    with pytest.raises(ValueError, match="steps=0"):
        fitted_q_evaluation(constant(0.0), data, steps=0)
    with pytest.raises(ValueError, match="policy 'broken' returned a non-finite action"):
        fitted_q_evaluation(constant(np.nan), data, name="broken")
    other = fit(constant(0.0), bandit_chain(terminate=False, n=100))
    with pytest.raises(ValueError, match="different states"):
        paired_difference(fit(constant(0.0), data), other)
    with pytest.raises(ValueError, match="on='rows'"):
        paired_difference(other, other, on="rows")


def narrow_chain(n: int = 4000, length: int = 10, seed: int = 0):
    """As `bandit_chain`, but every logged action lies in [-0.2, 0.2] and every step pays 1 whatever the action:
    each policy's true value is the same, only what the data supports differs."""
    data = bandit_chain(terminate=False, n=n, length=length, seed=seed)
    actions = np.random.default_rng(seed + 1).uniform(-0.2, 0.2, (n, 1)).astype(np.float32)
    box = spaces.Box(-1.0, 1.0, (1,), np.float32)
    return from_arrays(
        data.observations.numpy(),
        actions,
        np.ones(n, np.float32),
        data.next_observations.numpy(),
        data.terminations.numpy(),
        data.truncations.numpy(),
        box,
        box,
        name="narrow",
    )


def test_ensemble_mean_keeps_the_value_and_pessimism_charges_actions_off_the_data():
    data = bandit_chain(terminate=False)
    mean = fit(constant(0.5), data, members=3)  # no pessimism: the members' mean, as plain FQE
    assert mean.value == pytest.approx(1.0, abs=0.1) and mean.members == 3 and len(mean.start_spread) == 400
    # the same true value (2: 1 per step at gamma 0.5) for both policies; off the data the members disagree, so the
    # lower bound (beta 3) takes more off the policy whose actions the data never shows than off the one it does
    narrow = narrow_chain()
    fits = {
        (c, beta): fit(constant(c), narrow, members=5, pessimism=beta, name=f"{c}")
        for c in (0.0, 0.9)
        for beta in (0.0, 3.0)
    }
    assert fits[0.0, 0.0].value == pytest.approx(2.0, abs=0.1) and fits[0.9, 0.0].value == pytest.approx(2.0, abs=0.1)
    assert np.mean(fits[0.9, 3.0].start_spread) > 3 * np.mean(fits[0.0, 3.0].start_spread)
    drop_on = fits[0.0, 0.0].value - fits[0.0, 3.0].value
    drop_off = fits[0.9, 0.0].value - fits[0.9, 3.0].value
    assert drop_off > 0.05 and drop_off > 4 * drop_on
    assert paired_difference(fits[0.0, 3.0], fits[0.9, 3.0])[0] > 0.04
    assert fits[0.9, 3.0].to_dict()["pessimism"] == 3.0


def test_pessimistic_fqe_refuses_settings_it_cannot_honour():
    data = bandit_chain(terminate=False, n=200)
    with pytest.raises(ValueError, match="members=0"):
        fitted_q_evaluation(constant(0.0), data, members=0)
    with pytest.raises(ValueError, match="pessimism=-1"):
        fitted_q_evaluation(constant(0.0), data, members=5, pessimism=-1.0)
    with pytest.raises(ValueError, match="members=1: a lower bound needs"):
        fitted_q_evaluation(constant(0.0), data, pessimism=1.0)
