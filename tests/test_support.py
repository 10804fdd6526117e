"""The support metric separates on-data from off-data actions."""

from __future__ import annotations

import numpy as np
import pytest

from spar_rectify.support import SupportMetric


def test_support_metric_on_and_off_data():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4000, 5))
    actions = np.tanh(obs[:, :2] @ np.array([[1.0, 0.3], [-0.5, 1.0]])) + rng.normal(0, 0.05, (4000, 2))
    metric = SupportMetric(obs, actions, loo_samples=1000)
    held_obs = rng.normal(size=(500, 5))
    on = np.tanh(held_obs[:, :2] @ np.array([[1.0, 0.3], [-0.5, 1.0]]))
    off = -on  # same states, mirrored actions: far from anything in the data
    on_report, off_report = metric.report(held_obs, on), metric.report(held_obs, off)
    assert on_report["support_ratio_median"] < 2.0 and on_report["support_violation_rate"] < 0.1
    assert off_report["support_ratio_median"] > 2 * on_report["support_ratio_median"]
    assert off_report["support_violation_rate"] > 0.5
    # The dataset itself: about 1% above its own 99th percentile, ratio about 1.
    self_report = metric.report(obs[:1000] + 1e-9, actions[:1000])
    assert self_report["support_ratio_median"] == pytest.approx(0.0, abs=1e-3)


def test_support_metric_on_states_alone():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(3000, 4))
    metric = SupportMetric(obs, loo_samples=1000)  # no actions: where the policy is, not what it does
    near, far = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 6.0
    assert metric.violations(near).mean() < 0.1 and metric.violations(far).mean() > 0.9
    assert metric.report(far)["support_violation_rate"] == pytest.approx(metric.violations(far).mean())
    assert metric.distances(near).shape == (300,)


@pytest.mark.parametrize("dims,k", [(4, 1), (17, 1), (17, 3)])  # 17: scikit-learn searches by brute force
def test_screened_violations_match_the_exact_search(dims, k):
    rng = np.random.default_rng(dims + k)
    obs = rng.normal(size=(3000, dims))
    metric = SupportMetric(obs, k=k, loo_samples=500)
    # near, middling and far queries: the screen settles some, the exact search the others
    queries = np.concatenate([obs[:200] + s * rng.normal(size=(200, dims)) for s in (0.01, 0.3, 0.6, 1.0, 3.0)])
    exact = metric.distances(queries) > metric.threshold
    assert 0.05 < exact.mean() < 0.95  # both answers occur
    np.testing.assert_array_equal(metric.violations(queries), exact)


def test_violations_refuse_a_non_finite_query():
    metric = SupportMetric(np.random.default_rng(0).normal(size=(500, 3)), loo_samples=100)
    queries = np.zeros((4, 3))
    queries[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metric.violations(queries)
