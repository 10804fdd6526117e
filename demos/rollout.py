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

import numpy as np

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)
from spar_rectify import SPARRectifierWrapper, load_policy, load_rectifier, rollout

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
    import gymnasium as gym

    from spar_rectify import video

    start = time.time()

    def say(text: str) -> None:  # a line per phase: rendering and encoding take minutes on two cores
        print(f"[{time.time() - start:6.1f} s] {text}", flush=True)

    say(f"loading the base policy {args.base_policy} and the rectifier {args.rectifier}")
    policy = load_policy(args.base_policy, action_space=gym.make(args.env).action_space)
    checkpoint = load_rectifier(args.rectifier)

    def act(obs):
        return policy(np.asarray(obs, np.float32)[None])[0]

    def make(rectified: bool):
        wrap = (lambda e: SPARRectifierWrapper(e, checkpoint, base_policy=policy)) if rectified else None
        if args.video:
            return video.make_render_env(args.env, args.width, args.height, wrapper=wrap)
        env = gym.make(args.env)
        return wrap(env) if wrap else env

    raw_env, rect_env = make(False), make(True)
    rows, frames, scores = [], [], []
    for i in range(args.episodes):
        seed = args.seed + i

        def raw_text(info, total, t):
            return [f"raw base policy   episode {i + 1}, seed {seed}", f"step {t}  return {total:8.1f}"]

        def rect_text(info, total, t):
            r = np.abs(info.get("residual", np.zeros(1))).max()
            gate = "  gate: base action" if info.get("rectifier_gate_held") else ""
            return [
                f"rectified (SPAR)   episode {i + 1}, seed {seed}",
                f"step {t}  return {total:8.1f}",
                f"|residual| {r:.3f}{gate}",
            ]

        if args.video:
            say(f"episode {i + 1}/{args.episodes} (seed {seed}): raw, rendering")
            lf, lt, raw_ret, _ = video.rollout_frames(raw_env, act, seed, args.max_steps, raw_text)
            say(f"episode {i + 1}/{args.episodes} (seed {seed}): rectified, rendering")
            rf, rt, rect_ret, infos = video.rollout_frames(rect_env, act, seed, args.max_steps, rect_text)
            frames += video.side_by_side(lf, lt, rf, rt)
        else:
            say(f"episode {i + 1}/{args.episodes} (seed {seed}): raw and rectified")
            raw_ret = rollout(raw_env, act, seed, args.max_steps).total
            rect = rollout(rect_env, act, seed, args.max_steps)
            rect_ret, infos = rect.total, rect.infos
        scores += [inf["support_score"] for inf in infos]
        score = float(np.mean([inf["support_score"] for inf in infos])) if infos else float("nan")
        resid = float(np.mean([np.abs(inf["residual"]).mean() for inf in infos])) if infos else float("nan")
        held = float(np.mean([inf.get("rectifier_gate_held", False) for inf in infos])) if infos else float("nan")
        rows.append(
            {"seed": seed, "raw": raw_ret, "rectified": rect_ret, "support": score, "residual": resid, "held": held}
        )
    # "gate held": share of steps where the rectifier's own critic kept the base action (0 without a gate).
    print(
        f"{'seed':>5} {'return raw':>11} {'rectified':>11} {'support score':>14} {'mean |residual|':>16} "
        f"{'gate held':>10}"
    )
    for r in rows:
        print(
            f"{r['seed']:>5} {r['raw']:>11.1f} {r['rectified']:>11.1f} {r['support']:>14.3f} {r['residual']:>16.3f} "
            f"{100 * r['held']:>9.0f}%"
        )
    raw_mean, rect_mean = np.mean([r["raw"] for r in rows]), np.mean([r["rectified"] for r in rows])
    print(f" mean {raw_mean:>11.1f} {rect_mean:>11.1f}")
    out, pictures = None, []
    if args.video:
        from spar_rectify import plots

        path = Path(args.out).with_suffix(".gif") if args.gif else Path(args.out)
        say(f"encoding {len(frames)} frames into {path}")
        out = video.write_video(frames, path, fps=args.fps)
        say("plotting returns, support scores and learning curves")
        stem = path.with_suffix("")
        pictures.append(
            plots.plot_returns(
                [r["raw"] for r in rows],
                [r["rectified"] for r in rows],
                f"{stem}_returns.png",
                title=f"{args.env}: raw vs rectified",
            )
        )
        pictures.append(plots.plot_support_scores(scores, f"{stem}_support.png"))
        metrics = Path(args.rectifier).parent / "metrics.csv"
        if metrics.is_file():  # the training run's logs sit beside a rectifier trained by `spar train`
            pictures.append(plots.plot_learning_curves(metrics.parent, f"{stem}_learning.png"))
        print(f"wrote {out} ({len(frames)} frames) and {', '.join(str(p) for p in pictures)}")
    print(f"done in {time.time() - start:.0f} s")
    return {"rows": rows, "video": out, "frames": len(frames), "pictures": pictures}


if __name__ == "__main__":
    main()
