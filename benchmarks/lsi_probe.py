"""Does Latent Self-Imitation find the best action the decoded support offers, and can that support
reach the data's best actions? A probe of a trained SPAR run with its own critic; no env episodes.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/lsi_probe.py \
        --run benchmarks/_work/variant_s100k_imp8/full/spar_hopper_medium-replay-v0/spar/seed0 \
        --dataset spar/hopper/medium-replay-v0 --method spar --seed 0

On `--states` dataset states (seeded sample) it scores, with the run's target twin critic
(min of the two heads, scaled-reward units, the value LSI maximises):

- `base`: the anchor's action a_b; `mu`: the rectified action a_b + g(s, a_b, mu(s, a_b));
- `data`: the logged action; `data_decoded`: the logged residual passed through the encoder mean
  and the decoder (what the support can express of it; clipped to the latent box as LSI does);
- `best_local`: the best of `--samples` candidates mu + sigma * eps (LSI's own perturbations);
- `best_prior`: the best of `--samples` prior samples z ~ N(0, I) in the box (the support's reach);
- `best_wide`: the best of `--samples` samples z ~ N(0, (2c)^2 I) clipped to the box (its corners);
- `best_unboxed`: the best of `--samples` samples z ~ N(0, (2c)^2 I) *without* the box: what a
  larger box would add (the decoder's tanh still bounds the residual by rho).

Reading it: `best_prior - mu` well above 0 means the latent policy has not found the best of its
own support (the search or the regression is the bottleneck); `data - data_decoded` above 0 on
states where the logged action beats mu means the support cannot express the data's better
actions (the CVAE or the box is); `best_unboxed - best_wide` above 0 means the box binds.
Also: the share of the data's encoder means outside the box, and the reconstruction error of the
logged residual in units of the data's residual std. With `--episodes N`, the critic against what
happened: on N seeded episodes (seed 10000..) of the base policy and of the rectified one (no
gate), `min Q(s_t, a_t)` of every executed step against its realised discounted return to go in
the same scaled units (steps within 300 of a time-limit cut are left out: their return to go is
truncated). Q above the realised return on the rectified policy's own steps, by more than on the
base policy's, means LSI found where the critic overestimates rather than better actions. With
`--split-after DATASET` (a dataset whose transitions open `--dataset`, e.g. medium inside medium-expert),
the means are repeated for the probed states of each part, with distances (L2, normalised action units)
from the rectified action to the logged one and to `--other-policy`'s, where that policy's residual is
within rho and beyond it. Writes
results/lsi_probe_<env>_<kind>_<method>_seed<seed>[_<tag>].json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name a finished run of the suite harness, as `load_run` takes them."""
    from suite_bench import SUITE

    parser.add_argument("--run", required=True, help="a SPAR run folder (config.json and checkpoint/)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", default="spar", choices=("spar", "medium-rectified"))
    parser.add_argument("--seed", type=int, required=True, help="the run's seed (finds its anchor)")
    parser.add_argument("--suite", default=str(SUITE), help="folder of the suite's SB3 policies")


