"""The rectifier's checkpoint: a folder with `rectifier.safetensors` + `rectifier.json`.

Defines `RectifierCheckpoint`, `save_rectifier`, `load_rectifier`, `set_default_alpha`.

The JSON holds the architecture, the training config, both spaces, the normalisation
statistics, the residual bound, the default alpha, the package version and the fingerprint of
the anchor policy; the safetensors file holds the weights and the anchor's probe observations and
actions. Nothing is unpickled on load.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from spar_rectify import __version__
from spar_rectify.bundle import read_bundle, write_bundle
from spar_rectify.policies import BasePolicy, policy_fingerprint
from spar_rectify.rectifier import Rectifier
from spar_rectify.spaces import box_from_json, box_to_json, same_box

#: Largest per-dimension difference (normalised units) on the probe observations between the
#: anchor a rectifier was trained with and a base policy still accepted as that anchor.
ANCHOR_TOLERANCE = 1e-3
_STATS = ("obs_mean", "obs_std", "residual_mean", "residual_std", "residual_bound")


@dataclass
class RectifierCheckpoint:
    """A loaded (or about to be saved) rectifier with everything needed to deploy it safely.

    Attributes:
        rectifier: the `Rectifier` module (eval mode).
        observation_space, action_space: the spaces it was trained on.
        probe_obs: `(N, obs_dim)` observations the anchor was fingerprinted on.
        probe_actions: `(N, act_dim)` the anchor's actions there, normalised units.
        anchor_fingerprint: 16 hex digits (see `policy_fingerprint`).
        anchor_name: a human-readable description of the anchor.
        alpha: default residual scale for deployment.
        config: the training configuration (JSON dict).
        path: where it was loaded from (None before saving).
    """

    rectifier: Rectifier
    observation_space: spaces.Box
    action_space: spaces.Box
    probe_obs: np.ndarray
    probe_actions: np.ndarray
    anchor_fingerprint: str
    anchor_name: str = "unknown"
    alpha: float = 1.0
    config: dict = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def from_anchor(cls, rectifier: Rectifier, observation_space: spaces.Box, action_space: spaces.Box,
                    anchor: BasePolicy, probe_obs: np.ndarray, **kwargs: Any) -> "RectifierCheckpoint":
        """Build a checkpoint, fingerprinting `anchor` on `probe_obs` `(N, obs_dim)`."""
        actions, digest = policy_fingerprint(anchor, probe_obs)
        return cls(rectifier, observation_space, action_space, np.asarray(probe_obs, np.float32),
                   actions, digest, anchor_name=getattr(anchor, "name", type(anchor).__name__), **kwargs)

    def check_spaces(self, observation_space: Any, action_space: Any, where: str) -> None:
        """Raise ValueError naming the checkpoint and the mismatch if the env's spaces differ."""
        for kind, mine, theirs, bounds in (("observation", self.observation_space, observation_space, False),
                                           ("action", self.action_space, action_space, True)):
            if not isinstance(theirs, spaces.Box) or not same_box(mine, theirs, bounds=bounds):
                raise ValueError(
                    f"{where}: rectifier at {self.path} was trained on {kind} space {mine}, but the env "
                    f"has {theirs}; use a rectifier trained on this env (spar train ...)."
                )

    def check_anchor(self, policy: BasePolicy) -> None:
        """Raise ValueError if `policy` is not the anchor this rectifier was trained against."""
        actions, digest = policy_fingerprint(policy, self.probe_obs)
        if actions.shape != self.probe_actions.shape:
            raise ValueError(
                f"base policy gives actions of shape {actions.shape[1:]}, the rectifier at {self.path} "
                f"was trained against an anchor with actions of shape {self.probe_actions.shape[1:]}"
            )
        gap = float(np.max(np.abs(actions - self.probe_actions))) if actions.size else 0.0
        if gap > ANCHOR_TOLERANCE:
            raise ValueError(
                f"base policy {getattr(policy, 'name', type(policy).__name__)} (fingerprint {digest}) "
                f"is not the anchor the rectifier at {self.path} was trained with ({self.anchor_name}, "
                f"fingerprint {self.anchor_fingerprint}): actions differ by up to {gap:.3g} on "
                f"{len(self.probe_obs)} probe observations. Pass that anchor, or retrain the rectifier."
            )


