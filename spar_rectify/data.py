"""Offline data: Minari datasets -> flat tensors, and the anchor's cached actions.

Defines `OfflineData`, `load_minari`, `from_arrays`, `anchor_actions`.

Minari stores N + 1 observations for the N actions of an episode: transition t is
`(obs[t], action[t], reward[t], obs[t + 1])`. Terminations (true ends: no bootstrap) and
truncations (time limits: bootstrap) stay apart. Actions are stored normalised to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from safetensors import safe_open
from safetensors.torch import save_file

from spar_rectify.dataset_repair import ensure_consistent
from spar_rectify.envspec import UntrustedEnvSpec, vet_env_spec
from spar_rectify.policies import BasePolicy, check_policy_spaces, policy_fingerprint
from spar_rectify.spaces import ActionScaler, check_box


def end_cut_off(terminations: np.ndarray, truncations: np.ndarray) -> np.ndarray:
    """`truncations` (a bool copy) with the last transition marked truncated when a log stops with
    neither flag set: an episode cut off mid-way ends in a truncation (it still bootstraps). (N,) x2 -> (N,)."""
    trunc = np.asarray(truncations, bool).copy()
    if len(trunc) and not (trunc[-1] or np.asarray(terminations, bool)[-1]):
        trunc[-1] = True
    return trunc


@dataclass
class OfflineData:
    """A dataset as tensors. N transitions, float32 unless said.

    Attributes:
        observations, next_observations: (N, obs_dim) env units.
        actions: (N, act_dim) normalised units, clipped to [-1, 1].
        rewards: (N,) raw rewards.
        terminations, truncations: (N,) float32 0/1; the last transition of an episode that has
            neither flag (a cut-off log) counts as truncated.
        episode_returns: (E,) float64 undiscounted return of each episode.
        observation_space, action_space: 1-D Boxes.
        name: dataset id (or a description).
        ref_min_score, ref_max_score: reference returns (random, expert) when known.
        env_spec: the Gymnasium spec of the env, when the dataset records one that builds from
            Gymnasium's registry (see `spar_rectify.envspec`).
        env_refused: why a recorded spec was refused (None when accepted or absent).
        base_actions: (N, act_dim) the anchor's actions, normalised; set by `attach_anchor`.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminations: torch.Tensor
    truncations: torch.Tensor
    episode_returns: np.ndarray
    observation_space: spaces.Box
    action_space: spaces.Box
    name: str = "dataset"
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    env_spec: Any = None
    env_refused: str | None = None
    base_actions: torch.Tensor | None = None
    anchor_fingerprint: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def __repr__(self) -> str:
        return (
            f"OfflineData({self.name!r}, transitions={len(self)}, episodes={len(self.episode_returns)}, "
            f"obs_dim={self.observations.shape[1]}, act_dim={self.actions.shape[1]}, "
            f"anchor={'yes' if self.base_actions is not None else 'no'})"
        )

    def obs_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(obs_dim,) mean and std of the observations (std floored at 1e-3)."""
        obs = self.observations.double()
        return obs.mean(0).float().numpy(), obs.std(0).clamp_min(1e-3).float().numpy()

    def normalized_score(self, returns: np.ndarray | float) -> np.ndarray | None:
        """D4RL-style `100 * (R - R_random) / (R_expert - R_random)`, or None without references."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return (
            100.0 * (np.asarray(returns, np.float64) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)
        )

    def episode_ends(self) -> np.ndarray:
        """(N,) bool: whether each row ends its episode (terminated or truncated)."""
        return (self.terminations + self.truncations).numpy() > 0

    def row_returns(self) -> np.ndarray:
        """(N,) float64 the undiscounted return of the episode each row belongs to (`episode_returns`, spread
        over its rows; a last episode without an end flag counts as one)."""
        ends = np.flatnonzero(self.episode_ends())
        episode = np.searchsorted(ends, np.arange(len(self)))
        return np.asarray(self.episode_returns, np.float64)[np.minimum(episode, len(self.episode_returns) - 1)]

    def attach_anchor(self, policy: BasePolicy, cache: str | Path | None = None, batch_size: int = 8192) -> None:
        """Compute (or read from `cache`) the anchor's action for every observation, once.

        Raises:
            ValueError: the policy's action space (or observation space) differs from the data's.
        """
        check_policy_spaces(policy, self.observation_space, self.action_space, f"dataset {self.name!r}")
        fingerprint = policy_fingerprint(policy, self.observations[:64].numpy())[1]
        self.base_actions = anchor_actions(policy, self.observations.numpy(), fingerprint, cache, batch_size)
        self.anchor_fingerprint = fingerprint


