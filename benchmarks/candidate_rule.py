"""What each rule for deploying the in-sample candidate (`TrainConfig.in_sample_candidate`) would deploy.

Usage:
    python benchmarks/candidate_rule.py [--results benchmarks/results/suite_full*.json]

Reads the harness's records of rectifier runs that trained the in-sample candidate beside LSI's latent policies
(`in_sample_choice` in the record). Each such record carries both rectifiers' offline alphas (the larger of the
gated and the ungated check) and the env's verdict on both on the same seeded episodes: the deployed one's in the
record, the other's under `rectifier-insample` (the candidate, where LSI's went out) or `rectifier-lsi` (LSI's,
where the candidate went out). For each rule below it re-makes the decision from the recorded checks and reads the
env's verdict on what that rule deploys, with the same dataset's IQL records as the reference. No training, no env.
Writes benchmarks/results/candidate_rule.json.

Rules (the candidate replaces LSI's rectifier where ...):
    larger-gain    it passes a larger alpha than LSI's, around an anchor the critic rates below the data's value,
                   and the run's critic rates its deployed actions clearly above LSI's deployed ones (the record's
                   `in_sample_choice.gain`; TrainConfig.in_sample_rule "larger_gain", the default since session 30;
                   undecided on records without that comparison);
    larger-alpha   it passes a larger alpha than LSI's, around such an anchor (`drift.in_sample_replaces`,
                   in_sample_rule "larger_alpha", session 29's rule);
    lsi-at-zero    LSI's goes out at alpha 0, it passes a larger one, around such an anchor (in_sample_rule
                   "lsi_at_zero", session 28's rule, under which the records up to session 29 were deployed);
    always         it passes any alpha above 0;
    never          LSI's rectifier always goes out (training without the candidate).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import suite_bench

from spar_rectify.critic_gain import GainComparison
from spar_rectify.drift import in_sample_replaces

VERDICT = ("normalized_score", "support_violation_rate", "state_violation_rate")


def _larger_gain(lsi: float, own: float, advantage: float, gain: dict | None) -> bool | None:
    """in_sample_rule "larger_gain" from a record's checks: None where it needs the critic's comparison and the
    record (trained before session 30) lacks it."""
    try:
        return in_sample_replaces(lsi, own, advantage, "larger_gain", GainComparison(**gain) if gain else None)
    except ValueError:
        return None


RULES = {
    "larger-gain": _larger_gain,
    "larger-alpha": lambda lsi, own, advantage, gain: in_sample_replaces(lsi, own, advantage, "larger_alpha"),
    "lsi-at-zero": lambda lsi, own, advantage, gain: in_sample_replaces(lsi, own, advantage, "lsi_at_zero"),
    "always": lambda lsi, own, advantage, gain: own > 0.0,
    "never": lambda lsi, own, advantage, gain: False,
}


def candidate_runs(paths: list[Path]) -> list[dict]:
    """One row per record with an in-sample candidate: {"dataset", "method", "seed", "variant", "anchor_advantage",
    "lsi": {"alpha", **verdict}, "candidate": {"alpha", **verdict}, "recorded_deployed"}: the last what the run deployed
    under the rule of its day. A run recorded in two result
    files counts once."""
    rows, seen = [], set()
    for path in paths:
        for record in json.loads(path.read_text())["runs"]:
            saved = record.get("in_sample_choice")
            if saved is None:
                continue
            key = (record["dataset"], record["method"], record["seed"], record.get("variant"))
            if key in seen:
                continue
            seen.add(key)
            advantage = suite_bench.anchor_advantage(record)
            own = {"alpha": suite_bench.candidate_alpha(record)}
            lsi = {"alpha": float(saved["lsi_alpha"])}
            deployed = {k: float(record[k]) for k in VERDICT}
            other = record.get("rectifier-lsi") if saved["deployed"] else record.get("rectifier-insample")
            other = {k: float(other[k]) for k in VERDICT} if other else None
            (own if saved["deployed"] else lsi).update(deployed)
            if other is not None:
                (lsi if saved["deployed"] else own).update(other)
            rows.append(
                {
                    "dataset": record["dataset"],
                    "method": record["method"],
                    "seed": record["seed"],
                    "variant": record.get("variant"),
                    "anchor_advantage": advantage,
                    "gain": saved.get("gain"),
                    "lsi": lsi,
                    "candidate": own,
                    "recorded_deployed": bool(saved["deployed"]),
                }
            )
    return rows


def reference(paths: list[Path], method: str = "iql") -> dict:
    """{dataset: [normalised scores]} of `method`'s records (a baseline to read the rules against)."""
    out: dict[str, list[float]] = {}
    for path in paths:
        for record in json.loads(path.read_text())["runs"]:
            if record["method"] == method and not record.get("variant"):
                out.setdefault(record["dataset"], []).append(float(record["normalized_score"]))
    return out


