"""The whole journey in one run: a base policy, a Minari dataset collected with it, SPAR trained
on that dataset, an evaluation table (raw vs rectified), and the side-by-side video.

    python demos/collect_and_rectify.py            # quick: 20k steps + offline checks (47 min beside 2 jobs)
    python demos/collect_and_rectify.py --full     # 200k transitions, 200k gradient steps

Defaults: Hopper-v5 and the bundled SAC medium policy (an SB3 zip: loading it runs pickle; it is
ours). Outputs go under --out: the dataset (its own Minari root unless MINARI_DATASETS_PATH is
set), the training run (logs, TensorBoard, checkpoints, rectifier/), the video and the PNGs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

HERE = Path(__file__).parent


def parse(argv=None, description: str | None = None) -> argparse.Namespace:
    """The journey's flags; `description` (default: this module's docstring) is what --help prints above them."""
    p = argparse.ArgumentParser(
        description=description or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument(
        "--base-policy",
        default=str(HERE / "assets" / "hopper" / "sac_medium.zip"),
        help="SB3 .zip, BCPolicy folder, or package.module:function",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=0.2,
        help="Gaussian exploration std (normalised units) for policies that cannot sample",
    )
    p.add_argument("--transitions", type=int, default=50_000, help="transitions to collect")
    p.add_argument("--steps", type=int, default=20_000, help="SPAR gradient steps")
    p.add_argument("--episodes", type=int, default=5, help="evaluation episodes, raw and rectified")
    p.add_argument("--video-steps", type=int, default=400, help="steps per video episode")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--full", action="store_true", help="200k transitions and 200k gradient steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/journey")
    return p.parse_args(argv)


def main(argv=None, description: str | None = None) -> dict:
    args = parse(argv, description)
    if args.full:
        args.transitions, args.steps, args.episodes = 200_000, 200_000, 10
    out = Path(args.out)
    os.environ.setdefault("MINARI_DATASETS_PATH", str((out / "minari").resolve()))
    import gymnasium as gym
    import torch

    from spar_rectify import (
        Exploration,
        RectifiedPolicy,
        TrainConfig,
        collect,
        compare,
        evaluate,
        load_minari,
        load_policy,
        load_rectifier,
        train,
    )

    torch.set_num_threads(1)
    start = time.time()
    policy = load_policy(args.base_policy, action_space=gym.make(args.env).action_space)
    exploration = Exploration("stochastic") if hasattr(policy, "sample") else Exploration("gaussian", args.noise)
    dataset_id = f"journey/{args.env.split(':')[-1].lower()}/collected-v0"
    print(f"1/4 collecting {args.transitions} transitions with {policy.name} ({exploration.kind} exploration)")
    collect(policy, args.env, dataset_id, args.transitions, exploration=exploration, seed=args.seed, overwrite=True)
    data = load_minari(dataset_id)
    print(f"2/4 training SPAR for {args.steps} steps on {data}")
    config = TrainConfig(
        algo="spar",
        steps=args.steps,
        seed=args.seed,
        eval_every=max(args.steps // 4, 1),
        eval_episodes=max(args.episodes // 2, 1),
        checkpoint_every=max(args.steps // 10, 1),
        log_every=max(min(1000, args.steps // 20), 1),
    )
    run_dir = out / "run"
    result = train(
        config,
        data,
        run_dir,
        anchor=policy,
        env=args.env,
        resume=(run_dir / "checkpoint" / "train_state.json").exists(),
    )
    print(f"3/4 evaluating {args.episodes} seeded episodes, raw and rectified")
    rectified = RectifiedPolicy(policy, result.artifact)
    raw_r = evaluate(policy, args.env, args.episodes, seed=10_000)
    rect_r = evaluate(rectified, args.env, args.episodes, seed=10_000)
    print(f"{'policy':>10} {'mean return':>12} {'std':>8}")
    for name, r in (("raw", raw_r), ("rectified", rect_r)):
        print(f"{name:>10} {r.mean():>12.1f} {r.std():>8.1f}")
    video = None
    if not args.no_video:
        print("4/4 recording raw vs rectified")
        shown = compare(args.env, policy, load_rectifier(result.artifact), 1, args.seed, args.video_steps, (320, 240))
        print(shown.table())
        path, pictures = shown.write(out / "journey.mp4", f"{args.env}: raw vs rectified", run_dir=run_dir)
        print(f"wrote {path} ({len(shown.frames)} frames) and {', '.join(str(p) for p in pictures)}")
        video = {"path": path, "frames": len(shown.frames), "pictures": pictures}
    print(f"done in {time.time() - start:.0f} s; outputs under {out}")
    return {"raw": raw_r, "rectified": rect_r, "artifact": result.artifact, "video": video}


if __name__ == "__main__":
    main()
