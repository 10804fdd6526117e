"""Where do a policy's support violations happen? Falls against the rest of the episode.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/violation_sources.py \
        --dataset spar/hopper/medium-v0 --seed 0 [--tier full] [--tail 20]

For every method `suite_bench.py <tier>` trained on (dataset, seed), rolls out the suite's seeded
evaluation episodes and splits the support violations (the suite's kNN metric on (state, action)
pairs, and on states alone) into those of the last `--tail` steps before a termination (the
fall itself, where any policy leaves the data) and the rest of the episode. Needs the runs' work
folders (`benchmarks/_work/<tier>/...`, not committed).
Writes `results/violation_sources_<env>_<kind>_seed<seed>.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

HERE = Path(__file__).parent


def load_trained(dataset_dir: Path, dataset: str, method: str, seed: int, suite=None):
    """The deployable policy of a finished suite run (None if it is not there)."""
    from suite_bench import SUITE, anchor_policy

    from spar_rectify import RectifiedPolicy, load_policy

    run = dataset_dir / method / f"seed{seed}"
    if method in ("spar", "medium-rectified"):
        if not (run / "rectifier" / "rectifier.json").is_file():
            return None
        return RectifiedPolicy(anchor_policy(dataset_dir, dataset, method, seed, suite or SUITE), run / "rectifier")
    return load_policy(run / "policy") if (run / "policy").is_dir() else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tier", default="full")
    parser.add_argument("--tail", type=int, default=20, help="steps before a termination that count as the fall")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--work", default=str(HERE / "_work"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from suite_bench import SUITE, SuiteSupport, medium_policy_path, rollouts

    from spar_rectify import load_policy
    from spar_rectify.data import load_minari

    torch.set_num_threads(1)
    data = load_minari(args.dataset)
    root = Path(args.work) / args.tier / args.dataset.replace("/", "_")
    policies = {
        m: load_trained(root, args.dataset, m, args.seed, args.suite)
        for m in ("bc", "td3bc", "iql", "spar", "medium-rectified")
    }
    # loading the medium policy runs pickle: the suite's own file
    policies["medium-raw"] = load_policy(medium_policy_path(args.dataset, args.suite or SUITE))
    support = SuiteSupport(data)
    rows = {}
    for method, policy in policies.items():
        if policy is None:
            continue
        returns, obs, actions, (lengths, fell) = rollouts(policy, data.env_spec.id, args.episodes, lengths=True)
        v_joint, v_state = support.violations(obs, actions)
        tail = np.zeros(len(obs), bool)
        for end, length, f in zip(np.cumsum(lengths), lengths, fell):
            if f:
                tail[end - min(args.tail, length) : end] = True
        rows[method] = {
            "return": float(returns.mean()),
            "steps": int(len(obs)),
            "falls": int(fell.sum()),
            "violation_rate": float(v_joint.mean()),
            "state_violation_rate": float(v_state.mean()),
            "share_of_violations_in_fall": float(v_joint[tail].sum() / max(v_joint.sum(), 1)),
            "violation_rate_outside_fall": float(v_joint[~tail].mean()),
            "state_violation_rate_outside_fall": float(v_state[~tail].mean()),
        }
        print(method, json.dumps({k: round(v, 4) for k, v in rows[method].items()}), flush=True)
    env_kind = "_".join(args.dataset.split("/")[1:]).removesuffix("-v0")
    out = HERE / "results" / f"violation_sources_{env_kind}_seed{args.seed}.json"
    out.write_text(
        json.dumps(
            {
                "dataset": args.dataset,
                "seed": args.seed,
                "tier": args.tier,
                "tail": args.tail,
                "episodes": args.episodes,
                "methods": rows,
                "command": " ".join(
                    ["python benchmarks/violation_sources.py", *(sys.argv[1:] if argv is None else argv)]
                ),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
