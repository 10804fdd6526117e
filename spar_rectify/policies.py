"""Base-policy adapters: one small protocol, batched observations in, env-unit actions out.

Defines `BasePolicy` (the protocol), `SB3Policy`, `CallablePolicy`, `as_base_policy`,
`load_sb3`, `load_policy` and `policy_fingerprint`. The package's own behaviour-cloning policy, `BCPolicy`
(in `spar_rectify.bc_policy`), implements the protocol directly.

Every adapter declares `action_units`: the space the wrapped object natively produces
("env" or "normalized"); whatever that is, `__call__` returns env units.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from spar_rectify.bc_policy import BCPolicy
from spar_rectify.spaces import ActionScaler, check_box, same_box

SB3_ALGOS = ("SAC", "TD3", "DDPG", "PPO", "A2C")


@runtime_checkable
class BasePolicy(Protocol):
    """A frozen anchor: `(B, obs_dim)` float32 observations -> `(B, act_dim)` env-unit actions."""

    action_space: spaces.Box
    action_units: str

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...


class SB3Policy:
    """A Stable-Baselines3 model (SAC, TD3, DDPG, PPO, A2C) used deterministically.

    `model.predict` already returns env units (SAC/TD3/DDPG squash and unscale; PPO/A2C clip),
    so `action_units == "env"`.

    Args:
        model: a loaded SB3 algorithm.
        vec_normalize: the `VecNormalize` the model was trained with, or the path of its saved
            statistics (a pickle file: loading it runs pickle, load only files you trust).
    """

    action_units = "env"

    def __init__(self, model: Any, vec_normalize: Any = None):
        if not hasattr(model, "predict") or not hasattr(model, "action_space"):
            raise TypeError(f"SB3Policy needs a Stable-Baselines3 model, got {type(model).__name__}")
        self.model = model
        self.action_space = check_box(model.action_space, "SB3Policy action space", finite=True)
        self.observation_space = model.observation_space
        if isinstance(vec_normalize, (str, Path)):
            path = Path(vec_normalize)
            if not path.is_file():
                raise FileNotFoundError(f"VecNormalize statistics not found at {path}")
            with path.open("rb") as fh:  # SB3's own format is a pickle
                vec_normalize = pickle.load(fh)
        if vec_normalize is not None and not hasattr(vec_normalize, "normalize_obs"):
            raise TypeError(
                f"vec_normalize must be a VecNormalize or a path to its saved file, got {type(vec_normalize).__name__}"
            )
        self.vec_normalize = vec_normalize
        self.name = f"sb3:{type(model).__name__}"

    def _predict(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if self.vec_normalize is not None:
            obs = self.vec_normalize.normalize_obs(obs).astype(np.float32)
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return np.asarray(action).reshape(obs.shape[0], -1)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self._predict(obs, deterministic=True)

    def sample(self, obs: np.ndarray) -> np.ndarray:
        """The model's own stochastic actions (`predict(deterministic=False)`), env units."""
        return self._predict(obs, deterministic=False)


