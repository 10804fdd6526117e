"""Does a rectifier drift off the data's states? Short rollouts in a dynamics model learned from the data.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/model_drift.py \
        --run benchmarks/_work/variant_s100k_k025d/full/spar_hopper_medium-v0/spar/seed0 \
        --dataset spar/hopper/medium-v0 --method spar --seed 0 --label k025

`offline_support.py` found that on the data's own states the rectified actions sit as close to the data as
the logged ones, whatever kappa (hopper medium, kappa 0.25: 0.6% against the anchor's 0.4%), while in the
env the same rectifier left the data's *states* on 14.5% of steps: the violations come from drift that
compounds over steps, which a one-step check cannot see. This probe looks for that drift without the env.

It runs the kit's own check (`spar_rectify.drift`, what `spar drift` runs) on a harness run: it fits an
ensemble of `--members` MLPs to the data's transitions (standardised state change from standardised state and
normalised action; bootstrap batches; `--model-seed`, 0 by default; cached under `_work/dynamics/`), then
rolls the anchor and the deployed rectified policy (critic gate included) from the same `--starts` dataset
states for `--horizon` steps, each step through a random member (seeded by `--draw-seeds`, one check per seed;
the same draws for both policies), and reports per policy: the share of model states beyond the suite's
state-support threshold (averaged over the horizon, and at its last step), the rectifier's excess over the
anchor with its standard error over the start states, and the ensemble's disagreement (the mean per-dimension
std of the members' predictions, in the data's state stds). No env is stepped. With `--rollout-record` the
harness's env-measured numbers of the same run are copied in. `--rectifiers rectifier rectifier-alternative`
rolls both of a reach run's latent policies on the same draws; `--model-dir <run>/dynamics` uses the model the
run's own drift check fitted instead of the cached one; `--members-apart` adds one check per member alone.

Appends one row per rectifier, alpha, draw seed (and member) to results/model_drift.json (with the command).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch: the MKL path)

HERE = Path(__file__).parent


def main() -> None:
    import torch
    from suite_bench import add_run_probe_arguments, probed_run

    from spar_rectify import RectifiedPolicy
    from spar_rectify.data import load_minari
    from spar_rectify.drift import drift_check, load_or_fit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_probe_arguments(parser)
    parser.add_argument("--starts", type=int, default=1000, help="dataset states the rollouts start from")
    parser.add_argument("--horizon", type=int, default=25, help="model steps per rollout")
    parser.add_argument("--members", type=int, default=5, help="dynamics ensemble size")
    parser.add_argument("--model-steps", type=int, default=20000, help="gradient steps fitting the ensemble")
    parser.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=[1.0],
        help="residual scales to deploy the rectifier at (one row each, the same rollout draws)",
    )
    parser.add_argument(
        "--rectifiers",
        nargs="+",
        default=["rectifier"],
        help="rectifier folders inside --run to roll on the same draws (e.g. rectifier rectifier-alternative)",
    )
    parser.add_argument("--model-dir", default=None, help="a fitted dynamics model to use (default: the cache)")
    parser.add_argument(
        "--model-seed",
        type=int,
        default=0,
        help="seed of the ensemble's fit when it is fitted here (not with --model-dir): how far another fit moves it",
    )
    parser.add_argument(
        "--draw-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the start states and member draws (one check each: how far another draw moves the excess)",
    )
    parser.add_argument(
        "--members-apart",
        action="store_true",
        help="also one check per ensemble member, every step through that member alone (the model's share of the "
        "excess's uncertainty: the members are independent fits)",
    )
    args = parser.parse_args()
    minimums = (("--starts", args.starts, 10), ("--horizon", args.horizon, 1), ("--members", args.members, 2))
    for flag, value, low in minimums:
        if value < low:
            parser.error(f"{flag} {value}: use at least {low}")
    if any(not 0 <= a <= 1 for a in args.alphas):
        parser.error(f"--alphas {' '.join(map(str, args.alphas))}: each must lie in [0, 1] (1 = the whole residual)")
    torch.set_num_threads(1)

    run, anchor = probed_run(parser, args)
    missing = [name for name in args.rectifiers if not (run / name / "rectifier.json").is_file()]
    if missing:
        parser.error(f"--rectifiers {' '.join(missing)}: no rectifier there in --run {run}")
    data = load_minari(args.dataset)
    slug = args.dataset.replace("/", "_")
    fit_seed = f"_seed{args.model_seed}" if args.model_seed else ""
    folder = args.model_dir or HERE / "_work" / "dynamics" / f"{slug}_m{args.members}_s{args.model_steps}{fit_seed}"
    model = load_or_fit(data, folder, args.members, args.model_steps, args.model_seed, progress=print)
    print(f"dynamics: validation MSE {model.validation_mse:.4f} (units of the state change's variance)")

    policies = {"anchor": anchor}
    for name in args.rectifiers:
        for a in args.alphas:
            policies[f"{name} alpha={a:g}"] = RectifiedPolicy(anchor, run / name, alpha=a, check_anchor=False)
    for draw_seed in args.draw_seeds:
        check = drift_check(policies, data, model, args.starts, args.horizon, draw_seed)
        record_rows(args, run, model, policies, check, draw_seed)
        for member in range(model.members) if args.members_apart else ():
            check = drift_check(policies, data, model, args.starts, args.horizon, draw_seed, member=member)
            record_rows(args, run, model, policies, check, draw_seed, member)


def record_rows(args, run, model, policies, check, draw_seed, member=None) -> None:
    """One results row (and printed line) per rectifier and alpha of one drift check."""
    from suite_bench import append_result, probe_row

    report = check.to_dict()["policies"]
    which = "all members" if member is None else f"member {member} alone"
    for name in args.rectifiers:
        kappa = policies[f"{name} alpha={args.alphas[0]:g}"].corrector.checkpoint.config.get("lsi_anchor_penalty")
        for alpha in args.alphas:
            row = probe_row(
                args,
                run,
                "model_drift.py",
                starts=args.starts,
                horizon=args.horizon,
                members=args.members,
                model_steps=args.model_steps,
                model_seed=None if args.model_dir else args.model_seed,
                model_val_mse=model.validation_mse,
                rectifier=name,
                lsi_anchor_penalty=kappa,
                alpha=alpha,
                anchor=report["anchor"],
                rectified=report[f"{name} alpha={alpha:g}"],
                draw_seed=draw_seed,
                member=member,
                excess_points=round(check.excess(f"{name} alpha={alpha:g}", "anchor"), 3),
                excess_se_points=round(check.excess_se(f"{name} alpha={alpha:g}", "anchor"), 3),
            )
            a, r = row["anchor"], row["rectified"]
            print(
                f"{args.label or run} {name} (kappa {kappa}) alpha {alpha:g}: model state violations anchor "
                f"{100 * a['state_violation_rate']:.1f}% "
                f"(last {100 * a['state_violation_last']:.1f}%, disagreement {a['disagreement']:.3f})  rectified "
                f"{100 * r['state_violation_rate']:.1f}% (last {100 * r['state_violation_last']:.1f}%, "
                f"disagreement {r['disagreement']:.3f})  excess {row['excess_points']:+.2f} +- "
                f"{row['excess_se_points']:.2f} (draw seed {draw_seed}, {which})  env {row.get('rollout')}",
                flush=True,
            )
            append_result(HERE / "results" / "model_drift.json", row)


if __name__ == "__main__":
    main()
