"""What each alpha-check allowance for the model's spread (`TrainConfig.alpha_model_margin`) would deploy.

Usage:
    python benchmarks/alpha_margin.py [--results benchmarks/results/suite_full*.json] [--margins 0 1 2 3]

Reads the harness's records (`suite_bench.py full` writes them) of rectifier runs whose offline alpha check rolled
every alpha through each dynamics member alone (`excess_members_points`, recorded on every run since session 25),
and the alpha sweeps (`alpha_sweep.py`, which evaluates a run's rectifier in the env at several alphas) that belong
to those runs. For every margin z it re-makes the run's offline decisions from the recorded checks by the kit's own
rules: each latent policy's offline alpha (`AlphaChoice.offline_alpha`: the largest alpha whose excess is within
drift_threshold + z standard errors of its members) and, for a run with the reach policy, which policy goes out
(`drift.reach_eligible`, then the recorded reach check at the run's own reach_model_margin). It then reads the env's
verdict on that (policy, alpha): from the record where the run deployed it, from a sweep of that policy otherwise,
from the anchor's own record at alpha 0. Where none measured it (or the reach check never ran), the row says so.
No training, no env. Writes benchmarks/results/alpha_margin.json.

A sweep belongs to a record when it is of the same (dataset, method, seed) and carries the same offline checks
(`auto_alpha`): a run folder retrained under the same name makes other checks. Records deployed ungated
(`TrainConfig.gate_check`) are left out: the alpha check studied here is the gated policy's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import suite_bench

from spar_rectify.drift import AlphaChoice, reach_eligible

VERDICT = ("normalized_score", "support_violation_rate", "state_violation_rate")
#: The record of a rectifier's anchor alone (alpha 0), by the rectifier's harness method.
ANCHOR_METHOD = {"spar": "bc", "medium-rectified": "medium-raw"}


def _verdict(row: dict) -> dict:
    return {k: float(row[k]) for k in VERDICT}


def _check(record: dict, penalty: float | None) -> dict:
    """The alpha check of the rectifier trained at lsi_anchor_penalty `penalty` (None: the deployed one)."""
    choice = record.get("penalty_choice")
    if penalty is None or not choice:
        return record["auto_alpha"]
    return choice["rectifiers"][f"{penalty:g}"]


def measured_runs(paths: list[Path], sweep_paths: list[Path]) -> list[dict]:
    """Records whose deployed rectifier's alpha check has per-member excesses, each with the env verdicts known for
    its (policy, alpha) pairs: {"deployed" | "alternative": {alpha: verdict}}, and the anchor's at alpha 0. A run
    re-deployed into a second result file counts once (the first file's record)."""
    records, anchors, seen = [], {}, set()
    for path in paths:
        for record in json.loads(path.read_text())["runs"]:
            key = (record["dataset"], record["method"], record["seed"])
            anchors.setdefault(key, record)
            check = record.get("auto_alpha")
            if not check or not check.get("excess_members_points") or record.get("gate") is False:
                continue  # an ungated deployment (gate_check) is not what its gated alpha check chose
            ident = (*key, json.dumps(check, sort_keys=True))
            if ident not in seen:
                seen.add(ident)
                records.append((path, record))
    sweeps = [json.loads(p.read_text()) for p in sweep_paths]
    runs = []
    for path, record in records:
        known = {"deployed": {float(record["alpha"]): _verdict(record)}, "alternative": {}}
        if record.get("alternative"):
            known["alternative"][float(record["alternative"]["alpha"])] = _verdict(record["alternative"])
        for sweep in sweeps:
            same_run = sweep.get("auto_alpha") == record["auto_alpha"]
            if same_run and (sweep["dataset"], sweep["method"], sweep["seed"]) == (
                record["dataset"],
                record["method"],
                record["seed"],
            ):
                for row in sweep["rows"]:
                    known[sweep.get("which", "deployed")].setdefault(float(row["alpha"]), _verdict(row))
        anchor = anchors.get((record["dataset"], ANCHOR_METHOD.get(record["method"], ""), record["seed"]))
        runs.append(
            {
                "file": path.name,
                "record": record,
                "known": known,
                "anchor": _verdict(anchor) if anchor else None,
            }
        )
    return runs


def decide(record: dict, margin: float) -> tuple[str, float | None]:
    """("deployed" | "alternative" | "unknown", alpha) that the run's checks give at alpha_model_margin `margin`:
    the latent policy by `choose_penalty`'s rule (with the reach policy) and its offline alpha. "unknown" where
    the reach policy becomes eligible but its reach check never ran; alpha None where a check lacks members."""
    choice = record.get("penalty_choice")
    if not choice:
        return "deployed", suite_bench.alpha_at_margin(record["auto_alpha"], margin)
    reach, deployed = choice["reach_penalty"], choice["deployed_penalty"]
    other = next(float(k) for k in choice["rectifiers"] if float(k) != reach)
    reach_alpha = suite_bench.alpha_at_margin(_check(record, reach), margin)
    if reach_alpha is None:
        return "unknown", None
    eligible = reach_eligible(
        AlphaChoice(reach_alpha, {}, 0.0, None), choice.get("anchor_advantage"), choice.get("weak_anchor_only", False)
    )
    if eligible and choice.get("reach_excess_points") is None:
        return "unknown", None  # the reach check would run at this margin; it never did
    threshold = choice["rectifiers"][f"{reach:g}"]["threshold_points"]
    passes = not eligible or suite_bench.reach_passes(choice, threshold, choice.get("reach_model_margin", 0.0))
    penalty = reach if eligible and passes else other
    which = "deployed" if penalty == deployed else "alternative"
    return which, suite_bench.alpha_at_margin(_check(record, penalty), margin)


def study(runs: list[dict], margins: list[float]) -> dict:
    """Per run, what each margin deploys and the env's verdict on it (None where not measured); per margin, the
    means over the runs where every margin's pick has a verdict."""
    rows = []
    for run in runs:
        record, picks = run["record"], {}
        for z in margins:
            which, alpha = decide(record, z)
            verdict = None
            if alpha == 0.0:
                verdict = run["anchor"]
            elif which in run["known"] and alpha is not None:
                verdict = run["known"][which].get(alpha)
            picks[f"{z:g}"] = {"policy": which, "alpha": alpha, "verdict": verdict}
        check = record["auto_alpha"]
        rows.append(
            {
                "file": run["file"],
                "dataset": record["dataset"],
                "method": record["method"],
                "seed": record["seed"],
                "overrides": record.get("overrides", {}),
                "excess_points": check["excess_points"],
                "model_se_points": {
                    a: AlphaChoice(0.0, {}, 0.0, None, {1.0: tuple(x for x in m if x is not None)}).model_se(1.0)
                    for a, m in check["excess_members_points"].items()
                },
                "deployed_at_margin": picks,
            }
        )
    complete = [r for r in rows if all(p["verdict"] for p in r["deployed_at_margin"].values())]
    summary = {
        f"{z:g}": {
            k: float(np.mean([r["deployed_at_margin"][f"{z:g}"]["verdict"][k] for r in complete])) for k in VERDICT
        }
        if complete
        else None
        for z in margins
    }
    return {"margins": margins, "runs": rows, "runs_in_means": len(complete), "mean_at_margin": summary}


def table(result: dict) -> str:
    """Markdown: one row per run (the deployed policy's excess at alpha 1 and its members' s.e., then each margin's
    pick and the env's verdict on it)."""
    margins = [f"{z:g}" for z in result["margins"]]
    lines = ["| run | excess at 1 (s.e.) | " + " | ".join(f"z={z}" for z in margins) + " |"]
    lines.append("|" + "---|" * (2 + len(margins)))

    def shown(pick: dict) -> str:
        alpha = "?" if pick["alpha"] is None else f"{pick['alpha']:g}"
        head = f"{'alt. ' if pick['policy'] == 'alternative' else ''}alpha {alpha}"
        if pick["policy"] == "unknown":
            return "reach check not run"
        v = pick["verdict"]
        if v is None:
            return f"{head}: not measured"
        shares = f"{100 * v['support_violation_rate']:.1f}% / {100 * v['state_violation_rate']:.1f}%"
        return f"{head}: {v['normalized_score']:.1f} ({shares})"

    for row in result["runs"]:
        env, kind = row["dataset"].split("/")[1], row["dataset"].split("/")[2][:-3]
        name = f"{env} {kind} {row['method']} s{row['seed']}" + "".join(
            f" {k}={v}" for k, v in row["overrides"].items()
        )
        se = row["model_se_points"].get("1")
        excess = f"{row['excess_points']['1']:+.2f} ({'-' if se is None else f'{se:.2f}'})"
        lines.append(
            f"| {name} | {excess} | " + " | ".join(shown(row["deployed_at_margin"][z]) for z in margins) + " |"
        )
    means = result["mean_at_margin"]
    if result["runs_in_means"]:
        cells = " | ".join(f"{means[z]['normalized_score']:.1f}" for z in margins)
        lines.append(f"| mean score over the {result['runs_in_means']} runs measured at every margin | | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    results = sorted(suite_bench.RESULTS.glob("suite_full*.json"))
    parser.add_argument("--results", type=Path, nargs="+", default=results)
    parser.add_argument(
        "--sweeps", type=Path, nargs="+", default=sorted(suite_bench.RESULTS.glob("alpha_sweep_*.json"))
    )
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--out", type=Path, default=suite_bench.RESULTS / "alpha_margin.json")
    args = parser.parse_args(argv)
    for flag, paths in (("--results", args.results), ("--sweeps", args.sweeps)):
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            parser.error(f"{flag}: no such file {', '.join(missing)}")
    bad = [z for z in args.margins if not np.isfinite(z)]
    if bad:
        parser.error(f"--margins {bad[0]}: give finite numbers of standard errors (0: the threshold alone)")
    result = study(measured_runs(args.results, args.sweeps), args.margins)
    if not result["runs"]:
        parser.error("--results: no record's alpha check has per-member excesses yet (runs since session 25 do)")
    suite_bench.write_study(result, args.out, "alpha_margin.py", argv, table(result))


if __name__ == "__main__":
    main()
