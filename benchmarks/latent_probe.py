"""Where the latent policy sits relative to the data, marginally and state by state.

SPAR's support is the latent box decoded at each state. That equals the data's support only if, at
every state, the whole box decodes to residuals the data has there, i.e. if the CVAE's posteriors
cover the prior. This probe measures, on `--states` dataset states of a finished run:

- `posterior_std`: the encoder's mean posterior std per latent dimension (1: the dimension is
  unused; small: the decoder reads it precisely);
- `marginal`: Mahalanobis distances, under the aggregate posterior (the data's latents sampled
  from their posteriors), of the data's latents and of mu's; the share of mu's beyond the data's
  99th percentile (is mu inside the data's latent cloud at all?);
- `conditional`: at each state, the distance of mu's latent (and of a prior sample N(0, I) in the
  box, as LSI draws them) from the posterior of *that state's* logged residual, in posterior stds
  (RMS over dimensions): how far from what the data did at this state the searched latents are;
- `reach`: how closely each latent policy's decoded residual (mu's; the reach policy's and the in-sample
  candidate's where the run trained them) follows the logged residual r = clip(a - a_b, rho), mean L2 in
  normalised action units, plain and weighted by IQL's in-sample weights min(exp(beta * A), max_w) (A from
  the run's critic: what the candidate regresses toward), beside what the bound clips off the logged
  residual and what the CVAE itself reproduces (decoder at the encoder's mean, in the box): is a gap in the
  policy's regression, in the support, or in the bound? With `--split ROW`, also for the dataset's rows
  before and from ROW apart (`reach_before`, `reach_from`), e.g. the medium and the expert parts of a
  suite medium-expert dataset, which stores the medium episodes first. With `--reference-policy` (e.g. the
  suite's `sac_expert.zip`; loading an SB3 zip runs pickle: only files you trust), also each policy's executed
  action (anchor plus its residual, clipped) and the anchor's own, mean L2 from that policy's deterministic
  action (`from_reference`): the logged actions are sampled, so their distance has the sampling noise's floor.
  With `--compare-policy NAME=PATH` (repeatable; e.g. the IQL policy a suite run saved), that policy's
  action on the same rows too (`compared`: from the reference and from the logged action), so the latent
  policies' distances have a plain offline policy's beside them.
- `region` (runs trained with `latent_search="conditional"`): where the anchor's own latent (the
  encoder mean of a zero residual) and mu's sit in the state's search region, in stds of the
  conditional prior (the largest over dimensions), and the share of states where each lies
  outside `search_width` stds, i.e. where the search cannot reach that latent; and how far mu's
  latent is from the anchor's (Euclidean, in those stds: the distance `lsi_anchor_penalty` charges).

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/latent_probe.py --run <run folder> \
        --dataset spar/hopper/medium-replay-v0 --method medium-rectified --seed 0 --label s100k_kl002

Appends a row to results/latent_probe.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import spar_rectify  # noqa: F401  (before torch: the MKL path)

HERE = Path(__file__).parent


def reach_block(algo, trainer, x, idx, clipped, mean, reference=None, compared=None) -> dict:
    """The `reach` section (see the module's docstring): (B, obs+act) inputs `x` of dataset rows `idx`, their
    logged residuals clipped to rho (B, act_dim), the encoder's means for them (B, L), optionally a reference
    policy's normalised actions at those rows (B, act_dim), and optionally other policies' normalised actions
    there (name -> (B, act_dim))."""
    import torch

    from spar_rectify.losses import awr_weights

    cfg = algo.config
    obs, action, base = trainer._obs[idx], trainer._action[idx], trainer._base[idx]
    raw = action - base
    advantage = algo.anchor_advantage(obs, action)  # min Q_target(s, a) - V(s) of any action: here the logged one
    weight = awr_weights(advantage, cfg.awr_temperature, cfg.awr_max_weight)

    def gap(residual: torch.Tensor) -> dict:
        d = (residual - clipped).norm(dim=-1)
        return {"mean": round(float(d.mean()), 4), "weighted": round(float((weight * d).sum() / weight.sum()), 4)}

    box = cfg.latent_box
    out = {
        "logged_residual": round(float(raw.norm(dim=-1).mean()), 4),
        "clipped_by_bound": gap(raw),
        "cvae_reproduces": gap(algo.rect.decode(x, mean.clamp(-box, box))),
    }
    policies = {"mu": algo.rect.actor, "reach": algo.reach_actor, "insample": algo.insample_actor}
    if reference is not None:
        out["anchor_from_reference"] = round(float((base - reference).norm(dim=-1).mean()), 4)
    for name, actor in policies.items():
        if actor is not None:
            residual = algo.residual_policy(x, actor)[1]
            out[name] = gap(residual)
            if reference is not None:
                executed = (base + residual).clamp(-1.0, 1.0)
                out[name]["from_reference"] = round(float((executed - reference).norm(dim=-1).mean()), 4)
    for name, actions in (compared or {}).items():
        row = {"from_logged": round(float((actions - action).norm(dim=-1).mean()), 4)}
        if reference is not None:
            row["from_reference"] = round(float((actions - reference).norm(dim=-1).mean()), 4)
        out.setdefault("compared", {})[name] = row
    out["weight_top_share"] = round(float(weight.topk(max(1, len(weight) // 10)).values.sum() / weight.sum()), 4)
    return out


def main() -> None:
    import torch
    from lsi_probe import add_run_arguments, load_run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--states", type=int, default=4096, help="dataset states probed")
    parser.add_argument("--label", default="", help="a name for the run in the results (e.g. its variant)")
    parser.add_argument(
        "--split", type=int, default=None, help="also report reach for the rows before and from this dataset row"
    )
    parser.add_argument(
        "--reference-policy",
        default=None,
        help="a policy (e.g. ../shared/suite/hopper/sac_expert.zip; an SB3 zip runs pickle: only files you trust) "
        "whose deterministic actions each policy's executed action is measured from",
    )
    parser.add_argument(
        "--compare-policy",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also measure this policy's actions (a kit policy folder, e.g. a suite run's IQL policy/; an SB3 zip runs "
        "pickle: only files you trust); repeatable",
    )
    args = parser.parse_args()
    compare = {}
    for item in args.compare_policy:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--compare-policy {item!r}: write NAME=PATH, e.g. iql=<run folder>/policy")
        if not Path(path).exists():
            parser.error(f"--compare-policy {item!r}: {path} does not exist")
        compare[name] = path
    if args.states < 2:
        parser.error(f"--states must be >= 2, got {args.states}")
    torch.set_num_threads(1)

    data, anchor, config, trainer = load_run(Path(args.run), args.dataset, args.method, args.seed, args.suite)
    algo = trainer.algo
    if algo.encoder is None:
        parser.error(f"{args.run} has no CVAE (use_latent=false): nothing to probe")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(trainer._reward), generator=gen)[: args.states]
    x = torch.cat([trainer._obs[idx], trainer._base[idx]], -1)
    box = config.latent_box

    def q(values: torch.Tensor, p: float) -> float:
        return round(float(values.quantile(p)), 3)

    with torch.no_grad():
        r = torch.maximum(torch.minimum(trainer._action[idx] - trainer._base[idx], algo.rho), -algo.rho)
        mean, log_std = algo.encode(x, r)
        std = log_std.exp()
        sampled = mean + std * torch.randn(mean.shape, generator=gen)
        z_mu = algo.rect.latent(x)
        z_prior = torch.randn(mean.shape, generator=gen).clamp(-box, box)
        centre = sampled.mean(0)
        chol = torch.linalg.cholesky(torch.cov(sampled.T) + 1e-6 * torch.eye(mean.shape[1]))

        def maha(z: torch.Tensor) -> torch.Tensor:
            return torch.linalg.solve_triangular(chol, (z - centre).T, upper=False).T.norm(dim=-1)

        data_d, mu_d = maha(sampled), maha(z_mu)
        cond_mu = ((z_mu - mean) / std).pow(2).mean(-1).sqrt()
        cond_prior = ((z_prior - mean) / std).pow(2).mean(-1).sqrt()
        cond_data = ((sampled - mean) / std).pow(2).mean(-1).sqrt()  # about 1 by construction
        from spar_rectify import load_policy
        from spar_rectify.spaces import ActionScaler

        def normalised(path: str) -> torch.Tensor:
            raw = load_policy(path)(data.observations[idx].numpy())
            return torch.as_tensor(ActionScaler(data.action_space).to_normalized_clipped(raw), dtype=torch.float32)

        reference = normalised(args.reference_policy) if args.reference_policy else None
        compared = {name: normalised(path) for name, path in compare.items()}
        reach = reach_block(algo, trainer, x, idx, r, mean, reference, compared)
        parts = {}
        if args.split is not None:
            if not 0 < args.split < len(trainer._reward):
                parser.error(f"--split {args.split}: use a row between 1 and {len(trainer._reward) - 1}")
            for name, keep in (("reach_before", idx < args.split), ("reach_from", idx >= args.split)):
                part = None if reference is None else reference[keep]
                others = {k: v[keep] for k, v in compared.items()}
                parts[name] = reach_block(algo, trainer, x[keep], idx[keep], r[keep], mean[keep], part, others)
                parts[name]["states"] = int(keep.sum())
        region = None
        if algo.prior is not None:
            centre_c, log_std_c = algo.conditional_prior(x)
            width = config.search_width

            def place(z: torch.Tensor) -> dict:
                d = ((z - centre_c) / log_std_c.exp()).abs().max(-1).values
                outside = round(float((d > width).float().mean()), 4)
                return {"max_stds_q50_q90": [q(d, 0.5), q(d, 0.9)], "share_outside": outside}

            from_anchor = algo.anchor_distance(x, z_mu.unsqueeze(1)).squeeze(1)  # what lsi_anchor_penalty charges
            region = {
                "search_width": width,
                "anchor": place(algo.anchor_latent(x)),
                "mu": place(z_mu),
                "mu_from_anchor_stds_q50_q90": [q(from_anchor, 0.5), q(from_anchor, 0.9)],
            }
    row = {
        "run": args.run,
        "label": args.label,
        "dataset": args.dataset,
        "method": args.method,
        "seed": args.seed,
        "kl_weight": config.kl_weight,
        "states": len(idx),
        "posterior_std": [round(float(v), 3) for v in std.mean(0)],
        "marginal": {
            "data_q50_q99": [q(data_d, 0.5), q(data_d, 0.99)],
            "mu_q50_q99": [q(mu_d, 0.5), q(mu_d, 0.99)],
            "mu_share_beyond_data_q99": round(float((mu_d > data_d.quantile(0.99)).float().mean()), 4),
        },
        "conditional_rms_posterior_stds": {
            "data_sample_q50": q(cond_data, 0.5),
            "mu_q50_q90": [q(cond_mu, 0.5), q(cond_mu, 0.9)],
            "prior_sample_q50_q90": [q(cond_prior, 0.5), q(cond_prior, 0.9)],
        },
        "reference_policy": args.reference_policy,
        "reach": reach,
        **({"split": args.split, **parts} if parts else {}),
        "region": region,
        "command": "python benchmarks/latent_probe.py " + " ".join(os.sys.argv[1:]),
    }
    out = HERE / "results" / "latent_probe.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    rows.append(row)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "command"}, indent=1))
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
