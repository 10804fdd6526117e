"""Could the critic pick between a run's two latent policies where the drift check cannot?

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/selection_probe.py \
        --run benchmarks/_work/variant_s100k_reach0/full/spar_hopper_medium-replay-v0/spar/seed1 \
        --dataset spar/hopper/medium-replay-v0 --seed 1 --label s100k_reach0 \
        --rollout-record benchmarks/results/suite_full_s100k_reach0.json \
        --out benchmarks/results/selection_probe_s100k_reach0.json

A run trained with `lsi_reach_penalty` exports two rectifiers sharing one critic: `rectifier/` (the
deployed one) and `rectifier-alternative/`. For each, at alpha 1 and at its offline alpha, this
reports what an offline rule could see: the shared critic's pessimistic value (min of the twin Q,
scaled rewards) of its executed action (gate as deployed) on dataset states, minus the anchor's; the
same critic's mean value of the policy's own action along `--starts` model rollouts of `--horizon` steps
through the run's dynamics model (the drift check's model, the same start states and member draws for
every policy); the share of those model states off the data; and the model return over those rollouts:
the sum of rewards until a predicted termination, from a reward and termination head fitted here to the
data's transitions (an MLP on (state, action, state change), `--reward-steps` Adam steps, seeded).
Beside them, the env score of each (from `--rollout-record`: the deployed one's record and its
`alternative`). If the critic (or the model return) ranks the two the way the env does on every seed,
it can break the drift check's ties; if not, it cannot.
Appends one record per run to `--out` (a record of the same run is replaced).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch)


def fit_reward_head(data, steps: int, seed: int = 0):
    """An MLP (standardised state, normalised action, standardised state change) -> (reward, termination
    logit), fitted to `data`'s transitions; returns (predict, its held-out reward RMSE, the share of held-out
    terminal transitions it flags). predict: (states, actions, next_states) -> ((B,) reward, (B,) bool)."""
    import torch

    from spar_rectify.networks import mlp

    obs, act, nxt = data.observations, data.actions, data.next_observations
    o_mean, o_std = obs.mean(0), obs.std(0).clamp_min(1e-3)
    d_mean, d_std = (nxt - obs).mean(0), (nxt - obs).std(0).clamp_min(1e-6)

    def inputs(s, a, s2):
        return torch.cat([(s - o_mean) / o_std, a, (s2 - s - d_mean) / d_std], -1)

    x, reward, term = inputs(obs, act, nxt), data.rewards.float(), data.terminations.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = mlp(x.shape[1], 2, (200, 200))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    val, train = order[: len(x) // 50], order[len(x) // 50 :]
    for _ in range(steps):
        i = train[torch.randint(len(train), (512,), generator=g)]
        out = net(x[i])
        loss = (out[:, 0] - reward[i]).pow(2).mean()
        loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(out[:, 1], term[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = net(x[val])
        rmse = float((out[:, 0] - reward[val]).pow(2).mean().sqrt())
        ends = term[val] > 0
        flagged = float((out[ends, 1] > 0).float().mean()) if ends.any() else float("nan")

    @torch.no_grad()
    def predict(s, a, s2):
        out = net(inputs(s, a, s2))
        return out[:, 0], out[:, 1] > 0

    return predict, rmse, flagged


def main() -> None:
    import numpy as np
    import torch
    from suite_bench import ROLLOUT_FIELDS, add_run_probe_arguments, probed_run, rollout_record

    from spar_rectify.checkpoint import load_rectifier
    from spar_rectify.data import load_minari
    from spar_rectify.drift import DynamicsEnsemble, StateBox, model_rollout, rollout_draws
    from spar_rectify.rectified_policy import RectifiedPolicy
    from spar_rectify.spaces import ActionScaler
    from spar_rectify.support import SupportMetric

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_probe_arguments(parser)
    parser.add_argument("--data-states", type=int, default=5000, help="dataset states the critic is averaged on")
    parser.add_argument("--starts", type=int, default=500, help="model rollouts per policy")
    parser.add_argument("--horizon", type=int, default=100, help="model steps per rollout")
    parser.add_argument("--reward-steps", type=int, default=8000, help="steps fitting the reward/termination head")
    parser.add_argument("--out", required=True, help="results JSON (records are appended)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run, anchor = probed_run(parser, args)
    if not (run / "rectifier-alternative").is_dir() or not (run / "dynamics").is_dir():
        parser.error(f"--run {run}: needs rectifier-alternative/ and dynamics/ (a run with lsi_reach_penalty)")
    data = load_minari(args.dataset)
    summary = json.loads((run / "summary.json").read_text())
    if "penalty_choice" not in summary:
        parser.error(f"--run {run}: its summary.json has no penalty_choice; train with auto_alpha on (the default)")
    offline = {k: v["alpha"] for k, v in summary["penalty_choice"]["rectifiers"].items()}
    fields = (*ROLLOUT_FIELDS, "alternative")  # the alternative's env score sits in the deployed one's record
    record = rollout_record(args.rollout_record, args.dataset, args.method, args.seed, summary["steps"], fields)
    env_scores = {}
    if record is not None:
        alternative = record.pop("alternative") or {}
        env_scores = {"deployed": record["normalized_score"], "alternative": alternative.get("normalized_score")}

    scaler = ActionScaler(data.action_space)
    support = SupportMetric(data.observations.numpy())
    model = DynamicsEnsemble.load(run / "dynamics")
    box = StateBox.of(data.observations)
    rng = np.random.default_rng(0)
    obs = data.observations[rng.choice(len(data.observations), args.data_states, replace=False)]
    first, picks = rollout_draws(data, model, args.starts, args.horizon, seed=0)

    policies = {}
    for folder in ("rectifier", "rectifier-alternative"):
        ck = load_rectifier(run / folder)
        kappa = ck.config["lsi_anchor_penalty"]
        for alpha in sorted({1.0, offline[f"{kappa:g}"]}, reverse=True):
            if alpha > 0:
                policies[(folder, kappa, alpha)] = RectifiedPolicy(anchor, ck, alpha=alpha, check_anchor=False)
    critic = ck.rectifier  # one critic: both rectifiers carry the run's

    def q(states: torch.Tensor, actions: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return critic.q_min(states, torch.as_tensor(scaler.to_normalized_clipped(actions)))

    q_anchor = float(q(obs, anchor(obs.numpy())).mean())
    reward_head, reward_rmse, ends_flagged = fit_reward_head(data, args.reward_steps)
    rows = []
    for (folder, kappa, alpha), policy in policies.items():
        values, off = [], []
        alive, model_return = torch.ones(args.starts), torch.zeros(args.starts)
        for step in model_rollout(policy, first, picks, model, box, scaler, folder):
            with torch.no_grad():
                values.append(float(critic.q_min(step.states, step.normalised).mean()))
            reward, ends = reward_head(step.states, step.normalised, step.next_states)
            model_return += alive * reward
            alive = alive * (~ends).float()
            off.append(float(support.violations(step.next_states.numpy()).mean()))
        rows.append(
            {
                "rectifier": folder,
                "lsi_anchor_penalty": kappa,
                "alpha": alpha,
                "offline_alpha": offline[f"{kappa:g}"],
                "q_data_minus_anchor": round(float(q(obs, policy(obs.numpy())).mean()) - q_anchor, 3),
                "q_model_rollout": round(float(np.mean(values)), 3),
                "model_off_share": round(float(np.mean(off)), 4),
                "model_return": round(float(model_return.mean()), 2),
                "model_alive_at_end": round(float(alive.mean()), 3),
                "env_score": env_scores.get("deployed" if folder == "rectifier" else "alternative")
                if alpha == offline[f"{kappa:g}"]
                else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    entry = {
        "run": str(run),
        "label": args.label,
        "dataset": args.dataset,
        "seed": args.seed,
        "steps": summary["steps"],
        "deployed_penalty": summary["penalty_choice"]["deployed_penalty"],
        "q_anchor_data": round(q_anchor, 3),
        "horizon": args.horizon,
        "reward_head": {"heldout_rmse": round(reward_rmse, 4), "heldout_terminations_flagged": ends_flagged},
        "record": record,
        "policies": rows,
    }
    out = Path(args.out)
    found = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    found["runs"] = [r for r in found["runs"] if r["run"] != entry["run"]] + [entry]
    out.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