def load_run(run: Path, dataset: str, method: str, seed: int, suite: str):
    """A finished SPAR run of the suite harness, restored: (data, anchor, config, trainer at its
    checkpoint)."""
    from suite_bench import anchor_policy

    from spar_rectify.config import TrainConfig
    from spar_rectify.data import load_minari
    from spar_rectify.trainer import Trainer

    data = load_minari(dataset)
    anchor = anchor_policy(run.parent.parent, dataset, method, seed, suite)
    config = TrainConfig.load(run / "config.json")
    trainer = Trainer(config, data, anchor, run)
    trainer.load_state(run / "checkpoint")
    return data, anchor, config, trainer


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--states", type=int, default=2048, help="dataset states probed")
    parser.add_argument("--samples", type=int, default=256, help="candidates per state for each best_*")
    parser.add_argument("--tag", default=None, help="suffix of the result file (e.g. the variant)")
    parser.add_argument("--episodes", type=int, default=0, help="episodes for the critic-against-returns check")
    parser.add_argument(
        "--other-policy",
        default=None,
        help="a policy folder (e.g. an IQL run's policy/) whose actions are scored beside mu and passed through "
        "the support (encoder mean, box, decoder): can the rectifier express what that policy does?",
    )
    parser.add_argument(
        "--split-after",
        default=None,
        metavar="DATASET",
        help="a dataset whose transitions open --dataset (e.g. spar/hopper/medium-v0 inside medium-expert): "
        "the summary is repeated for the probed states of that first part and of the rest",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    run = Path(args.run)
    data, anchor, config, trainer = load_run(run, args.dataset, args.method, args.seed, args.suite)
    algo = trainer.algo
    if algo.encoder is None:
        raise SystemExit(f"--run {run}: a run without a latent (use_latent=False) has no support to probe")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(trainer._reward), generator=gen)[: args.states]
    obs, action, base = trainer._obs[idx], trainer._action[idx], trainer._base[idx]
    box, sigma = config.latent_box, config.candidate_sigma
    n, s = len(idx), args.samples

    @torch.no_grad()
    def q_of(action_batch: torch.Tensor) -> torch.Tensor:
        """(n, act) or (n, k, act) normalised actions -> (n,) or (n, k) min twin target Q."""
        flat = action_batch.reshape(-1, action_batch.shape[-1]).clamp(-1, 1)
        k = flat.shape[0] // n
        q = algo.critic.q_min(obs.repeat_interleave(k, 0), flat)
        return q.view(n, k).squeeze(-1) if k > 1 else q

    @torch.no_grad()
    def decoded(z: torch.Tensor) -> torch.Tensor:
        """(n, k, L) latents -> (n, k, act) actions a_b + g(s, a_b, z)."""
        k = z.shape[1]
        x = torch.cat([obs, base], -1).repeat_interleave(k, 0)
        return base.repeat_interleave(k, 0).view(n, k, -1) + algo.rect.decode(x, z.reshape(n * k, -1)).view(n, k, -1)

    with torch.no_grad():
        x = torch.cat([obs, base], -1)
        z_mu = algo.rect.latent(x)
        r_data = torch.maximum(torch.minimum(action - base, algo.rho), -algo.rho)  # as LSI clips it
        z_data = algo.encode(x, r_data)[0]
        outside = (z_data.abs() > box).any(-1).float().mean().item()
        z_data_boxed = z_data.clamp(-box, box)
        r_rec = algo.rect.decode(x, z_data_boxed)
        rec_err = ((r_rec - r_data) / algo.rect.residual_std).pow(2).mean(-1).sqrt()
        value = algo.critic.value(obs)
        q = {
            "base": q_of(base),
            "mu": q_of(decoded(z_mu.unsqueeze(1))[:, 0]),
            "data": q_of(action),
            "data_decoded": q_of(base + r_rec),
        }
        local = (z_mu.unsqueeze(1) + sigma * torch.randn((n, s, z_mu.shape[1]), generator=gen)).clamp(-box, box)
        prior = torch.randn((n, s, z_mu.shape[1]), generator=gen).clamp(-box, box)
        wide = 2 * box * torch.randn((n, s, z_mu.shape[1]), generator=gen)
        q["best_local"] = q_of(decoded(local)).max(-1).values
        q["best_prior"] = q_of(decoded(prior)).max(-1).values
        q["best_wide"] = q_of(decoded(wide.clamp(-box, box))).max(-1).values
        q["best_unboxed"] = q_of(decoded(wide)).max(-1).values
    other, a_other = {}, None
    rectified_action = decoded(z_mu.unsqueeze(1))[:, 0].clamp(-1, 1)
    if args.other_policy:
        from spar_rectify import load_policy
        from spar_rectify.spaces import ActionScaler

        obs_env = data.observations[idx].numpy()
        raw = load_policy(args.other_policy)(obs_env)
        a_other = torch.as_tensor(ActionScaler(data.action_space).to_normalized_clipped(raw), dtype=torch.float32)
        with torch.no_grad():
            r_other = torch.maximum(torch.minimum(a_other - base, algo.rho), -algo.rho)
            z_other = algo.encode(x, r_other)[0]
            r_other_rec = algo.rect.decode(x, z_other.clamp(-box, box))
            q["other"] = q_of(a_other)
            q["other_decoded"] = q_of(base + r_other_rec)
        other = {
            "policy": args.other_policy,
            "share_other_beats_mu": round(float((q["other"] > q["mu"]).float().mean()), 3),
            "other_residual_clipped_by_rho": round(
                float(((a_other - base).abs() > algo.rho).any(-1).float().mean()), 3
            ),
            "other_latent_outside_box": round(float((z_other.abs() > box).any(-1).float().mean()), 3),
            "other_reconstruction_rms_in_residual_stds": round(
                float(((r_other_rec - r_other) / algo.rect.residual_std).pow(2).mean(-1).sqrt().mean()), 3
            ),
            "mean_action_distance_mu_to_other": round(float((rectified_action - a_other).norm(dim=-1).mean()), 3),
        }
    data_better = q["data"] > q["mu"]

    def summary(mask: torch.Tensor) -> dict:
        out = {k: round(float(v[mask].mean()), 3) for k, v in q.items()}
        out["V"] = round(float(value[mask].mean()), 3)
        out["states"] = int(mask.sum())
        return out

    everywhere = torch.ones(n, dtype=torch.bool)
    gaps = {
        "best_prior_minus_mu": q["best_prior"] - q["mu"],
        "best_local_minus_mu": q["best_local"] - q["mu"],
        "data_minus_data_decoded": q["data"] - q["data_decoded"],
        "best_unboxed_minus_best_wide": q["best_unboxed"] - q["best_wide"],
        "mu_minus_base": q["mu"] - q["base"],
        "data_minus_mu": q["data"] - q["mu"],
    }
    result = {
        "run": str(run),
        "dataset": args.dataset,
        "method": args.method,
        "seed": args.seed,
        "config": {k: getattr(config, k) for k in ("steps", "latent_box", "candidate_sigma", "lsi_every", "num_prior")},
        "states": n,
        "samples": s,
        "q_mean": summary(everywhere),
        "q_mean_where_data_beats_mu": summary(data_better),
        "share_data_beats_mu": round(float(data_better.float().mean()), 3),
        "gaps_mean": {k: round(float(v.mean()), 3) for k, v in gaps.items()},
        "gaps_median": {k: round(float(v.median()), 3) for k, v in gaps.items()},
        "share_best_prior_beats_mu_by_1": round(float((gaps["best_prior_minus_mu"] > 1.0).float().mean()), 3),
        "data_latent_outside_box": round(outside, 3),
        "data_reconstruction_rms_in_residual_stds": round(float(rec_err.mean()), 3),
        "residual_bound": [round(float(b), 3) for b in algo.rect.residual_bound],
        "other_policy": other or None,
        "parts": split_summary(args, data, idx, q, summary, rectified_action, action, base, algo.rho, a_other)
        if args.split_after
        else None,
        "command": "python benchmarks/lsi_probe.py " + " ".join(os.sys.argv[1:]),
    }
    if args.episodes:
        result["critic_against_returns"] = critic_against_returns(trainer, anchor, data, config, args.episodes)
    env, kind = args.dataset.split("/")[1], args.dataset.split("/")[2].removesuffix("-v0")
    tag = f"_{args.tag}" if args.tag else ""
    out = HERE / "results" / f"lsi_probe_{env}_{kind}_{args.method}_seed{args.seed}{tag}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in list(result)[5:]}, indent=2))
    print(f"wrote {out}")


