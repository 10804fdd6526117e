"""Is FQE's value a policy's value? Fitted Q Evaluation of the suite's SB3 policies on a dataset, against their
discounted return in the env from its own first states. No training of policies.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/fqe_calibration.py \
        --dataset spar/halfcheetah/medium-expert-v0 --policies medium expert --episodes 10

For each policy (the suite's `sac_<name>.zip` for the dataset's env; loading it runs pickle: the suite's own files)
this fits `spar_rectify.fqe.fitted_q_evaluation` on the dataset from one seed (shared by the policies) and rolls the
policy deterministically for `--episodes` seeded episodes (the harness's evaluation seeds), then prints FQE's
estimate from the data's first states beside the env's discounted return from reset (gamma as FQE's), the
undiscounted return, and the paired FQE difference between each policy and the first. Appends one row per call to
results/fqe_calibration.json, with the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent
RESULT = HERE / "results" / "fqe_calibration.json"


def discounted(rewards: np.ndarray, gamma: float) -> float:
    """The discounted sum of one episode's rewards (T,) from its first step."""
    return float(np.sum(np.asarray(rewards, np.float64) * gamma ** np.arange(len(rewards))))


def main(argv: list[str] | None = None) -> None:
    import gymnasium as gym
    import suite_bench

    from spar_rectify import rollout
    from spar_rectify.data import load_minari
    from spar_rectify.fqe import fitted_q_evaluation, paired_difference
    from spar_rectify.policies import load_policy
    from spar_rectify.rollout import batched

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--policies", nargs="+", default=["medium", "expert"], help="suite policies: sac_<name>.zip")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20_000, help="FQE's TD steps per policy")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.steps < 1:
        parser.error(f"--episodes {args.episodes} --steps {args.steps}: give at least 1 of each")
    folder = suite_bench.medium_policy_path(args.dataset, args.suite or suite_bench.SUITE).parent
    paths = {name: folder / f"sac_{name}.zip" for name in args.policies}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        parser.error(f"--policies {' '.join(args.policies)}: not found: {', '.join(missing)}")
    data = load_minari(args.dataset)
    if data.env_spec is None:
        parser.error(f"--dataset {args.dataset}: it records no env to roll the policies in; use a suite dataset")
    env_id = data.env_spec.id
    rows, fits = {}, {}
    for name, path in paths.items():
        policy = load_policy(path)
        fits[name] = fitted_q_evaluation(policy, data, steps=args.steps, gamma=args.gamma, seed=args.seed, name=name)
        env, act = gym.make(env_id), batched(policy)
        episodes = [rollout(env, act, suite_bench.EVAL_SEED + i) for i in range(args.episodes)]
        env_discounted = [discounted(e.rewards, args.gamma) for e in episodes]
        first = fits[args.policies[0]]
        diff, se = paired_difference(fits[name], first)
        rows[name] = {
            **fits[name].to_dict(),
            "env_discounted": float(np.mean(env_discounted)),
            "env_discounted_std": float(np.std(env_discounted)),
            "env_return": float(np.mean([e.total for e in episodes])),
            "minus_first": diff,
            "minus_first_se": se,
        }
        r = rows[name]
        print(
            f"{name:8} FQE from first states {r['value']:9.1f} (from data states {r['state_value']:9.1f}); env "
            f"discounted {r['env_discounted']:9.1f} ± {r['env_discounted_std']:.1f}, return {r['env_return']:8.1f}; "
            f"minus {args.policies[0]}: {diff:+.1f} ± {se:.1f}",
            flush=True,
        )
    row = {"dataset": args.dataset, "steps": args.steps, "gamma": args.gamma, "seed": args.seed, "policies": rows}
    row["command"] = "python benchmarks/fqe_calibration.py " + " ".join(sys.argv[1:] if argv is None else argv)
    suite_bench.append_result(Path(args.out), row)
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
