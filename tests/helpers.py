"""Helpers shared by tests (importable as `tests.helpers`)."""

from __future__ import annotations

import numpy as np
import torch

from spar_rectify import Rectifier, RectifierCheckpoint


def make_checkpoint(
    observation_space,
    action_space,
    anchor,
    *,
    seed=0,
    bound=0.3,
    latent=True,
    anchored=True,
    hidden=(32, 32),
    probes=16,
    critic=False,
) -> RectifierCheckpoint:
    """A small untrained rectifier with non-trivial output, fingerprinted against `anchor`."""
    torch.manual_seed(seed)
    obs_dim, act_dim = observation_space.shape[0], action_space.shape[0]
    rng = np.random.default_rng(seed)
    rect = Rectifier(
        obs_dim,
        act_dim,
        np.full(act_dim, bound),
        obs_mean=rng.normal(size=obs_dim) * 0.1,
        obs_std=rng.uniform(0.5, 2.0, obs_dim),
        latent_dim=None if latent else 0,
        hidden=hidden,
        anchored=anchored,
        critic_hidden=hidden if critic else None,
    )
    with torch.no_grad():  # larger output weights so the residual is far from zero
        for net in (rect.actor, rect.decoder):
            if net is not None:
                net[-1].weight.mul_(20.0)
    probe_obs = rng.normal(size=(probes, obs_dim)).astype(np.float32)
    return RectifierCheckpoint.from_anchor(rect.eval(), observation_space, action_space, anchor, probe_obs)


#: Small, fast training settings shared by the training tests (PointReach, seconds per run).
FAST = dict(
    hidden=(64, 64),
    batch_size=128,
    lr=1e-3,
    gamma=0.9,
    eval_every=0,
    checkpoint_every=0,
    log_every=100,
    auto_alpha=False,
)


def trainer_params(trainer) -> dict:
    """Every tensor of a trainer's modules, cloned, by `<module>.<key>`: for equality checks."""
    return {f"{m}.{k}": v.clone() for m, mod in trainer.algo.modules().items() for k, v in mod.state_dict().items()}