def anchor_actions(
    policy: BasePolicy,
    observations: np.ndarray,
    fingerprint: str,
    cache: str | Path | None = None,
    batch_size: int = 8192,
) -> torch.Tensor:
    """Anchor actions `(N, act_dim)` normalised, computed in batches and cached in `cache`
    (a safetensors file keyed by the anchor's fingerprint and N)."""
    if cache is not None and Path(cache).is_file():
        with safe_open(str(cache), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("fingerprint") == fingerprint and int(meta.get("n", -1)) == len(observations):
                return fh.get_tensor("base_actions")
    scaler = ActionScaler(policy.action_space)
    out = np.empty((len(observations), policy.action_space.shape[0]), np.float32)
    for start in range(0, len(observations), batch_size):
        chunk = observations[start : start + batch_size]
        out[start : start + len(chunk)] = scaler.to_normalized_clipped(policy(chunk))
    tensor = torch.from_numpy(out)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(cache) + ".tmp")
        save_file({"base_actions": tensor}, str(tmp), metadata={"fingerprint": fingerprint, "n": str(len(out))})
        tmp.replace(cache)
    return tensor


def from_arrays(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_observations: np.ndarray,
    terminations: np.ndarray,
    truncations: np.ndarray,
    observation_space: spaces.Box,
    action_space: spaces.Box,
    name: str = "arrays",
    nonfinite: Literal["raise", "drop"] = "raise",
    **extra: Any,
) -> OfflineData:
    """Build `OfflineData` from flat transition arrays in env units (episodes consecutive).

    Non-finite values: `nonfinite="raise"` (default) raises ValueError saying how many and where;
    `"drop"` removes the affected transitions (their episode's return still counts them).
    """
    check_box(observation_space, f"dataset {name!r} observations", finite=False)
    check_box(action_space, f"dataset {name!r} actions", finite=True)
    obs, nxt = np.asarray(observations, np.float32), np.asarray(next_observations, np.float32)
    act, rew = np.asarray(actions, np.float32), np.asarray(rewards, np.float32).reshape(-1)
    term = np.asarray(terminations, bool).reshape(-1)
    trunc = np.asarray(truncations, bool).reshape(-1)
    n = len(rew)
    for label, arr, width in (
        ("observations", obs, observation_space.shape[0]),
        ("actions", act, action_space.shape[0]),
        ("next_observations", nxt, observation_space.shape[0]),
    ):
        if arr.shape != (n, width):
            raise ValueError(f"dataset {name!r}: {label} has shape {arr.shape}, expected ({n}, {width})")
    if n == 0:
        raise ValueError(f"dataset {name!r} has no transitions")
    if len(term) != n or len(trunc) != n:
        raise ValueError(f"dataset {name!r}: terminations/truncations must have {n} entries")
    trunc = end_cut_off(term, trunc)
    ends = np.flatnonzero(term | trunc)
    returns = np.array([seg.sum() for seg in np.split(rew.astype(np.float64), ends[:-1] + 1)])
    bad = ~(np.isfinite(obs).all(1) & np.isfinite(act).all(1) & np.isfinite(rew) & np.isfinite(nxt).all(1))
    if bad.any():
        where = np.flatnonzero(bad)
        message = (
            f"dataset {name!r} has {bad.sum()} transitions with NaN/inf values (first at transition "
            f"indices {where[:5].tolist()})"
        )
        if nonfinite == "raise":
            raise ValueError(message + "; clean the data or pass nonfinite='drop' to skip them.")
        keep = ~bad
        obs, act, rew, nxt, term, trunc = obs[keep], act[keep], rew[keep], nxt[keep], term[keep], trunc[keep]
    act_n = ActionScaler(action_space).to_normalized_clipped(act)
    t = torch.from_numpy
    return OfflineData(
        t(obs),
        t(act_n),
        t(rew),
        t(nxt),
        t(term.astype(np.float32)),
        t(trunc.astype(np.float32)),
        returns,
        observation_space,
        action_space,
        name,
        **extra,
    )


