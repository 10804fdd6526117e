"""The rectifier's checkpoint: a folder with `rectifier.safetensors` + `rectifier.json`.

Defines `RectifierCheckpoint`, `save_rectifier`, `load_rectifier`, `set_default_alpha`, `set_default_gate`,
`check_alpha`.

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

from spar_rectify._version import __version__
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
        gate: the critic gate's deployment default: None, on when the rectifier carries its critic; False,
            deployed ungated (chosen offline by `TrainConfig.gate_check`, or set by `set_default_gate`).
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
    gate: bool | None = None

    @classmethod
    def from_anchor(
        cls,
        rectifier: Rectifier,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        anchor: BasePolicy,
        probe_obs: np.ndarray,
        **kwargs: Any,
    ) -> "RectifierCheckpoint":
        """Build a checkpoint, fingerprinting `anchor` on `probe_obs` `(N, obs_dim)`."""
        actions, digest = policy_fingerprint(anchor, probe_obs)
        return cls(
            rectifier,
            observation_space,
            action_space,
            np.asarray(probe_obs, np.float32),
            actions,
            digest,
            anchor_name=getattr(anchor, "name", type(anchor).__name__),
            **kwargs,
        )

    def check_spaces(self, observation_space: Any, action_space: Any, where: str) -> None:
        """Raise ValueError naming the checkpoint and the mismatch if the env's spaces differ."""
        for kind, mine, theirs, bounds in (
            ("observation", self.observation_space, observation_space, False),
            ("action", self.action_space, action_space, True),
        ):
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


def check_alpha(alpha: float) -> float:
    """`alpha` as a float, or ValueError unless it lies in [0, 1] (NaN included)."""
    alpha = float(alpha)
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}; use 0 to disable the residual.")
    return alpha


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
        **({} if checkpoint.gate is None else {"gate": bool(checkpoint.gate)}),
        "anchor": {
            "fingerprint": checkpoint.anchor_fingerprint,
            "name": checkpoint.anchor_name,
            "num_probes": int(len(checkpoint.probe_obs)),
        },
    }
    tensors = {k: v for k, v in rect.state_dict().items() if k not in _STATS}
    tensors["anchor.probe_obs"] = torch.as_tensor(checkpoint.probe_obs)
    tensors["anchor.probe_actions"] = torch.as_tensor(checkpoint.probe_actions)
    folder = write_bundle(folder, "rectifier", meta, tensors)
    checkpoint.path = folder
    return folder


def _bad(folder: Path, field: str, value: Any, rule: str) -> ValueError:
    return ValueError(
        f"rectifier checkpoint at {folder} has {field} = {value!r}, which must be {rule}; the file was "
        "edited or damaged after it was written: re-export it (spar train ... --resume) or re-train."
    )


