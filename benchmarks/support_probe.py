"""How precise is SPAR's decoded support? Train stage (i), the residual CVAE, alone and measure what
its encode-decode round trip costs a good policy, in reconstruction and in whole episodes.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/support_probe.py \
        --dataset spar/hopper/medium-replay-v0 \
        --anchor benchmarks/_work/variant_s100k_imp8/full/spar_hopper_medium-replay-v0/bc/seed0/policy \
        --other-policy benchmarks/_work/variant_s100k_iql/full/spar_hopper_medium-replay-v0/iql/seed0/policy \
        --cvae-steps 10000 --set kl_weight=0.1 --tag kl01

`branch_probe.py --whole-episodes` found that a good policy (IQL) executed through a trained SPAR
run's support, a -> a_b + g(s, a_b, clip(E[q(z | s, a_b, a - a_b)])), scores 9 points less than
the same policy as is: the support caps what LSI can reach. This probe isolates stage (i): it
trains the CVAE with `TrainConfig` overrides (`--set`, e.g. kl_weight, latent_dim, hidden) for
`--cvae-steps` gradient steps (no critic, no latent policy: the CVAE does not depend on them) and
reports, with no critic anywhere:

- the reconstruction error of held-out dataset residuals and of the other policy's residuals on
  dataset states, in units of the data's residual std (after clipping to rho), and the share of
  their encoder means outside the latent box;
- `--episodes` seeded episodes (seed 10000..) of the other policy as is and executed through the
  support at every step: the return the support's round trip costs; with `--fit-z N`, also
  through the decoder at a latent fitted per state (N Adam steps from the encoder mean): what the
  decoder can express when the latent is chosen well, as LSI's search may;
- on the other policy's visited states, the support-violation rate (the suite's k-NN metric) of
  its actions, of its actions through the support, and of `--support-samples` decoded prior
  latents per state (LSI's prior candidates): how much of the searchable support is off the data.

A support that loses little here is one LSI can improve inside. Appends one row per call to
results/support_probe_<env>_<kind>.json (with the command).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent


def main() -> None:
    import gymnasium as gym
    import torch
    from suite_bench import EVAL_SEED

    from spar_rectify import load_policy
    from spar_rectify.config import TrainConfig
    from spar_rectify.data import load_minari
    from spar_rectify.spaces import ActionScaler
    from spar_rectify.sweep import parse_settings
    from spar_rectify.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--anchor", required=True, help="the frozen anchor's policy folder (e.g. a bc run's policy/)")
    parser.add_argument("--other-policy", required=True, help="a good policy's folder (e.g. an IQL run's policy/)")
    parser.add_argument("--cvae-steps", type=int, default=10_000, help="CVAE gradient steps (stage (i))")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--states", type=int, default=4096, help="held-out dataset states for reconstruction")
    parser.add_argument(
        "--fit-z",
        type=int,
        default=0,
        help="also execute the other policy through the decoder at a z fitted per state with this many Adam "
        "steps (the decoder's reach, without the encoder's amortisation)",
    )
    parser.add_argument(
        "--support-samples",
        type=int,
        default=8,
        help="latents per visited state drawn as LSI's prior candidates, decoded and checked against the data's "
        "support (0: skip)",
    )
    parser.add_argument("--tag", default="", help="a name for the row (e.g. the overrides)")
    args = parser.parse_args()
    if args.cvae_steps < 1 or args.episodes < 0:
        parser.error("--cvae-steps must be >= 1 and --episodes >= 0")
    torch.set_num_threads(1)
    try:
        overrides = {k: v[0] for k, v in parse_settings(args.set).items()}
    except ValueError as err:
        parser.error(f"--set: {err}")

    data = load_minari(args.dataset)
    anchor = load_policy(args.anchor, action_space=data.action_space)
    other = load_policy(args.other_policy, action_space=data.action_space)
    config = TrainConfig(algo="spar", steps=10 * args.cvae_steps, seed=args.seed, **overrides)
    trainer = Trainer(config, data, anchor)
    algo = trainer.algo
    if algo.encoder is None:
        parser.error("--set use_latent=false has no CVAE to probe")
    gen = torch.Generator().manual_seed(1234)
    n = len(trainer._reward)
    held = torch.randperm(n, generator=gen)[: args.states]
    start = time.time()
    for _ in range(args.cvae_steps):  # stage (i) alone: the CVAE's loss and optimiser, on sampled batches
        b = trainer.sample()
        algo._cvae(torch.cat([b.obs, b.base_action], -1), b)
    seconds = time.time() - start
    box, scaler = config.latent_box, ActionScaler(data.action_space)
    latent_dim = config.latent_dim or 2 * data.action_space.shape[0]
    obs, base, action = trainer._obs[held], trainer._base[held], trainer._action[held]
    x = torch.cat([obs, base], -1)
    raw_obs = data.observations[held].numpy()
    a_other = torch.as_tensor(scaler.to_normalized_clipped(other(raw_obs)), dtype=torch.float32)

    def round_trip(target: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            r = torch.maximum(torch.minimum(target - base, algo.rho), -algo.rho)
            z = algo.encode(x, r)[0]
            rec = algo.rect.decode(x, z.clamp(-box, box))
            err = ((rec - r) / algo.rect.residual_std).pow(2).mean(-1).sqrt().mean()
        return round(float(err), 4), round(float((z.abs() > box).any(-1).float().mean()), 4)

    data_err, data_out = round_trip(action)
    other_err, other_out = round_trip(a_other)

    mean, std = torch.from_numpy(trainer.obs_mean), torch.from_numpy(trainer.obs_std)

    def through_support(o: np.ndarray) -> np.ndarray:
        xo = ((torch.as_tensor(o, dtype=torch.float32) - mean) / std)[None]
        a_b = torch.as_tensor(scaler.to_normalized_clipped(anchor(o[None].astype(np.float32)))).float()
        a_o = torch.as_tensor(scaler.to_normalized_clipped(other(o[None].astype(np.float32)))).float()
        return scaler.to_env(algo.project(torch.cat([xo, a_b], -1), a_b, a_o).numpy())[0]

    def best_z(o: np.ndarray) -> np.ndarray:
        """The decoder's own reach: z fitted per state (from the encoder mean, `--fit-z` Adam steps on
        the squared error in residual stds, kept in the box) to decode the other policy's residual."""
        xo = ((torch.as_tensor(o, dtype=torch.float32) - mean) / std)[None]
        a_b = torch.as_tensor(scaler.to_normalized_clipped(anchor(o[None].astype(np.float32)))).float()
        a_o = torch.as_tensor(scaler.to_normalized_clipped(other(o[None].astype(np.float32)))).float()
        xx = torch.cat([xo, a_b], -1)
        r = torch.maximum(torch.minimum(a_o - a_b, algo.rho), -algo.rho)
        with torch.no_grad():
            z0 = algo.encode(xx, r)[0].clamp(-box, box)
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(args.fit_z):
            loss = ((algo.rect.decode(xx, z) - r) / algo.rect.residual_std).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                z.clamp_(-box, box)
        with torch.no_grad():
            a = (a_b + algo.rect.decode(xx, z)).clamp(-1, 1)
        return scaler.to_env(a.numpy())[0]

    def searchable_support(states: list, k: int) -> dict:
        """On the other policy's visited states: the support-violation rate (the suite's metric, on
        (state, action) pairs) of the other policy's actions, of those actions through the support,
        and of `k` latents per state drawn as LSI's prior candidates are (N(0, I) clipped to the box)
        and decoded: how much of what LSI searches lies outside the data."""
        from spar_rectify.support import SupportMetric

        metric = SupportMetric(data.observations.numpy(), data.actions.numpy())
        o = np.asarray(states, np.float32)
        xo = (torch.as_tensor(o) - mean) / std
        a_b = torch.as_tensor(scaler.to_normalized_clipped(anchor(o))).float()
        a_o = torch.as_tensor(scaler.to_normalized_clipped(other(o))).float()
        xx = torch.cat([xo, a_b], -1)
        with torch.no_grad():
            r = torch.maximum(torch.minimum(a_o - a_b, algo.rho), -algo.rho)
            through = (a_b + algo.rect.decode(xx, algo.encode(xx, r)[0].clamp(-box, box))).clamp(-1, 1)
            z = torch.randn((len(o) * k, latent_dim), generator=gen).clamp(-box, box)
            prior = (a_b.repeat_interleave(k, 0) + algo.rect.decode(xx.repeat_interleave(k, 0), z)).clamp(-1, 1)

        def rate(obs: np.ndarray, act: torch.Tensor) -> float:
            return round(float(metric.violations(obs, act.numpy()).mean()), 4)

        return {
            "states": len(o),
            "other": rate(o, a_o),
            "other_through_support": rate(o, through),
            "prior_candidates": rate(np.repeat(o, k, 0), prior),
            "samples_per_state": k,
        }

    def as_is(o: np.ndarray) -> np.ndarray:
        return np.asarray(other(o[None].astype(np.float32)))[0]

    episodes, visited = {}, []
    env = gym.make(data.env_spec.id)
    policies = [("other", as_is), ("other_through_support", through_support)]
    if args.fit_z:
        algo.rect.decoder.requires_grad_(False)
        policies.append(("other_through_decoder_best_z", best_z))
    for name, act in policies:
        totals = []
        for i in range(args.episodes):
            o, _ = env.reset(seed=EVAL_SEED + i)
            total, done = 0.0, False
            while not done:
                if name == "other":
                    visited.append(o)
                o, reward, terminated, truncated, _ = env.step(act(o))
                total, done = total + reward, terminated or truncated
            totals.append(total)
        if totals:
            episodes[name] = {
                "return_mean": round(float(np.mean(totals)), 1),
                "normalized_score": round(float(data.normalized_score(np.mean(totals))), 1),
                "returns": [round(t, 1) for t in totals],
            }
    box_support = None
    if args.support_samples and visited:
        box_support = searchable_support(visited, args.support_samples)
    row = {
        "tag": args.tag,
        "overrides": overrides,
        "cvae_steps": args.cvae_steps,
        "seed": args.seed,
        "cvae_seconds": round(seconds, 1),
        "latent_dim": latent_dim,
        "data_reconstruction_rms_in_residual_stds": data_err,
        "data_latent_outside_box": data_out,
        "other_reconstruction_rms_in_residual_stds": other_err,
        "other_latent_outside_box": other_out,
        "episodes": episodes,
        "searchable_support": box_support,
        "command": "python benchmarks/support_probe.py " + " ".join(os.sys.argv[1:]),
    }
    env_name, kind = args.dataset.split("/")[1], args.dataset.split("/")[2].removesuffix("-v0")
    out = HERE / "results" / f"support_probe_{env_name}_{kind}.json"
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    out.write_text(json.dumps({"rows": rows + [row]}, indent=2) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "command"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