def load_minari(
    dataset_id: str, download: bool = False, nonfinite: Literal["raise", "drop"] = "raise", trust_env: bool = False
) -> OfflineData:
    """Load a Minari dataset into `OfflineData`.

    The dataset's recorded env is vetted first (`spar_rectify.envspec.vet_env_spec`): its entry
    point must be the one Gymnasium's registry has for its id, or nothing named by the dataset
    is imported. A refused spec leaves `env_spec=None` and the reason in `env_refused` (training
    then needs an env from you); a dataset without stored spaces whose spec is refused cannot
    be loaded at all (Minari would build the env to learn them).

    Args:
        dataset_id: e.g. "spar/hopper/medium-v0" (local), or a remote id with `download=True`.
        download: fetch remote datasets that are not found locally (needs network).
        nonfinite: see `from_arrays`.
        trust_env: build the env from the dataset's spec as recorded, whatever code it names.

    Raises:
        FileNotFoundError: not found locally (the message says where it looked).
        TypeError: non-Box observation or action spaces.
        UntrustedEnvSpec: the spec is refused and the dataset stores no spaces.
    """
    import minari
    from minari.storage import get_dataset_path

    ensure_consistent(dataset_id)  # metadata left behind its HDF5 episodes by an interrupted append
    spec, refused = _vetted_spec(dataset_id, trust_env)
    try:
        dataset = minari.load_dataset(dataset_id, download=download)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} not found at {get_dataset_path(dataset_id)} (MINARI_DATASETS_PATH sets "
            f"the root); build it with `spar collect` or `spar import` (remote ids: load_minari(..., download=True) "
            "in Python)."
        ) from err
    if download and spec is None and refused is None:  # fetched just now: vet what arrived
        spec, refused = _vetted_spec(dataset_id, trust_env)
    obs_space, act_space = dataset.observation_space, dataset.action_space
    check_box(obs_space, f"dataset {dataset_id!r} observations", finite=False)
    check_box(act_space, f"dataset {dataset_id!r} actions", finite=True)
    parts: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc")}
    for ep in dataset.iterate_episodes():
        obs = np.asarray(ep.observations)
        parts["obs"].append(obs[:-1])
        parts["next"].append(obs[1:])
        parts["act"].append(np.asarray(ep.actions))
        parts["rew"].append(np.asarray(ep.rewards))
        parts["term"].append(np.asarray(ep.terminations, bool))
        parts["trunc"].append(end_cut_off(ep.terminations, ep.truncations))  # stored without an ending flag
    if not parts["rew"]:
        raise ValueError(f"Minari dataset {dataset_id!r} has no episodes")
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    meta = dataset.storage.metadata
    return from_arrays(
        cat["obs"],
        cat["act"],
        cat["rew"],
        cat["next"],
        cat["term"],
        cat["trunc"],
        obs_space,
        act_space,
        name=dataset_id,
        nonfinite=nonfinite,
        ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
        env_spec=spec,
        env_refused=refused,
    )


def _vetted_spec(dataset_id: str, trust: bool) -> tuple[Any, str | None]:
    """(vetted spec or None, why it was refused or None), read from the dataset's raw metadata
    before Minari touches it. Raises `UntrustedEnvSpec` when refused and no spaces are stored."""
    from gymnasium.envs.registration import EnvSpec
    from minari.dataset.minari_storage import MinariStorage
    from minari.storage import get_dataset_path

    data_path = get_dataset_path(dataset_id) / "data"
    if not (data_path / "metadata.json").is_file():
        return None, None  # not here (yet): load_dataset reports it
    raw = MinariStorage.read_raw_metadata(data_path)
    text = raw.get("env_spec")
    if not isinstance(text, str):
        return None, None
    for old in ('"order_enforce": true,', '"apply_api_compatibility": false,', '"autoreset": false, '):
        text = text.replace(old, "")  # what Minari strips for gymnasium 1.x, too
    try:
        spec = EnvSpec.from_json(text)
    except (ValueError, TypeError) as err:
        return None, f"dataset {dataset_id!r} records an unreadable env spec ({err})"
    try:
        return vet_env_spec(spec, f"dataset {dataset_id!r}", trust), None
    except UntrustedEnvSpec as err:
        if "observation_space" not in raw or "action_space" not in raw:
            raise UntrustedEnvSpec(f"{err} (it stores no spaces, so it cannot be loaded without its env)") from None
        return None, str(err)
