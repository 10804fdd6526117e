"""The README's table of where SPAR stands: today's-defaults records of the full tier, per dataset and method.

Usage:
    python benchmarks/where_spar_stands.py [--results benchmarks/results/suite_full.json]

Reads the harness's records (`suite_bench.py full` writes them), leaves out those trained at older defaults
(`suite_bench.stale`), and prints one markdown row per dataset of the suite: normalised score, mean ± std over the
seeds run, the share of executed (state, action) steps / of visited states beyond the data's 99th-percentile
nearest-neighbour distance, the seeds, and for the rectifiers the alpha each seed deployed (chosen offline; in the
"tuned" columns, the alpha `spar tune-alpha` picked on 10 episodes from seed 20000, of the rectifier it picked among
the same run's, marked † where that is not the deployed one). "not run": no record at today's defaults yet. A cell
with no record at today's defaults but records that differ from them only in the reach policy (one latent policy,
the defaults of sessions 14-20; marked ¹) and/or in the in-sample candidate (none, up to session 29; marked ²)
and/or in rho's cap where the record cannot say whether today's bound_lift would lift it (marked ³) shows those
(`earlier_marks`). A variant's record (`results/suite_full_<variant>.json`, trained with `--set` overrides) whose
training is today's defaults' all the same counts as a defaults record (`suite_bench.adopted`): bound_max=2 on data
where today's bound_lift=2 lifts the cap trains the same rho. No training, no env.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import suite_bench

COLUMNS = {
    "bc": "BC",
    "td3bc": "TD3+BC",
    "iql": "IQL",
    "spar": "SPAR (BC anchor)",
    "spar-tuned": "SPAR, tuned on episodes",
    "medium-raw": "SB3 medium raw",
    "medium-rectified": "SB3 medium rectified",
    "medium-rectified-tuned": "SB3 rectified, tuned on episodes",
}
#: Methods that deploy a rectifier (trained by SPAR, or the same run at a tuned alpha): their cells list the alphas.
RECTIFIERS = {m for m in COLUMNS if suite_bench.trained_algo(m) == "spar"}
#: The fields session 21's defaults changed: a second latent policy at kappa 0, deployed only around a weak anchor
#: and only when it does not leave the data more than the penalised policy.
REACH_FIELDS = frozenset({"lsi_reach_penalty", "reach_weak_anchor_only", "reach_check_horizon"})
#: The fields of session 30's defaults: the in-sample candidate (alone), deployed only where it passes a larger
#: alpha around a weak anchor and the critic clearly prefers it (the harness's own set).
CANDIDATE_FIELDS = suite_bench.CANDIDATE_FIELDS
#: The fields of rho's cap (bound_lift=2 the default since session 38): marked where the record cannot say whether
#: the cap is lifted on its data around its anchor (`suite_bench.same_rho`).
BOUND_FIELDS = suite_bench.BOUND_FIELDS
MARKS = (("¹", REACH_FIELDS), ("²", CANDIDATE_FIELDS), ("³", BOUND_FIELDS))
FOOTNOTES = {
    "¹": "¹ Trained at earlier defaults that differ from today's in the reach policy (these: one latent policy, "
    "sessions 14-20): today's defaults train that policy bit for bit and deploy it, at the same offline alpha, "
    "unless the critic rates the anchor below the data's value and the reach policy passes the drift checks; "
    "not yet rerun at today's defaults.",
    "²": "² Trained before the in-sample candidate was a default (sessions up to 29): today's defaults train mu and "
    "the reach policy bit for bit beside it and deploy the same rectifier unless the candidate passes a larger "
    "offline alpha around an anchor the critic rates below the data and the critic clearly prefers its actions "
    "(on hopper medium, seed 0, around BC and the SB3 policy, it kept LSI's); not yet rerun at today's defaults.",
    "³": "³ Trained before runs recorded what the residual bound's cap cut (session 37), around an anchor the probe "
    "(`benchmarks/bound_cap_share.py`) did not measure: today's bound_lift=2 trains the same rho unless the cap of 1 "
    "shortens over 5% of the data's rows and those rows come from better episodes (around the BC anchors the probe "
    "measured: 0-1.5% on hopper, 12% from worse episodes on HalfCheetah medium-replay; it lifts the cap only on the "
    "medium-expert data around the SB3 policy); not yet rerun at today's defaults.",
}


def earlier_marks(record: dict) -> str:
    """The footnote marks of a SPAR-trained record that differs from today's defaults (plus its overrides) only in
    REACH_FIELDS (¹), CANDIDATE_FIELDS (²) and BOUND_FIELDS where it cannot say whether today's cap is lifted (³,
    `suite_bench.bound_unknown`); "" for any other record (current, or stale otherwise)."""
    algo = suite_bench.trained_algo(record["method"])
    if algo != "spar" or "config" not in record or suite_bench.tuned_one_of_several(record):
        return ""  # (a tuned record that chose otherwise than today's tuner: not shown, whatever its training)
    changed = set(suite_bench.record_changes(record))
    if not changed or not changed <= REACH_FIELDS | CANDIDATE_FIELDS | BOUND_FIELDS:
        return ""
    if changed & BOUND_FIELDS and not suite_bench.bound_unknown(record):
        return ""  # the cap differs from today's: trained otherwise
    return " ".join(mark for mark, fields in MARKS if changed & fields)


#: The mark of a tuned record whose episodes picked another of the run's rectifiers than the deployed one.
OTHER = "†"
OTHER_NOTE = (
    f"{OTHER} `spar tune-alpha` picked another of the run's rectifiers than the one its offline checks deployed "
    "(the record's `tune.rectifier`: a latent policy the checks kept out), clearly better on the tuning episodes and "
    "no further off the data's support."
)


def picked_other(record: dict) -> str:
    """OTHER where a tuned record deploys another rectifier of its run than the offline checks did, else ""."""
    return OTHER if (record.get("tune") or {}).get("rectifier", "rectifier") != "rectifier" else ""


def cell(records: list[dict], method: str) -> str:
    """One table cell from the records of one (dataset, method)."""
    if not records:
        return "not run"
    records = sorted(records, key=lambda r: r["seed"])
    score = np.array([r["normalized_score"] for r in records])
    viol = 100 * np.mean([r["support_violation_rate"] for r in records])
    states = 100 * np.mean([r.get("state_violation_rate", float("nan")) for r in records])
    shares = f"{viol:.1f}% / {states:.1f}%"
    # The raw policy is deterministic and untrained: one evaluation stands for every seed, unless the seeds'
    # evaluations ran on other float paths (HalfCheetah's returns move with the rounding): then the spread shows.
    if method == "medium-raw" and score.std() < 0.05:
        return f"{score.mean():.1f} ({shares})"
    spread = f" ± {score.std():.1f}" if len(records) > 1 else ""
    seeds = ",".join(str(r["seed"]) for r in records)
    alphas = "; alpha " + "/".join(f"{r.get('alpha', 1.0):g}{picked_other(r)}" for r in records)
    alphas = alphas if method in RECTIFIERS else ""
    return f"{score.mean():.1f}{spread} ({shares}; seeds {seeds}{alphas})"


def table(records: list[dict]) -> str:
    """The markdown table of `records` (today's defaults; else, marked, those before the reach policy (¹) or the
    in-sample candidate (²) became defaults), one row per dataset of the full tier, and the footnotes of the marks
    shown."""
    cells = suite_bench.current_cells(records)
    used: set[str] = set()  # the marks the table shows: their footnotes follow it
    earlier: dict = {}
    for r in records:
        mark = earlier_marks(r)
        if mark:
            earlier.setdefault((r["dataset"], r["method"]), []).append((r, mark))

    def shown(dataset: str, method: str) -> str:
        current = {r["seed"] for r in cells.get((dataset, method), [])}
        # a seed with a current record (an adopted variant's, say) shows that one alone, not its older record beside it
        rows = [(r, mark) for r, mark in earlier.get((dataset, method), []) if r["seed"] not in current]
        if (dataset, method) in cells and rows and all(mark == "³" for _, mark in rows):
            # records that differ only where the record cannot say whether today's cap is lifted stand beside
            # today's (the lift applies only where the probe says so), marked
            used.add("³")
            return cell(cells[(dataset, method)] + [r for r, _ in rows], method) + " ³"
        if (dataset, method) in cells or not rows:
            return cell(cells.get((dataset, method), []), method)
        marks = {m for _, mark in rows for m in mark.split()}
        used.update(marks)
        return cell([r for r, _ in rows], method) + " " + " ".join(m for m in FOOTNOTES if m in marks)

    lines = ["| dataset | " + " | ".join(COLUMNS.values()) + " |", "|---|" + "---|" * len(COLUMNS)]
    for dataset in suite_bench.TIERS["full"]["datasets"]:
        name = dataset.removeprefix("spar/").removesuffix("-v0").replace("/", " ")
        lines.append(f"| {name} | " + " | ".join(shown(dataset, m) for m in COLUMNS) + " |")
    notes = [note for mark, note in FOOTNOTES.items() if mark in used]
    notes += [OTHER_NOTE] if any(OTHER in line for line in lines) else []
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=suite_bench.RESULTS / "suite_full.json")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        parser.error(f"--results {args.results}: no such file; run benchmarks/suite_bench.py full first")
    records = json.loads(args.results.read_text())["runs"]
    tier = suite_bench.TIERS["full"]
    print(table(records + suite_bench.adopted(suite_bench.variant_records(args.results), records, tier)))


if __name__ == "__main__":
    main()
