"""Per-step cost of SPARRectifierWrapper against a raw env.step (issue target: <= 1.3x on Hopper-v5).

Usage:
    python benchmarks/wrapper_overhead.py [--env Hopper-v5] [--steps 10000] [--rectifier PATH]

Without --rectifier it builds an untrained rectifier of the default architecture (256x256 actor
and decoder, latent 2 * act_dim): the step cost does not depend on the weights' values. Raw and
rectified steps are timed in alternating blocks of 1,000 so that drift in machine load hits both;
the result is the median over all timed steps. Writes benchmarks/results/wrapper_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

# isort: split
import gymnasium as gym
import numpy as np
import torch

from spar_rectify import CallablePolicy, Rectifier, RectifierCheckpoint, SPARRectifierWrapper, load_rectifier

RESULTS = Path(__file__).parent / "results"


def default_checkpoint(env: gym.Env) -> RectifierCheckpoint:
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    torch.manual_seed(0)
    rect = Rectifier(obs_dim, act_dim, np.full(act_dim, 0.3)).eval()
    anchor = CallablePolicy(lambda o: np.zeros((len(o), act_dim), np.float32), env.action_space)
    return RectifierCheckpoint.from_anchor(
        rect, env.observation_space, env.action_space, anchor, np.zeros((4, obs_dim), np.float32)
    )


def time_block(env: gym.Env, actions: np.ndarray, seed: int) -> list[float]:
    env.reset(seed=seed)
    times = []
    for action in actions:
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        times.append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rectifier", default=None, help="checkpoint folder (default: untrained, default arch)")
    parser.add_argument("--out", default=str(RESULTS / "wrapper_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    raw = gym.make(args.env)
    checkpoint = load_rectifier(args.rectifier) if args.rectifier else default_checkpoint(raw)
    rectified = SPARRectifierWrapper(gym.make(args.env), checkpoint)  # the default: gated when it has a critic
    gated = rectified.corrector.gate
    ungated = SPARRectifierWrapper(gym.make(args.env), checkpoint, gate=False) if gated else None
    rng = np.random.default_rng(0)
    block = 1000
    raw_t, rect_t, open_t = [], [], []
    for env in (rectified, ungated):  # warm-up / JIT
        if env is not None:
            time_block(env, rng.uniform(-1, 1, (block, raw.action_space.shape[0])).astype(np.float32), 0)
    for b in range(max(1, args.steps // block)):
        actions = rng.uniform(raw.action_space.low, raw.action_space.high, (block, raw.action_space.shape[0])).astype(
            raw.action_space.dtype
        )
        raw_t += time_block(raw, actions, b)
        rect_t += time_block(rectified, actions, b)
        if ungated is not None:
            open_t += time_block(ungated, actions, b)
    raw_us, rect_us = float(np.median(raw_t) * 1e6), float(np.median(rect_t) * 1e6)
    result = {
        "env": args.env,
        "raw_step_us": round(raw_us, 2),
        "rectified_step_us": round(rect_us, 2),
        "ratio": round(rect_us / raw_us, 3),
        "gate": gated,
        **(
            {
                "ungated_step_us": round(float(np.median(open_t) * 1e6), 2),
                "ungated_ratio": round(float(np.median(open_t) * 1e6) / raw_us, 3),
            }
            if open_t
            else {}
        ),
        "steps": len(raw_t),
        "rectifier": args.rectifier or "untrained default architecture",
        "hidden": list(checkpoint.rectifier.hidden),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": "python benchmarks/wrapper_overhead.py"
        + (f" --rectifier {args.rectifier}" if args.rectifier else ""),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    target = 1.3
    print(f"ratio {result['ratio']:.3f} ({'meets' if result['ratio'] <= target else 'misses'} the <= {target}x target)")


if __name__ == "__main__":
    main()
