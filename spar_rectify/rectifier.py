"""The deployable rectifier: latent policy + residual decoder around a frozen anchor.

Defines `Rectifier` (torch module, used in training and batched evaluation). The per-step
deployment path folds its weights for the compiled kernel: `kernel.FastRectifier`.

Shapes and units: `obs` is `(B, obs_dim)` float32 in env units (standardised inside);
`base_action` and `residual` are `(B, act_dim)` float32 in normalised action units; the latent
`z` is `(B, latent_dim)`, bounded to the box `|z_i| <= latent_box`; every residual is bounded per
dimension by `residual_bound` (rho).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from spar_rectify.networks import EnsembleMLP, mlp


class Rectifier(nn.Module):
    """`residual(obs, base_action) = rho * tanh(g(s, a_b, c * tanh(mu(s, a_b))))`.

    Args:
        obs_dim, act_dim: sizes of the 1-D observation and action spaces.
        residual_bound: `(act_dim,)` rho in normalised units; larger: bigger corrections,
            further from the data.
        obs_mean, obs_std: `(obs_dim,)` dataset statistics used to standardise observations.
        latent_dim: size of z; 0 means "no latent" (the actor outputs the residual directly).
        latent_box: c, the latent box half-width.
        hidden: widths of the hidden layers of actor and decoder.
        anchored: False for the "no anchor" ablation (the anchor input is zero, the policy is
            global and its output is an absolute action).
        residual_mean, residual_std: `(act_dim,)` statistics of dataset residuals, used by the
            per-step support score.
        critic_hidden: widths of the conservative twin critic carried for the deployment gate
            (`critic`, input `[standardised obs, normalised action]`); None: no critic, no gate.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        residual_bound: np.ndarray | Sequence[float],
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        latent_dim: int | None = None,
        latent_box: float = 2.0,
        hidden: Sequence[int] = (256, 256),
        anchored: bool = True,
        residual_mean: np.ndarray | None = None,
        residual_std: np.ndarray | None = None,
        critic_hidden: Sequence[int] | None = None,
    ):
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.latent_dim = 2 * act_dim if latent_dim is None else int(latent_dim)
        self.latent_box = float(latent_box)
        self.hidden = tuple(int(h) for h in hidden)
        self.anchored = bool(anchored)

        def buf(value, size, fill):
            arr = np.full(size, fill, np.float32) if value is None else np.asarray(value, np.float32)
            if arr.shape != (size,):
                raise ValueError(f"Rectifier expected a ({size},) array, got shape {arr.shape}")
            return torch.as_tensor(arr.copy())

        self.register_buffer("residual_bound", buf(residual_bound, act_dim, 0.0))
        self.register_buffer("obs_mean", buf(obs_mean, obs_dim, 0.0))
        self.register_buffer("obs_std", buf(obs_std, obs_dim, 1.0))
        self.register_buffer("residual_mean", buf(residual_mean, act_dim, 0.0))
        self.register_buffer("residual_std", buf(residual_std, act_dim, 1.0))
        in_dim = obs_dim + act_dim
        out = self.latent_dim if self.latent_dim > 0 else act_dim
        self.actor = mlp(in_dim, out, self.hidden)
        self.decoder = mlp(in_dim + self.latent_dim, act_dim, self.hidden) if self.latent_dim > 0 else None
        self.critic_hidden = tuple(int(h) for h in critic_hidden) if critic_hidden else None
        self.critic = EnsembleMLP(2, in_dim, 1, self.critic_hidden) if self.critic_hidden else None

    def with_critic(self, q: EnsembleMLP) -> "Rectifier":
        """A copy of this rectifier carrying `q` (a trained twin critic on `[standardised obs,
        normalised action]`, scaled rewards) for the deployment gate."""
        import copy

        if q.n != 2:
            raise ValueError(f"the gate needs a twin critic (2 heads), got {q.n}")
        out = copy.deepcopy(self)
        out.critic_hidden = tuple(int(w.shape[2]) for w in q.weights[:-1])
        out.critic = copy.deepcopy(q).requires_grad_(False)
        return out

    def q_min(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Pessimistic value min(Q1, Q2) of `(B, obs_dim)` env-unit observations and `(B, act_dim)`
        normalised actions: `(B,)`. Needs the critic (`critic_hidden`)."""
        if self.critic is None:
            raise ValueError("this rectifier carries no critic (trained before the gate existed): no gate")
        obs_n = (obs - self.obs_mean) / self.obs_std
        return self.critic(torch.cat([obs_n, action], -1)).min(0).values.squeeze(-1)

    def arch(self) -> dict:
        """Constructor arguments that are not tensors (stored in the checkpoint JSON)."""
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "latent_dim": self.latent_dim,
            "latent_box": self.latent_box,
            "hidden": list(self.hidden),
            "anchored": self.anchored,
            "critic_hidden": list(self.critic_hidden) if self.critic_hidden else None,
        }

    def inputs(self, obs: torch.Tensor, base_action: torch.Tensor) -> torch.Tensor:
        """Standardised `(B, obs_dim + act_dim)` input of actor and decoder."""
        obs_n = (obs - self.obs_mean) / self.obs_std
        if not self.anchored:
            base_action = torch.zeros_like(base_action)
        return torch.cat([obs_n, base_action], dim=-1)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Actor output on inputs `x` bounded to the latent box: `(B, latent_dim)`."""
        return self.latent_box * torch.tanh(self.actor(x))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Residual `(B, act_dim)` decoded from inputs `x` and latent `z`, bounded by rho."""
        return self.residual_bound * torch.tanh(self.decoder(torch.cat([x, z], dim=-1)))

    def forward(self, obs: torch.Tensor, base_action: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim), (B, act_dim) normalised -> residual (B, act_dim) normalised units."""
        x = self.inputs(obs, base_action)
        if self.decoder is None:
            return self.residual_bound * torch.tanh(self.actor(x))
        return self.decode(x, self.latent(x))
