"""Collection speed against a bare loop (issue target: >= 50% of `env.step` + `predict`).

Usage:
    python benchmarks/collect_throughput.py [--suite ../shared/suite] [--steps 20000]

Bare loop: Hopper-v5 with the suite's SB3 SAC medium policy, `model.predict(obs,
deterministic=True)` then `env.step`, resetting on episode end. Collection: `spar_rectify.collect`
with the same policy into an hdf5 Minari dataset in a temporary folder (chunks of 10k steps),
including the writes. Both run the same number of steps; the machine's other load hits both.
Writes benchmarks/results/collect_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "suite"))
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--out", default=str(RESULTS / "collect_throughput.json"))
    args = parser.parse_args()
    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="spar-collect-bench-")
    os.environ["MINARI_DATASETS_PATH"] = tmp
    from spar_rectify.collect import collect
    from spar_rectify.policies import load_sb3

    policy = load_sb3(Path(args.suite) / "hopper" / "sac_medium.zip")  # an SB3 zip: runs pickle (our file)
    model = policy.model
    env = gym.make("Hopper-v5")
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(args.steps):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    bare = args.steps / (time.perf_counter() - start)

    start = time.perf_counter()
    ds = collect(policy, gym.make("Hopper-v5"), "bench/hopper/collect-v0", args.steps, progress=False)
    collected = ds.total_steps / (time.perf_counter() - start)
    result = {
        "env": "Hopper-v5",
        "bare_steps_per_s": round(bare, 1),
        "collect_steps_per_s": round(collected, 1),
        "ratio": round(collected / bare, 3),
        "steps": args.steps,
        "policy": "suite hopper/sac_medium.zip",
        "command": "python benchmarks/collect_throughput.py",
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
