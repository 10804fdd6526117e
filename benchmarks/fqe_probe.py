"""Does a policy's own value, fitted on the data (FQE), rank a run's rectifiers as the env does? No training of the
rectifiers, no env.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/fqe_probe.py \
        --run benchmarks/_work/full/spar_halfcheetah_medium-expert-v0/medium-rectified/seed1 \
        --dataset spar/halfcheetah/medium-expert-v0 --method medium-rectified --seed 1 --label defaults_s40 \
        --rollout-record benchmarks/results/suite_full.json

The kit's critic rates one step of an action followed by the best the data does (IQL's in-sample value); on
HalfCheetah medium-expert it prefers a reach policy that flips the cheetah (session 38). `spar_rectify.fqe` fits each
policy's own Q on the data's transitions instead. This fits it, from the same seed, for the anchor and for every
rectifier the run exported (`rectifier/`, `rectifier-alternative/`, `rectifier-insample/`, `rectifier-lsi/`; or those
named by --folders), each as deployed (its saved alpha and gate), and prints each one's estimated discounted return
from the data's first states and from a sample of its states, each with its paired difference from the deployed
rectifier's, and, with --rollout-record, the env score the harness measured for it (the record's top level,
`alternative`, `rectifier-insample`, `rectifier-lsi`). Appends one row per call to results/fqe_probe.json, with the
command. Loading the suite's SB3 anchor runs pickle (our files).

`--members 5 --pessimism 1` fits each policy's Q as an ensemble and reads a lower confidence bound (the members' mean
minus beta times their spread, in the TD targets too; `spar_rectify.fqe`): a policy whose actions keep leaving the
data is charged for it. Give such a call its own `--label` (a row with the same run and label is replaced).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent
RESULT = HERE / "results" / "fqe_probe.json"
#: Each exported rectifier folder and the key of its env score in a harness record (None: the record's top level).
FOLDERS = {"rectifier": None, "rectifier-alternative": "alternative", "rectifier-insample": "rectifier-insample"}
FOLDERS["rectifier-lsi"] = "rectifier-lsi"
#: FQE's two estimates: from the data's first states and from its sampled states (`spar_rectify.fqe`).
ON = ("starts", "states")


def env_scores(path: str | None, args, steps: int) -> dict[str, float]:
    """Folder name -> the harness's env score of it, from the run's record in `path` (empty without one)."""
    import suite_bench

    if not path:
        return {}
    keys = ("normalized_score", *(key for key in FOLDERS.values() if key))
    record = suite_bench.rollout_record(path, args.dataset, args.method, args.seed, steps, fields=keys)
    if record is None:
        return {}
    out = {"rectifier": record["normalized_score"]}
    for folder, key in FOLDERS.items():
        if key and record.get(key):
            out[folder] = record[key]["normalized_score"]
    return out


def main(argv: list[str] | None = None) -> None:
    import suite_bench

    from spar_rectify.data import load_minari
    from spar_rectify.fqe import fitted_q_evaluation, paired_difference
    from spar_rectify.rectified_policy import RectifiedPolicy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    suite_bench.add_run_probe_arguments(parser)
    parser.add_argument("--steps", type=int, default=20_000, help="FQE's TD steps per policy")
    parser.add_argument(
        "--folders",
        nargs="+",
        default=list(FOLDERS),
        choices=list(FOLDERS),
        help="the rectifiers to fit (default: all)",
    )
    parser.add_argument(
        "--members", type=int, default=1, help="Q networks per fit (1: plain FQE; 5 with --pessimism for a bound)"
    )
    parser.add_argument(
        "--pessimism",
        type=float,
        default=0.0,
        help="beta: the members' std subtracted from their mean in targets and values (needs --members >= 2)",
    )
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: give at least 1 (20000 is the default)")
    if args.members < 1:
        parser.error(f"--members {args.members}: give at least 1 (1 is plain FQE, 5 for a lower bound)")
    if not args.pessimism >= 0.0:
        parser.error(f"--pessimism {args.pessimism}: give a beta >= 0 (0 is the members' mean, 1 is typical)")
    if args.pessimism > 0.0 and args.members < 2:
        parser.error(f"--pessimism {args.pessimism} needs the members' spread: add --members 5")
    if "rectifier" not in args.folders:
        parser.error(f"--folders {' '.join(args.folders)}: include rectifier (the deployed one: the others' reference)")
    run, anchor = suite_bench.probed_run(parser, args)
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    choice = summary.get("penalty_choice") or {}
    reach_deployed = bool(choice) and suite_bench.reach_was_deployed(choice)
    data = load_minari(args.dataset)
    policies = {"anchor": anchor}
    for folder in args.folders:
        if (run / folder / "rectifier.json").is_file():
            policies[folder] = RectifiedPolicy(anchor, run / folder, check_anchor=False)
    roles = {}
    if choice:  # where the in-sample candidate went out, the latent policy LSI chose sits in rectifier-lsi/
        lsi = "rectifier-lsi" if (run / "rectifier-lsi").is_dir() else "rectifier"
        roles = {"rectifier": "in-sample"} if lsi != "rectifier" else {}
        roles[lsi] = "reach" if reach_deployed else "penalised"
        roles["rectifier-alternative"] = "penalised" if reach_deployed else "reach"
    results = {
        name: fitted_q_evaluation(
            policy, data, steps=args.steps, gamma=config.get("gamma", 0.99), seed=args.seed, name=name,
            progress=lambda line: print(line, flush=True), members=args.members, pessimism=args.pessimism,
        )
        for name, policy in policies.items()
    }  # fmt: skip
    scores = env_scores(args.rollout_record, args, config["steps"])
    rows = {}
    print(f"{'policy':22} {'role':9} {'alpha':5} {'FQE from first states':>30} {'FQE from data states':>30} env")
    for name, result in results.items():
        (diff, se), (state_diff, state_se) = (paired_difference(result, results["rectifier"], on) for on in ON)
        alpha = policies[name].corrector.alpha if name != "anchor" else 0.0
        rows[name] = {
            **result.to_dict(),
            "role": roles.get(name, name),
            "alpha": alpha,
            "minus_deployed": diff,
            "minus_deployed_se": se,
            "state_minus_deployed": state_diff,
            "state_minus_deployed_se": state_se,
            "env_score": scores.get(name),
        }
        env = "" if scores.get(name) is None else f"{scores[name]:.1f}"
        starts = f"{result.value:9.2f} ({diff:+8.2f} ± {se:.2f})"
        states = f"{result.state_value:9.2f} ({state_diff:+8.2f} ± {state_se:.2f})"
        print(f"{name:22} {roles.get(name, ''):9} {alpha:<5g} {starts:>30} {states:>30} {env}")
    ranked = [n for n in rows if rows[n]["env_score"] is not None]
    agree = {}
    if len(ranked) >= 2:
        best_env = max(ranked, key=lambda n: rows[n]["env_score"])
        for key in ("value", "state_value"):
            best = max(ranked, key=lambda n: rows[n][key])
            agree[key] = best == best_env
            print(f"best by FQE ({key}): {best}; best in the env: {best_env}")
    row = suite_bench.probe_row(
        args, run, "fqe_probe.py", steps=args.steps, members=args.members, pessimism=args.pessimism, policies=rows,
        best_agrees=agree or None,
    )  # fmt: skip
    suite_bench.append_result(Path(args.out), row, replaces=("run", "label"))
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
