"""The off-data value: how many of the states ahead leave the data when the rectified policy acts.

Defines `ModelWorld`, `OffDataValue`.

A rectifier can keep every single action inside its state's data and still lead the system, step after
step, into states the data never had: on hopper medium-expert the whole residual earned IQL's return
with a third of its states off the data, after staying *closer* to the data than its anchor for ten
steps (benchmarks/README.md). No one-step score sees that. `OffDataValue` learns
`D(s, a) = E[sum_t gamma_d^t off(s_{t+1})]`, the discounted count of future states beyond the data's
state support when the policy takes `a` in `s` and the current rectified policy acts after, by TD on
short rollouts of that policy through the dynamics model the drift check fits (`drift.DynamicsEnsemble`)
from dataset states; `off` is the suite's state support test (`support.SupportMetric` on states). SPAR's
LSI subtracts `drift_penalty * S * D(s, a)` from each candidate's score (`TrainConfig.drift_penalty`),
so self-imitation prefers candidates whose futures stay on the data. D only weighs candidates: no
gradient of it reaches the policy, and it is not part of the exported rectifier.
"""

from __future__ import annotations

import copy
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from spar_rectify.drift import StateBox
from spar_rectify.networks import mlp

#: Steps between two refreshes of the rollout buffer (with the policy as it is then).
REFRESH_EVERY = 1_000
#: Rollouts per refresh, each from a dataset state drawn at random.
ROLLOUTS = 500
#: Model steps per rollout: the buffer holds ROLLOUTS * HORIZON transitions.
HORIZON = 10
#: Polyak rate of D's target network.
TAU = 0.005


class ModelWorld(NamedTuple):
    """What the rollouts need besides the policy.

    model: a `drift.DynamicsEnsemble` fitted to the training data.
    support: `support.SupportMetric` on the data's states alone (`violations(obs)` -> (M,) bool).
    anchor: env-unit observations (B, obs_dim) -> the anchor's actions, normalised and clipped to [-1, 1],
        (B, act_dim) (numpy in, numpy out).
    starts: (N, obs_dim) env-unit dataset states the rollouts start from (`drift.live_starts`).
    obs_mean, obs_std: (obs_dim,) the standardisation of the trainer's batches.
    box: the `drift.StateBox` the model's states are kept in (the drift check's).
    """

    model: object
    support: object
    anchor: Callable[[np.ndarray], np.ndarray]
    starts: torch.Tensor
    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    box: StateBox


class OffDataValue(nn.Module):
    """D(s, a) >= 0, its target network and its rollout buffer (buffers, so checkpoints carry them).

    Args:
        obs_dim, act_dim: sizes of the standardised state and of the normalised action.
        hidden: hidden widths of the network.
        discount: gamma_d in [0, 1): D counts about 1 / (1 - gamma_d) states ahead.
        lr: Adam's learning rate.
        branches: other first actions tried from each rollout's start state (`refresh`'s `explore`); the
            buffer holds ROLLOUTS * (HORIZON + branches) transitions.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden, discount: float, lr: float, branches: int = 0):
        super().__init__()
        self.discount, self.branches = discount, int(branches)
        self.net = mlp(obs_dim + act_dim, 1, hidden)
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr)
        size = ROLLOUTS * (HORIZON + self.branches)
        self.register_buffer("obs", torch.zeros(size, obs_dim))
        self.register_buffer("action", torch.zeros(size, act_dim))
        self.register_buffer("off", torch.zeros(size))
        self.register_buffer("next_obs", torch.zeros(size, obs_dim))
        self.register_buffer("next_base", torch.zeros(size, act_dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """D at standardised states (B, obs_dim) and normalised actions (B, act_dim): (B,)."""
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)

    @torch.no_grad()
    def refresh(
        self,
        world: ModelWorld,
        policy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        generator: torch.Generator,
        explore: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Replace the buffer with ROLLOUTS rollouts of HORIZON model steps of `policy`, and `branches` other
        first actions from each start state (one model step each, then `update` bootstraps through `policy`).

        Args:
            world: the model, the support test, the anchor and the start states.
            policy: (standardised obs (B, obs_dim), anchor action (B, act_dim)) -> normalised action in
                [-1, 1], (B, act_dim): the rectified policy as it is now (deterministic).
            generator: draws the start states and the member that moves each row.
            explore: (standardised obs (B, obs_dim), anchor action (B, act_dim)) -> (B, branches, act_dim)
                normalised actions in [-1, 1] to branch from the start states; needed when branches > 0.

        Returns:
            `offdata_share`: the share of the rollouts' next states off the data; with branches,
            `offdata_branch_share`: the same over the branches' next states.
        """
        if self.branches and explore is None:
            raise ValueError(f"OffDataValue(branches={self.branches}).refresh needs explore=...: the first actions")
        mean, std = world.obs_mean, world.obs_std
        states = world.starts[torch.randint(len(world.starts), (ROLLOUTS,), generator=generator)]
        picks = torch.randint(world.model.members, (HORIZON, ROLLOUTS), generator=generator)
        base = torch.as_tensor(world.anchor(states.numpy()), dtype=torch.float32)
        rows = []

        def step(states, obs, action, members):
            nxt, _ = world.box.step(world.model, states, action, members)
            off = torch.as_tensor(world.support.violations(nxt.numpy()), dtype=torch.float32)
            next_base = torch.as_tensor(world.anchor(nxt.numpy()), dtype=torch.float32)
            rows.append((obs, action, off, (nxt - mean) / std, next_base))
            return nxt, next_base

        if self.branches:
            obs = (states - mean) / std
            first = explore(obs, base)
            if first.shape != (ROLLOUTS, self.branches, base.shape[1]):
                raise ValueError(
                    f"explore returned shape {tuple(first.shape)}, expected {(ROLLOUTS, self.branches, base.shape[1])}"
                )
            rep = self.branches
            step(
                states.repeat_interleave(rep, 0),
                obs.repeat_interleave(rep, 0),
                first.reshape(-1, base.shape[1]),
                picks[0].repeat_interleave(rep, 0),
            )
        for t in range(HORIZON):
            obs = (states - mean) / std
            states, base = step(states, obs, policy(obs, base), picks[t])
        for name, value in zip(("obs", "action", "off", "next_obs", "next_base"), zip(*rows)):
            getattr(self, name).copy_(torch.cat(value))
        self.filled.fill_(len(self.off))
        if not self.branches:
            return {"offdata_share": self.off.mean()}
        branched = ROLLOUTS * self.branches  # the first rows
        return {"offdata_share": self.off[branched:].mean(), "offdata_branch_share": self.off[:branched].mean()}

    def update(
        self,
        policy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        generator: torch.Generator,
        batch_size: int,
    ) -> dict[str, torch.Tensor]:
        """One TD step on a minibatch of the buffer: D(s, a) -> off(s') + gamma_d * D_target(s', policy(s')).
        The model has no terminations: a rollout that falls keeps counting, as the data's states end there."""
        if int(self.filled) == 0:
            raise RuntimeError("OffDataValue.update before refresh: the rollout buffer is empty")
        idx = torch.randint(int(self.filled), (batch_size,), generator=generator)
        with torch.no_grad():
            nxt = self.next_obs[idx]
            ahead = self.target(torch.cat([nxt, policy(nxt, self.next_base[idx])], -1)).squeeze(-1)
            target = self.off[idx] + self.discount * ahead.clamp_min(0.0)
        loss = (self(self.obs[idx], self.action[idx]) - target).pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for p, t in zip(self.net.parameters(), self.target.parameters()):
                t.lerp_(p, TAU)
        return {"offdata_loss": loss.detach()}
