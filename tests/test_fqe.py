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
