"""Build the benchmark datasets (D4RL-style) from the base policies and replay data in the suite.

Usage:
    python benchmarks/build_suite.py [--suite ../shared/suite] [--transitions 200000] [--envs hopper halfcheetah]

For each env, with reference returns from a uniform random policy and the expert policy
(deterministic, `--ref-episodes` episodes each, default 20), written to Minari's metadata so that
`minari.get_normalized_score` works:

- `medium`: the medium SAC policy sampling its own stochastic actions, `--transitions` steps.
- `medium-replay`: the SAC replay buffer up to the medium checkpoint, converted faithfully
  (terminations kept apart from time-limit truncations; the cut-off last episode truncated).
  With `--transitions` below its size, its first `--transitions` transitions.
- `medium-expert`: the medium episodes plus `--transitions` steps of the expert policy sampling
  its own stochastic actions.

Idempotent: a dataset already built with the same recipe (recorded in `suite_manifest.json`
under the Minari root) is skipped. Ids: `spar/<env>/<kind>-v0`, or `spar-<N>/<env>/<kind>-v0`
for a `--transitions N` other than 200000. Loading the suite's SB3 zips runs pickle (our files).
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import json
import os
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5"}
FULL = 200_000
KINDS = ("medium", "medium-replay", "medium-expert")


def save_manifest(path: Path, before: dict, after: dict) -> None:
    """Write the entries this build changed (`after` against `before`) into the manifest on disk,
    under a lock and by atomic replace: two builds running at once (`--envs hopper` beside `--envs
    halfcheetah`) each keep the other's entries instead of the last writer's view winning."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = json.loads(path.read_text()) if path.is_file() else {}
        merged.update({k: v for k, v in after.items() if before.get(k, object()) != v})
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(merged, indent=2) + "\n")
        os.replace(tmp, path)


