"""Pure behaviour cloning: MSE regression of a tanh MLP on every dataset action."""

from __future__ import annotations

import torch

from spar_rectify.algos.common import ActorExport, Batch, DataInfo, adam
from spar_rectify.config import TrainConfig
from spar_rectify.losses import bc_loss
from spar_rectify.networks import mlp


class BC(ActorExport):
    """Deterministic actor `tanh(mlp(obs))`; exported as a `BCPolicy`."""

    settings = ()  # the common settings only

    def __init__(self, info: DataInfo, config: TrainConfig, generator: torch.Generator):
        obs_dim, act_dim = info.obs_dim, info.act_dim
        self.config = config
        self.actor = mlp(obs_dim, act_dim, config.hidden)
        self.optimizer = adam(self.actor.parameters(), config.lr)

    def modules(self) -> dict:
        return {"actor": self.actor}

    def optimizers(self) -> dict:
        return {"actor": self.optimizer}

    def update(self, b: Batch, step: int) -> dict:
        loss = bc_loss(torch.tanh(self.actor(b.obs)), b.action)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"bc_loss": loss.detach()}
