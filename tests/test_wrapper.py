"""SPARRectifierWrapper: bounds, pass-through, conformance, fallbacks and errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spar_rectify import CallablePolicy, SPARRectifierWrapper, save_rectifier
from spar_rectify.correction import FALLBACK_EXECUTED, FALLBACK_OBS, FALLBACK_RESIDUAL, Corrector
from tests.helpers import make_checkpoint


class RecordActions(gym.Wrapper):
    """Remembers every action the inner env receives."""

    def __init__(self, env):
        super().__init__(env)
        self.received = []

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        return self.env.step(action)


class NaNObsEnv(gym.Env):
    """Returns a NaN observation on its second step."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, np.nan if self.t == 1 else 0.1, np.float32)
        return obs, 0.0, False, self.t >= 5, {}


finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
extreme = st.one_of(finite, st.sampled_from([3.4e38, -3.4e38, 0.0, 1.0, -1.0, 1e-30]))


ASYM_OBS = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
ASYM_ACT = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([1.0, 4.0], np.float32))
ASYM = make_checkpoint(ASYM_OBS, ASYM_ACT, CallablePolicy(lambda o: np.zeros((len(o), 2)), ASYM_ACT), bound=0.4)


@settings(max_examples=200, deadline=None)
@given(
    obs=arrays(np.float32, (6,), elements=extreme),
    base=arrays(np.float32, (2,), elements=extreme),
    alpha=st.floats(0.0, 1.0),
)
def test_executed_action_inside_space_and_within_bound(obs, base, alpha):
    space = ASYM.action_space
    c = Corrector(ASYM.rectifier, space, alpha)(obs[None], base[None])
    executed = c.executed_action[0]
    assert executed.dtype == space.dtype and space.contains(executed)
    clipped = np.clip(base, space.low, space.high)
    rho = ASYM.rectifier.residual_bound.numpy()
    half = (space.high - space.low) / 2
    # Within alpha * rho (normalised units) of the clipped base action, up to float32 rounding.
    assert np.all(np.abs(executed - clipped) <= alpha * rho * half + 1e-5)
    assert np.all(np.abs(c.residual) <= alpha * rho + 1e-6)
    assert 0.0 < c.support_score[0] <= 1.0


def test_kernel_matches_torch_module(point_checkpoint):
    rect, space = point_checkpoint.rectifier, point_checkpoint.action_space
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(64, 6)).astype(np.float32)
    base = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    with torch.no_grad():
        expected = rect(torch.as_tensor(obs), torch.as_tensor(base)).numpy()
    c = Corrector(rect, space, 1.0)(obs, base)
    np.testing.assert_allclose(c.residual, expected, atol=1e-5)
    assert np.abs(expected).max() > 0.05  # the test rectifier is far from a zero residual


@pytest.mark.parametrize("latent,anchored", [(False, True), (True, False)])
def test_kernel_matches_torch_for_ablation_variants(point_env, point_anchor, latent, anchored):
    ck = make_checkpoint(
        point_env.observation_space, point_env.action_space, point_anchor, latent=latent, anchored=anchored
    )
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(16, 6)).astype(np.float32)
    base = rng.uniform(-1, 1, (16, 2)).astype(np.float32)
    with torch.no_grad():
        expected = ck.rectifier(torch.as_tensor(obs), torch.as_tensor(base)).numpy()
    c = Corrector(ck.rectifier, ck.action_space, 1.0)(obs, base)
    np.testing.assert_allclose(c.residual, expected, atol=1e-5)
    if not anchored:  # a global policy: the base action does not enter the executed action
        np.testing.assert_allclose(c.executed_action, np.clip(expected, -1, 1), atol=1e-5)


def test_alpha_zero_is_exact_pass_through(point_env, point_checkpoint):
    env = SPARRectifierWrapper(RecordActions(point_env), point_checkpoint, alpha=0.0)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        _, _, _, _, info = env.step(action)
        assert np.array_equal(env.env.received[-1], action)
        assert np.array_equal(info["executed_action"], action)
        assert not info["residual"].any()


def test_inner_env_receives_the_reported_executed_action(point_env, point_checkpoint, point_anchor):
    env = SPARRectifierWrapper(RecordActions(point_env), point_checkpoint, base_policy=point_anchor)
    obs, _ = env.reset(seed=0)
    moved = 0.0
    for _ in range(10):
        base = point_anchor(obs[None])[0]
        obs, _, _, _, info = env.step(base)
        assert np.array_equal(env.env.received[-1], info["executed_action"])
        assert np.array_equal(info["base_action"], base)
        assert info["rectifier_fallback"] == ""
        assert set(info) >= {"base_action", "residual", "executed_action", "support_score"}
        moved = max(moved, float(np.abs(info["executed_action"] - base).max()))
    assert moved > 0.01


