"""The support metric: how far executed (state, action) pairs sit from the dataset.

Defines `SupportMetric` and `DatasetSupport` (the metric of a dataset's (state, action) pairs, queried with a
policy's executed steps).

Every dimension of the joint vector `[obs, action]` (actions in normalised units; without
actions, the states alone: how often a policy is where the data never went) is
standardised with the dataset's mean and std. A query's distance to its k-th nearest dataset
point is divided by the dataset's own typical leave-one-out distance (the median, over a sample
of dataset points, of the distance to their k-th nearest *other* point). A step is a support
violation when its distance exceeds the 99th percentile of those leave-one-out distances.
Uses scikit-learn's nearest neighbours (a dependency of the kit) for every distance; `violations` first
screens the queries with SciPy's KD-tree (see SCREEN_EPS) and answers the rest exactly.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: `SupportMetric.violations` screens queries with an approximate search (`cKDTree.query(eps=SCREEN_EPS)`,
#: which returns real dataset points at most (1 + eps) times farther than the true k-th nearest): a query with
#: k points inside the threshold is on the support, exactly; only the others go to the exact search. Measured
#: on the states a finished run's drift check visits (`benchmarks/support_speed.py`, 40,000 queries, one core):
#: HalfCheetah medium-replay (17 dims, where scikit-learn searches by brute force) 303 us a query exactly, 19 us
#: screened; hopper medium-expert (11 dims, a KD-tree; 9.7% of the states off the data) 51 us, 13 us. Same
#: answers in both. eps 4 settled 99.9% / 89% of those queries (eps 1: 204 us for the screen alone on the first).
SCREEN_EPS = 4.0


class SupportMetric:
    """k-NN support distances against a dataset.

    Args:
        observations: (N, obs_dim) dataset observations.
        actions: (N, act_dim) dataset actions, normalised units; None: the metric on states alone
            (then query without actions too).
        k: neighbour rank used as the distance.
        max_points: the dataset is subsampled to this many points for the index (speed).
        loo_samples: dataset points whose leave-one-out distance sets the scale.
        seed: subsampling seed.
    """

    def __init__(
        self,
        observations: np.ndarray,
        actions: np.ndarray | None = None,
        k: int = 1,
        max_points: int = 200_000,
        loo_samples: int = 5_000,
        seed: int = 0,
    ):
        try:
            from sklearn.neighbors import NearestNeighbors
        except ImportError as err:
            raise ImportError("the support metric needs scikit-learn: pip install scikit-learn") from err
        joint = self._joint(observations, actions).astype(np.float64)
        self.mean, self.std = joint.mean(0), np.maximum(joint.std(0), 1e-6)
        rng = np.random.default_rng(seed)
        if len(joint) > max_points:
            joint = joint[rng.choice(len(joint), max_points, replace=False)]
        points = (joint - self.mean) / self.std
        self.k = k
        self.index = NearestNeighbors(n_neighbors=k + 1).fit(points)
        sample = points[rng.choice(len(points), min(loo_samples, len(points)), replace=False)]
        loo = self.index.kneighbors(sample, n_neighbors=k + 1)[0][:, k]  # column 0 is the point itself
        self.loo_median = float(np.median(loo))
        self.threshold = float(np.quantile(loo, 0.99))
        self._screen = cKDTree(points)

    @staticmethod
    def _joint(observations: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        return observations if actions is None else np.concatenate([observations, actions], 1)

    def _standardised(self, observations: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        return (self._joint(observations, actions) - self.mean) / self.std

    def _kth_distance(self, joint: np.ndarray) -> np.ndarray:
        """(M,) exact distance of standardised queries to their k-th nearest dataset point."""
        return self.index.kneighbors(joint, n_neighbors=self.k)[0][:, self.k - 1]

    def distances(self, observations: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """(M,) standardised k-NN distances of query pairs (actions normalised) to the dataset."""
        return self._kth_distance(self._standardised(observations, actions))

    def violations(self, observations: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """(M,) bool: queries beyond the dataset's 99th-percentile leave-one-out distance (the same answers as
        `distances(...) > threshold`, faster: an approximate search settles the queries with k dataset points
        clearly inside the threshold, the exact search the rest)."""
        joint = self._standardised(observations, actions)
        out = np.ones(len(joint), dtype=bool)
        screened = np.isfinite(joint).all(axis=1)  # a non-finite query goes to the exact search (its error)
        if screened.any():
            found, _ = self._screen.query(
                joint[screened], k=[self.k], eps=SCREEN_EPS, distance_upper_bound=self.threshold
            )
            # a margin of 1e-9 relative: a distance at the threshold itself is left to the exact search
            inside = found[:, 0] <= self.threshold * (1.0 - 1e-9)
            out[np.flatnonzero(screened)[inside]] = False
        rest = out.copy()  # what the screen left undecided
        if rest.any():
            out[rest] = self._kth_distance(joint[rest]) > self.threshold
        return out

    def report(self, observations: np.ndarray, actions: np.ndarray | None = None) -> dict[str, float]:
        """`support_ratio_median` (distance / dataset LOO median) and `support_violation_rate`."""
        d = self.distances(observations, actions)
        return {
            "support_ratio_median": float(np.median(d) / max(self.loo_median, 1e-12)),
            "support_violation_rate": float(np.mean(d > self.threshold)),
        }


class DatasetSupport:
    """`SupportMetric` on a dataset's (state, action) pairs, queried with executed steps in env units.

    Args:
        data: an `OfflineData` (observations, actions in normalised units, its action space).
    """

    def __init__(self, data):
        from spar_rectify.spaces import ActionScaler

        self.scaler = ActionScaler(data.action_space)
        self.metric = SupportMetric(data.observations.numpy(), data.actions.numpy())

    def pairs(self, visited: list) -> tuple[np.ndarray, np.ndarray]:
        """(T, obs_dim) observations and (T, act_dim) normalised actions of `(observation, action)` steps in env
        units (what `evaluation.evaluate(visited=...)` collects)."""
        obs = np.stack([np.asarray(o, np.float32) for o, _ in visited])
        return obs, self.scaler.to_normalized_clipped(np.stack([a for _, a in visited]))

    def report(self, visited: list) -> dict[str, float]:
        """`SupportMetric.report` of the visited steps."""
        return self.metric.report(*self.pairs(visited))

    def share(self, visited: list) -> float:
        """The share of the visited steps beyond the dataset's support (`SupportMetric.violations`)."""
        return float(self.metric.violations(*self.pairs(visited)).mean())
