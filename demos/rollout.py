"""Raw versus rectified: roll the same seeds with the base policy alone and through the
rectifier, print a table, and (with --video) write one side-by-side mp4.

    python demos/rollout.py --video

Defaults: the bundled Hopper-v5 SAC medium policy (demos/assets/hopper/sac_medium.zip: an SB3
zip, loading it runs pickle; it is ours) and the bundled rectifier trained by this kit on the
`medium` dataset (demos/assets/hopper/rectifier). Needs the `video` extra for --video.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)
from spar_rectify import compare, load_policy, load_rectifier

# isort: split
import gymnasium as gym  # after spar_rectify: the rendering default

ASSETS = Path(__file__).parent / "assets" / "hopper"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Hopper-v5", help="Gymnasium env id (module:EnvId imports the module)")
    p.add_argument(
        "--base-policy",
        default=str(ASSETS / "sac_medium.zip"),
        help="SB3 .zip, BCPolicy folder, or package.module:function",
    )
    p.add_argument("--rectifier", default=str(ASSETS / "rectifier"), help="rectifier checkpoint folder")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i, raw and rectified alike")
    p.add_argument("--max-steps", type=int, default=1000, help="cap per episode")
    p.add_argument("--video", action="store_true", help="write the side-by-side video")
    p.add_argument("--gif", action="store_true", help="write a GIF instead of an mp4")
    p.add_argument("--out", default="videos/rollout.mp4", help="video path")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=60)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    start = time.time()

    def say(text: str) -> None:  # a line per phase: rendering and encoding take minutes on two cores
        print(f"[{time.time() - start:6.1f} s] {text}", flush=True)

    say(f"loading the base policy {args.base_policy} and the rectifier {args.rectifier}")
    policy = load_policy(args.base_policy, action_space=gym.make(args.env).action_space)
    checkpoint = load_rectifier(args.rectifier)
    say(f"the rectifier deploys alpha {checkpoint.alpha:g} of its residual (its default: see spar drift --alphas)")
    render = (args.width, args.height) if args.video else None
    result = compare(args.env, policy, checkpoint, args.episodes, args.seed, args.max_steps, render, say)
    # "gate held": share of steps where the rectifier's own critic kept the base action (0 without a gate).
    print(result.table())
    out, pictures = None, []
    if args.video:
        path = Path(args.out).with_suffix(".gif") if args.gif else Path(args.out)
        # a rectifier trained by `spar train` has its run's logs (metrics.csv) beside it
        out, pictures = result.write(path, f"{args.env}: raw vs rectified", args.fps, Path(args.rectifier).parent, say)
        print(f"wrote {out} ({len(result.frames)} frames) and {', '.join(str(p) for p in pictures)}")
    print(f"done in {time.time() - start:.0f} s")
    return {"rows": [vars(p) for p in result.pairs], "video": out, "frames": len(result.frames), "pictures": pictures}


if __name__ == "__main__":
    main()
