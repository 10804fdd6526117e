"""The critic's verdict on finished rectifiers, without the env: on `--states` dataset states (seeded sample), the
mean gain `min Q(s, a) - min Q(s, a_b)` of each rectifier's whole residual (alpha 1, ungated; with `--deployed`, at
the alpha and gate each folder deploys by default) over the anchor's action a_b, with its standard error, the
logged action's gain for reference, and the mean L2 distances (normalised action units) of the rectified action
from the logged one and from the anchor's. Each rectifier is scored with the critic it carries (the run's target
twin critic, scaled-reward units), so compare rectifiers of one run, or of runs of one recipe.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/rectifier_q_probe.py \\
        --policy ../shared/suite/hopper/sac_medium.zip --dataset spar/hopper/medium-expert-v0 \\
        --rectifier <run>/rectifier <run>/rectifier-insample [--deployed] [--out results/<name>.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import spar_rectify  # noqa: F401  (first: MKL's path, before torch)

# isort: split
import torch

from spar_rectify import RectifiedPolicy, load_rectifier
from spar_rectify.critic_gain import deployed_actions
from spar_rectify.data import load_minari
from spar_rectify.policies import load_policy
from spar_rectify.spaces import ActionScaler


def deployment(anchor, checkpoint) -> dict:
    """The alpha and gate a folder deploys with by default, as `RectifiedPolicy` resolves them."""
    corrector = RectifiedPolicy(anchor, checkpoint).corrector
    return {"alpha": corrector.alpha, "gate": bool(corrector.gate)}


def probe(anchor, data, rectifiers: list, states: int = 4096, seed: int = 0, deployed: bool = False) -> list[dict]:
    """One row per rectifier folder (see the module's docstring).

    Args:
        anchor: the base policy, (B, obs_dim) env-unit observations -> (B, act_dim) env-unit actions.
        data: the `OfflineData` whose states are probed (a seeded sample of `states`).
        rectifiers: rectifier folders trained around `anchor` on `data`.
        deployed: score each at its default alpha and gate (`RectifiedPolicy(anchor, folder)`), not alpha 1 ungated.
    """
    idx = torch.randperm(len(data.observations), generator=torch.Generator().manual_seed(seed))[:states]
    obs = data.observations[idx]
    scaler = ActionScaler(data.action_space)
    base = torch.as_tensor(scaler.to_normalized_clipped(anchor(obs.numpy())), dtype=torch.float32)
    logged = torch.as_tensor(scaler.to_normalized_clipped(data.actions[idx].numpy()), dtype=torch.float32)
    rows = []
    for folder in rectifiers:
        checkpoint = load_rectifier(folder)
        rect = checkpoint.rectifier
        with torch.no_grad():
            if deployed:
                action, _ = deployed_actions(anchor, checkpoint, obs.numpy())
            else:
                action = (base + rect(obs, base)).clamp(-1.0, 1.0)
            q_base = rect.q_min(obs, base)
            gain, logged_gain = rect.q_min(obs, action) - q_base, rect.q_min(obs, logged) - q_base
        rows.append(
            {
                "rectifier": str(folder),
                **(deployment(anchor, checkpoint) if deployed else {}),
                "q_gain": float(gain.mean()),
                "q_gain_se": float(gain.std() / math.sqrt(len(gain))),
                "logged_q_gain": float(logged_gain.mean()),
                "distance_to_logged": float((action - logged).norm(dim=-1).mean()),
                "distance_to_anchor": float((action - base).norm(dim=-1).mean()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="the anchor (an SB3 zip runs pickle on load)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--rectifier", nargs="+", required=True, help="rectifier folders trained around --policy")
    parser.add_argument("--states", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deployed", action="store_true", help="each folder at its default alpha and gate (default: alpha 1, ungated)"
    )
    parser.add_argument("--out", default=None, help="also write the rows (and the command) to this JSON file")
    args = parser.parse_args(argv)
    if args.states < 2:
        parser.error(f"--states {args.states}: use at least 2 (a standard error needs two)")
    anchor = load_policy(args.policy)  # an SB3 zip runs pickle: trusted files only
    rows = probe(anchor, load_minari(args.dataset), args.rectifier, args.states, args.seed, args.deployed)
    for r in rows:
        print(
            f"{r['rectifier']}: Q gain {r['q_gain']:+.3f} +- {r['q_gain_se']:.3f} (logged {r['logged_q_gain']:+.3f}), "
            f"|a - logged| {r['distance_to_logged']:.3f}, |a - a_b| {r['distance_to_anchor']:.3f}"
        )
    if args.out:
        command = "python benchmarks/rectifier_q_probe.py " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.out).write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