def save_rectifier(checkpoint: RectifierCheckpoint, folder: str | Path) -> Path:
    """Write `checkpoint` into `folder` atomically (safetensors + JSON, no pickle)."""
    rect = checkpoint.rectifier
    meta = {
        "package_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "arch": rect.arch(),
        "config": checkpoint.config,
        "observation_space": box_to_json(checkpoint.observation_space),
        "action_space": box_to_json(checkpoint.action_space),
        "normalization": {k: getattr(rect, k).tolist() for k in _STATS},
        "alpha": float(checkpoint.alpha),
        "anchor": {"fingerprint": checkpoint.anchor_fingerprint, "name": checkpoint.anchor_name,
                   "num_probes": int(len(checkpoint.probe_obs))},
    }
    tensors = {k: v for k, v in rect.state_dict().items() if k not in _STATS}
    tensors["anchor.probe_obs"] = torch.as_tensor(checkpoint.probe_obs)
    tensors["anchor.probe_actions"] = torch.as_tensor(checkpoint.probe_actions)
    folder = write_bundle(folder, "rectifier", meta, tensors)
    checkpoint.path = folder
    return folder


def load_rectifier(folder: str | Path) -> RectifierCheckpoint:
    """Load a rectifier checkpoint folder without pickle. A training run folder (`spar train
    --run-dir`) works too: its `rectifier/` subfolder is loaded.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: corrupted files, a format version this package cannot read, or weights that
            do not fit the recorded architecture.
    """
    folder = Path(folder)
    if not (folder / "rectifier.json").exists() and (folder / "rectifier" / "rectifier.json").exists():
        folder = folder / "rectifier"
    meta, tensors = read_bundle(folder, "rectifier")
    try:
        arch, stats = meta["arch"], meta["normalization"]
        rect = Rectifier(
            obs_dim=arch["obs_dim"], act_dim=arch["act_dim"], residual_bound=stats["residual_bound"],
            obs_mean=stats["obs_mean"], obs_std=stats["obs_std"], latent_dim=arch["latent_dim"],
            latent_box=arch["latent_box"], hidden=arch["hidden"], anchored=arch["anchored"],
            residual_mean=stats["residual_mean"], residual_std=stats["residual_std"],
        )
        probe_obs = tensors.pop("anchor.probe_obs").numpy()
        probe_actions = tensors.pop("anchor.probe_actions").numpy()
        missing, unexpected = rect.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if k not in _STATS]
        if missing or unexpected:
            raise ValueError(f"missing weights {missing}, unexpected weights {unexpected}")
        checkpoint = RectifierCheckpoint(
            rect.eval(), box_from_json(meta["observation_space"]), box_from_json(meta["action_space"]),
            probe_obs, probe_actions, meta["anchor"]["fingerprint"], meta["anchor"].get("name", "unknown"),
            float(meta.get("alpha", 1.0)), meta.get("config", {}), folder,
        )
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"rectifier checkpoint at {folder} is corrupted or inconsistent: {err}") from err
    return checkpoint


def set_default_alpha(folder: str | Path, alpha: float) -> RectifierCheckpoint:
    """Store `alpha` (in [0, 1]) as the checkpoint's default residual scale, rewriting the folder
    atomically (weights unchanged). Wrappers and `RectifiedPolicy` built with `alpha=None` use it.
    Pick it with `spar_rectify.tuning.tune_alpha` / `spar tune-alpha`.

    Raises:
        ValueError: alpha outside [0, 1] or not finite.
    """
    from spar_rectify.correction import check_alpha

    alpha = check_alpha(alpha)
    checkpoint = load_rectifier(folder)
    checkpoint.alpha = alpha
    save_rectifier(checkpoint, checkpoint.path)
    return checkpoint
