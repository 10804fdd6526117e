"""How fast the support metric answers the drift check's question: is a state off the data?

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/support_speed.py \
        --run benchmarks/_work/full/spar_halfcheetah_medium-replay-v0/spar/seed2 \
        --policy benchmarks/_work/full/spar_halfcheetah_medium-replay-v0/bc/seed2/policy \
        --dataset spar/halfcheetah/medium-replay-v0 --seed 2

The queries are the states a finished `spar train` run's own drift check visits: the base policy and the
rectifier at alpha 1 (`--run`'s `rectifier` and `dynamics` folders), rolled from `--starts` dataset states for
100 model steps, as `drift.drift_check` does. Times `SupportMetric.violations` (a screen with SciPy's KD-tree,
then the exact search for what it leaves) against the exact search alone (`distances(...) > threshold`) on
the same queries, one thread, and checks that both give the same answers. Appends a row to
benchmarks/results/support_speed.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished spar train run folder (rectifier/, dynamics/)")
    parser.add_argument("--policy", required=True, help="the base policy it was trained around")
    parser.add_argument("--dataset", required=True, help="its Minari dataset")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (the rollouts' draws)")
    parser.add_argument("--starts", type=int, default=200, help="model rollouts per policy (100 steps each)")
    parser.add_argument("--out", default=str(RESULTS / "support_speed.json"))
    args = parser.parse_args()
    import numpy as np
    import torch

    from spar_rectify import RectifiedPolicy, load_policy
    from spar_rectify.data import load_minari
    from spar_rectify.drift import StateBox, load_or_fit, model_rollout, rollout_draws
    from spar_rectify.spaces import ActionScaler
    from spar_rectify.support import SCREEN_EPS, SupportMetric

    torch.set_num_threads(1)
    run = Path(args.run)
    if not (run / "dynamics").is_dir() or not (run / "rectifier").is_dir():
        parser.error(f"--run {run}: no rectifier/ and dynamics/ there; give a finished spar train run folder")
    data = load_minari(args.dataset)
    model = load_or_fit(data, run / "dynamics")
    base = load_policy(args.policy)  # an SB3 zip runs pickle: your own files only
    policies = {"base": base, "alpha 1": RectifiedPolicy(base, run / "rectifier", alpha=1.0, check_anchor=False)}
    first, picks = rollout_draws(data, model, args.starts, 100, args.seed)
    box, scaler = StateBox.of(data.observations), ActionScaler(data.action_space)
    queries = np.concatenate(
        [
            step.next_states.numpy()
            for policy in policies.values()
            for step in model_rollout(policy, first, picks, model, box, scaler)
        ]
    )
    start = time.perf_counter()
    metric = SupportMetric(data.observations.numpy())
    build = time.perf_counter() - start
    start = time.perf_counter()
    exact = metric.distances(queries) > metric.threshold
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    screened = metric.violations(queries)
    screened_s = time.perf_counter() - start
    row = {
        "run": str(run),
        "dataset": args.dataset,
        "state_dim": int(queries.shape[1]),
        "index_points": int(metric.index.n_samples_fit_),
        "sklearn_algorithm": metric.index._fit_method,
        "queries": int(len(queries)),
        "off_share": round(float(exact.mean()), 4),
        "build_s": round(build, 2),
        "exact_us_per_query": round(1e6 * exact_s / len(queries), 1),
        "screened_us_per_query": round(1e6 * screened_s / len(queries), 1),
        "speedup": round(exact_s / screened_s, 2),
        "screen_eps": SCREEN_EPS,
        "same_answers": bool(np.array_equal(exact, screened)),
    }
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    rows = [r for r in rows if r["run"] != row["run"]] + [row]
    out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print(json.dumps(row))
    if not row["same_answers"]:
        raise SystemExit("the screened and the exact search disagree: a bug in SupportMetric.violations")


if __name__ == "__main__":
    main()
