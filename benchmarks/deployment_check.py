"""Raw against rectified (gated default and ungated) for one trained rectifier, on the suite's seeds.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/deployment_check.py \
        --policy demos/assets/hopper/sac_medium.zip --rectifier runs/hopper-medium-spar/rectifier \
        --dataset spar/hopper/medium-v0 --name demo_hopper_medium

Rolls the base policy, the rectified policy at its defaults (critic gate on when the rectifier
carries its critic) and the ungated rectified policy on the same seeded episodes (seed 10000..,
as `suite_bench.py`), with the suite's support metric. Without `--rectifier`, the base policy alone:
where a policy goes on a dataset's support (e.g. the SB3 expert on medium-expert). Writes
results/deployment_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent


def main() -> None:
    from suite_bench import EVAL_SEED, SuiteSupport, rollouts

    from spar_rectify import RectifiedPolicy, load_minari, load_policy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="the base policy (an SB3 zip runs pickle on load)")
    parser.add_argument("--rectifier", default=None, help="a rectifier folder; without it, the base policy alone")
    parser.add_argument("--dataset", required=True, help="the dataset the rectifier was trained on (support metric)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()

    data = load_minari(args.dataset)
    support = SuiteSupport(data)
    base = load_policy(args.policy)
    policies = {"raw": base}
    if args.rectifier is not None:
        policies["rectified (defaults)"] = RectifiedPolicy(base, args.rectifier)
        policies["rectified, ungated"] = RectifiedPolicy(base, args.rectifier, gate=False)
    rows = {}
    for name, policy in policies.items():
        returns, obs, actions = rollouts(policy, data.env_spec.id, args.episodes)
        rows[name] = {
            "normalized_score": float(data.normalized_score(returns.mean())),
            "return": float(returns.mean()),
            "return_std": float(returns.std()),
            **support.report(obs, actions),
        }
        if hasattr(policy, "corrector"):
            rows[name]["gate"] = bool(policy.corrector.gate)
        print(
            f"{name:>22}: score {rows[name]['normalized_score']:6.1f}  return {returns.mean():8.1f} "
            f"± {returns.std():6.1f}  violations {100 * rows[name]['support_violation_rate']:.2f}%, states "
            f"{100 * rows[name]['state_violation_rate']:.2f}%",
            flush=True,
        )
    rectified = rows.get("rectified (defaults)", rows["raw"])
    out = HERE / "results" / f"deployment_{args.name}.json"
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "dataset": args.dataset,
                "policy": args.policy,
                "rectifier": args.rectifier,
                "episodes": args.episodes,
                "eval_seed": EVAL_SEED,
                "rectified_minus_raw_return": float(rectified["return"] - rows["raw"]["return"]),
                "command": "python benchmarks/deployment_check.py " + " ".join(sys.argv[1:]),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