def apply_rules(rows: list[dict]) -> dict:
    """{rule: {"runs": [{"seed", "dataset", "variant", "deployed": "lsi" | "candidate" | None, **verdict or None}],
    "mean_score" (every run), "mean_score_by_variant" (keyed "<variant> <dataset> <method>")}}.
    A rule that deploys a rectifier the env never measured, or that cannot decide from the record ("larger-gain" on
    a record without the critic's comparison: deployed None), leaves its score None (and the mean None)."""
    out = {}
    for name, rule in RULES.items():
        runs = []
        for row in rows:
            replaces = rule(row["lsi"]["alpha"], row["candidate"]["alpha"], row["anchor_advantage"], row.get("gain"))
            which = None if replaces is None else ("candidate" if replaces else "lsi")
            verdict = {k: row[which].get(k) if which else None for k in VERDICT}
            runs.append(
                {
                    "dataset": row["dataset"],
                    "method": row["method"],
                    "seed": row["seed"],
                    "variant": row["variant"],
                    "deployed": which,
                    "alpha": row[which]["alpha"] if which else None,
                    **verdict,
                }
            )
        scores = [r["normalized_score"] for r in runs]
        mean = None if any(s is None for s in scores) or not scores else float(np.mean(scores))
        by_variant = {}  # per variant, dataset and method: "<variant> <dataset> <method>"
        for key in sorted({f"{r['variant']} {r['dataset']} {r['method']}" for r in runs}):
            own = [r["normalized_score"] for r in runs if f"{r['variant']} {r['dataset']} {r['method']}" == key]
            by_variant[key] = None if any(x is None for x in own) else float(np.mean(own))
        out[name] = {"runs": runs, "mean_score": mean, "mean_score_by_variant": by_variant}
    return out


def main(argv: list[str] | None = None) -> dict:
    here = Path(__file__).parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", nargs="+", type=Path, default=sorted((here / "results").glob("suite_full*.json")))
    parser.add_argument("--out", type=Path, default=here / "results" / "candidate_rule.json")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        parser.error(f"--results: no such file {missing}; the harness writes benchmarks/results/suite_full*.json")
    rows = candidate_runs(args.results)
    if not rows:
        parser.error(
            "--results: no record trained the in-sample candidate (run suite_bench.py with --set in_sample_candidate=1)"
        )
    rules = apply_rules(rows)
    iql = reference(args.results)
    for name, result in rules.items():
        print(f"{name}:")
        for run in result["runs"]:
            score = "not measured" if run["normalized_score"] is None else f"{run['normalized_score']:.1f}"
            off = (
                ""
                if run["state_violation_rate"] is None
                else f" ({100 * run['state_violation_rate']:.1f}% of states off)"
            )
            where = f"{run['dataset']} {run['method']} ({run['variant']}) seed {run['seed']}"
            if run["deployed"] is None:
                print(f"  {where}: undecided (the record has no critic comparison: re-deploy the run)")
            else:
                print(f"  {where}: {run['deployed']} at alpha {run['alpha']:g}: {score}{off}")
        for variant, mean in result["mean_score_by_variant"].items():
            print(f"  mean ({variant}): {'n/a' if mean is None else f'{mean:.1f}'}")
    for dataset in sorted({r["dataset"] for r in rows}):
        if dataset in iql:
            print(f"IQL on {dataset}: {np.mean(iql[dataset]):.1f} over {len(iql[dataset])} seeds")
    out = {
        "runs": rows,
        "rules": rules,
        "iql": {d: iql[d] for d in sorted({r["dataset"] for r in rows}) if d in iql},
        "command": "python benchmarks/candidate_rule.py",
    }
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
