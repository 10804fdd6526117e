"""Bring logs without a live policy in: `.npz` arrays, an SB3 replay buffer, or episode dicts.

Defines `import_transitions`, `arrays_from_npz`, `arrays_from_sb3_replay_buffer`,
`arrays_from_episodes`, `KEYS`.

Every source becomes flat, consecutive transitions with the `KEYS` below (env units), is checked
against the env's spaces (shapes, finite values, actions inside the Box) and written as a Minari
dataset by `collect.write_arrays` (terminations kept apart from time-limit truncations; a last
episode cut off mid-way is stored as truncated). `spar import` is the command-line front end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spar_rectify.collect import write_arrays
from spar_rectify.data import end_cut_off
from spar_rectify.spaces import check_box

#: The arrays of a transition log: observations, actions, rewards, next_observations (N, ...),
#: terminations and truncations (N,) bool.
KEYS = ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")


def arrays_from_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The `KEYS` arrays of an `.npz` file (loaded without pickle; object arrays are refused)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .npz file at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path} lacks arrays {missing}; it has {sorted(npz.files)}. Save the log with "
                    f"np.savez(path, {', '.join(f'{k}=...' for k in KEYS)})"
                )
            return {k: np.asarray(npz[k]) for k in KEYS}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(
                f"{path} holds object arrays, which would need pickle to load; save plain numeric arrays instead"
            ) from err
        raise


def arrays_from_sb3_replay_buffer(path: str | Path) -> dict[str, np.ndarray]:
    """The transitions of an SB3 `ReplayBuffer` saved with `model.save_replay_buffer(path)`.

    Loading it runs pickle (SB3's format): only load buffers you trust. Each parallel env's
    transitions are kept together, in order; SB3's `timeouts` become truncations, the other
    `dones` terminations. Buffers saved with `optimize_memory_usage=True` are supported.
    """
    from stable_baselines3.common.save_util import load_from_pkl

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no replay buffer at {path}")
    buf = load_from_pkl(path)
    if not all(hasattr(buf, k) for k in ("observations", "actions", "rewards", "dones")):
        raise ValueError(f"{path} is not an SB3 ReplayBuffer (got {type(buf).__name__})")
    size = buf.buffer_size if buf.full else buf.pos
    order = np.r_[np.arange(buf.pos, buf.buffer_size), np.arange(buf.pos)] if buf.full else np.arange(size)
    nxt = buf.next_observations if not buf.optimize_memory_usage else np.roll(buf.observations, -1, axis=0)
    if buf.optimize_memory_usage and buf.full:
        order = order[:-1]  # the newest next observation was overwritten by the oldest entry
    timeouts = getattr(buf, "timeouts", np.zeros_like(buf.dones))
    parts: dict[str, list] = {k: [] for k in KEYS}
    for e in range(buf.n_envs):
        dones, trunc = buf.dones[order, e] > 0.5, timeouts[order, e] > 0.5
        parts["observations"].append(buf.observations[order, e])
        parts["actions"].append(buf.actions[order, e])
        parts["rewards"].append(buf.rewards[order, e])
        parts["next_observations"].append(nxt[order, e])
        parts["terminations"].append(dones & ~trunc)
        parts["truncations"].append(end_cut_off(dones, trunc))  # this env's log ends mid-episode
    return {k: np.concatenate(v) for k, v in parts.items()}


def arrays_from_episodes(episodes: Sequence[dict]) -> dict[str, np.ndarray]:
    """Flat transitions from episode dicts: `observations` (T + 1, obs_dim) including the final
    observation, `actions` (T, act_dim), `rewards` (T,), and optional `terminations` /
    `truncations` (T,) bool (default: an episode ends truncated)."""
    parts: dict[str, list] = {k: [] for k in KEYS}
    for i, ep in enumerate(episodes):
        try:
            obs, act, rew = np.asarray(ep["observations"]), np.asarray(ep["actions"]), np.asarray(ep["rewards"])
        except KeyError as err:
            raise ValueError(
                f"episode {i} lacks {err}; each needs observations (T + 1 rows), actions and rewards"
            ) from None
        t = len(rew)
        if len(obs) != t + 1 or len(act) != t:
            raise ValueError(
                f"episode {i}: {len(obs)} observations, {len(act)} actions and {t} rewards; expected "
                "T + 1 observations (the final one included), T actions and T rewards"
            )
        term = np.asarray(ep.get("terminations", np.zeros(t, bool)), bool)
        trunc = end_cut_off(term, ep.get("truncations", np.zeros(t, bool)))
        for key, value in zip(KEYS, (obs[:-1], act, rew, obs[1:], term, trunc)):
            parts[key].append(value)
    if not parts["rewards"]:
        raise ValueError("no episodes given")
    return {k: np.concatenate(v) for k, v in parts.items()}


def _check(arrays: dict[str, np.ndarray], env: Any, source: str) -> dict[str, np.ndarray]:
    obs_space = check_box(env.observation_space, "env observation space", finite=False)
    act_space = check_box(env.action_space, "env action space", finite=True)
    n = len(arrays["rewards"])
    if n == 0:
        raise ValueError(f"{source} holds no transitions")
    expect = {
        "observations": (n, *obs_space.shape),
        "next_observations": (n, *obs_space.shape),
        "actions": (n, *act_space.shape),
        "rewards": (n,),
        "terminations": (n,),
        "truncations": (n,),
    }
    out = {}
    for key, shape in expect.items():
        value = np.asarray(arrays[key])
        if key == "rewards" and value.shape == (n, 1):
            value = value[:, 0]
        if value.shape != shape:
            raise ValueError(
                f"{source}: {key} has shape {value.shape}, the env {env.spec.id if env.spec else env} needs {shape}"
            )
        if key in ("terminations", "truncations"):
            value = value.astype(bool)
        else:
            if not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"{source}: {key} has dtype {value.dtype}; expected numbers")
            value = value.astype(np.float32)
            bad = ~np.isfinite(value).reshape(n, -1).all(1)
            if bad.any():
                raise ValueError(
                    f"{source}: {key} is not finite in {int(bad.sum())} transitions (first at index "
                    f"{int(np.flatnonzero(bad)[0])}); drop or repair them before importing"
                )
        out[key] = value
    low, high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
    outside = ((out["actions"] < low - 1e-6) | (out["actions"] > high + 1e-6)).any(1)
    if outside.any():
        raise ValueError(
            f"{source}: {int(outside.sum())} actions lie outside the env's action space [{low}, {high}] "
            f"(first at index {int(np.flatnonzero(outside)[0])}); were they logged in other units?"
        )
    return out


def import_transitions(
    arrays: dict[str, np.ndarray],
    env: Any,
    dataset_id: str,
    *,
    overwrite: bool = False,
    source: str = "the log",
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
) -> dict:
    """Validate `arrays` (the `KEYS`, env units) against `env` and write Minari dataset `dataset_id`.

    Returns a summary: dataset id, folder, transitions, episodes, terminations, truncations.

    Raises:
        ValueError: shapes, dtypes, non-finite values or actions outside the Box, named with the fix.
        FileExistsError: the dataset exists and `overwrite` is False.
    """
    import gymnasium as gym
    from minari.storage import get_dataset_path

    env = gym.make(env) if isinstance(env, str) else env
    data = _check(arrays, env, source)
    ds = write_arrays(
        dataset_id,
        data["observations"],
        data["actions"].astype(env.action_space.dtype),
        data["rewards"],
        data["next_observations"],
        data["terminations"],
        data["truncations"],
        observation_space=env.observation_space,
        action_space=env.action_space,
        env_spec=env.spec,
        ref_min_score=ref_min_score,
        ref_max_score=ref_max_score,
        overwrite=overwrite,
        description=f"imported by spar_rectify from {source}",
    )
    return {
        "dataset": dataset_id,
        "folder": str(get_dataset_path(dataset_id)),
        "transitions": int(ds.total_steps),
        "episodes": int(ds.total_episodes),
        "terminations": int(data["terminations"].sum()),
        "truncations": int(ds.total_episodes - data["terminations"].sum()),
    }
