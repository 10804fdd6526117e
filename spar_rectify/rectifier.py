"""The deployable rectifier: latent policy + residual decoder around a frozen anchor.

Defines `Rectifier` (torch module, used in training and batched evaluation) and
`FastRectifier` (its weights prepared for the compiled per-step kernel).

Shapes and units: `obs` is `(B, obs_dim)` float32 in env units (standardised inside);
`base_action` and `residual` are `(B, act_dim)` float32 in normalised action units; the latent
`z` is `(B, latent_dim)`, bounded to the box `|z_i| <= latent_box`; every residual is bounded per
dimension by `residual_bound` (rho).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from spar_rectify.kernel import pack_layers
from spar_rectify.networks import EnsembleMLP, mlp
from spar_rectify.spaces import ActionScaler


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

    def fast(self, action_low: np.ndarray, action_high: np.ndarray) -> "FastRectifier":
        """Kernel-ready weights of this module for an env with these action bounds (a snapshot:
        build a new one after the weights change)."""
        return FastRectifier(self, action_low, action_high)


class FastRectifier:
    """A `Rectifier`'s weights prepared for the compiled kernel (`spar_rectify.kernel`).

    The kernel takes the base action in *env units, already clipped to the Box*. Everything
    affine is folded into the first layers: observation standardisation, the env-to-normalised
    action map and the latent box scale; biases ride on a constant-one input (each layer is
    `(in + 1, out)` float32 with the bias as its last row).

    Args:
        rect: the trained `Rectifier`.
        action_low, action_high: `(act_dim,)` the env's action bounds.
    """

    def __init__(self, rect: Rectifier, action_low: np.ndarray, action_high: np.ndarray):
        f64 = np.float64
        self.obs_dim, self.act_dim, self.latent_dim = rect.obs_dim, rect.act_dim, rect.latent_dim
        od, ad, ld = self.obs_dim, self.act_dim, self.latent_dim
        mean = rect.obs_mean.detach().cpu().numpy().astype(f64)
        std = rect.obs_std.detach().cpu().numpy().astype(f64)
        scaler = ActionScaler(spaces.Box(np.asarray(action_low, f64), np.asarray(action_high, f64), dtype=f64))
        inv_half, mid = scaler.inv_half_range, scaler.mid
        # Input row layout: [obs (od), base action in env units (ad), z (ld), 1].
        self.in_dim = od + ad + ld + 1

        def first_layer(linear: nn.Linear, with_z: bool) -> np.ndarray:
            w = linear.weight.detach().cpu().numpy().T.astype(f64)  # (in, out)
            b = linear.bias.detach().cpu().numpy().astype(f64)
            out = np.zeros((self.in_dim, w.shape[1]), f64)
            w_obs = w[:od] / std[:, None]
            w_base = w[od : od + ad] * inv_half[:, None] if rect.anchored else np.zeros_like(w[od : od + ad])
            out[:od], out[od : od + ad] = w_obs, w_base
            if with_z:
                out[od + ad : od + ad + ld] = w[od + ad :] * rect.latent_box
            out[-1] = b - mean @ w_obs - (mid @ w_base)
            return np.ascontiguousarray(out, dtype=np.float32)

        def augment(linear: nn.Linear) -> np.ndarray:
            w = linear.weight.detach().cpu().numpy().T
            return np.ascontiguousarray(
                np.concatenate([w, linear.bias.detach().cpu().numpy()[None]], 0), dtype=np.float32
            )

        actor = [m for m in rect.actor if isinstance(m, nn.Linear)]
        self.actor = [first_layer(actor[0], False)] + [augment(m) for m in actor[1:]]
        self.decoder = None
        if rect.decoder is not None:
            dec = [m for m in rect.decoder if isinstance(m, nn.Linear)]
            self.decoder = [first_layer(dec[0], True)] + [augment(m) for m in dec[1:]]
        self.critic: tuple = ()
        if rect.critic is not None:
            heads = []
            for h in range(2):
                ws = [w[h].detach().cpu().numpy().astype(f64) for w in rect.critic.weights]  # (in, out)
                bs = [b[h, 0].detach().cpu().numpy().astype(f64) for b in rect.critic.biases]
                # First layer on [obs env units, action env units, 1]: standardisation and the
                # env-to-normalised action map folded in, as for actor and decoder.
                w0 = ws[0]
                first = np.zeros((od + ad + 1, w0.shape[1]), f64)
                first[:od] = w0[:od] / std[:, None]
                first[od : od + ad] = w0[od:] * inv_half[:, None]
                first[-1] = bs[0] - mean @ first[:od] - mid @ first[od : od + ad]
                rest = [np.concatenate([w, b[None]], 0) for w, b in zip(ws[1:], bs[1:])]
                heads.append([np.ascontiguousarray(m, dtype=np.float32) for m in [first, *rest]])
            self.critic = tuple(heads)
        self.weights, self.dims = pack_layers(
            self.actor, self.decoder or [], self.latent_dim if self.decoder else 0, self.critic
        )
