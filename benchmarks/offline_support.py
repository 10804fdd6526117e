"""Can the data alone tell how far a rectifier may travel? The support metric on the data's own states.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/offline_support.py \
        --run benchmarks/_work/variant_s100k_k025d/full/spar_hopper_medium-v0/spar/seed0 \
        --dataset spar/hopper/medium-v0 --method spar --seed 0 --label k025

The suite's support metric is measured on the states a policy visits in the env: it needs episodes. This
probe asks the same question offline. It holds out `--probe` dataset states, builds the suite's k-NN
metric on (state, action) pairs from the rest of the data, and reports, on the held-out states, the
violation rate and median distance ratio of
- the logged actions (what the data itself scores against its own neighbours: the floor),
- the anchor's actions (the base policy the rectifier wraps),
- the rectified actions as deployed (the critic gate included), and their share of gated states,
plus the mean distance between rectified and anchor actions (normalised units). A rule that picks the
penalty kappa offline would read the rectified rate against the anchor's. With `--rollout-record`,
the harness's env-measured violations of the same run are copied in for comparison.

Appends one row per call to results/offline_support.json (with the command).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch: the MKL path)

HERE = Path(__file__).parent


def main() -> None:
    import numpy as np
    import torch
    from suite_bench import add_run_probe_arguments, append_result, probe_row, probed_run

    from spar_rectify import RectifiedPolicy
    from spar_rectify.data import load_minari
    from spar_rectify.spaces import ActionScaler
    from spar_rectify.support import SupportMetric

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_probe_arguments(parser)
    parser.add_argument("--probe", type=int, default=5000, help="held-out dataset states to query")
    args = parser.parse_args()
    if args.probe < 100:
        parser.error(f"--probe {args.probe}: use at least 100 held-out states")
    torch.set_num_threads(1)

    run, anchor = probed_run(parser, args)
    data = load_minari(args.dataset)
    policy = RectifiedPolicy(anchor, run / "rectifier", check_anchor=False)
    scaler = ActionScaler(data.action_space)

    obs, act = data.observations.numpy(), data.actions.numpy()
    rng = np.random.default_rng(12345)
    held = np.zeros(len(obs), bool)
    held[rng.choice(len(obs), min(args.probe, len(obs) // 10), replace=False)] = True
    metric = SupportMetric(obs[~held], act[~held])
    probe_obs = obs[held].astype(np.float32)

    correction = policy.correct(probe_obs)
    base = scaler.to_normalized_clipped(correction.base_action)
    rect = scaler.to_normalized_clipped(correction.executed_action)

    def rates(actions: np.ndarray) -> dict[str, float]:
        report = metric.report(probe_obs, actions)
        return {"violation_rate": report["support_violation_rate"], "ratio_median": report["support_ratio_median"]}

    row = probe_row(
        args,
        run,
        "offline_support.py",
        probe_states=int(held.sum()),
        logged=rates(np.clip(act[held], -1, 1)),
        anchor=rates(base),
        rectified=rates(rect),
        gated_share=float(np.mean(correction.gate_held)),
        mean_shift=float(np.linalg.norm(rect - base, axis=1).mean()),
    )
    print(
        f"{args.label or run}: logged {100 * row['logged']['violation_rate']:.1f}%  anchor "
        f"{100 * row['anchor']['violation_rate']:.1f}%  rectified {100 * row['rectified']['violation_rate']:.1f}% "
        f"(ratio {row['rectified']['ratio_median']:.2f} vs anchor {row['anchor']['ratio_median']:.2f}, shift "
        f"{row['mean_shift']:.3f}, gated {100 * row['gated_share']:.0f}%)  rollout {row.get('rollout')}",
        flush=True,
    )
    append_result(HERE / "results" / "offline_support.json", row)


if __name__ == "__main__":
    main()
