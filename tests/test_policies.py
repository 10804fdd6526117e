"""Base-policy adapters: each declares its native action units and returns env units."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from spar_rectify import BCPolicy, CallablePolicy, SB3Policy, as_base_policy, load_sb3
from spar_rectify.policies import policy_fingerprint

ASYM = gym.spaces.Box(np.array([0.0, -4.0], np.float32), np.array([4.0, -2.0], np.float32))


class AsymEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = ASYM

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


def _obs(n=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)).astype(np.float32)


@pytest.mark.parametrize("algo", [SAC, TD3, PPO])
def test_sb3_adapter_returns_env_units(algo):
    model = algo("MlpPolicy", AsymEnv(), policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    policy = as_base_policy(model)
    assert isinstance(policy, SB3Policy) and policy.action_units == "env"
    actions = policy(_obs())
    assert actions.shape == (32, 2)
    assert np.all(actions >= ASYM.low - 1e-6) and np.all(actions <= ASYM.high + 1e-6)
    expected, _ = model.predict(_obs(), deterministic=True)
    np.testing.assert_array_equal(actions, expected)


def test_sb3_adapter_applies_vec_normalize(tmp_path):
    venv = VecNormalize(DummyVecEnv([AsymEnv]), norm_reward=False)
    venv.obs_rms.mean = np.array([0.5, -0.5, 0.2])
    venv.obs_rms.var = np.array([4.0, 0.25, 1.0])
    model = SAC("MlpPolicy", AsymEnv(), policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    expected, _ = model.predict(venv.normalize_obs(_obs()), deterministic=True)
    np.testing.assert_allclose(SB3Policy(model, vec_normalize=venv)(_obs()), expected, atol=1e-6)
    venv.save(tmp_path / "vecnorm.pkl")
    np.testing.assert_allclose(SB3Policy(model, vec_normalize=tmp_path / "vecnorm.pkl")(_obs()), expected, atol=1e-6)
    raw, _ = model.predict(_obs(), deterministic=True)
    assert not np.allclose(raw, expected)
    with pytest.raises(FileNotFoundError, match="VecNormalize statistics not found"):
        SB3Policy(model, vec_normalize=tmp_path / "missing.pkl")
    with pytest.raises(TypeError, match="vec_normalize must be a VecNormalize"):
        SB3Policy(model, vec_normalize=3)


def test_load_sb3_reads_algorithm_from_zip(tmp_path):
    model = TD3("MlpPolicy", AsymEnv(), policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    model.save(tmp_path / "td3.zip")
    policy = load_sb3(tmp_path / "td3.zip")
    assert policy.name.startswith("sb3:TD3")
    np.testing.assert_array_equal(policy(_obs()), model.predict(_obs(), deterministic=True)[0])
    with pytest.raises(FileNotFoundError, match="SB3 model not found"):
        load_sb3(tmp_path / "nope.zip")
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="is not a Stable-Baselines3 zip"):
        load_sb3(tmp_path / "bad.zip")
    with pytest.raises(ValueError, match="algo must be one of"):
        load_sb3(tmp_path / "td3.zip", algo="DQN")


def test_callable_policy_units():
    env_units = CallablePolicy(lambda o: np.tile([4.0, -2.0], (len(o), 1)), ASYM, action_units="env")
    np.testing.assert_array_equal(env_units(_obs(4)), np.tile([4.0, -2.0], (4, 1)))
    normalized = CallablePolicy(lambda o: np.tile([-1.0, 0.0], (len(o), 1)), ASYM, action_units="normalized")
    np.testing.assert_allclose(normalized(_obs(4)), np.tile([0.0, -3.0], (4, 1)))
    with pytest.raises(ValueError, match="action_units must be 'env' or 'normalized', got 'raw'"):
        CallablePolicy(lambda o: o, ASYM, action_units="raw")
    with pytest.raises(TypeError, match="needs a callable"):
        CallablePolicy(3, ASYM)


def test_as_base_policy_errors():
    with pytest.raises(TypeError, match="needs action_space"):
        as_base_policy(lambda o: o)
    with pytest.raises(TypeError, match="base policy must be an SB3 model"):
        as_base_policy(42)


def test_bc_policy_round_trip_and_units(tmp_path):
    policy = BCPolicy(AsymEnv.observation_space, ASYM, obs_mean=np.ones(3), obs_std=np.full(3, 2.0), hidden=(16,))
    assert policy.action_units == "normalized"
    actions = policy(_obs())
    assert np.all(actions >= ASYM.low) and np.all(actions <= ASYM.high)
    policy.save(tmp_path / "bc")
    loaded = BCPolicy.load(tmp_path / "bc")
    np.testing.assert_array_equal(loaded(_obs()), actions)
    assert isinstance(as_base_policy(loaded), BCPolicy)


def test_fingerprint_distinguishes_policies():
    a = CallablePolicy(lambda o: np.zeros((len(o), 2)), ASYM, action_units="normalized")
    b = CallablePolicy(lambda o: np.full((len(o), 2), 0.5), ASYM, action_units="normalized")
    (acts_a, fp_a), (_, fp_a2), (_, fp_b) = (policy_fingerprint(p, _obs(8)) for p in (a, a, b))
    assert fp_a == fp_a2 != fp_b
    assert acts_a.shape == (8, 2) and np.all(acts_a == 0)
