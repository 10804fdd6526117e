"""What each reach-check allowance for the model's spread (`TrainConfig.reach_model_margin`) would deploy.

Usage:
    python benchmarks/reach_margin.py [--results benchmarks/results/suite_full.json ...] [--margins -1 0 1 2]

Reads the harness's records (`suite_bench.py full` writes them) of runs that trained a reach policy, measured
its reach check through each dynamics member alone (`reach_excess_members_points`, since session 24) and
evaluated both latent policies in the env (the deployed one, and the other as `alternative`). For every margin
z it re-applies the one condition of `drift.choose_penalty` that the margin moves (`PenaltyChoice.reach_within`:
the reach policy is refused when its excess exceeds drift_threshold + z standard errors of the members) to the
recorded numbers and reads off the env's verdict on the policy that margin deploys: normalised score, the share
of steps off the data's (state, action) support and of states off the data's states. No training, no env: the
decision of a margin is exactly what `spar train` would make from the same checks. Writes
benchmarks/results/reach_margin.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import suite_bench

DEFAULT_RESULTS = [suite_bench.RESULTS / "suite_full.json", suite_bench.RESULTS / "suite_full_reach_evidence.json"]
VERDICT = ("normalized_score", "support_violation_rate", "state_violation_rate")


def measured_runs(paths: list[Path]) -> list[dict]:
    """The records whose reach check ran through each member alone and whose two latent policies both have an
    env verdict, with both verdicts side by side. One trained run re-deployed into a second file (session 25's
    reach-evidence runs, re-deployed into the table) counts once: the first file's record of the same (dataset,
    method, seed) with the same reach check is kept."""
    runs, seen = [], set()
    for path in paths:
        for record in json.loads(path.read_text())["runs"]:
            penalty, other = record.get("penalty_choice"), record.get("alternative")
            if not penalty or not other or not penalty.get("reach_excess_members_points"):
                continue
            run = (record["dataset"], record["method"], record["seed"], penalty["reach_excess_points"])
            run += tuple(penalty["reach_excess_members_points"])
            if run in seen:
                continue
            seen.add(run)
            reach_deployed = suite_bench.reach_was_deployed(penalty)
            deployed = {k: record[k] for k in VERDICT}
            alternative = {k: other[k] for k in VERDICT}
            runs.append(
                {
                    "file": path.name,
                    "dataset": record["dataset"],
                    "method": record["method"],
                    "seed": record["seed"],
                    "penalty_choice": penalty,
                    "reach": deployed if reach_deployed else alternative,
                    "penalised": alternative if reach_deployed else deployed,
                }
            )
    return runs


def decide(penalty: dict, margin: float) -> str:
    """ "reach" or "penalised": what `choose_penalty` deploys from a record's checks at this margin. The records read
    here all measured the reach check, i.e. the reach policy passed the rule's first two conditions; the margin
    moves only the third (`suite_bench.reach_passes`)."""
    threshold = penalty["rectifiers"][f"{penalty['reach_penalty']:g}"]["threshold_points"]
    return "reach" if suite_bench.reach_passes(penalty, threshold, margin) else "penalised"


def study(runs: list[dict], margins: list[float]) -> dict:
    """Per run, what each margin deploys and its env verdict; per margin, the means over the runs."""
    rows, summary = [], {}
    for run in runs:
        members = run["penalty_choice"]["reach_excess_members_points"]
        se = float(np.std(members, ddof=1) / np.sqrt(len(members))) if len(members) > 1 else None
        picks = {f"{z:g}": decide(run["penalty_choice"], z) for z in margins}
        rows.append(
            {
                **{k: run[k] for k in ("file", "dataset", "method", "seed", "reach", "penalised")},
                "reach_excess_points": run["penalty_choice"]["reach_excess_points"],
                "reach_excess_members_points": members,
                "reach_model_se_points": se,
                "deployed_at_margin": picks,
            }
        )
    for z in margins:
        chosen = [row[row["deployed_at_margin"][f"{z:g}"]] for row in rows]
        summary[f"{z:g}"] = {k: float(np.mean([c[k] for c in chosen])) if chosen else None for k in VERDICT}
    return {"margins": margins, "runs": rows, "mean_at_margin": summary}


def table(result: dict) -> str:
    """Markdown: one row per run (excess, members' standard error, both policies' verdicts, each margin's pick)."""
    margins = [f"{z:g}" for z in result["margins"]]
    head = "| run | excess (points) | model s.e. | reach policy | penalised policy | " + " | ".join(
        f"z={z}" for z in margins
    )
    lines = [head + " |", "|" + "---|" * (5 + len(margins))]

    def verdict(v: dict) -> str:
        shares = f"{100 * v['support_violation_rate']:.1f}% / {100 * v['state_violation_rate']:.1f}%"
        return f"{v['normalized_score']:.1f} ({shares})"

    for row in result["runs"]:
        name = f"{row['dataset'].split('/')[1]} {row['dataset'].split('/')[2][:-3]} {row['method']} s{row['seed']}"
        se = row["reach_model_se_points"]
        picks = " | ".join(row["deployed_at_margin"][z] for z in margins)
        lines.append(
            f"| {name} | {row['reach_excess_points']:+.2f} | {se:.2f} | {verdict(row['reach'])} | "
            f"{verdict(row['penalised'])} | {picks} |"
        )
    means = " | ".join(verdict(result["mean_at_margin"][z]) for z in margins)
    lines.append(f"| mean of the deployed | | | | | {means} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, nargs="+", default=DEFAULT_RESULTS)
    parser.add_argument("--margins", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0])
    parser.add_argument("--out", type=Path, default=suite_bench.RESULTS / "reach_margin.json")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        parser.error(f"--results: no such file {', '.join(missing)}; give the harness's result files")
    result = study(measured_runs(args.results), args.margins)
    if not result["runs"]:
        parser.error("--results: no record has per-member reach checks and both policies' env verdicts yet")
    suite_bench.write_study(result, args.out, "reach_margin.py", argv, table(result))


if __name__ == "__main__":
    main()
