"""What does SPAR's own critic think of its residual? Q along the line from the base action to the
rectified one, on the states the rectified policy visits and on dataset states.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/critic_probe.py \
        --run benchmarks/_work/full/spar_hopper_medium-replay-v0/medium-rectified/seed2 \
        --dataset spar/hopper/medium-replay-v0 --method medium-rectified --seed 2

For each state s with base action a_b and decoded residual r (normalised units) it evaluates the
trained critic (target twin Q, scaled rewards) at a_b + alpha * r for each `--alphas`:
`q_min` (what LSI maximises), the twin disagreement `|Q1 - Q2|`, and how often alpha beats 0.
Alongside, the measured return of the rectified policy at each alpha on the usual seeded episodes
(seed 10000..). If the critic ranks alpha = 1 first where the return says otherwise, the critic
(or the search that exploits it) is what overshoots; if the twin disagreement grows with alpha,
a pessimistic gate has something to work with.
Writes results/critic_probe_<env>_<kind>_<method>_seed<seed>.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent


def main() -> None:
    import numpy as np
    import torch
    from suite_bench import EVAL_SEED, SUITE, anchor_policy, rollouts

    from spar_rectify import RectifiedPolicy
    from spar_rectify.config import TrainConfig
    from spar_rectify.data import load_minari
    from spar_rectify.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished rectifier run folder (checkpoint/ and rectifier/)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--method", default="medium-rectified", choices=("spar", "medium-rectified"))
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--data-states", type=int, default=4096)
    parser.add_argument("--gate", action="store_true", help="also roll out the critic-gated policy at each alpha")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    run = Path(args.run)
    data = load_minari(args.dataset)
    anchor = anchor_policy(run.parent.parent, args.dataset, args.method, args.seed, args.suite or SUITE)
    config = TrainConfig.load(run / "config.json")
    trainer = Trainer(config, data, anchor, run)
    trainer.load_state(run / "checkpoint")
    algo = trainer.algo
    critic, rect = algo.critic, algo.rect

    @torch.no_grad()
    def probe(obs_env: np.ndarray) -> dict:
        """Per alpha: mean q_min, mean |Q1 - Q2|, share of states where alpha beats alpha 0."""
        obs = torch.as_tensor(obs_env, dtype=torch.float32)
        obs_n = (obs - torch.from_numpy(trainer.obs_mean)) / torch.from_numpy(trainer.obs_std)
        base = torch.as_tensor(data_scaler.to_normalized_clipped(anchor(obs_env)), dtype=torch.float32)
        residual = rect(obs, base)
        out, q0 = {}, None
        for alpha in args.alphas:
            action = (base + alpha * residual).clamp(-1, 1)
            q = critic.q_target(torch.cat([obs_n, action], -1)).squeeze(-1)  # (2, B)
            q_min = q.min(0).values
            if q0 is None:
                q0 = q_min
            out[str(alpha)] = {
                "q_min": float(q_min.mean()),
                "twin_gap": float((q[0] - q[1]).abs().mean()),
                "beats_alpha0": float((q_min > q0 + 1e-6).float().mean()),
                "q_min_minus_alpha0": float((q_min - q0).mean()),
            }
        out["residual_abs_mean"] = float(residual.abs().mean())
        return out

    from spar_rectify.spaces import ActionScaler

    data_scaler = ActionScaler(data.action_space)
    env_id = data.env_spec.id
    held = {"steps": 0, "held": 0}
    # The deployed gate itself: the checkpoint `Trainer.export` would write (with the target twin
    # critic attached, also for runs exported before the gate existed), through the compiled kernel.
    exported = trainer.algo.checkpoint(trainer.deployment())

    def gated(alpha: float):
        """The rectified policy with the critic gate on, counting the steps where it held back."""
        policy = RectifiedPolicy(anchor, exported, alpha=alpha, gate=True, check_anchor=False)

        def act(obs_env: np.ndarray) -> np.ndarray:
            c = policy.correct(obs_env)
            held["steps"] += len(c.gate_held)
            held["held"] += int(c.gate_held.sum())
            return c.executed_action

        return act

    returns, visited = {}, None
    for alpha in args.alphas:
        policy = anchor if alpha == 0 else RectifiedPolicy(anchor, run / "rectifier", alpha=alpha, gate=False)
        ret, obs, _ = rollouts(policy, env_id, args.episodes)
        returns[str(alpha)] = {
            "return": float(ret.mean()),
            "normalized_score": float(data.normalized_score(ret.mean())),
            "return_std": float(ret.std()),
        }
        if alpha == 1.0:
            visited = obs
        if args.gate and alpha > 0:
            held.update(steps=0, held=0)
            ret, _, _ = rollouts(gated(alpha), env_id, args.episodes)
            returns[str(alpha)]["gated"] = {
                "normalized_score": float(data.normalized_score(ret.mean())),
                "return": float(ret.mean()),
                "held_back": round(held["held"] / max(held["steps"], 1), 3),
            }
    rng = np.random.default_rng(0)
    idx = rng.choice(len(data), min(args.data_states, len(data)), replace=False)
    result = {
        "run": str(run),
        "dataset": args.dataset,
        "method": args.method,
        "seed": args.seed,
        "eval_seed": EVAL_SEED,
        "episodes": args.episodes,
        "alphas": args.alphas,
        "returns": returns,
        "critic_on_visited_states": probe(visited) if visited is not None else None,
        "critic_on_dataset_states": probe(data.observations[idx].numpy()),
        "command": "python benchmarks/critic_probe.py " + " ".join(os.sys.argv[1:]),
    }
    env, kind = args.dataset.split("/")[1], args.dataset.split("/")[2].removesuffix("-v0")
    out = (
        Path(args.out)
        if args.out
        else HERE / "results" / f"critic_probe_{env}_{kind}_{args.method}_seed{args.seed}.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{'alpha':>6} {'score':>7} | visited: {'q_min':>8} {'gap':>6} {'beats0':>6} | data: {'q_min':>8} {'gap':>6} "
        f"{'beats0':>6}"
    )
    for alpha in args.alphas:
        a, v, d = str(alpha), result["critic_on_visited_states"] or {}, result["critic_on_dataset_states"]
        vv = v.get(a, {"q_min": float("nan"), "twin_gap": float("nan"), "beats_alpha0": float("nan")})
        g = returns[a].get("gated")
        gate = f" | gated {g['normalized_score']:5.1f} (held back {100 * g['held_back']:.0f}%)" if g else ""
        print(
            f"{alpha:6.2f} {returns[a]['normalized_score']:7.1f} | {vv['q_min']:17.2f} {vv['twin_gap']:6.3f} "
            f"{vv['beats_alpha0']:6.2f} | {d[a]['q_min']:14.2f} {d[a]['twin_gap']:6.3f} {d[a]['beats_alpha0']:6.2f}"
            + gate
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
