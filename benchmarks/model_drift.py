"""Does a rectifier drift off the data's states? Short rollouts in a dynamics model learned from the data.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/model_drift.py \
        --run benchmarks/_work/variant_s100k_k025d/full/spar_hopper_medium-v0/spar/seed0 \
        --dataset spar/hopper/medium-v0 --method spar --seed 0 --label k025

`offline_support.py` found that on the data's own states the rectified actions sit as close to the data as
the logged ones, whatever kappa (hopper medium, kappa 0.25: 0.6% against the anchor's 0.4%), while in the
env the same rectifier left the data's *states* on 14.5% of steps: the violations come from drift that
compounds over steps, which a one-step check cannot see. This probe looks for that drift without the env.

It fits an ensemble of `--members` MLPs to the data's transitions (standardised state change from
standardised state and normalised action; bootstrap batches; cached under `_work/dynamics/`), then rolls
the anchor and the deployed rectified policy (critic gate included) from the same `--starts` dataset
states for `--horizon` steps, each step through a random member (seeded, the same draws for both
policies), and reports per policy: the share of model states beyond the suite's state-support threshold
(averaged over the horizon, and at its last step) and the ensemble's disagreement (the mean per-dimension
std of the members' predictions, in the data's state stds). No env is stepped. With `--rollout-record`
the harness's env-measured numbers of the same run are copied in.

Appends one row per call to results/model_drift.json (with the command).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch: the MKL path)

HERE = Path(__file__).parent


def fit_dynamics(data, members: int, steps: int, seed: int, cache: Path):
    """An ensemble (members, B, obs_dim) of standardised state changes from (standardised state, action),
    and its validation error (MSE in units of the change's std, on 2% held-out transitions)."""
    import torch
    from safetensors.torch import load_file, save_file

    from spar_rectify.networks import EnsembleMLP

    obs, act, nxt = data.observations, data.actions, data.next_observations
    obs_mean, obs_std = obs.mean(0), obs.std(0).clamp_min(1e-3)
    delta = nxt - obs
    d_mean, d_std = delta.mean(0), delta.std(0).clamp_min(1e-6)
    inputs = torch.cat([(obs - obs_mean) / obs_std, act], 1)
    targets = (delta - d_mean) / d_std
    model = EnsembleMLP(members, inputs.shape[1], targets.shape[1], (200, 200, 200))
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(inputs), generator=g)
    val, train = order[: len(order) // 50], order[len(order) // 50 :]
    if cache.is_file():
        model.load_state_dict(load_file(cache))
    else:
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        start = time.perf_counter()
        for step in range(steps):
            idx = train[torch.randint(len(train), (members, 256), generator=g)]  # bootstrap batch per member
            loss = (model(inputs[idx]) - targets[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 5000 == 0:
                seconds = time.perf_counter() - start
                print(f"  dynamics step {step + 1}/{steps}: loss {loss.item():.4f} ({seconds:.0f} s)", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, cache)
    with torch.no_grad():
        val_mse = float((model(inputs[val]) - targets[val]).pow(2).mean())

    @torch.no_grad()
    def step_fn(states: torch.Tensor, actions: torch.Tensor, pick: torch.Tensor):
        """Next states (B, obs_dim) through member `pick` (B,), and the members' disagreement (B,)."""
        preds = model(torch.cat([(states - obs_mean) / obs_std, actions], 1)) * d_std + d_mean  # (M, B, obs)
        spread = (preds.std(0) / obs_std).mean(-1)
        return states + preds[pick, torch.arange(len(states))], spread

    return step_fn, val_mse


def main() -> None:
    import numpy as np
    import torch
    from suite_bench import SUITE, anchor_policy

    from spar_rectify import RectifiedPolicy
    from spar_rectify.data import load_minari
    from spar_rectify.spaces import ActionScaler
    from spar_rectify.support import SupportMetric

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished rectifier run folder (with rectifier/)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", default="spar", choices=("spar", "medium-rectified"))
    parser.add_argument("--seed", type=int, required=True, help="the run's training seed (finds its BC anchor)")
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--starts", type=int, default=1000, help="dataset states the rollouts start from")
    parser.add_argument("--horizon", type=int, default=25, help="model steps per rollout")
    parser.add_argument("--members", type=int, default=5, help="dynamics ensemble size")
    parser.add_argument("--model-steps", type=int, default=20000, help="gradient steps fitting the ensemble")
    parser.add_argument("--label", default="", help="a name for the run in the results (e.g. its kappa)")
    parser.add_argument("--rollout-record", default=None, help="a results JSON whose record of this run to copy in")
    args = parser.parse_args()
    minimums = (("--starts", args.starts, 10), ("--horizon", args.horizon, 1), ("--members", args.members, 2))
    for flag, value, low in minimums:
        if value < low:
            parser.error(f"{flag} {value}: use at least {low}")
    torch.set_num_threads(1)

    run = Path(args.run)
    if not (run / "rectifier").is_dir():
        parser.error(f"--run {run}: no rectifier/ folder there; pass a finished rectifier run folder")
    data = load_minari(args.dataset)
    slug = args.dataset.replace("/", "_")
    cache = HERE / "_work" / "dynamics" / f"{slug}_m{args.members}_s{args.model_steps}.safetensors"
    step_fn, val_mse = fit_dynamics(data, args.members, args.model_steps, 0, cache)
    print(f"dynamics: validation MSE {val_mse:.4f} (units of the state change's std)")

    anchor = anchor_policy(run.parent.parent, args.dataset, args.method, args.seed, args.suite or SUITE)
    rectified = RectifiedPolicy(anchor, run / "rectifier", check_anchor=False)
    scaler = ActionScaler(data.action_space)
    states_metric = SupportMetric(data.observations.numpy())
    low = data.observations.min(0).values
    high = data.observations.max(0).values
    span = high - low

    g = torch.Generator().manual_seed(0)
    live = torch.nonzero(data.terminations == 0).squeeze(1)
    start = data.observations[live[torch.randint(len(live), (args.starts,), generator=g)]]
    picks = torch.randint(args.members, (args.horizon, args.starts), generator=g)

    def rollout(policy) -> dict:
        s = start.clone()
        viol, spread = [], []
        for t in range(args.horizon):
            a_env = policy(s.numpy())
            a = torch.as_tensor(np.clip(scaler.to_normalized(a_env), -1, 1), dtype=torch.float32)
            s, d = step_fn(s, a, picks[t])
            s = torch.maximum(torch.minimum(s, high + span), low - span)  # a diverging model stays finite
            viol.append(states_metric.violations(s.numpy()).mean())
            spread.append(float(d.mean()))
        return {
            "state_violation_rate": float(np.mean(viol)),
            "state_violation_last": float(viol[-1]),
            "disagreement": float(np.mean(spread)),
            "per_step_violation": [round(float(v), 4) for v in viol],
        }

    row = {
        "run": str(run),
        "label": args.label,
        "dataset": args.dataset,
        "method": args.method,
        "seed": args.seed,
        "starts": args.starts,
        "horizon": args.horizon,
        "members": args.members,
        "model_steps": args.model_steps,
        "model_val_mse": val_mse,
        "anchor": rollout(anchor),
        "rectified": rollout(rectified),
        "config": json.loads((run / "config.json").read_text()),
    }
    if args.rollout_record:
        runs = json.loads(Path(args.rollout_record).read_text())["runs"]
        match = [
            r
            for r in runs
            if (r["dataset"], r["method"], r["seed"]) == (args.dataset, args.method, args.seed)
            and r.get("config", {}).get("steps") == row["config"]["steps"]
        ]
        if match:
            row["rollout"] = {
                k: match[-1].get(k) for k in ("normalized_score", "support_violation_rate", "state_violation_rate")
            }
    row["command"] = "python benchmarks/model_drift.py " + " ".join(os.sys.argv[1:])
    a, r = row["anchor"], row["rectified"]
    print(
        f"{args.label or run}: model state violations anchor {100 * a['state_violation_rate']:.1f}% "
        f"(last {100 * a['state_violation_last']:.1f}%, disagreement {a['disagreement']:.3f})  rectified "
        f"{100 * r['state_violation_rate']:.1f}% (last {100 * r['state_violation_last']:.1f}%, disagreement "
        f"{r['disagreement']:.3f})  env {row.get('rollout')}",
        flush=True,
    )
    out = HERE / "results" / "model_drift.json"
    records = json.loads(out.read_text()) if out.exists() else []
    records.append(row)
    out.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
