"""Which per-state deployment rule makes a trained rectifier pay? Rolls out one trained rectifier
under several rules that pick, at every step, how much of the residual to execute from the
rectifier's own pessimistic critic (min of its twin target Q), without any tuning episodes.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/gate_study.py \
        --run benchmarks/_work/full/spar_hopper_medium-replay-v0/medium-rectified/seed2 \
        --dataset spar/hopper/medium-replay-v0 --method medium-rectified --seed 2

Rules (each a set of residual scales alpha the critic chooses from, per state, by argmax of
min(Q1, Q2)(s, clip(a_b + alpha * r))):
- `full`: {1} (no gate: the full residual);
- `gate`: {0, 1} (the kit's default gate: the residual or the base action);
- `agree`: {0, 1}, the residual only where *each* critic head scores it above the base action;
- `line3`: {0, 0.5, 1};
- `line5`: {0, 0.25, 0.5, 0.75, 1}.
Scores on the harness's seeded episodes (seed 10000..), the share of steps at each alpha, and the
support metric of the executed (state, action) pairs. Appends to results/gate_study.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch: the MKL path)

HERE = Path(__file__).parent
RULES = {
    "full": (1.0,),
    "gate": (0.0, 1.0),
    "agree": (0.0, 1.0),
    "line3": (0.0, 0.5, 1.0),
    "line5": (0.0, 0.25, 0.5, 0.75, 1.0),
}


def main() -> None:
    import numpy as np
    import torch
    from suite_bench import EVAL_SEED, SUITE, SuiteSupport, anchor_policy, append_result, rollouts

    from spar_rectify.checkpoint import load_rectifier
    from spar_rectify.data import load_minari
    from spar_rectify.spaces import ActionScaler

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished rectifier run folder (with rectifier/)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--method", default="medium-rectified", choices=("spar", "medium-rectified"))
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--label", default="", help="a name for the run in the results (e.g. its variant)")
    parser.add_argument(
        "--region-width",
        type=float,
        default=None,
        help="evaluation-only probe: clip mu's latent to each state's search region with half-width W "
        "(SPAR.search_region; needs a run trained with latent_search=conditional; loads its training checkpoint)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    run = Path(args.run)
    data = load_minari(args.dataset)
    anchor = anchor_policy(run.parent.parent, args.dataset, args.method, args.seed, args.suite or SUITE)
    ckpt = load_rectifier(run / "rectifier")
    algo = None
    if ckpt.rectifier.critic is None or args.region_width is not None:  # the training state is needed
        from spar_rectify.config import TrainConfig
        from spar_rectify.trainer import Trainer

        trainer = Trainer(TrainConfig.load(run / "config.json"), data, anchor, run)
        trainer.load_state(run / "checkpoint")
        algo = trainer.algo
        ckpt = algo.checkpoint(trainer.deployment())
        if args.region_width is not None and getattr(algo, "prior", None) is None:
            parser.error(f"--region-width needs a run trained with latent_search=conditional; {run} was not")
    rect = ckpt.rectifier

    def residual_of(obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        if args.region_width is None:
            return rect(obs, base)
        x = rect.inputs(obs, base)
        low, high = algo.search_region(x, args.region_width)
        z = torch.maximum(torch.minimum(rect.latent(x), high), low)
        return rect.decode(x, z.clamp(-rect.latent_box, rect.latent_box))

    scaler = ActionScaler(ckpt.action_space)
    support = SuiteSupport(data)

    def policy_for(alphas: tuple[float, ...], counts: np.ndarray, agree: bool = False):
        scales = torch.tensor(alphas, dtype=torch.float32)

        @torch.no_grad()
        def act(obs_env: np.ndarray) -> np.ndarray:
            obs = torch.as_tensor(obs_env, dtype=torch.float32)
            base = torch.as_tensor(scaler.to_normalized_clipped(anchor(obs_env)), dtype=torch.float32)
            residual = residual_of(obs, base)  # (B, A)
            b, k = obs.shape[0], len(alphas)
            cands = (base.unsqueeze(1) + scales.view(1, k, 1) * residual.unsqueeze(1)).clamp(-1, 1)  # (B, K, A)
            if k == 1:
                pick = torch.zeros(b, dtype=torch.long)
            elif agree:  # both heads must prefer the residual: Q_i(s, a_b + r) > Q_i(s, a_b) for i = 1, 2
                obs_n = (obs - rect.obs_mean) / rect.obs_std
                heads = rect.critic(torch.cat([obs_n.repeat_interleave(k, 0), cands.reshape(b * k, -1)], -1))
                heads = heads.view(2, b, k)
                gains = heads[..., 1] - heads[..., 0]
                pick = (gains > 0).all(0).long()
            else:
                q = rect.q_min(obs.repeat_interleave(k, 0), cands.reshape(b * k, -1)).view(b, k)
                pick = q.argmax(-1)
            np.add.at(counts, pick.numpy(), 1)
            chosen = cands[torch.arange(b), pick]
            return scaler.to_env(chosen.numpy())

        return act

    results = {}
    rect.eval()
    for rule in args.rules:
        alphas = RULES[rule]
        counts = np.zeros(len(alphas), np.int64)
        start = time.perf_counter()
        ret, obs, act = rollouts(policy_for(alphas, counts, rule == "agree"), data.env_spec.id, args.episodes)
        sup = support.report(obs, act)
        results[rule] = {
            "alphas": list(alphas),
            "normalized_score": float(data.normalized_score(ret.mean())),
            "return": float(ret.mean()),
            "return_std": float(ret.std()),
            "share_per_alpha": (counts / max(counts.sum(), 1)).round(3).tolist(),
            "support_violation_rate": float(sup["support_violation_rate"]),
            "seconds": round(time.perf_counter() - start, 1),
        }
        r = results[rule]
        print(
            f"{rule:>6}: score {r['normalized_score']:6.1f}  viol {100 * r['support_violation_rate']:.1f}%  "
            f"alpha shares {dict(zip(alphas, r['share_per_alpha']))}",
            flush=True,
        )
    out = HERE / "results" / "gate_study.json"
    append_result(
        out,
        {
            "run": str(run),
            "label": args.label,
            "dataset": args.dataset,
            "method": args.method,
            "seed": args.seed,
            "eval_seed": EVAL_SEED,
            "episodes": args.episodes,
            "region_width": args.region_width,
            "rules": results,
            "command": "python benchmarks/gate_study.py " + " ".join(os.sys.argv[1:]),
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
