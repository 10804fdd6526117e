"""A task outside the suite, the way a user brings one: train a weak SB3 SAC policy, collect a dataset
with its own stochastic actions, rectify it at the kit's defaults (or with --set overrides), compare
raw and rectified on paired seeded episodes. No tuning episodes anywhere.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/outside_task.py --env Reacher-v5 \
        --sac-steps 3000 --transitions 100000 --spar-steps 100000 --seed 0

Stages (each kept under benchmarks/_work/outside/<env>/seed<seed>/ and skipped when done, so an
interrupted run continues where it stopped): (1) SAC for --sac-steps env steps (the weak base
policy) and for --reference-steps (the reference of the normalised score); (2) reference returns
(uniform random and the reference policy); (3) `spar_rectify.collect` of --transitions with the
weak policy's stochastic actions; (4) `spar_rectify.train` of SPAR around the weak policy at the
default `TrainConfig` (only steps and seed set, plus --set KEY=VALUE; resumable); (5) --episodes paired episodes from
seed 10000: raw, rectified at the defaults (gate on), and rectified ungated, with the paired gain
over raw and its standard error, and the support metric. Appends to results/outside_task.json.
Loading the SAC zips runs pickle: files this script wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch: the MKL path)

HERE = Path(__file__).parent


def main() -> None:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC
    from suite_bench import EVAL_SEED, SuiteSupport, add_overrides_argument, append_result, parse_overrides, rollouts

    from spar_rectify import Exploration, RectifiedPolicy, TrainConfig, collect, load_minari, load_policy, train
    from spar_rectify.evaluation import reference_returns
    from spar_rectify.trainer import has_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Reacher-v5")
    parser.add_argument("--sac-steps", type=int, default=3000, help="env steps of the weak base policy's SAC")
    parser.add_argument("--reference-steps", type=int, default=50_000, help="env steps of the reference SAC")
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--spar-steps", type=int, default=100_000)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    add_overrides_argument(
        parser, "TrainConfig settings other than the defaults, e.g. kl_weight=0.02 (its own run folder)"
    )
    args = parser.parse_args()
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(1)

    work = HERE / "_work" / "outside" / args.env / f"seed{args.seed}"
    work.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def sac(steps: int, name: str) -> Path:
        path = work / f"{name}.zip"
        if not path.exists():
            log(f"SAC {name}: {steps} env steps")
            model = SAC("MlpPolicy", gym.make(args.env), seed=args.seed, device="cpu", verbose=0)
            model.learn(total_timesteps=steps)
            model.save(path)
        return path

    weak_path, ref_path = sac(args.sac_steps, f"sac_{args.sac_steps}"), sac(args.reference_steps, "sac_reference")
    weak = load_policy(weak_path)
    refs_file = work / "reference_returns.json"
    if not refs_file.exists():
        log("reference returns (random, reference SAC), 20 episodes each")
        lo, hi = reference_returns(args.env, load_policy(ref_path), 20)
        refs_file.write_text(json.dumps({"ref_min_score": lo, "ref_max_score": hi}))
    refs = json.loads(refs_file.read_text())

    env_name = args.env.split("-")[0].lower()
    dataset_id = f"outside/{env_name}/sac{args.sac_steps}-s{args.seed}-v0"
    try:
        data = load_minari(dataset_id)
    except FileNotFoundError:
        log(f"collect {args.transitions} transitions into {dataset_id}")
        collect(
            weak,
            args.env,
            dataset_id,
            args.transitions,
            exploration=Exploration("stochastic"),
            seed=args.seed * 1_000_000,
            ref_min_score=refs["ref_min_score"],
            ref_max_score=refs["ref_max_score"],
            progress=False,
        )
        data = load_minari(dataset_id)

    tag = "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))
    run_dir = work / f"spar_{args.spar_steps}{tag}"
    if not (run_dir / "summary.json").exists():
        log(f"SPAR at the defaults {overrides or ''}, {args.spar_steps} steps (resumable)")
        config = TrainConfig(steps=args.spar_steps, seed=args.seed, eval_every=0, **overrides)
        train(config, data, run_dir, anchor=weak, env=args.env, resume=has_checkpoint(run_dir), progress=False)

    support = SuiteSupport(data)
    policies = {
        "raw": weak,
        # gate on, as deployed by default; named "defaults" only when no --set changed the training
        "rectified (defaults)" if not overrides else "rectified (gated)": RectifiedPolicy(weak, run_dir / "rectifier"),
        "rectified, ungated": RectifiedPolicy(weak, run_dir / "rectifier", gate=False),
    }
    rows, raw_returns = {}, None
    for name, policy in policies.items():
        log(f"{args.episodes} episodes: {name}")
        returns, obs, actions = rollouts(policy, args.env, args.episodes)
        row = {
            "return": float(returns.mean()),
            "return_std": float(returns.std()),
            "normalized_score": float(data.normalized_score(returns.mean())),
            **support.report(obs, actions),
        }
        if raw_returns is None:
            raw_returns = returns
        else:
            diff = returns - raw_returns
            row["paired_gain"] = float(diff.mean())
            row["paired_gain_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
            row["better_episodes"] = int((diff > 0).sum())
        rows[name] = row
        gain = f", paired gain {row['paired_gain']:+.2f} +- {row['paired_gain_se']:.2f}" if "paired_gain" in row else ""
        log(f"  {name}: return {row['return']:.2f} (normalised {row['normalized_score']:.1f}){gain}")
    out = HERE / "results" / "outside_task.json"
    append_result(
        out,
        {
            "env": args.env,
            "seed": args.seed,
            "sac_steps": args.sac_steps,
            "reference_steps": args.reference_steps,
            "dataset": dataset_id,
            "transitions": int(len(data)),
            "spar_steps": args.spar_steps,
            "overrides": overrides,
            "reference_returns": refs,
            "eval_seed": EVAL_SEED,
            "episodes": args.episodes,
            "rows": rows,
            "command": "python benchmarks/outside_task.py " + " ".join(os.sys.argv[1:]),
        },
    )
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
