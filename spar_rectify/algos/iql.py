"""IQL (Kostrikov et al., 2021): in-sample critic plus advantage-weighted extraction."""

from __future__ import annotations

import math

import torch

from spar_rectify.algos.common import ActorExport, Batch, DataInfo, IQLCritic, adam
from spar_rectify.config import IQLSettings, TrainConfig
from spar_rectify.losses import awr_loss
from spar_rectify.networks import mlp


class IQL(ActorExport):
    """Deterministic tanh actor regressed with weights `exp(beta * A)`; cosine actor LR schedule."""

    settings = (IQLSettings,)

    scaled_rewards = True

    def __init__(self, info: DataInfo, config: TrainConfig, generator: torch.Generator):
        obs_dim, act_dim = info.obs_dim, info.act_dim
        self.config = config
        self.critic = IQLCritic(obs_dim, act_dim, config)
        self.actor = mlp(obs_dim, act_dim, config.hidden)
        self.actor_opt = adam(self.actor.parameters(), config.lr)

    def modules(self) -> dict:
        return {"critic": self.critic, "actor": self.actor}

    def optimizers(self) -> dict:
        return {"critic": self.critic.optimizer, "actor": self.actor_opt}

    def update(self, b: Batch, step: int) -> dict:
        cfg = self.config
        adv, metrics = self.critic.update(b)
        # Stateless cosine schedule: the LR is a function of the step, so resuming is exact.
        self.actor_opt.param_groups[0]["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))
        loss = awr_loss(torch.tanh(self.actor(b.obs)), b.action, adv, cfg.awr_temperature, cfg.awr_max_weight)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        metrics["actor_loss"] = loss.detach()
        return metrics
