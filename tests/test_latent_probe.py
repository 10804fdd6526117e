"""benchmarks/latent_probe.py's reach section: how far each latent policy's decoded residual is from the logged one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import envs
from spar_rectify import CallablePolicy
from spar_rectify.config import TrainConfig
from spar_rectify.trainer import Trainer
from tests.helpers import FAST
from tests.helpers_data import point_data

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import latent_probe  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return point_data(episodes=40)


@pytest.mark.parametrize("candidate", [0.0, 1.0])
def test_reach_reports_each_trained_latent_policy_beside_the_bound_and_the_cvae(data, point_env, candidate):
    anchor = CallablePolicy(envs.biased_controller, point_env.action_space, name="biased_controller")
    cfg = TrainConfig(algo="spar", steps=40, manifold_fraction=0.25, fit_fraction=0.25, lsi_every=1, **FAST)
    trainer = Trainer(cfg.replace(lsi_reach_penalty=None, in_sample_candidate=candidate), data, anchor)
    list(trainer.fit())
    algo = trainer.algo
    idx = torch.arange(64)
    x = torch.cat([trainer._obs[idx], trainer._base[idx]], -1)
    raw = trainer._action[idx] - trainer._base[idx]
    clipped = torch.maximum(torch.minimum(raw, algo.rho), -algo.rho)
    with torch.no_grad():
        mean = algo.encode(x, clipped)[0]
        out = latent_probe.reach_block(algo, trainer, x, idx, clipped, mean)
    assert ("insample" in out) == bool(candidate) and "mu" in out and "reach" not in out
    assert out["logged_residual"] == pytest.approx(float(raw.norm(dim=-1).mean()), abs=1e-4)
    assert out["clipped_by_bound"]["mean"] == pytest.approx(float((raw - clipped).norm(dim=-1).mean()), abs=1e-4)
    with torch.no_grad():
        mu_residual = algo.residual_policy(x)[1]
    assert out["mu"]["mean"] == pytest.approx(float((mu_residual - clipped).norm(dim=-1).mean()), abs=1e-4)
    assert 0.1 <= out["weight_top_share"] <= 1.0  # the top tenth of the states holds at least its share
    base = trainer._base[idx]
    with torch.no_grad():
        measured = latent_probe.reach_block(algo, trainer, x, idx, clipped, mean, reference=base)
    assert measured["anchor_from_reference"] == 0.0  # the anchor measured from itself
    moved = ((base + mu_residual).clamp(-1.0, 1.0) - base).norm(dim=-1).mean()
    assert measured["mu"]["from_reference"] == pytest.approx(float(moved), abs=1e-4)
    logged = trainer._action[idx]
    with torch.no_grad():
        both = latent_probe.reach_block(algo, trainer, x, idx, clipped, mean, base, {"anchor": base, "logged": logged})
    anchor, data = both["compared"]["anchor"], both["compared"]["logged"]
    assert data == {"from_logged": 0.0, "from_reference": anchor["from_logged"]}  # reference: the anchor
    assert anchor["from_reference"] == 0.0
    assert anchor["from_logged"] == pytest.approx(float((base - logged).norm(dim=-1).mean()), abs=1e-4)
