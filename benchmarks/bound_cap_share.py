"""How much of each dataset the residual bound's cap cuts: the rows whose logged residual |a - a_b| the cap of
rho shortens, per dataset and anchor, at each cap asked for. No training, no env.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/bound_cap_share.py \
        [--datasets spar/hopper/medium-expert-v0 ...] [--anchor medium | --anchor PATH --label NAME] [--caps 1 2]

rho is the data's `bound_quantile` (0.99) of |a - a_b| per action dimension, clamped to [bound_min, cap]
(`spar_rectify.algos.spar.capped_bound`, what `spar train` computes). For every dataset and cap this reports
rho, the share of rows the cap shortens (in a dimension where it cut the quantile: the share `spar train` warns
at over 5% and `TrainConfig.bound_lift` lifts the cap at), the largest such |a - a_b|, and the mean distance
(L2 over the action, normalised units) between the logged residual and the one clipped to rho over all rows:
what the rectifier cannot reproduce; and the mean normalised score of the episodes the cut rows come from, against
all rows' (is the data the cap keeps out better or worse than the rest?) and whether `TrainConfig.bound_lift` would
lift the cap there (`spar_rectify.algos.spar.lifts_cap`). `--anchor medium` (the default) anchors
each dataset at the suite's SB3 medium policy for its env (loading it runs pickle: the suite's own file);
`--anchor PATH` at a policy folder (a `bc` run's `policy/`, no pickle) or an SB3 zip you trust, on every dataset
listed. Anchor actions are cached under benchmarks/_work/bound_cap_share/. Merges one row per (dataset, anchor)
into results/bound_cap_share.json, with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent
RESULT = HERE / "results" / "bound_cap_share.json"
SUITE_DATASETS = tuple(
    f"spar/{env}/{kind}-v0"
    for env in ("hopper", "halfcheetah")
    for kind in ("medium", "medium-replay", "medium-expert")
)


def row_scores(data) -> np.ndarray:
    """(N,) the normalised score of the episode each row of `data` (an `OfflineData`) belongs to (its raw return
    where the data has no reference scores)."""
    returns = data.row_returns()
    scores = data.normalized_score(returns)
    return returns if scores is None else scores


def cap_rows(dataset: str, anchor_label: str, magnitude, caps: list[float], config, scores=None) -> dict:
    """One result row: rho and the cap's cost at each cap, for |a - a_b| `magnitude` `(N, act_dim)`; with
    `scores` `(N,)` (`row_scores`), the mean episode score of the rows each cap cuts against all rows', and
    whether `TrainConfig.bound_lift` would lift that cap (`spar_rectify.algos.spar.lifts_cap`)."""
    import torch

    from spar_rectify.algos.spar import CLIP_WARN_SHARE, capped_bound, cut_returns, lifts_cap

    quantile = torch.quantile(magnitude[:1_000_000], config.bound_quantile, dim=0)
    row = {
        "dataset": dataset,
        "anchor": anchor_label,
        "rows": int(magnitude.shape[0]),
        "quantile": [round(float(q), 4) for q in quantile],
        "caps": {},
    }
    if scores is not None:
        row["rows_episode_score"] = round(float(np.mean(scores)), 2)
        row["episode_score_spread"] = round(float(np.max(scores) - np.min(scores)), 2)
    for cap_value in caps:
        cap = capped_bound(quantile, magnitude, config.bound_min, cap_value)
        excess = (magnitude - cap.bound).clamp_min(0)  # |residual| minus |clipped residual|, per dimension
        returns = cut_returns(cap, scores)
        row["caps"][f"{cap_value:g}"] = {
            "rho": [round(float(b), 4) for b in cap.bound],
            "share_cut": round(cap.share, 5),
            "largest_cut": round(cap.largest, 4),
            "mean_shortening": round(float(excess.norm(dim=1).mean()), 5),
            "over_warn_share": cap.share > CLIP_WARN_SHARE,
            "cut_rows_episode_score": None if returns is None else round(returns.cut, 2),
            "bound_lift_lifts": lifts_cap(cap, returns),
        }
    return row


def main(argv: list[str] | None = None) -> None:
    import suite_bench

    from spar_rectify import load_policy
    from spar_rectify.config import TrainConfig
    from spar_rectify.data import load_minari

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SUITE_DATASETS), help="Minari ids (default: the suite)")
    parser.add_argument(
        "--anchor",
        default="medium",
        help="'medium' (the suite's SB3 medium policy of each dataset's env) or a policy folder / SB3 zip you trust",
    )
    parser.add_argument("--label", default=None, help="the anchor's name in the results (default: --anchor)")
    parser.add_argument("--caps", nargs="+", type=float, default=[1.0, 2.0], help="caps of rho to report")
    parser.add_argument("--suite", default=str(suite_bench.SUITE), help="folder of the suite's SB3 policies")
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    bad = [c for c in args.caps if not 0 < c <= 2]
    if bad:
        parser.error(f"--caps {bad}: each cap must be in (0, 2] (normalised units; 2 spans the action range)")
    if args.anchor != "medium" and not Path(args.anchor).exists():
        parser.error(f"--anchor {args.anchor}: no policy there; pass 'medium' or a policy folder / SB3 zip")
    label = args.label or args.anchor
    config = TrainConfig()
    cache_dir = HERE / "_work" / "bound_cap_share"
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    command = "python benchmarks/bound_cap_share.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for dataset in args.datasets:
        data = load_minari(dataset)
        path = suite_bench.medium_policy_path(dataset, args.suite) if args.anchor == "medium" else args.anchor
        data.attach_anchor(load_policy(path), cache=cache_dir / f"{dataset.replace('/', '_')}_{Path(label).name}.st")
        magnitude = (data.actions - data.base_actions).abs()
        row = cap_rows(dataset, label, magnitude, args.caps, config, row_scores(data))
        row["command"] = command
        cut = ", ".join(
            f"cap {k}: {v['share_cut']:.2%} of rows cut (their episodes' score {v['cut_rows_episode_score']}; "
            f"bound_lift lifts it: {v['bound_lift_lifts']})"
            for k, v in row["caps"].items()
        )
        print(
            f"{dataset} around {label}: 0.99 quantile max {max(row['quantile']):.2f}; {cut}; all rows' episodes' "
            f"score {row['rows_episode_score']} (spread {row['episode_score_spread']})",
            flush=True,
        )
        keep = [r for r in saved["rows"] if (r["dataset"], r["anchor"]) != (dataset, label)]
        saved["rows"] = [*keep, row]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=1) + "\n")
        tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