def split_summary(args, data, idx, q, summary, rectified, action, base, rho, other) -> dict:
    """The probe's means on the probed states of the first `--split-after` transitions and on the rest,
    with the distances (normalised action units, L2) from the rectified action to the logged one and to
    `--other-policy`'s, and the share of logged residuals that rho clips."""
    import torch

    from spar_rectify.data import load_minari

    first = load_minari(args.split_after)
    n_first = len(first.rewards)
    if n_first >= len(data.rewards) or not torch.equal(
        torch.as_tensor(first.observations[[0, -1]]), torch.as_tensor(data.observations[[0, n_first - 1]])
    ):
        raise SystemExit(f"--split-after {args.split_after}: its transitions do not open --dataset {args.dataset}")
    out = {"first_part": args.split_after, "first_transitions": n_first}
    for name, mask in (("first", idx < n_first), ("rest", idx >= n_first)):
        part = summary(mask)
        part["share_data_beats_mu"] = round(float((q["data"] > q["mu"])[mask].float().mean()), 3)
        part["distance_mu_to_data"] = round(float((rectified - action)[mask].norm(dim=-1).mean()), 3)
        part["distance_base_to_data"] = round(float((base - action)[mask].norm(dim=-1).mean()), 3)
        clipped = ((action - base).abs() > rho).any(-1)
        part["data_residual_clipped_by_rho"] = round(float(clipped[mask].float().mean()), 3)
        if other is not None:
            part["share_other_beats_mu"] = round(float((q["other"] > q["mu"])[mask].float().mean()), 3)
            part["distance_mu_to_other"] = round(float((rectified - other)[mask].norm(dim=-1).mean()), 3)
            part["distance_data_to_other"] = round(float((action - other)[mask].norm(dim=-1).mean()), 3)
            beyond = ((other - base).abs() > rho).any(-1)  # the other's action is outside every residual
            part["other_residual_beyond_rho"] = round(float(beyond[mask].float().mean()), 3)
            for where, cut in (("within", ~beyond), ("beyond", beyond)):
                sel = mask & cut
                for label, start in (("base", base), ("mu", rectified)):
                    gap = (start - other)[sel].norm(dim=-1).mean()
                    part[f"distance_{label}_to_other_{where}_rho"] = round(float(gap), 3)
        out[name] = part
    return out


