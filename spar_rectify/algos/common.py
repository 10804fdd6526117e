"""The algorithm protocol and the pieces every algorithm shares: the batch, Polyak updates, the
in-sample IQL critic, the export of a plain actor.

Defines `Algorithm` (the protocol), `Deployment`, `DataInfo`, `Batch`, `ActorExport`, `adam`,
`soft_update`, `IQLCritic`.

Adding a method: one module in `algos/` with a class that follows `Algorithm`, its settings as a
section of `TrainConfig`, and its name in `algos.ALGORITHMS` and `config.Algo`. The trainer knows
no method by name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from spar_rectify.bc_policy import BCPolicy
from spar_rectify.config import TrainConfig
from spar_rectify.losses import expectile_loss, q_regression_loss
from spar_rectify.networks import EnsembleMLP, mlp


class DataInfo(NamedTuple):
    """What an algorithm needs to know about the data to build its networks.

    obs_mean, obs_std: (obs_dim,) standardisation (already applied to batches; stored with the
    exported policy). residual_bound, residual_mean, residual_std: (act_dim,) statistics of the
    data's residuals `a - a_b` in normalised units (SPAR only; None otherwise). bound_cap: what rho's cap
    cut and whether bound_lift lifted it (SPAR with a data-derived rho; a dict, see `SPAR.data_info`).
    """

    obs_dim: int
    act_dim: int
    obs_mean: object
    obs_std: object
    residual_bound: object = None
    residual_mean: object = None
    residual_std: object = None
    bound_cap: object = None


class Batch(NamedTuple):
    """B transitions; observations standardised, actions normalised, rewards scaled.

    obs, next_obs: (B, obs_dim); action, base_action: (B, act_dim); reward, not_done: (B,).
    `not_done` is 1 - terminated: a truncated transition still bootstraps.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor
    base_action: torch.Tensor


@dataclass(frozen=True)
class Deployment:
    """What turning trained weights into a deployable artefact needs besides the weights.

    observation_space, action_space: the dataset's spaces. obs_mean, obs_std: (obs_dim,) the
    standardisation batches used. anchor: the frozen base policy (None unless the algorithm needs
    one). probe_obs: (N, obs_dim) observations that fingerprint the anchor. config: the
    training configuration. name: a label for the exported policy.
    """

    observation_space: spaces.Box
    action_space: spaces.Box
    obs_mean: np.ndarray
    obs_std: np.ndarray
    anchor: Any
    probe_obs: np.ndarray
    config: TrainConfig
    name: str


class Algorithm(Protocol):
    """What `Trainer` needs of an offline algorithm.

    Class attributes: `needs_anchor` (trains around a frozen base policy: batches carry its
    actions), `scaled_rewards` (uses IQL's locomotion reward scale), `staged` (its schedule is
    in fractions of `steps`, so a finished run cannot be extended), `artifact` (the exported
    folder's name in a run directory), `settings` (the `TrainConfig` sections it reads besides
    `CommonSettings`: what makes two of its runs train the same networks, see `training_fields`).
    """

    needs_anchor: ClassVar[bool]
    settings: ClassVar[tuple[type, ...]]
    scaled_rewards: ClassVar[bool]
    staged: ClassVar[bool]
    artifact: ClassVar[str]

    def __init__(self, info: "DataInfo", config: TrainConfig, generator: torch.Generator): ...

    @classmethod
    def data_info(
        cls,
        config: TrainConfig,
        info: "DataInfo",
        action: torch.Tensor,
        base: torch.Tensor | None,
        row_return: np.ndarray | None = None,
    ) -> tuple["DataInfo", torch.Tensor | None]:
        """Complete `info` from the (N, act_dim) normalised dataset actions and anchor actions (None
        without an anchor), and the (N,) return of each row's episode (`OfflineData.row_returns`; None where
        unknown); returns it with the anchor actions the batches should carry."""
        ...

    def update(self, batch: "Batch", step: int) -> dict:
        """One gradient step; returns scalar metrics (tensors or floats)."""
        ...

    def modules(self) -> dict[str, nn.Module]:
        """Every module whose state a checkpoint holds, by a stable name."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser whose state a checkpoint holds, by a stable name."""
        ...

    def policy(self, deployment: Deployment) -> Any:
        """The deployable policy now (a `BasePolicy`: env-unit observations to env-unit actions)."""
        ...

    def export(self, deployment: Deployment, folder: str | Path) -> Path:
        """Write the deployable artefact to `folder`; returns the folder."""
        ...


