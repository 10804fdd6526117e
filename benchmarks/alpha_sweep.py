"""How much of the residual to deploy: return and support of a trained rectifier at several alphas.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/alpha_sweep.py \
        --dataset spar/hopper/medium-v0 --method spar --seed 0 [--tier full] [--alphas 0 0.25 0.5 0.75 1]

Loads the rectifier that `suite_bench.py <tier>` trained for (dataset, method, seed) from its
work folder, and evaluates the rectified policy at each alpha (the wrapper's residual scale;
0 is the anchor itself) over the suite's seeded episodes (seeds 10000..), with the suite's
support metric. Needs the run's work folder (`benchmarks/_work/<tier>/...`, not committed).
Also reports the violation rate of the states alone (the same kNN metric on observations):
the share of steps where the policy is somewhere the data never went, whatever the action.
With `--tune-episodes N`, alpha is also chosen as a user would choose it (`spar tune-alpha`: the
best mean return over N episodes from seed 20000) and the chosen alpha's row on the reported
episodes is recorded under `tuned.held_out`: a score with no selection on the reported seeds.
`--which alternative` sweeps the latent policy the drift check did not deploy (`rectifier-alternative/`);
`--ungated` evaluates without the critic gate (the whole scaled residual on every step).
The result carries the run's own offline checks (`auto_alpha`, `penalty_choice` from its summary.json), so
that `benchmarks/alpha_margin.py` can tell which harness record it belongs to.
Writes `results/alpha_sweep_<env>_<kind>_<method>_seed<seed>[_<tag>][_alternative][_ungated].{json,png}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

HERE = Path(__file__).parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--method", choices=("spar", "medium-rectified"), default="spar")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tier", default="full")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--work", default=str(HERE / "_work"))
    parser.add_argument("--tag", default="", help="suffix of the result file names (e.g. a variant's name)")
    parser.add_argument(
        "--which",
        choices=("deployed", "alternative"),
        default="deployed",
        help="the run's deployed rectifier, or (with lsi_reach_penalty) the latent policy the drift check did not "
        "deploy (rectifier-alternative/); the file name then ends in _alternative",
    )
    parser.add_argument(
        "--ungated",
        action="store_true",
        help="without the critic gate (the whole scaled residual on every step, SPARRectifierWrapper(gate=False)); "
        "the file name then ends in _ungated",
    )
    parser.add_argument(
        "--tune-episodes",
        type=int,
        default=0,
        help="also pick alpha the way a user would (spar_rectify.tune_alpha on these many episodes "
        "from seed 20000, apart from the reported ones) and report the pick's held-out row",
    )
    args = parser.parse_args(argv)
    if args.ungated and args.tune_episodes:
        parser.error("--ungated with --tune-episodes: spar tune-alpha picks for the deployed (gated) policy; drop one")

    import torch
    from suite_bench import SUITE, SuiteSupport, anchor_policy, rollouts

    from spar_rectify import RectifiedPolicy
    from spar_rectify.data import load_minari
    from spar_rectify.trainer import ALTERNATIVE

    torch.set_num_threads(1)
    run = Path(args.work) / args.tier / args.dataset.replace("/", "_") / args.method / f"seed{args.seed}"
    rectifier = run / ("rectifier" if args.which == "deployed" else ALTERNATIVE)
    if not (rectifier / "rectifier.json").is_file():
        raise SystemExit(
            f"no trained rectifier at {rectifier}: run benchmarks/suite_bench.py {args.tier} "
            f"--datasets {args.dataset} --seeds {args.seed} first"
        )
    anchor = anchor_policy(run.parent.parent, args.dataset, args.method, args.seed, args.suite or SUITE)
    data = load_minari(args.dataset)
    support = SuiteSupport(data)  # the state-only rate: the policy went where the data never was
    rows = []
    for alpha in args.alphas:
        policy = RectifiedPolicy(anchor, rectifier, alpha=alpha, gate=False if args.ungated else None)
        returns, obs, actions = rollouts(policy, data.env_spec.id, args.episodes)
        rows.append(
            {
                "alpha": alpha,
                "return": float(returns.mean()),
                "return_std": float(returns.std()),
                "normalized_score": float(data.normalized_score(returns.mean())),
                **support.report(obs, actions),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    tuned = {}
    if args.tune_episodes:
        from spar_rectify import tune_alpha

        sweep = tune_alpha(anchor, rectifier, data.env_spec.id, args.alphas, args.tune_episodes)
        held_out = next(r for r in rows if r["alpha"] == sweep.best_alpha)
        tuned = {"tuned": {**sweep.to_dict(), "held_out": held_out}}
        print(sweep.table(), "\nheld out at the pick:", json.dumps(held_out), flush=True)
    # The run's own offline checks, as its record carries them: what ties this sweep to that record
    # (benchmarks/alpha_margin.py), since a run folder can be retrained under the same name.
    summary = run / "summary.json"
    saved = json.loads(summary.read_text()) if summary.is_file() else {}
    checks = {k: v for k, v in saved.items() if k in ("auto_alpha", "penalty_choice")}
    which = ("" if args.which == "deployed" else "_alternative") + ("_ungated" if args.ungated else "")
    env_kind = "_".join(args.dataset.split("/")[1:]).removesuffix("-v0")
    out = (
        HERE
        / "results"
        / f"alpha_sweep_{env_kind}_{args.method}_seed{args.seed}{'_' + args.tag if args.tag else ''}{which}.json"
    )
    out.write_text(
        json.dumps(
            {
                "dataset": args.dataset,
                "method": args.method,
                "seed": args.seed,
                "tier": args.tier,
                "episodes": args.episodes,
                "tag": args.tag,
                "which": args.which,
                "gate": not args.ungated,
                "rows": rows,
                **tuned,
                **checks,
                "command": "python benchmarks/alpha_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv),
            },
            indent=2,
        )
        + "\n"
    )
    plot(rows, out.with_suffix(".png"), f"{args.dataset} {args.method} seed {args.seed}")
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Return (left axis) and support violations (right axis) against alpha."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    alphas = [r["alpha"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.errorbar(alphas, [r["return"] for r in rows], [r["return_std"] for r in rows], marker="o", capsize=3)
    ax.set_xlabel("alpha (share of the residual applied; 0 = anchor)")
    ax.set_ylabel("return (mean, std over episodes)")
    ax2 = ax.twinx()
    ax2.plot(alphas, [100 * r["support_violation_rate"] for r in rows], "s--", color="tab:red", label="(state, action)")
    if all("state_violation_rate" in r for r in rows):
        ax2.plot(alphas, [100 * r["state_violation_rate"] for r in rows], "^:", color="tab:orange", label="state only")
        ax2.legend(fontsize=7, loc="upper left")
    ax2.set_ylabel("support violations (%)", color="tab:red")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
