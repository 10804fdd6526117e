"""drift_penalty's off-data value: it learns where actions lead off the data, and LSI avoids those candidates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spar_rectify.config import TrainConfig
from spar_rectify.drift import StateBox
from spar_rectify.offdata import ModelWorld, OffDataValue
from spar_rectify.trainer import Trainer, train
from tests.helpers import FAST
from tests.helpers_data import point_data
from tests.test_training import lsi_targets


@pytest.fixture(scope="module")
def data():
    return point_data(episodes=60)


class LineModel:
    """A 1-D world s' = s + 0.5 a (one 'member'); the data covers |s| <= 1."""

    members = 1

    def step(self, states, actions, pick):
        return states + 0.5 * actions, torch.zeros(len(states))


class InsideUnit:
    def violations(self, obs):
        return np.abs(obs[:, 0]) > 1.0


def test_the_off_data_value_learns_which_actions_lead_off_the_data():
    torch.manual_seed(0)
    starts = torch.linspace(-1.0, 1.0, 41).unsqueeze(1)

    def still(obs):  # the anchor: no move
        return np.zeros((len(obs), 1))

    world = ModelWorld(LineModel(), InsideUnit(), still, starts, torch.zeros(1), torch.ones(1), StateBox.of(starts))
    value = OffDataValue(1, 1, (64, 64), discount=0.8, lr=3e-3)
    g = torch.Generator().manual_seed(0)

    def stay(obs, base):  # the policy after the first step: hold still
        return torch.zeros_like(base)

    def first_moves(obs, base):  # the buffer's first actions: anything in [-1, 1]
        return torch.rand(base.shape, generator=g) * 2 - 1

    share = value.refresh(world, first_moves, g)["offdata_share"]
    assert 0 < share < 1
    for _ in range(3000):
        loss = value.update(stay, g, 256)["offdata_loss"]
    assert loss < 0.05
    with torch.no_grad():
        near_edge = torch.tensor([[0.9], [0.9]])
        out, back = value(near_edge, torch.tensor([[1.0], [-1.0]]))
    # from 0.9, +1 leads to 1.4 and stays there (off the data every step ahead: about 1 / (1 - 0.8) = 5)
    assert out > 3.0 and back < 0.5, (float(out), float(back))


def test_branches_teach_a_deterministic_policys_off_data_value_its_first_actions():
    """The rollouts of a deterministic policy hold one action per state; the branches add others, drawn by
    `explore`, so D learns what the first action does even though the policy always holds still."""
    torch.manual_seed(0)
    starts = torch.linspace(-1.0, 1.0, 41).unsqueeze(1)

    def still(obs):
        return np.zeros((len(obs), 1))

    world = ModelWorld(LineModel(), InsideUnit(), still, starts, torch.zeros(1), torch.ones(1), StateBox.of(starts))
    value = OffDataValue(1, 1, (64, 64), discount=0.8, lr=3e-3, branches=3)
    g = torch.Generator().manual_seed(0)

    def stay(obs, base):
        return torch.zeros_like(base)

    def explore(obs, base):  # three first actions per start: anything in [-1, 1]
        return torch.rand((len(obs), 3, 1), generator=g) * 2 - 1

    with pytest.raises(ValueError, match="needs explore"):
        value.refresh(world, stay, g)
    with pytest.raises(ValueError, match=r"explore returned shape \(500, 1, 1\), expected \(500, 3, 1\)"):
        value.refresh(world, stay, g, lambda obs, base: torch.zeros((len(obs), 1, 1)))
    shares = value.refresh(world, stay, g, explore)
    assert len(value.off) == 500 * (10 + 3) and int(value.filled) == len(value.off)
    assert shares["offdata_share"] == 0 < shares["offdata_branch_share"]  # holding still never leaves
    assert value.action.abs().gt(0).float().mean() == pytest.approx(3 / 13, abs=0.01)  # only the branches move
    for _ in range(3000):
        value.update(stay, g, 256)
    with torch.no_grad():
        out, back = value(torch.tensor([[0.9], [0.9]]), torch.tensor([[1.0], [-1.0]]))
    assert out > 3.0 and back < 0.5, (float(out), float(back))


