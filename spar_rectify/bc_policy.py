"""The package's behaviour-cloning policy: the anchor when the user has no base policy.

Defines `BCPolicy`.

"Pure BC": an MLP `obs -> tanh -> [-1, 1]` regressed with plain MSE on every dataset action;
`action_units == "normalized"` natively, `__call__` returns env units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from gymnasium import spaces

from spar_rectify.bundle import read_bundle, write_bundle
from spar_rectify.networks import NumpyMLP, mlp
from spar_rectify.spaces import ActionScaler, box_from_json, box_to_json, check_box


class BCPolicy:
    """Deterministic MLP policy with observation standardisation.

    Args:
        observation_space, action_space: 1-D Boxes (actions with finite bounds).
        obs_mean, obs_std: `(obs_dim,)` standardisation statistics.
        hidden: hidden layer widths.
    """

    action_units = "normalized"

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        hidden: Sequence[int] = (256, 256),
    ):
        self.observation_space = check_box(observation_space, "BCPolicy observations", finite=False)
        self.action_space = check_box(action_space, "BCPolicy actions", finite=True)
        obs_dim, act_dim = observation_space.shape[0], action_space.shape[0]
        self.hidden = tuple(int(h) for h in hidden)
        self.obs_mean = torch.as_tensor(np.zeros(obs_dim) if obs_mean is None else obs_mean, dtype=torch.float32)
        self.obs_std = torch.as_tensor(np.ones(obs_dim) if obs_std is None else obs_std, dtype=torch.float32)
        self.net = mlp(obs_dim, act_dim, self.hidden)
        self._scaler = ActionScaler(action_space)
        self._fast: NumpyMLP | None = None
        self.name = "bc"

    def act_normalized(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) float32 -> (B, act_dim) actions in [-1, 1] (differentiable)."""
        return torch.tanh(self.net((obs - self.obs_mean) / self.obs_std))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim) -> (B, act_dim) env units (numpy fast path; frozen weights assumed)."""
        if self._fast is None:
            self._fast = NumpyMLP(self.net)
        obs = (np.asarray(obs, np.float32) - self.obs_mean.numpy()) / self.obs_std.numpy()
        return self._scaler.to_env(np.tanh(self._fast(obs.astype(np.float32))))

    def save(self, folder: str | Path) -> Path:
        """Write `bc_policy.safetensors` + `bc_policy.json` into `folder` (no pickle)."""
        meta = {
            "observation_space": box_to_json(self.observation_space),
            "action_space": box_to_json(self.action_space),
            "hidden": list(self.hidden),
        }
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update(obs_mean=self.obs_mean, obs_std=self.obs_std)
        return write_bundle(folder, "bc_policy", meta, tensors)

    @classmethod
    def load(cls, folder: str | Path) -> "BCPolicy":
        """Load a policy written by `save` (no pickle). Raises like `read_bundle`."""
        meta, tensors = read_bundle(folder, "bc_policy")
        policy = cls(
            box_from_json(meta["observation_space"]),
            box_from_json(meta["action_space"]),
            tensors["obs_mean"].numpy(),
            tensors["obs_std"].numpy(),
            meta["hidden"],
        )
        policy.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        policy.name = f"bc:{Path(folder).name}"
        return policy