def test_passes_check_env_and_rebuilds_from_spec(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    env = SPARRectifierWrapper(gym.make("PointReach-v0"), rectifier=str(path))
    check_env(env, skip_render_check=True)
    rebuilt = gym.make(env.spec)
    assert isinstance(rebuilt, SPARRectifierWrapper)
    obs1, _ = env.reset(seed=5)
    obs2, _ = rebuilt.reset(seed=5)
    action = np.array([0.3, -0.2], np.float32)
    out1, out2 = env.step(action), rebuilt.step(action)
    np.testing.assert_array_equal(out1[0], out2[0])
    np.testing.assert_array_equal(out1[4]["executed_action"], out2[4]["executed_action"])


def test_non_finite_observation_executes_base_action():
    env = NaNObsEnv()
    ck = make_checkpoint(env.observation_space, env.action_space, _zero_policy(env))
    wrapped = SPARRectifierWrapper(RecordActions(env), ck)
    wrapped.reset(seed=0)
    base = np.array([0.5, -3.0], np.float32)  # out of bounds on purpose
    _, _, _, _, info = wrapped.step(base)  # last obs finite -> rectified
    assert info["rectifier_fallback"] == ""
    _, _, _, _, info = wrapped.step(base)  # last obs NaN -> base action, clipped into the space
    assert info["rectifier_fallback"] == FALLBACK_OBS
    assert np.array_equal(wrapped.env.received[-1], np.array([0.5, -2.0], np.float32))
    assert not info["residual"].any()


def test_non_finite_residual_executes_base_action(point_env, point_checkpoint):
    with torch.no_grad():
        point_checkpoint.rectifier.decoder[0].weight.fill_(float("nan"))
    env = SPARRectifierWrapper(RecordActions(point_env), point_checkpoint)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.2, 0.1], np.float32))
    assert info["rectifier_fallback"] == FALLBACK_RESIDUAL
    assert np.array_equal(env.env.received[-1], np.array([0.2, 0.1], np.float32))
    assert np.isfinite(env.env.received[-1]).all()


@pytest.mark.parametrize("bound", [float("nan"), float("inf")])
def test_a_damaged_bound_never_reaches_the_env(point_env, point_checkpoint, bound):
    # A bound the loader would refuse, set in memory: the per-step check is the last line of defence.
    point_checkpoint.rectifier.residual_bound.fill_(bound)
    env = SPARRectifierWrapper(RecordActions(point_env), point_checkpoint)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.2, 0.1], np.float32))
    assert info["rectifier_fallback"] == FALLBACK_EXECUTED
    assert np.array_equal(env.env.received[-1], np.array([0.2, 0.1], np.float32))
    assert not info["residual"].any()


def test_step_before_reset_raises(point_env, point_checkpoint):
    env = SPARRectifierWrapper(point_env, point_checkpoint)
    with pytest.raises(ResetNeeded, match="before reset"):
        env.step(np.zeros(2, np.float32))


def test_wrong_action_shape_raises(point_env, point_checkpoint):
    env = SPARRectifierWrapper(point_env, point_checkpoint)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected an action of shape \(2,\), got \(3,\)"):
        env.step(np.zeros(3, np.float32))


def test_non_finite_base_action_raises(point_env, point_checkpoint):
    env = SPARRectifierWrapper(point_env, point_checkpoint)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="base action is not finite"):
        env.step(np.array([np.nan, 0.0], np.float32))


def test_bad_alpha_raises(point_env, point_checkpoint):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        SPARRectifierWrapper(point_env, point_checkpoint, alpha=1.5)


def test_bad_rectifier_argument_raises(point_env):
    with pytest.raises(TypeError, match="needs rectifier= a checkpoint folder path"):
        SPARRectifierWrapper(point_env, rectifier=42)


def test_mismatched_env_raises(point_checkpoint):
    env = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match="was trained on observation space"):
        SPARRectifierWrapper(env, point_checkpoint)


def test_unbounded_action_space_raises(point_checkpoint):
    class Unbounded(NaNObsEnv):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    with pytest.raises(ValueError, match="needs finite action bounds"):
        SPARRectifierWrapper(Unbounded(), point_checkpoint)


def test_wrong_anchor_raises(point_env, point_checkpoint):
    other = _zero_policy(point_env)
    with pytest.raises(ValueError, match="is not the anchor the rectifier"):
        SPARRectifierWrapper(point_env, point_checkpoint, base_policy=other)


def _zero_policy(env):
    return CallablePolicy(
        lambda o: np.zeros((len(o), env.action_space.shape[0]), np.float32), env.action_space, name="zeros"
    )
