"""Which of a run's two latent policies should be deployed? Every committed 200k-step run whose records scored both
the reach policy and the penalised one in the env, with what was known offline, and what each deployment rule would
have scored. No training, no env: the records only (plus each dataset's episode returns).

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/reach_cases.py [--out benchmarks/results/reach_cases.json]

A SPAR run trains mu at the anchor penalty (the "penalised" policy, kappa 0.25) and the reach policy beside it
(kappa 0, `TrainConfig.lsi_reach_penalty`); `drift.choose_penalty` deploys one and the harness scores the other at its
own offline alpha (the record's `alternative`), so each such record holds both env scores of one training: a
counterfactual test bed for deployment rules. Where the in-sample candidate was deployed instead, the LSI policy's
score is the record's `rectifier-lsi` and the case is still counted (the rule under test picks between the two LSI
policies; the candidate's own test is another). Records of the same training in several result files are counted
once. The rules:

- `recorded`: what the run deployed (today's rule where the run trained today's defaults, column `today`: the record's
  config, without its variant's overrides, is today's defaults', `suite_bench.stale`);
- `penalised`, `reach`: always that policy, at its offline alpha;
- `eligible_any_anchor`: today's rule without `reach_weak_anchor_only` (the reach policy at offline alpha 1 and within
  the reach check's bar, whatever the critic says of the anchor);
- `critic`: the critic's clear preference (`benchmarks/reach_gain.py`'s rows; only where one was measured);
- `larger_gain`: the kit's `reach_rule="larger_gain"` (the recorded pick, or a kept-out reach policy at an offline
  alpha above 0 that the critic clearly prefers; only where that did not need an unmeasured critic).

Features printed beside each case: the critic's anchor advantage (< 0: it rates the anchor below the data's value),
the reach check's excess (points of model states off the data, reach minus penalised), whether the residual cap was
lifted, and `return_split`: the between-group share of the variance of the data's episode returns at the best split
into two groups (1: two tight groups, e.g. a medium and an expert policy's episodes; about 0.6 for one
bell-shaped group). Appends nothing: writes `--out` (the whole table, with the command) and beside it a PNG of each
case's two scores.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent
RESULTS = HERE / "results"
METHODS = ("spar", "medium-rectified")
STEPS = 200_000


def return_split(returns: np.ndarray) -> float:
    """The largest between-group share of the variance of `returns` (E,) over the splits into a lower and an upper
    group (Otsu's criterion): in [0, 1]; 0 where all returns are equal."""
    x = np.sort(np.asarray(returns, np.float64))
    total = x.var()
    if len(x) < 2 or total <= 0:
        return 0.0
    n = np.arange(1, len(x))
    low = np.cumsum(x)[:-1] / n
    high = (x.sum() - np.cumsum(x)[:-1]) / (len(x) - n)
    w = n / len(x)
    return float(np.max(w * (1 - w) * (low - high) ** 2) / total)


def both_scores(record: dict) -> dict | None:
    """The reach and the penalised policy's env scores and offline alphas of one record, or None where the record
    does not hold both."""
    choice, other = record.get("penalty_choice"), record.get("alternative")
    if not choice or not other or choice.get("reach_penalty") is None:
        return None
    reach_penalty = choice["reach_penalty"]
    reach_deployed = choice["deployed_penalty"] == reach_penalty
    in_sample = (record.get("in_sample_choice") or {}).get("deployed")
    if in_sample:
        lsi = record.get("rectifier-lsi")
        if lsi is None:
            return None
        deployed = {"score": lsi["normalized_score"], "alpha": lsi["alpha"], "state_off": lsi["state_violation_rate"]}
    else:
        deployed = {
            "score": record["normalized_score"],
            "alpha": record.get("alpha"),
            "state_off": record["state_violation_rate"],
        }
    kept_out = {"score": other["normalized_score"], "alpha": other["alpha"], "state_off": other["state_violation_rate"]}
    reach, penalised = (deployed, kept_out) if reach_deployed else (kept_out, deployed)
    return {
        "reach": reach,
        "penalised": penalised,
        "reach_deployed": reach_deployed,
        "in_sample_deployed": bool(in_sample),
    }


def eligible_any_anchor(record: dict) -> bool:
    """Today's `choose_penalty` without `reach_weak_anchor_only`: the reach policy's offline alpha is 1 and its reach
    check (where it ran) stays within the recorded bar."""
    choice = record["penalty_choice"]
    rectifiers = choice.get("rectifiers") or {}
    reach = next((v for k, v in rectifiers.items() if float(k) == float(choice["reach_penalty"])), {})
    if reach.get("alpha") != 1.0:
        return False
    excess = choice.get("reach_excess_points")
    if excess is None:
        return True
    bar = choice.get("reach_bar_points") or choice.get("threshold_points") or 2.0
    return excess <= bar


def cases() -> list[dict]:
    """One row per distinct training whose record holds both policies' scores."""
    import suite_bench

    out, seen = [], set()
    for path in sorted(glob.glob(str(RESULTS / "suite_full*.json"))):
        for record in json.loads(Path(path).read_text()).get("runs", []):
            if record["method"] not in METHODS or record.get("steps") != STEPS:
                continue
            both = both_scores(record)
            if both is None:
                continue
            key = (
                record["dataset"],
                record["method"],
                record["seed"],
                round(both["reach"]["score"], 3),
                round(both["penalised"]["score"], 3),
            )
            if key in seen:
                continue
            seen.add(key)
            plain = {k: v for k, v in record.items() if k not in ("overrides", "variant")}
            choice = record["penalty_choice"]
            out.append(
                {
                    "file": Path(path).name,
                    "dataset": record["dataset"],
                    "method": record["method"],
                    "seed": record["seed"],
                    "variant": record.get("variant"),
                    "today": not suite_bench.stale(plain),
                    **both,
                    "anchor_advantage": choice.get("anchor_advantage"),
                    "reach_excess_points": choice.get("reach_excess_points"),
                    "lifted": (record.get("bound_cap") or {}).get("lifted"),
                    "eligible_any_anchor": eligible_any_anchor(record),
                    "critic_prefers_reach": suite_bench.critic_prefers_reach(record),
                }
            )
    return out


def larger_gain(row: dict) -> bool | None:
    """`reach_rule="larger_gain"`'s pick: the reach policy where it was deployed, or where it was kept out at an
    offline alpha above 0 and the critic clearly prefers it; None where that needed the critic and none was asked."""
    if row["reach_deployed"]:
        return True
    if row["reach"]["alpha"] == 0:
        return False
    return row["critic_prefers_reach"]


#: The rules scored: row -> True (the reach policy), False (the penalised one) or None (not known for that row).
RULES = {
    "recorded": lambda r: r["reach_deployed"],
    "penalised": lambda r: False,
    "reach": lambda r: True,
    "eligible_any_anchor": lambda r: r["eligible_any_anchor"],
    "critic": lambda r: r["critic_prefers_reach"],
    "larger_gain": larger_gain,
}


def rule_scores(rows: list[dict]) -> dict[str, dict]:
    """Each rule's picks over the `rows` it decides: how many, their mean score, how often it picked the better
    policy (ties of under one point count for both), its total shortfall against the better one, in normalised
    points, and the mean and largest share of the picked policies' evaluation states beyond the data's state
    support."""
    out = {}
    for name, pick in RULES.items():
        scores, off, right, short = [], [], 0, 0.0
        for r in rows:
            if pick(r) is None:
                continue
            chosen = r["reach" if pick(r) else "penalised"]
            best = max(r["reach"]["score"], r["penalised"]["score"])
            scores.append(chosen["score"])
            off.append(chosen["state_off"])
            right += best - chosen["score"] < 1.0
            short += best - chosen["score"]
        if scores:
            out[name] = {
                "cases": len(scores),
                "mean": round(float(np.mean(scores)), 2),
                "better_or_tie": right,
                "shortfall": round(short, 1),
                "mean_state_off": round(float(np.mean(off)), 4),
                "worst_state_off": round(float(np.max(off)), 4),
            }
    return out


def plot(rows: list[dict], out: Path) -> Path:
    """Each case's penalised score (x) against its reach score (y), filled where it trains today's defaults, marked by
    the policy it deployed; above the diagonal the reach policy scored more. Written to `out` (PNG)."""
    from spar_rectify.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for deployed, marker, label in ((True, "^", "reach policy deployed"), (False, "o", "penalised policy deployed")):
        for today in (True, False):
            picked = [r for r in rows if r["reach_deployed"] == deployed and r["today"] == today]
            if picked:
                ax.scatter(
                    [r["penalised"]["score"] for r in picked],
                    [r["reach"]["score"] for r in picked],
                    marker=marker,
                    facecolors=("C0" if deployed else "C1") if today else "none",
                    edgecolors="C0" if deployed else "C1",
                    label=f"{label}{'' if today else ' (earlier defaults or a variant)'}",
                )
    low = min(min(r["reach"]["score"], r["penalised"]["score"]) for r in rows) - 5
    high = max(max(r["reach"]["score"], r["penalised"]["score"]) for r in rows) + 5
    ax.plot([low, high], [low, high], color="grey", lw=0.8)
    ax.set(xlim=(low, high), ylim=(low, high), xlabel="penalised policy (normalised score)")
    ax.set(ylabel="reach policy (normalised score)", title="Both latent policies of each 200k run, in the env")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    from spar_rectify.data import load_minari

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "reach_cases.json")
    args = parser.parse_args(argv)
    rows = cases()
    splits = {}
    for name in sorted({r["dataset"] for r in rows}):
        try:
            splits[name] = round(return_split(load_minari(name).episode_returns), 3)
        except Exception as exc:  # a dataset not built here: the column says so
            print(f"{name}: not loaded ({exc}); return_split left out", file=sys.stderr)
    head = f"{'dataset':34} {'method':16} {'s':>1} {'reach':>13} {'penalised':>13} {'dep':>5} {'adv':>6} {'excess':>6}"
    print(head + f" {'lift':>5} {'any':>4} {'critic':>6} {'split':>5} today")
    for r in rows:
        r["return_split"] = splits.get(r["dataset"])
        reach, pen = r["reach"], r["penalised"]
        adv = "" if r["anchor_advantage"] is None else f"{r['anchor_advantage']:.2f}"
        exc = "" if r["reach_excess_points"] is None else f"{r['reach_excess_points']:.2f}"
        critic = {None: "", True: "reach", False: "pen"}[r["critic_prefers_reach"]]
        print(
            f"{r['dataset']:34} {r['method']:16} {r['seed']:>1} {reach['score']:>6.1f} @{reach['alpha']:<5} "
            f"{pen['score']:>6.1f} @{pen['alpha']:<5} {'reach' if r['reach_deployed'] else 'pen':>5} {adv:>6} "
            f"{exc:>6} {str(r['lifted'])[:5]:>5} {'y' if r['eligible_any_anchor'] else 'n':>4} {critic:>6} "
            f"{'' if r['return_split'] is None else r['return_split']:>5} {'y' if r['today'] else 'n'}"
        )
    rules = {"all": rule_scores(rows), "today": rule_scores([r for r in rows if r["today"]])}
    for group, results in rules.items():
        for name, result in results.items():
            print(f"{group} cases, rule {name}: {result}")
    command = "python benchmarks/reach_cases.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    args.out.write_text(json.dumps({"command": command, "cases": rows, "rules": rules}, indent=1) + "\n")
    print(f"written to {args.out} and {plot(rows, args.out.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
