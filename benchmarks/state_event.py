"""How often a run's two rectifiers reach a flagged kind of state, in the env and in the drift check's dynamics
model, beside the data's own share: does the model see what the env shows? No training.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets MUJOCO_GL=egl python benchmarks/state_event.py \
        --run benchmarks/_work/variant_s200k_lift2/full/spar_halfcheetah_medium-expert-v0/medium-rectified/seed0 \
        --dataset spar/halfcheetah/medium-expert-v0 --method medium-rectified --seed 0 --label lift2 \
        --dim 1 --above 1.5 --name flipped

A state is flagged where |obs[dim]| > above (HalfCheetah's obs[1] is the torso's pitch in radians: beyond 1.5 the
cheetah lies on its back). For the run's deployed rectifier (`rectifier/`) and the one the drift check kept out
(`rectifier-alternative/`), each at its own offline alpha and gate as deployed, this reports over `--episodes`
seeded episodes (the harness's evaluation seeds, 10000 + i) the return, the share of flagged steps, the first
flagged step of each episode and the share of states beyond the data's state support (`SuiteSupport`); then the
share of flagged states over the same model rollouts the reach check rolls (`--starts` dataset states, `--horizon`
steps, the run's saved dynamics model, the same member draws for both), counting only rollouts that start
unflagged; and the data's own flagged share. With `--before K`: the same count over model rollouts started from the
data's own rows K steps before each onset of a flagged state (each 10 times, 2K steps), the anchor beside them:
does the model fall where the data fell? Appends one row per call to results/state_event.json, with the
command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import spar_rectify  # noqa: F401  (before torch)

HERE = Path(__file__).parent
RESULT = HERE / "results" / "state_event.json"
FOLDERS = ("rectifier", "rectifier-alternative")
ONSET_REPEATS = 10  # model rollouts per start before an onset (`--before`): each draws its own members


def flagged(states: np.ndarray, dim: int, above: float) -> np.ndarray:
    """(T,) bool: the rows of `states` `(T, obs_dim)` whose |dimension `dim`| exceeds `above`."""
    return np.abs(np.asarray(states)[:, dim]) > above


def env_side(policy, env_id: str, episodes: int, support, dim: int, above: float) -> dict:
    """Seeded episodes of `policy`: returns, flagged share, first flagged step per episode (None: never), and
    the share of states off the data."""
    import suite_bench

    returns, obs, actions, (lengths, _) = suite_bench.rollouts(policy, env_id, episodes, lengths=True)
    flags = flagged(obs, dim, above)
    firsts, start = [], 0
    for n in lengths:
        hit = np.flatnonzero(flags[start : start + n])
        firsts.append(int(hit[0]) if len(hit) else None)
        start += n
    _, off = support.violations(obs, actions)
    return {
        "returns": [round(float(r), 1) for r in returns],
        "flagged_share": round(float(flags.mean()), 4),
        "first_flagged_step": firsts,
        "state_violation_rate": round(float(off.mean()), 4),
    }


def onset_starts(data, dim: int, above: float, before: int) -> np.ndarray:
    """(K,) the data's rows `before` steps ahead of each onset of a flagged state (a flagged row whose previous row, in
    the same episode, is not), where the episode runs unflagged and unbroken from that row to the onset."""
    flags = flagged(data.observations.numpy(), dim, above)
    ends = (data.terminations.numpy() + data.truncations.numpy()) > 0
    rows = []
    for t in np.flatnonzero(flags[1:] & ~flags[:-1] & ~ends[:-1]) + 1:
        start = t - before
        if start >= 0 and not ends[start:t].any() and not flags[start:t].any():
            rows.append(start)
    return np.asarray(rows, dtype=np.int64)


def model_side(policies: dict, data, model, first, picks, dim: int, above: float) -> dict:
    """The flagged share of each policy's model rollouts from `first` `(B, obs_dim)` through the members `picks`
    `(horizon, B)` (`drift.rollout_draws`), over rollouts that start unflagged, and the share of those rollouts
    flagged at least once."""
    from spar_rectify.drift import StateBox, model_rollout
    from spar_rectify.spaces import ActionScaler

    keep = ~flagged(first.numpy(), dim, above)
    box, scaler, out = StateBox.of(data.observations), ActionScaler(data.action_space), {}
    for name, policy in policies.items():
        hits = np.stack(
            [
                flagged(s.next_states.numpy(), dim, above)
                for s in model_rollout(policy, first, picks, model, box, scaler, name)
            ]
        )
        hits = hits[:, keep]
        out[name] = {
            "flagged_share": round(float(hits.mean()), 5),
            "rollouts_ever_flagged": round(float(hits.any(0).mean()), 4),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    import suite_bench
    import torch

    from spar_rectify import RectifiedPolicy
    from spar_rectify.data import load_minari
    from spar_rectify.drift import DynamicsEnsemble, rollout_draws

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    suite_bench.add_run_probe_arguments(parser)
    parser.add_argument("--dim", type=int, required=True, help="the observation dimension to flag on")
    parser.add_argument("--above", type=float, required=True, help="flag a state where |obs[dim]| exceeds this")
    parser.add_argument("--name", default="flagged", help="what a flagged state is (e.g. flipped), for the results")
    parser.add_argument(
        "--episodes", type=int, default=10, help="seeded env episodes per rectifier (default 10; 0: the model only)"
    )
    parser.add_argument("--starts", type=int, default=1000, help="model rollouts (default 1000, the reach check's)")
    parser.add_argument("--horizon", type=int, default=300, help="model steps (default 300, the reach check's)")
    parser.add_argument(
        "--before",
        type=int,
        default=0,
        help="also roll the model from the data's own rows this many steps before each onset of a flagged state "
        "(each start 10 times, for twice as many steps), the anchor beside the two rectifiers (0: not)",
    )
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args(argv)
    if args.episodes < 0 or args.starts < 1 or args.horizon < 1 or args.before < 0:
        parser.error("--starts and --horizon must each be at least 1, --episodes and --before at least 0")
    missing = [f for f in (*FOLDERS, "dynamics") if not (Path(args.run) / f).is_dir()]
    if missing:
        parser.error(
            f"--run {args.run}: no {', '.join(missing)} there; pass a finished run trained with auto_alpha and a reach "
            "policy"
        )
    run, anchor = suite_bench.probed_run(parser, args)
    data = load_minari(args.dataset)
    dims = data.observations.shape[1]
    if not 0 <= args.dim < dims:
        parser.error(f"--dim {args.dim}: the observations have {dims} dimensions; pass one from 0 to {dims - 1}")
    env_id = data.env_spec.id
    policies = {f: RectifiedPolicy(anchor, run / f) for f in FOLDERS}
    support = suite_bench.SuiteSupport(data)
    model, flag = DynamicsEnsemble.load(run / "dynamics"), {"dim": args.dim, "above": args.above}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    choice = summary.get("penalty_choice") or {}
    row = suite_bench.probe_row(
        args,
        run,
        "state_event.py",
        event=f"{args.name}: |obs[{args.dim}]| > {args.above:g}",
        data_flagged_share=round(float(flagged(data.observations.numpy(), args.dim, args.above).mean()), 4),
        reach_deployed=suite_bench.reach_was_deployed(choice) if choice else None,
        alphas={f: p.corrector.alpha for f, p in policies.items()},
        env={f: env_side(p, env_id, args.episodes, support, args.dim, args.above) for f, p in policies.items()}
        if args.episodes
        else None,
        model=model_side(
            policies, data, model, *rollout_draws(data, model, args.starts, args.horizon, args.seed), **flag
        ),
    )
    if args.before:
        rows = onset_starts(data, args.dim, args.above, args.before)
        if len(rows):
            first = data.observations[torch.as_tensor(rows)].repeat(ONSET_REPEATS, 1)
            picks = torch.randint(
                model.members, (2 * args.before, len(first)), generator=torch.Generator().manual_seed(args.seed)
            )
            row["model_before_onsets"] = {
                "before": args.before,
                "onsets": len(rows),
                "repeats": ONSET_REPEATS,
                "horizon": 2 * args.before,
                **model_side({**policies, "anchor": anchor}, data, model, first, picks, **flag),
            }
    print(json.dumps({k: v for k, v in row.items() if k != "config"}, indent=1))
    suite_bench.append_result(Path(args.out), row)


if __name__ == "__main__":
    main()