class CallablePolicy:
    """Any function `(B, obs_dim) -> (B, act_dim)`.

    Args:
        fn: the function.
        action_space: the env's action space.
        action_units: "env" if `fn` returns env units, "normalized" if it returns [-1, 1].
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        action_space: spaces.Box,
        action_units: str = "env",
        name: str | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"CallablePolicy needs a callable, got {type(fn).__name__}")
        if action_units not in ("env", "normalized"):
            raise ValueError(f"action_units must be 'env' or 'normalized', got {action_units!r}")
        self.fn = fn
        self.action_space = check_box(action_space, "CallablePolicy action space", finite=True)
        self.action_units = action_units
        self._scaler = ActionScaler(self.action_space)
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        action = np.asarray(self.fn(obs), np.float32).reshape(obs.shape[0], -1)
        if self.action_units == "normalized":
            return self._scaler.to_env(np.clip(action, -1.0, 1.0))
        return action


def as_base_policy(policy: Any, action_space: spaces.Box | None = None, vec_normalize: Any = None) -> BasePolicy:
    """Wrap an SB3 model, a `BCPolicy`, an adapter or a callable into a `BasePolicy`.

    Raises:
        TypeError: the object is none of those, or a callable is given without `action_space`.
    """
    if isinstance(policy, BasePolicy):
        return policy
    if hasattr(policy, "predict") and hasattr(policy, "policy") and hasattr(policy, "action_space"):
        return SB3Policy(policy, vec_normalize=vec_normalize)
    if callable(policy):
        if action_space is None:
            raise TypeError(
                "a plain callable base policy needs action_space=... (and action_units='env' or "
                "'normalized' via CallablePolicy) to know the units of its actions"
            )
        return CallablePolicy(policy, action_space)
    raise TypeError(
        f"base policy must be an SB3 model, a BCPolicy, a BasePolicy or a callable, got {type(policy).__name__}"
    )


def check_policy_spaces(
    policy: BasePolicy, observation_space: spaces.Box, action_space: spaces.Box, where: str
) -> None:
    """Raise ValueError naming both spaces when `policy` does not fit `where` (an env, a dataset)."""
    if not same_box(policy.action_space, action_space, bounds=True):
        raise ValueError(
            f"base policy acts in {policy.action_space}, {where} has actions in {action_space}; "
            f"use a policy trained on {where}'s env."
        )
    obs_space = getattr(policy, "observation_space", None)
    if isinstance(obs_space, spaces.Box) and obs_space.shape != observation_space.shape:
        raise ValueError(
            f"base policy observes {obs_space}, {where} has observations of shape "
            f"{observation_space.shape}; use a policy trained on {where}'s env."
        )


def load_sb3(path: str | Path, algo: str | None = None, vec_normalize: Any = None) -> SB3Policy:
    """Load an SB3 zip into an `SB3Policy`. An SB3 zip holds cloudpickled data: loading it runs
    pickle, so load only files you trust.

    Args:
        path: the `.zip` saved by `model.save`.
        algo: one of SAC, TD3, DDPG, PPO, A2C; read from the zip when omitted.
    """
    import stable_baselines3 as sb3

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SB3 model not found at {path}")
    if algo is None:
        try:
            with zipfile.ZipFile(path) as zf:
                module = json.loads(zf.read("data"))["policy_class"]["__module__"]
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a Stable-Baselines3 zip ({err}); pass algo=...") from err
        algo = next((a for a in SB3_ALGOS if f".{a.lower()}." in f".{module}."), None)
        if algo is None:
            raise ValueError(f"cannot tell the algorithm of {path} (policy module {module}); pass algo=...")
    if algo.upper() not in SB3_ALGOS:
        raise ValueError(f"algo must be one of {SB3_ALGOS}, got {algo!r}")
    model = getattr(sb3, algo.upper()).load(str(path), device="cpu")
    policy = SB3Policy(model, vec_normalize=vec_normalize)
    policy.name = f"sb3:{algo.upper()}:{path.name}"
    return policy


def load_policy(path: str | Path, vec_normalize: Any = None, action_space: spaces.Box | None = None) -> BasePolicy:
    """Load a base policy: a `BCPolicy` folder (no pickle), an SB3 `.zip` (pickle: load only
    files you trust), or `"package.module:function"`, a callable `(B, obs_dim) -> (B, act_dim)`
    in env units (needs `action_space`).

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: `path` is none of those kinds.
    """
    import importlib

    text = str(path)
    if ":" in text and not Path(text).exists() and not text.endswith(".zip"):
        module, _, name = text.partition(":")
        fn = getattr(importlib.import_module(module), name, None)
        if fn is None or action_space is None:
            raise ValueError(f"{text!r}: a module:function policy needs an existing callable and action_space=...")
        return CallablePolicy(fn, action_space, name=text)
    path = Path(path)
    if path.is_dir() and (path / "bc_policy.json").is_file():
        return BCPolicy.load(path)
    if path.is_dir() and (path / "policy" / "bc_policy.json").is_file():
        return BCPolicy.load(path / "policy")
    if path.suffix == ".zip":
        return load_sb3(path, vec_normalize=vec_normalize)
    if not path.exists():
        raise FileNotFoundError(f"base policy not found at {path}")
    raise ValueError(f"{path} is neither a BCPolicy folder (bc_policy.json) nor a Stable-Baselines3 .zip")


def policy_fingerprint(policy: BasePolicy, probe_obs: np.ndarray) -> tuple[np.ndarray, str]:
    """Actions of `policy` on fixed probe observations, and a short hash of them.

    Returns:
        `(probe_actions, hex)`: `(N, act_dim)` float32 normalised units, and 16 hex digits of the
        SHA-256 of those actions rounded to 1e-3.
    """
    scaler = ActionScaler(policy.action_space)
    actions = scaler.to_normalized_clipped(policy(np.asarray(probe_obs, np.float32)))
    rounded = np.round(actions.astype(np.float64), 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    return actions.astype(np.float32), hashlib.sha256(rounded.tobytes()).hexdigest()[:16]
