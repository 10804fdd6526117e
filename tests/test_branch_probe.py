"""The branch probe's premise: a restored MuJoCo state replays exactly, so one branch per action
is its Monte-Carlo Q, and branches differ only by what they execute."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import branch_probe


def test_discounted_sums_in_reverse():
    assert branch_probe.discounted([1.0, 2.0, 4.0], 0.5) == 1.0 + 0.5 * 2.0 + 0.25 * 4.0
    assert branch_probe.discounted([], 0.9) == 0.0


def test_branches_from_a_restored_state_replay_exactly_and_stop_at_termination():
    env = gym.make("Hopper-v5").unwrapped
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        obs, *_ = env.step(np.full(3, 0.3))
    state = branch_probe.snapshot(env)

    def still(o):
        return np.zeros(3)

    first = np.array([0.5, -0.2, 0.1])
    a = branch_probe.branch_return(env, state, first, still, 50, 0.99, 1.0)
    env.step(np.ones(3))  # wherever the env is left, the next branch starts from the restored state
    b = branch_probe.branch_return(env, state, first, still, 50, 0.99, 1.0)
    c = branch_probe.branch_return(env, state, -first, still, 50, 0.99, 1.0)
    assert a == b and a != c
    # Scaled rewards scale the return; a falling branch (full torque) ends before the horizon.
    assert branch_probe.branch_return(env, state, first, still, 50, 0.99, 2.0) == 2 * a
    fall = branch_probe.branch_return(env, state, np.ones(3), lambda o: np.ones(3), 1000, 1.0, 1.0)
    assert fall < 1000 * 1.0  # at most 1000 steps of healthy reward (1.0 each) and forward progress
