"""Roll any policy in a Gymnasium env into a Minari dataset (hdf5), in chunks.

Defines `Exploration`, `collect`, `write_arrays`.

Each episode i is reset with seed `seed + i` and draws its exploration noise from
`np.random.default_rng([seed, i])`, so a collection that is interrupted and continued with
`append=True` produces the same data as one that never stopped. Complete episodes are written
every `chunk_steps` steps and when the run is interrupted; a partial episode is dropped.

Per-step extras are stored in the episode's `infos`: `base_action[t]` is the policy's action
(env units, before exploration) at `observations[t]`; row N (the final observation) is zero.
When `env` is a `SPARRectifierWrapper`, the stored `actions` are the executed (rectified) ones.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from spar_rectify.data import end_cut_off
from spar_rectify.dataset_repair import backup_metadata, ensure_consistent
from spar_rectify.policies import BasePolicy, as_base_policy, check_policy_spaces
from spar_rectify.rollout import rollout
from spar_rectify.spaces import same_box


@dataclass(frozen=True)
class Exploration:
    """How collected actions depart from the policy's.

    kind: "none"; "gaussian" (add N(0, scale^2) in normalised units); "epsilon" (a uniform random
    action with probability `scale`); "stochastic" (the policy's own sampling; SB3 models).
    """

    kind: Literal["none", "gaussian", "epsilon", "stochastic"] = "none"
    scale: float = 0.1

    def __post_init__(self):
        if self.kind not in ("none", "gaussian", "epsilon", "stochastic"):
            raise ValueError(f"Exploration.kind must be none, gaussian, epsilon or stochastic, got {self.kind!r}")
        if not np.isfinite(self.scale) or self.scale < 0 or (self.kind == "epsilon" and self.scale > 1):
            raise ValueError(f"Exploration.scale must be >= 0 (<= 1 for epsilon), got {self.scale}")


def _prepare_target(dataset_id: str, overwrite: bool, append: bool):
    """The existing dataset to append to (or None), after deleting it when `overwrite`.

    Call it only once every other argument has been checked: overwriting deletes the old data.
    """
    import minari
    from minari.storage import get_dataset_path

    if overwrite and append:
        raise ValueError("pass overwrite=True or append=True, not both")
    exists = (get_dataset_path(dataset_id) / "data").exists()
    if exists and not (overwrite or append):
        raise FileExistsError(
            f"Minari dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; pass overwrite=True "
            "(--overwrite) to replace it or append=True (--append) to continue it. Nothing was changed."
        )
    if exists and overwrite:
        minari.delete_dataset(dataset_id)
    if exists and append:
        ensure_consistent(dataset_id)  # an earlier append killed between Minari's two writes
        return minari.load_dataset(dataset_id)
    return None


def _check_append(dataset, dataset_id: str, env: gym.Env) -> None:
    """Refuse to append from an env whose id or spaces differ from the dataset's (ValueError)."""

    try:
        theirs = dataset.spec.env_spec.id if dataset.spec.env_spec is not None else None
    except Exception:
        theirs = None
    mine = env.spec.id if env.spec is not None else None
    problems = []
    if theirs is not None and mine != theirs:
        problems.append(f"env {mine!r} (the dataset's: {theirs!r})")
    for kind, a, b in (
        ("observation space", env.observation_space, dataset.observation_space),
        ("action space", env.action_space, dataset.action_space),
    ):
        if not (isinstance(a, gym.spaces.Box) and isinstance(b, gym.spaces.Box) and same_box(a, b, bounds=True)):
            problems.append(f"{kind} {a} (the dataset's: {b})")
    if problems:
        raise ValueError(
            f"cannot append to Minari dataset {dataset_id!r}: this run has " + "; ".join(problems) + ". Appending "
            "must continue the same env; collect into a new dataset id instead (nothing was changed)."
        )


def _record_append(dataset, policy: BasePolicy, seed: int, first_episode: int) -> None:
    """Note in the dataset's metadata which policy and seed collected the episodes from here on
    (`spar_collect_appends`, a JSON list), so a dataset continued by another policy says so."""
    import json

    name = getattr(policy, "name", type(policy).__name__)
    log = json.loads(dataset.storage.metadata.get("spar_collect_appends", "[]"))
    log.append({"first_episode": int(first_episode), "policy": str(name), "seed": int(seed)})
    dataset.storage.update_metadata({"spar_collect_appends": json.dumps(log)})


def collect(
    policy: Any,
    env: gym.Env | str,
    dataset_id: str,
    steps: int,
    *,
    exploration: Exploration = Exploration(),
    seed: int = 0,
    overwrite: bool = False,
    append: bool = False,
    chunk_steps: int = 10_000,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    description: str | None = None,
    algorithm_name: str | None = None,
    progress: bool | None = None,
):
    """Collect at least `steps` transitions (whole episodes) into Minari dataset `dataset_id`.

    Args:
        policy: SB3 model, `BCPolicy`, `BasePolicy` or callable (with the env's action space).
        env: env or env id (a `SPARRectifierWrapper` collects rectified behaviour).
        steps: total transitions wanted in the dataset (with `append`, counting what is there).
        exploration: how actions depart from the policy's.
        seed: episode i resets with `seed + i`.
        overwrite / append: what to do when `dataset_id` exists (otherwise FileExistsError);
            `overwrite` deletes the old dataset once every argument has been checked.
        chunk_steps: write complete episodes every this many steps.
        ref_min_score, ref_max_score: reference returns for `minari.get_normalized_score` (see
            `evaluation.reference_returns` to measure them).
        progress: True: a tqdm bar; None (default): the bar on a terminal, otherwise a line per
            written chunk; False: quiet.

    Returns:
        The `MinariDataset`.

    Raises:
        ValueError: the policy's action space differs from the env's, bad arguments.
        FileExistsError: the dataset exists and neither `overwrite` nor `append` was given.
        TypeError: "stochastic" exploration with a policy that cannot sample.
    """
    import minari
    from tqdm.auto import tqdm

    env = gym.make(env) if isinstance(env, str) else env
    policy = as_base_policy(policy, env.action_space)
    check_policy_spaces(policy, env.observation_space, env.action_space, f"env {env.spec.id if env.spec else env}")
    if exploration.kind == "stochastic" and not hasattr(policy, "sample"):
        raise TypeError(
            f"exploration 'stochastic' needs a policy that samples (an SB3 model); "
            f"{type(policy).__name__} is deterministic: use 'gaussian' or 'epsilon'."
        )
    if steps < 1 or chunk_steps < 1:
        raise ValueError(f"steps and chunk_steps must be >= 1, got {steps} and {chunk_steps}")
    dataset = _prepare_target(dataset_id, overwrite, append)
    if dataset is not None:
        _check_append(dataset, dataset_id, env)
    done_steps = dataset.total_steps if dataset is not None else 0
    episode = dataset.total_episodes if dataset is not None else 0
    if dataset is not None and done_steps < steps:
        _record_append(dataset, policy, seed, episode)
    if dataset is not None and ref_max_score is not None:  # given with --append: recorded all the same
        dataset.storage.update_metadata({"ref_min_score": ref_min_score, "ref_max_score": ref_max_score})
    meta = dict(
        env=env.spec if env.spec is not None else None,
        action_space=env.action_space,
        observation_space=env.observation_space,
        ref_min_score=ref_min_score,
        ref_max_score=ref_max_score,
        description=description or f"collected by spar_rectify from {getattr(policy, 'name', 'a policy')}",
        algorithm_name=algorithm_name or getattr(policy, "name", "policy"),
        data_format="hdf5",
    )
    if ref_max_score is None:
        meta.pop("ref_min_score"), meta.pop("ref_max_score")
    buffers: list = []
    pending = 0
    bar = tqdm(
        total=steps,
        initial=min(done_steps, steps),
        disable=not (progress if progress is not None else sys.stderr.isatty()),
        desc=f"collect {dataset_id}",
        unit="step",
        dynamic_ncols=True,
    )

    def flush():
        nonlocal dataset, buffers, pending
        if not buffers:
            return
        if dataset is None:
            with warnings.catch_warnings():  # minari nags about optional metadata we leave unset
                warnings.simplefilter("ignore", UserWarning)
                dataset = minari.create_dataset_from_buffers(dataset_id, buffers, **meta)
        else:
            backup_metadata(dataset_id)  # Minari rewrites metadata.json in place after the HDF5 append
            dataset.update_dataset_from_buffer(buffers)
        buffers, pending = [], 0
        if progress is None and bar.disable:  # a log, not a terminal: one line per chunk
            print(f"collect {dataset_id}: {done_steps:,}/{steps:,} steps written", flush=True)

    try:
        while done_steps < steps:
            buf = _episode(policy, env, seed + episode, np.random.default_rng([seed, episode]), exploration, episode)
            buffers.append(buf)
            n = len(buf.rewards)
            done_steps, pending, episode = done_steps + n, pending + n, episode + 1
            bar.update(n)
            if pending >= chunk_steps:
                flush()
    finally:
        flush()  # complete episodes survive an interruption
        bar.close()
    return dataset


def _episode(
    policy: BasePolicy,
    env: gym.Env,
    reset_seed: int,
    rng: np.random.Generator,
    exploration: Exploration,
    episode_id: int,
):
    from minari.data_collector import EpisodeBuffer

    space = env.action_space
    low, high = space.low, space.high
    half = (high - low) / 2.0
    base_actions = []

    def act(obs: np.ndarray) -> np.ndarray:
        batch = np.asarray(obs, np.float32)[None]
        base = policy(batch)[0]
        base_actions.append(base)
        if exploration.kind == "stochastic":
            action = policy.sample(batch)[0]
        elif exploration.kind == "gaussian":
            action = np.clip(base + rng.normal(0.0, exploration.scale, base.shape) * half, low, high)
        elif exploration.kind == "epsilon" and rng.random() < exploration.scale:
            action = rng.uniform(low, high)
        else:
            action = base
        return np.asarray(action, space.dtype)

    episode = rollout(env, act, reset_seed)
    base_actions.append(np.zeros_like(base_actions[0]))
    last = np.arange(len(episode)) == len(episode) - 1
    return EpisodeBuffer(
        id=episode_id,
        seed=reset_seed,
        observations=episode.observations,
        actions=np.asarray(episode.actions, space.dtype),
        rewards=episode.rewards,
        terminations=last & episode.terminated,  # only the last step can end the episode
        truncations=last & episode.truncated,
        infos={"base_action": np.asarray(base_actions, np.float32)},
    )


def write_arrays(
    dataset_id: str,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_observations: np.ndarray,
    terminations: np.ndarray,
    truncations: np.ndarray,
    *,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Box,
    env_spec: Any = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    description: str | None = None,
    overwrite: bool = False,
):
    """Write flat, consecutive transitions (a replay buffer, say) as a Minari dataset.

    Episodes end where `terminations | truncations`; a last episode with neither flag (a log cut
    off mid-way) is stored as truncated. Each episode stores N + 1 observations: its N
    observations plus the final `next_observation`. Terminations and truncations stay apart.

    Raises:
        FileExistsError: the dataset exists and `overwrite` is False (nothing is changed).
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    _prepare_target(dataset_id, overwrite, False)

    term = np.asarray(terminations, bool)
    trunc = end_cut_off(term, truncations)
    ends = np.flatnonzero(term | trunc)
    starts = np.r_[0, ends[:-1] + 1]
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=np.concatenate([observations[s : e + 1], next_observations[e : e + 1]]),
            actions=np.asarray(actions[s : e + 1], action_space.dtype),
            rewards=np.asarray(rewards[s : e + 1]),
            terminations=term[s : e + 1],
            truncations=trunc[s : e + 1],
            infos={},
        )
        for i, (s, e) in enumerate(zip(starts, ends))
    ]
    meta = dict(
        env=env_spec,
        observation_space=observation_space,
        action_space=action_space,
        description=description or "converted by spar_rectify.collect.write_arrays",
        data_format="hdf5",
    )
    if ref_max_score is not None:
        meta.update(ref_min_score=ref_min_score, ref_max_score=ref_max_score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return minari.create_dataset_from_buffers(dataset_id, buffers, **meta)