def validate_rectifier_meta(meta: dict, folder: Path) -> None:
    """Refuse values that would make the deployed residual unbounded, non-finite or ill-defined.

    Checked: architecture sizes (positive integers; latent >= 0), latent box (finite, > 0),
    `anchored` (a bool), normalisation statistics (finite, the right length; stds > 0), the
    residual bound (finite, in (0, 1] per dimension), the default alpha ([0, 1]), and the action
    space (finite bounds, low < high).

    Raises:
        ValueError: naming the folder, the field, its value and the fix.
    """
    arch, stats = meta["arch"], meta["normalization"]
    for key in ("obs_dim", "act_dim"):
        if not (isinstance(arch.get(key), int) and not isinstance(arch.get(key), bool) and arch[key] >= 1):
            raise _bad(folder, f"arch.{key}", arch.get(key), "an integer >= 1")
    if not (isinstance(arch.get("latent_dim"), int) and arch["latent_dim"] >= 0):
        raise _bad(folder, "arch.latent_dim", arch.get("latent_dim"), "an integer >= 0")
    box = arch.get("latent_box")
    if not (isinstance(box, (int, float)) and np.isfinite(box) and box > 0):
        raise _bad(folder, "arch.latent_box", box, "a finite number > 0")
    hidden = arch.get("hidden")
    if not (isinstance(hidden, list) and hidden and all(isinstance(h, int) and h >= 1 for h in hidden)):
        raise _bad(folder, "arch.hidden", hidden, "a non-empty list of integers >= 1")
    critic_hidden = arch.get("critic_hidden")
    if critic_hidden is not None and not (
        isinstance(critic_hidden, list) and critic_hidden and all(isinstance(h, int) and h >= 1 for h in critic_hidden)
    ):
        raise _bad(folder, "arch.critic_hidden", critic_hidden, "null or a non-empty list of integers >= 1")
    if not isinstance(arch.get("anchored"), bool):
        raise _bad(folder, "arch.anchored", arch.get("anchored"), "true or false")
    sizes = {
        "obs_mean": arch["obs_dim"],
        "obs_std": arch["obs_dim"],
        "residual_mean": arch["act_dim"],
        "residual_std": arch["act_dim"],
        "residual_bound": arch["act_dim"],
    }
    for key, size in sizes.items():
        try:
            values = np.asarray(stats[key], np.float64)
        except (TypeError, ValueError):
            raise _bad(folder, f"normalization.{key}", stats.get(key), f"a list of {size} numbers") from None
        if values.shape != (size,) or not np.isfinite(values).all():
            raise _bad(folder, f"normalization.{key}", stats[key], f"a list of {size} finite numbers")
        if key in ("obs_std", "residual_std") and not (values > 0).all():
            raise _bad(folder, f"normalization.{key}", stats[key], "positive in every dimension")
        if key == "residual_bound" and not ((values > 0) & (values <= 2)).all():
            raise _bad(folder, f"normalization.{key}", stats[key], "in (0, 2] in every dimension (normalised units)")
    alpha = meta.get("alpha", 1.0)
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0.0 <= alpha <= 1.0):
        raise _bad(folder, "alpha", alpha, "a number in [0, 1]")
    gate = meta.get("gate")
    if gate is not None and not isinstance(gate, bool):
        raise _bad(folder, "gate", gate, "true, false or absent")
    if gate is True and not arch.get("critic_hidden"):
        raise _bad(folder, "gate", gate, "false or absent for a rectifier without its critic")
    action = meta["action_space"]
    low, high = action.get("low"), action.get("high")
    if not (
        isinstance(low, list)
        and isinstance(high, list)
        and len(low) == len(high) == arch["act_dim"]
        and all(isinstance(v, (int, float)) and np.isfinite(v) for v in low + high)
        and all(a < b for a, b in zip(low, high))
    ):
        raise _bad(folder, "action_space", action, f"{arch['act_dim']} finite bounds with low < high")


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
        validate_rectifier_meta(meta, folder)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"rectifier checkpoint at {folder} is corrupted or inconsistent: missing or malformed "
            f"field {err}; re-export or re-train it"
        ) from err
    try:
        arch, stats = meta["arch"], meta["normalization"]
        rect = Rectifier(
            obs_dim=arch["obs_dim"],
            act_dim=arch["act_dim"],
            residual_bound=stats["residual_bound"],
            obs_mean=stats["obs_mean"],
            obs_std=stats["obs_std"],
            latent_dim=arch["latent_dim"],
            latent_box=arch["latent_box"],
            hidden=arch["hidden"],
            anchored=arch["anchored"],
            residual_mean=stats["residual_mean"],
            residual_std=stats["residual_std"],
            critic_hidden=arch.get("critic_hidden"),
        )
        probe_obs = tensors.pop("anchor.probe_obs").numpy()
        probe_actions = tensors.pop("anchor.probe_actions").numpy()
        missing, unexpected = rect.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if k not in _STATS]
        if missing or unexpected:
            raise ValueError(f"missing weights {missing}, unexpected weights {unexpected}")
        bad = [k for k, v in rect.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ValueError(f"non-finite values in weights {bad}")
        checkpoint = RectifierCheckpoint(
            rect.eval(),
            box_from_json(meta["observation_space"]),
            box_from_json(meta["action_space"]),
            probe_obs,
            probe_actions,
            meta["anchor"]["fingerprint"],
            meta["anchor"].get("name", "unknown"),
            float(meta.get("alpha", 1.0)),
            meta.get("config", {}),
            folder,
            meta.get("gate"),
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
    alpha = check_alpha(alpha)
    checkpoint = load_rectifier(folder)
    checkpoint.alpha = alpha
    save_rectifier(checkpoint, checkpoint.path)
    return checkpoint


def set_default_gate(folder: str | Path, gate: bool | None) -> RectifierCheckpoint:
    """Store the critic gate's deployment default (None: on when the rectifier carries its critic; False:
    ungated), rewriting the folder atomically (weights unchanged). Wrappers and `RectifiedPolicy` built with
    `gate=None` use it; an explicit `gate=` still wins.

    Raises:
        ValueError: gate=True for a rectifier that carries no critic, or a gate that is not a bool or None.
    """
    if gate is not None and not isinstance(gate, bool):
        raise ValueError(f"gate={gate!r}: use True, False or None (on when the rectifier carries its critic)")
    checkpoint = load_rectifier(folder)
    if gate and checkpoint.rectifier.critic is None:
        raise ValueError(
            f"gate=True: the rectifier at {checkpoint.path} carries no critic to gate with; retrain it (spar train)"
        )
    checkpoint.gate = gate
    save_rectifier(checkpoint, checkpoint.path)
    return checkpoint
