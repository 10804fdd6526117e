"""Is the critic right when it prefers the rectified action? Ground truth by branching the simulator.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/branch_probe.py \
        --run benchmarks/_work/variant_s100k_imp8/full/spar_hopper_medium-replay-v0/spar/seed0 \
        --dataset spar/hopper/medium-replay-v0 --seed 0 \
        --other-policy benchmarks/_work/variant_s100k_iql/full/spar_hopper_medium-replay-v0/iql/seed0/policy

`lsi_probe.py` compares actions by the run's own critic. This probe asks the simulator instead.
It rolls the rectified policy (no gate; `--visit other`: the other policy) for `--episodes`
seeded episodes (seed 10000..), keeps every `--every`-th state, and at each kept state restores
the full MuJoCo state and executes one of four first actions: the anchor's (`base`), the
rectified one (`mu`), the other policy's (`other`, e.g. IQL's) and the other policy's passed
through the rectifier's support (encoder mean in the box, decoder: `other_decoded`, what LSI
could express of it), then follows a fixed continuation policy for `--horizon` steps. The
discounted return of each branch (the run's scaled reward units and gamma, cut at termination) is a
Monte-Carlo Q of that first action under that continuation; every branch of a state uses the same
continuation, so their differences are what the first action is worth. Continuations: the other
policy and the rectified one. Dynamics are deterministic after the restore, so one branch per
action suffices.

Reported per continuation: the mean branch return of each first action, the share of states where
`mu` beats `other` by the simulator and by the critic (min twin target Q), and how often the two
agree. The critic preferring mu where the simulator prefers the other policy's action is the
critic being exploited by the search; both preferring mu while the other policy scores more
points at the states each policy visits, not at the action choice. Writes
results/branch_probe_<env>_<kind>_spar_seed<seed>[_<tag>].json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent


def discounted(rewards: list[float], gamma: float) -> float:
    """sum_t gamma^t r_t of one branch."""
    total = 0.0
    for r in reversed(rewards):
        total = r + gamma * total
    return total


def snapshot(env):
    """The full integration state of an unwrapped MuJoCo env (qpos, qvel, warm start, controls,
    time): restoring it replays bit for bit; qpos and qvel alone leave the solver's warm start behind."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, state, spec)
    return state


def restore(env, state) -> None:
    import mujoco

    mujoco.mj_setState(env.model, env.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)


def branch_return(env, state, first, continuation, horizon: int, gamma: float, scale: float) -> float:
    """Restore `state` (`snapshot`), execute `first` (env units), then `continuation(obs)` for up to
    `horizon` steps; the discounted return in scaled reward units, cut at termination."""
    restore(env, state)
    rewards = []
    action = first
    for _ in range(horizon):
        obs, reward, terminated, _, _ = env.step(action)
        rewards.append(reward * scale)
        if terminated:
            break
        action = continuation(obs)
    return discounted(rewards, gamma)


