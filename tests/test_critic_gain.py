"""The critic's gain of a deployed rectifier over its anchor, and the paired comparison the candidate rule reads."""

import numpy as np
import pytest
import torch

from spar_rectify import RectifiedPolicy, load_rectifier
from spar_rectify.checkpoint import save_rectifier, set_default_alpha, set_default_gate
from spar_rectify.critic_gain import compare_deployed, deployed_gain
from spar_rectify.spaces import ActionScaler
from tests.helpers import make_checkpoint


@pytest.fixture
def folders(tmp_path, point_env, point_anchor):
    """Two rectifiers with critics around the same anchor, saved as a run would."""
    out = []
    for seed in (0, 1):
        checkpoint = make_checkpoint(
            point_env.observation_space, point_env.action_space, point_anchor, seed=seed, critic=True
        )
        out.append(save_rectifier(checkpoint, tmp_path / f"rect{seed}"))
    return out


@pytest.fixture
def obs(point_env):
    rng = np.random.default_rng(3)
    return rng.uniform(-1.0, 1.0, (256, point_env.observation_space.shape[0])).astype(np.float32)


def test_the_gain_is_the_critics_value_of_the_executed_action_over_the_anchors(folders, obs, point_anchor):
    set_default_gate(folders[0], False)  # the whole residual on every state, so the gain can be negative too
    gain = deployed_gain(point_anchor, folders[0], obs)
    policy = RectifiedPolicy(point_anchor, folders[0])
    scaler = ActionScaler(policy.action_space)
    executed = torch.as_tensor(scaler.to_normalized_clipped(policy(obs)), dtype=torch.float32)
    base = torch.as_tensor(scaler.to_normalized_clipped(point_anchor(obs)), dtype=torch.float32)
    rect = load_rectifier(folders[0]).rectifier
    states = torch.as_tensor(obs)
    with torch.no_grad():
        expected = rect.q_min(states, executed) - rect.q_min(states, base)
    assert gain.shape == (256,) and gain.dtype == torch.float32
    torch.testing.assert_close(gain, expected)
    assert (gain < 0).any() and (gain > 0).any()  # an untrained critic: both signs, nothing hidden by a gate
    set_default_gate(folders[0], None)  # the gate executes the base action wherever the critic rates it better
    assert (deployed_gain(point_anchor, folders[0], obs) >= 0).all()
    set_default_alpha(folders[0], 0.0)  # alpha 0 executes the anchor's action: no gain at all
    assert torch.equal(deployed_gain(point_anchor, folders[0], obs), torch.zeros(256))


def test_the_comparison_is_paired_and_scored_with_the_incumbents_critic(folders, obs, point_anchor):
    same = compare_deployed(point_anchor, folders[0], folders[0], obs, states=128, seed=5)
    assert same.difference == 0.0 and same.difference_se == 0.0 and not same.clearly_better(2.0)
    assert same.states == 128 and same.challenger == same.incumbent
    versus = compare_deployed(point_anchor, folders[0], folders[1], obs, states=128, seed=5)
    idx = torch.randperm(256, generator=torch.Generator().manual_seed(5))[:128]
    sample = obs[idx.numpy()]
    judge = load_rectifier(folders[0])
    own = deployed_gain(point_anchor, judge, sample)
    other = deployed_gain(point_anchor, folders[1], sample, critic=judge)
    assert versus.incumbent == pytest.approx(float(own.mean()))
    assert versus.challenger == pytest.approx(float(other.mean()))
    assert versus.difference == pytest.approx(float((other - own).mean()))
    assert versus.difference_se == pytest.approx(float((other - own).std() / np.sqrt(128)))
    assert versus.to_dict()["states"] == 128
    # the challenger's own critic would rate it differently: the comparison uses one judge for both
    assert float(deployed_gain(point_anchor, folders[1], sample).mean()) != pytest.approx(versus.challenger)
    with pytest.raises(ValueError, match="states=1: use at least 2"):
        compare_deployed(point_anchor, folders[0], folders[1], obs, states=1)