def test_lsi_prefers_candidates_whose_futures_stay_on_the_data(data, point_anchor):
    cfg = TrainConfig(algo="spar", steps=20, manifold_fraction=0.5, fit_fraction=0.0, lsi_every=1, **FAST)
    cfg = cfg.replace(anchor_candidate=True, lsi_states=32, lsi_anchor_penalty=0.0, drift_penalty=1.0)
    trainer = Trainer(cfg.replace(drift_model_steps=20), data, point_anchor)
    list(trainer.fit())
    algo, b = trainer.algo, trainer.sample()
    assert {"offdata_loss", "offdata_share"} <= set(algo._offdata_step(0))
    x = torch.cat([b.obs, b.base_action], -1)[:32]

    def optimistic(obs, actions):  # a critic over-optimistic far from the anchor
        base = b.base_action[:32].repeat_interleave(actions.shape[0] // 32, 0)
        return (actions - base).pow(2).sum(-1)

    with pytest.MonkeyPatch.context() as mp:  # an off-data value that says: far from the anchor leaves the data
        # in D's units: up to 5 of the next states off the data for the farthest candidate, 0 at the anchor
        mp.setattr(algo.offdata, "forward", lambda obs, act: 5 * optimistic(obs, act) / optimistic(obs, act).max())
        configs = [cfg.replace(drift_penalty=beta) for beta in (0.0, 50.0)]
        targets = lsi_targets(algo, x, b, optimistic, configs)
    with torch.no_grad():  # how far each target's action is from the anchor's, in action units
        free, held = (algo.rect.decode(x, t).norm(dim=-1).mean() for t in targets)
    assert held < 0.6 * free, (free, held)  # measured: 0.13 -> 0.07
    with pytest.raises(ValueError, match="drift_penalty must be >= 0"):
        cfg.replace(drift_penalty=-1.0)
    with pytest.raises(ValueError, match="drift_discount must be in"):
        cfg.replace(drift_discount=1.0)


def test_drift_penalty_trains_resumes_and_reuses_its_model_for_the_alpha_check(tmp_path, data, point_anchor, point_env):
    cfg = TrainConfig(algo="spar", steps=60, manifold_fraction=0.2, fit_fraction=0.2, lsi_every=1, **FAST)
    cfg = cfg.replace(drift_penalty=1.0, drift_branches=2, drift_model_steps=20, eval_episodes=2, auto_alpha=True)
    full = Trainer(cfg, data, point_anchor)
    list(full.fit())
    first = Trainer(cfg, data, point_anchor)
    list(first.fit(until=30))  # after the first rollout refresh (stage (iii) starts at 24)
    first.save_state(tmp_path / "ckpt")
    second = Trainer(cfg, data, point_anchor)
    second.load_state(tmp_path / "ckpt")
    list(second.fit())
    a, b = (t.algo.offdata.state_dict() | t.algo.rect.state_dict() for t in (full, second))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the buffer and D's networks came back with the checkpoint
    assert len(a["off"]) == 500 * (10 + 2)  # the branches are in the buffer
    algo, batch = full.algo, full.sample()
    first = algo.branch_actions(batch.obs[:16], batch.base_action[:16])
    assert first.shape == (16, 2, batch.base_action.shape[1]) and first.abs().max() <= 1.0
    mine = algo.rectified_action(batch.obs[:16], batch.base_action[:16]).unsqueeze(1)
    assert (first - mine).abs().amax(-1).gt(1e-4).float().mean() > 0.9  # other actions than mu's own

    from spar_rectify.drift import DynamicsEnsemble

    fits = []
    fit = DynamicsEnsemble.fit.__func__

    def counted(cls, *args, **kwargs):
        fits.append(1)
        return fit(cls, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DynamicsEnsemble, "fit", classmethod(counted))
        train(cfg, data, tmp_path / "run", anchor=point_anchor, env=point_env, progress=False)
    assert len(fits) == 1  # fitted before training and saved; the alpha check at the end loaded it
    assert (tmp_path / "run" / "dynamics" / "dynamics.json").is_file()
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"offdata_loss", "offdata_share", "offdata_branch_share"} <= set(header)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["auto_alpha"]["alpha"] in (0.0, 0.25, 0.5, 0.75, 1.0)