class ActorExport:
    """The protocol's defaults for a method that learns a plain actor `tanh(actor(obs))` on
    standardised observations (BC, TD3+BC, IQL): no anchor, exported as a `BCPolicy` folder."""

    needs_anchor: ClassVar[bool] = False
    scaled_rewards: ClassVar[bool] = False
    staged: ClassVar[bool] = False
    artifact: ClassVar[str] = "policy"
    actor: nn.Module

    @classmethod
    def data_info(
        cls,
        config: TrainConfig,
        info: "DataInfo",
        action: torch.Tensor,
        base: torch.Tensor | None,
        row_return: np.ndarray | None = None,
    ) -> tuple["DataInfo", None]:
        return info, None

    def policy(self, deployment: Deployment):
        d = deployment
        policy = BCPolicy(d.observation_space, d.action_space, d.obs_mean, d.obs_std, d.config.hidden)
        policy.net.load_state_dict(self.actor.state_dict())
        policy.name = d.name
        return policy

    def export(self, deployment: Deployment, folder: str | Path) -> Path:
        return self.policy(deployment).save(folder)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused CPU kernel (about 3x faster per step than the default loop here)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # older torch builds without fused CPU Adam
        return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """`target <- (1 - tau) * target + tau * online`, in place."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)


class IQLCritic(nn.Module):
    """In-sample conservative critic (IQL): twin Q (one fused module), V by expectile regression.

    It never evaluates an action outside the dataset while learning.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: TrainConfig):
        super().__init__()
        self.config = config
        self.q = EnsembleMLP(2, obs_dim + act_dim, 1, config.hidden)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = mlp(obs_dim, 1, config.hidden)
        self.optimizer = adam([*self.q.parameters(), *self.v.parameters()], config.lr)

    def q_min(self, obs: torch.Tensor, action: torch.Tensor, target: bool = True) -> torch.Tensor:
        """min(Q1, Q2)(s, a): (B, obs_dim), (B, act_dim) -> (B,)."""
        net = self.q_target if target else self.q
        return net(torch.cat([obs, action], -1)).min(0).values.squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s): (B, obs_dim) -> (B,)."""
        return self.v(obs).squeeze(-1)

    def update(self, b: Batch) -> tuple[torch.Tensor, dict]:
        """One step of V (expectile) and Q (TD to r + gamma V(s')) plus the target update.

        Returns:
            The advantage `min Q_target(s, a) - V(s)` of the data actions (B,), detached, and metrics.
        """
        cfg = self.config
        obs_action = torch.cat([b.obs, b.action], -1)
        with torch.no_grad():
            target_q = self.q_target(obs_action).min(0).values.squeeze(-1)
            next_v = self.value(b.next_obs)
            td_target = b.reward + cfg.gamma * b.not_done * next_v
        v = self.value(b.obs)
        adv = target_q - v
        v_loss = expectile_loss(adv, cfg.expectile)
        q = self.q(obs_action).squeeze(-1)
        q_loss = q_regression_loss(q, td_target)
        self.optimizer.zero_grad(set_to_none=True)
        (v_loss + q_loss).backward()
        self.optimizer.step()
        soft_update(self.q_target, self.q, cfg.tau)
        return adv.detach(), {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "q_mean": target_q.mean()}