def critic_against_returns(trainer, anchor, data, config, episodes: int) -> dict:
    """Per policy (base, rectified without the gate): mean min-Q of executed steps, mean realised
    discounted return to go (scaled units), and their difference, over `episodes` seeded episodes."""
    import gymnasium as gym
    import numpy as np
    import torch
    from suite_bench import EVAL_SEED

    from spar_rectify import RectifiedPolicy
    from spar_rectify.rollout import batched, rollout
    from spar_rectify.spaces import ActionScaler

    scale, gamma = trainer.reward_scale(), config.gamma
    scaler = ActionScaler(data.action_space)
    mean, std = torch.from_numpy(trainer.obs_mean), torch.from_numpy(trainer.obs_std)
    rectified = RectifiedPolicy(anchor, trainer.algo.checkpoint(trainer.deployment()), gate=False, check_anchor=False)
    out = {}
    for name, policy in (("base", anchor), ("rectified", rectified)):
        q_all, g_all, returns = [], [], []
        env = gym.make(data.env_spec.id)
        for i in range(episodes):
            ep = rollout(env, batched(policy), seed=EVAL_SEED + i)
            rewards = np.asarray(ep.rewards) * scale
            togo = np.zeros(len(rewards))
            acc = 0.0
            for t in range(len(rewards) - 1, -1, -1):
                acc = rewards[t] + gamma * acc
                togo[t] = acc
            keep = len(rewards) if ep.terminated else max(len(rewards) - 300, 0)
            obs = (torch.as_tensor(ep.observations[:keep], dtype=torch.float32) - mean) / std
            act = torch.as_tensor(scaler.to_normalized_clipped(ep.actions[:keep]), dtype=torch.float32)
            with torch.no_grad():
                q_all.append(trainer.algo.critic.q_min(obs, act).numpy())
            g_all.append(togo[:keep])
            returns.append(ep.total)
        q, g = np.concatenate(q_all), np.concatenate(g_all)
        out[name] = {
            "return": round(float(np.mean(returns)), 1),
            "q_min": round(float(q.mean()), 3),
            "return_to_go": round(float(g.mean()), 3),
            "q_minus_return_to_go": round(float((q - g).mean()), 3),
            "steps": int(len(q)),
        }
    return out


if __name__ == "__main__":
    main()