def build_env(
    name: str, suite: Path, transitions: int, ref_episodes: int, manifest: dict, log, kinds=KINDS, on_disk=None
) -> dict:
    """Build `kinds` of env `name`'s datasets; `on_disk()` (optional) reads the manifest as another build
    running at once left it, so that what that build finished is skipped here too.

    Returns {kind: dataset id} for the kinds asked for, each built here or found up to date.
    Raises FileNotFoundError (before any collection) for medium-expert without medium on disk."""
    import gymnasium as gym
    import minari
    import numpy as np
    from minari.storage import get_dataset_path

    from spar_rectify.collect import Exploration, collect, write_arrays
    from spar_rectify.evaluation import reference_returns
    from spar_rectify.policies import load_sb3

    env_id = ENVS[name]
    prefix = "spar" if transitions == FULL else f"spar-{transitions}"
    medium, expert = load_sb3(suite / name / "sac_medium.zip"), load_sb3(suite / name / "sac_expert.zip")
    ref_key = f"{env_id}/ref/{ref_episodes}"
    if ref_key not in manifest:
        log(f"{env_id}: reference returns over {ref_episodes} episodes each")
        manifest[ref_key] = dict(
            zip(("ref_min_score", "ref_max_score"), reference_returns(env_id, expert, ref_episodes))
        )
    refs = manifest[ref_key]
    ids = {kind: f"{prefix}/{name}/{kind}-v0" for kind in KINDS}
    built = {}  # what is on disk after this build: built here or found up to date

    def fresh(kind: str, recipe: dict) -> str | None:
        dataset_id = ids[kind]
        recipe = {**recipe, **refs}
        if kind not in kinds:
            return None
        if on_disk is not None and manifest.get(dataset_id) != recipe and on_disk().get(dataset_id) == recipe:
            manifest[dataset_id] = recipe  # another build made it meanwhile
        if manifest.get(dataset_id) == recipe and (get_dataset_path(dataset_id) / "data").exists():
            log(f"{dataset_id}: up to date, skipped")
            built[kind] = dataset_id
            return None
        manifest[dataset_id] = None
        return dataset_id

    env = gym.make(env_id)
    recipe = {"policy": "sac_medium.zip", "exploration": "stochastic", "transitions": transitions, "seed": 0}
    if dataset_id := fresh("medium", recipe):
        log(f"{dataset_id}: collecting")
        collect(
            medium,
            env,
            dataset_id,
            transitions,
            exploration=Exploration("stochastic"),
            seed=0,
            overwrite=True,
            description=f"{env_id} medium: SAC medium policy, stochastic actions",
            **refs,
        )
        manifest[dataset_id], built["medium"] = {**recipe, **refs}, dataset_id

    replay = np.load(suite / name / "replay_to_medium.npz")
    n = min(transitions, len(replay["rewards"]))
    recipe = {"source": "replay_to_medium.npz", "transitions": n}
    if dataset_id := fresh("medium-replay", recipe):
        log(f"{dataset_id}: converting {n} replay transitions")
        write_arrays(
            dataset_id,
            *(
                replay[k][:n]
                for k in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")
            ),
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_spec=env.spec,
            description=f"{env_id} medium-replay: SAC replay buffer up to the medium checkpoint",
            overwrite=True,
            **refs,
        )
        manifest[dataset_id], built["medium-replay"] = {**recipe, **refs}, dataset_id

    recipe = {
        "medium": ids["medium"],
        "expert": "sac_expert.zip",
        "exploration": "stochastic",
        "transitions": transitions,
        "seed": 10_000,
    }
    if dataset_id := fresh("medium-expert", recipe):
        if not (get_dataset_path(ids["medium"]) / "data").exists():  # before the expert's long collection
            raise FileNotFoundError(
                f"{dataset_id} is built from {ids['medium']}, which is not under {get_dataset_path()}: "
                "add medium to --kinds (e.g. --kinds medium medium-expert)"
            )
        log(f"{dataset_id}: medium episodes + {transitions} expert transitions")
        expert_id = f"{prefix}/{name}/expert-part-v0"
        collect(
            expert,
            env,
            expert_id,
            transitions,
            exploration=Exploration("stochastic"),
            seed=10_000,
            overwrite=True,
            progress=True,
        )
        arrays = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc")}
        for source in (ids["medium"], expert_id):
            for ep in minari.load_dataset(source).iterate_episodes():
                for key, value in zip(
                    arrays,
                    (
                        ep.observations[:-1],
                        ep.actions,
                        ep.rewards,
                        ep.observations[1:],
                        ep.terminations,
                        ep.truncations,
                    ),
                ):
                    arrays[key].append(value)
        write_arrays(
            dataset_id,
            *(np.concatenate(v) for v in arrays.values()),
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_spec=env.spec,
            description=f"{env_id} medium-expert: medium + SAC expert, stochastic actions",
            overwrite=True,
            **refs,
        )
        minari.delete_dataset(expert_id)
        manifest[dataset_id], built["medium-expert"] = {**recipe, **refs}, dataset_id
    return built


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "suite"))
    parser.add_argument("--transitions", type=int, default=FULL)
    parser.add_argument("--ref-episodes", type=int, default=20)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=list(KINDS),
        help="build only these datasets of each env (medium-expert reuses medium, which must exist)",
    )
    args = parser.parse_args(argv)
    import torch
    from minari.storage import get_dataset_path

    torch.set_num_threads(1)
    suite = Path(args.suite)
    if not (suite / "hopper" / "sac_medium.zip").is_file():
        raise FileNotFoundError(f"suite inputs not found under {suite}; pass --suite PATH (see shared/suite/README.md)")
    manifest_path = get_dataset_path() / "suite_manifest.json"

    def on_disk() -> dict:  # the manifest as saved (another build running at once may have added to it)
        return json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    manifest = on_disk()
    start = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - start:7.1f}s] {message}", flush=True)

    built = {}
    for name in args.envs:
        before = copy.deepcopy(manifest)
        try:
            built[name] = build_env(
                name, suite, args.transitions, args.ref_episodes, manifest, log, tuple(args.kinds), on_disk
            )
        finally:
            save_manifest(manifest_path, before, manifest)
    log(f"done: {json.dumps(built)}")
    return built


if __name__ == "__main__":
    main()
