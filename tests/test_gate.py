"""The critic gate: the residual runs only where the rectifier's own pessimistic critic prefers it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spar_rectify import SPARRectifierWrapper, load_rectifier, save_rectifier
from spar_rectify.correction import Corrector
from spar_rectify.spaces import ActionScaler
from tests.helpers import make_checkpoint


@pytest.fixture
def gated(point_env, point_anchor):
    return make_checkpoint(point_env.observation_space, point_env.action_space, point_anchor, critic=True)


def test_kernel_gate_matches_the_torch_critic(point_env, gated):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(256, 6)).astype(np.float32)
    base = rng.uniform(-1.2, 1.2, (256, 2)).astype(np.float32)  # some out of bounds: clipped first
    space = point_env.action_space
    open_ = Corrector(gated.rectifier, space, 1.0, gate=False)(obs, base)
    shut = Corrector(gated.rectifier, space, 1.0, gate=True)(obs, base)
    scaler = ActionScaler(space)
    to_n = lambda a: torch.as_tensor(np.clip(scaler.to_normalized(a), -1, 1), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        q_base = gated.rectifier.q_min(torch.as_tensor(obs), to_n(np.clip(base, space.low, space.high)))
        q_rect = gated.rectifier.q_min(torch.as_tensor(obs), to_n(open_.executed_action))
    margin = (q_rect - q_base).numpy()
    sure = np.abs(margin) > 1e-4  # float32 kernel against torch: skip ties
    expected_held = margin <= 0
    assert 0 < shut.gate_held.sum() < 256  # the random critic prefers some residuals and not others
    np.testing.assert_array_equal(shut.gate_held[sure], expected_held[sure])
    clipped = np.clip(base, space.low, space.high)
    np.testing.assert_allclose(shut.executed_action[shut.gate_held], clipped[shut.gate_held])
    np.testing.assert_allclose(shut.executed_action[~shut.gate_held], open_.executed_action[~shut.gate_held])
    assert not shut.residual[shut.gate_held].any() and not open_.gate_held.any()


def test_gate_defaults_on_with_a_critic_and_off_without(point_env, point_anchor, gated):
    plain = make_checkpoint(point_env.observation_space, point_env.action_space, point_anchor)
    assert Corrector(gated.rectifier, point_env.action_space).gate
    assert not Corrector(plain.rectifier, point_env.action_space).gate
    with pytest.raises(ValueError, match="gate=True needs a rectifier that carries its critic"):
        Corrector(plain.rectifier, point_env.action_space, gate=True)


def test_wrapper_reports_the_gate_and_checkpoints_keep_the_critic(tmp_path, point_env, point_anchor, gated):
    loaded = load_rectifier(save_rectifier(gated, tmp_path / "rect"))
    assert loaded.rectifier.critic_hidden == (32, 32)
    for key, value in gated.rectifier.critic.state_dict().items():
        assert torch.equal(value, loaded.rectifier.critic.state_dict()[key])
    env = SPARRectifierWrapper(point_env, tmp_path / "rect", base_policy=point_anchor)
    obs, _ = env.reset(seed=0)
    held = []
    for _ in range(30):
        base = point_anchor(obs[None])[0]
        obs, _, terminated, truncated, info = env.step(base)
        held.append(info["rectifier_gate_held"])
        if info["rectifier_gate_held"]:
            np.testing.assert_allclose(info["executed_action"], np.clip(base, -1, 1))
        if terminated or truncated:
            obs, _ = env.reset()
    assert all(isinstance(h, bool) for h in held)