def main() -> None:
    import gymnasium as gym
    import torch
    from lsi_probe import add_run_arguments, load_run
    from suite_bench import EVAL_SEED

    from spar_rectify import RectifiedPolicy, load_policy
    from spar_rectify.rollout import batched
    from spar_rectify.spaces import ActionScaler

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--other-policy", required=True, help="a policy folder (e.g. an IQL run's policy/)")
    parser.add_argument("--episodes", type=int, default=3, help="rectified episodes whose states are branched")
    parser.add_argument("--every", type=int, default=10, help="branch at every this-many-th visited state")
    parser.add_argument("--horizon", type=int, default=300, help="steps of each branch")
    parser.add_argument(
        "--visit",
        default="rectified",
        choices=("rectified", "other"),
        help="whose episodes give the branched states: the rectified policy's, or the other policy's (the "
        "performance-difference lemma: J(other) - J(rectified) sums the rectified policy's advantage of the "
        "other policy's action over the states the other policy visits)",
    )
    parser.add_argument(
        "--whole-episodes",
        type=int,
        default=0,
        help="also roll out, for this many seeded episodes each, the other policy as is and the other policy "
        "executed through the rectifier's support at every step: what the support's round trip costs over "
        "whole episodes",
    )
    parser.add_argument("--tag", default=None, help="suffix of the result file (e.g. the variant)")
    args = parser.parse_args()
    for flag in ("episodes", "every", "horizon"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    torch.set_num_threads(1)

    run = Path(args.run)
    data, anchor, config, trainer = load_run(run, args.dataset, args.method, args.seed, args.suite)
    rectified = RectifiedPolicy(anchor, trainer.algo.checkpoint(trainer.deployment()), gate=False, check_anchor=False)
    other = load_policy(args.other_policy)
    scale, gamma = trainer.reward_scale(), config.gamma
    scaler = ActionScaler(data.action_space)
    mean, std = torch.from_numpy(trainer.obs_mean), torch.from_numpy(trainer.obs_std)
    acts = {"base": batched(anchor), "mu": batched(rectified), "other": batched(other)}
    algo = trainer.algo

    def through_support(obs):
        """The other policy's action passed through the rectifier's support, as LSI could express it
        (`SPAR.project`: its residual to the anchor, clipped to rho, encoded, in the box, decoded)."""
        x_obs = ((torch.as_tensor(obs, dtype=torch.float32) - mean) / std)[None]
        a_b = torch.as_tensor(scaler.to_normalized_clipped(acts["base"](obs)[None]), dtype=torch.float32)
        a_o = torch.as_tensor(scaler.to_normalized_clipped(acts["other"](obs)[None]), dtype=torch.float32)
        return scaler.to_env(algo.project(torch.cat([x_obs, a_b], -1), a_b, a_o).numpy())[0]

    if algo.encoder is not None:
        acts["other_decoded"] = through_support

    # The visiting policy's states, with the simulator state that produced each observation.
    visitor = acts["mu"] if args.visit == "rectified" else acts["other"]
    env = gym.make(data.env_spec.id).unwrapped
    states, returns = [], []
    for i in range(args.episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, t = 0.0, 0
        while True:
            if t % args.every == 0:
                states.append((obs.copy(), snapshot(env)))
            obs, reward, terminated, _, _ = env.step(visitor(obs))
            total, t = total + reward, t + 1
            if terminated or t >= 1000:
                break
        returns.append(total)

    continuations = {"other": batched(other), "rectified": batched(rectified)}
    mc = {c: {a: [] for a in acts} for c in continuations}
    critic = {a: [] for a in acts}
    for obs, state in states:
        firsts = {a: np.asarray(act(obs)) for a, act in acts.items()}
        x = ((torch.as_tensor(obs, dtype=torch.float32) - mean) / std)[None]
        for a, first in firsts.items():
            normed = torch.as_tensor(scaler.to_normalized_clipped(first[None]), dtype=torch.float32)
            with torch.no_grad():
                critic[a].append(float(trainer.algo.critic.q_min(x, normed)[0]))
            for c, follow in continuations.items():
                mc[c][a].append(branch_return(env, state, first, follow, args.horizon, gamma, scale))
    q = {a: np.asarray(v) for a, v in critic.items()}
    critic_prefers_mu = q["mu"] > q["other"]
    result = {
        "run": str(run),
        "dataset": args.dataset,
        "seed": args.seed,
        "other_policy": args.other_policy,
        "visit": args.visit,
        "visiting_episode_returns": [round(r, 1) for r in returns],
        "states": len(states),
        "horizon": args.horizon,
        "critic_q_mean": {a: round(float(v.mean()), 3) for a, v in q.items()},
        "critic_share_mu_beats_other": round(float(critic_prefers_mu.mean()), 3),
        "by_continuation": {},
        "command": "python benchmarks/branch_probe.py " + " ".join(os.sys.argv[1:]),
    }
    for c, per_action in mc.items():
        g = {a: np.asarray(v) for a, v in per_action.items()}
        sim_prefers_mu = g["mu"] > g["other"]
        diff = g["mu"] - g["other"]
        result["by_continuation"][c] = {
            "branch_return_mean": {a: round(float(v.mean()), 3) for a, v in g.items()},
            "mu_minus_other_mean": round(float(diff.mean()), 3),
            "mu_minus_other_se": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 3) if len(diff) > 1 else None,
            "share_mu_beats_other": round(float(sim_prefers_mu.mean()), 3),
            "share_critic_agrees": round(float((sim_prefers_mu == critic_prefers_mu).mean()), 3),
            "share_critic_prefers_mu_wrongly": round(float((critic_prefers_mu & ~sim_prefers_mu).mean()), 3),
            "mu_minus_base_mean": round(float((g["mu"] - g["base"]).mean()), 3),
            # What the support's encode-decode round trip costs the other policy's action.
            "other_minus_other_decoded_mean": round(float((g["other"] - g["other_decoded"]).mean()), 3)
            if "other_decoded" in g
            else None,
            # Does the critic's Q(mu) - Q(other) track the simulator's, state by state?
            "corr_critic_vs_sim_mu_minus_other": round(float(np.corrcoef(q["mu"] - q["other"], diff)[0, 1]), 3),
            "corr_critic_vs_sim_mu_minus_base": round(
                float(np.corrcoef(q["mu"] - q["base"], g["mu"] - g["base"])[0, 1]), 3
            ),
        }
    if args.whole_episodes and "other_decoded" in acts:
        whole = {}
        for name in ("other", "other_decoded"):
            totals = []
            for i in range(args.whole_episodes):
                obs, _ = env.reset(seed=EVAL_SEED + i)
                total = 0.0
                for _ in range(1000):
                    obs, reward, terminated, _, _ = env.step(acts[name](obs))
                    total += reward
                    if terminated:
                        break
                totals.append(total)
            whole[name] = {
                "return_mean": round(float(np.mean(totals)), 1),
                "normalized_score": round(float(data.normalized_score(np.mean(totals))), 1),
                "returns": [round(t, 1) for t in totals],
            }
        result["whole_episodes"] = whole
    env_name, kind = args.dataset.split("/")[1], args.dataset.split("/")[2].removesuffix("-v0")
    tag = ("" if args.visit == "rectified" else "_visit_other") + (f"_{args.tag}" if args.tag else "")
    out = HERE / "results" / f"branch_probe_{env_name}_{kind}_{args.method}_seed{args.seed}{tag}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("run", "command")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
