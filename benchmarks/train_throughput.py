"""Gradient steps per second and peak memory of each method (issue targets: SPAR >= 100 steps/s,
<= 1.5x the kit's IQL step time, peak RSS <= 2 GB on a 1M-transition dataset).

Usage:
    python benchmarks/train_throughput.py [--transitions 1000000] [--steps 400]

Each method runs in its own subprocess, on one thread, at batch 256 with 256x256 networks, on a
synthetic dataset of HalfCheetah's size (obs 17, act 6; the values do not matter for speed).
Each rate is the median of five timed windows, and the methods take turns over `--rounds`
rounds (median over rounds). SPAR is timed in its full step at today's defaults (critic + Latent
Self-Imitation of mu and of the reach policy beside it, `lsi_reach_penalty=0` since session 21, plus the in-sample
candidate's third latent policy, `in_sample_candidate=1` alone since session 30: the most expensive stage) and,
separately, without the candidate (`spar:nocandidate`, the step of sessions 21-29), in its first stage
(`spar:cvae`: critic + CVAE), with one latent policy (`spar:single`: `lsi_reach_penalty=None` and no candidate, the
step before session 21; session 16's `spar:reach`, timed when one policy was the default, is `spar:nocandidate`),
with the candidate that also self-imitates (`spar:insample`, `in_sample_candidate_lsi=True`; `spar:insamplealone`,
the in-sample term alone, is today's `spar`), and
(`spar:drift`) with `drift_penalty`'s off-data value (its TD step; the model rollouts it refreshes every 1,000 steps
fall outside the timed windows). `iql-reference` is a
minimal hand-written IQL step (no framework: plain modules and losses, same sizes) timed beside them,
the yardstick that says how much the kit's own IQL costs over the bare arithmetic on the same machine at the same time.
Achieved GFLOP/s per method: the floating-point operations of one update (matrix products,
forward and backward, counted by `torch.utils.flop_counter` over 6 steps, which spans SPAR's
`lsi_every` and TD3+BC's `policy_freq`) times steps/s. `--profile N` also profiles N steps of each method
(`torch.profiler`, after the timing) and records the operators' shares of the CPU time (the top ones, per
method: where a step's time goes, e.g. matrix products against elementwise work). `--mkl both` (default) times
every method with MKL's Intel code path on and off (`SPAR_MKL_INTEL_PATH`, see `spar_rectify.mkl`), interleaved,
and reports the speed-up; `on` / `off` time one setting. `--matmul both` times every method with float32 and with bf16
matrix products in the gradient steps (`TrainConfig.fast_matmul`, see `spar_rectify.matmul`;
a no-op on CPUs without bf16 units), interleaved the same way, and reports that speed-up.
Records the CPU it ran on. Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
OBS_DIM, ACT_DIM = 17, 6
METHODS = (
    "bc",
    "td3bc",
    "iql",
    "spar",
    "spar:cvae",
    "spar:nocandidate",
    "spar:single",
    "spar:insample",
    "spar:insamplealone",
    "spar:drift",
    "iql-reference",
)
#: Operators kept per method by --profile, by their share of the profiled CPU time.
PROFILE_TOP = 12


def reference_iql_steps(obs, action, reward, next_obs, not_done):
    """A minimal hand-written IQL (CORL style, no framework): the yardstick for the kit's IQL.

    Separate twin Q modules, V, a deterministic tanh actor, fused Adam, the same losses and
    sizes as `spar_rectify.algos.iql`. Returns a function doing one gradient step per call.
    """
    import copy

    import torch
    from torch import nn

    def net(i, o):
        return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o))

    q1, q2, v, actor = net(OBS_DIM + ACT_DIM, 1), net(OBS_DIM + ACT_DIM, 1), net(OBS_DIM, 1), net(OBS_DIM, ACT_DIM)
    q1_t, q2_t = copy.deepcopy(q1).requires_grad_(False), copy.deepcopy(q2).requires_grad_(False)
    opt_q = torch.optim.Adam([*q1.parameters(), *q2.parameters()], 3e-4, fused=True)
    opt_v = torch.optim.Adam(v.parameters(), 3e-4, fused=True)
    opt_a = torch.optim.Adam(actor.parameters(), 3e-4, fused=True)
    n = len(reward)

    def step():
        idx = torch.randint(n, (256,))
        s, a, r, s2, nd = obs[idx], action[idx], reward[idx], next_obs[idx], not_done[idx]
        sa = torch.cat([s, a], 1)
        with torch.no_grad():
            tq = torch.min(q1_t(sa), q2_t(sa)).squeeze(-1)
            target = r + 0.99 * nd * v(s2).squeeze(-1)
        adv = tq - v(s).squeeze(-1)
        v_loss = (torch.abs(0.7 - (adv < 0).float()) * adv.pow(2)).mean()
        opt_v.zero_grad(set_to_none=True)
        v_loss.backward()
        opt_v.step()
        q_loss = (q1(sa).squeeze(-1) - target).pow(2).mean() + (q2(sa).squeeze(-1) - target).pow(2).mean()
        opt_q.zero_grad(set_to_none=True)
        q_loss.backward()
        opt_q.step()
        w = torch.exp(3.0 * adv.detach()).clamp(max=100.0)
        a_loss = (w * (torch.tanh(actor(s)) - a).pow(2).sum(-1)).mean()
        opt_a.zero_grad(set_to_none=True)
        a_loss.backward()
        opt_a.step()
        with torch.no_grad():
            for t, o in zip([*q1_t.parameters(), *q2_t.parameters()], [*q1.parameters(), *q2.parameters()]):
                t.lerp_(o, 0.005)

    return step


def timed(step, steps: int) -> tuple[float, float]:
    """(steps per wall-clock second, steps per CPU-second of this process): medians over five
    windows of `steps` calls, after 30 warm-up calls. The CPU-second rate counts only the time this
    process ran, so other load on the machine (a background campaign) moves it far less than the
    wall-clock rate; on an idle machine with one thread the two agree."""
    import numpy as np

    for _ in range(30):
        step()
    wall, cpu = [], []
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        wall.append(steps / (time.perf_counter() - start))
        cpu.append(steps / (time.process_time() - start_cpu))
    return float(np.median(wall)), float(np.median(cpu))


def flops_per_step(step, steps: int = 6) -> float:
    """Floating-point operations of one call of `step`, averaged over `steps` calls."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for _ in range(steps):
            step()
    return counter.get_total_flops() / steps


def op_shares(step, steps: int, top: int = PROFILE_TOP) -> list[dict]:
    """Where `steps` calls of `step` spend their CPU time (`torch.profiler`): the `top` operators by self CPU
    time, each with its share of the total, its calls per step and its mean microseconds per call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) or 1.0
    return [
        {
            "op": e.key,
            "share": round(e.self_cpu_time_total / total, 4),
            "calls_per_step": round(e.count / steps, 2),
            "us_per_call": round(e.self_cpu_time_total / max(e.count, 1), 1),
        }
        for e in ops[:top]
    ]


def method_config(method: str, fast_matmul: bool = False):
    """The `TrainConfig` timed for a METHODS entry: the method's defaults; for SPAR, straight at the stage timed
    (`spar`: the full step at today's defaults; `spar:nocandidate` without the in-sample candidate; `spar:cvae`
    the first stage; `spar:single` the full step with one latent policy; `spar:insample` with the candidate that also
    self-imitates; `spar:insamplealone` the candidate alone, as today; `spar:drift` with drift_penalty)."""
    from spar_rectify.config import TrainConfig

    algo, stage = (method.split(":") + ["full"])[:2]
    extra = {
        "full": {"manifold_fraction": 0.0, "fit_fraction": 0.0},
        "cvae": {"manifold_fraction": 0.99, "fit_fraction": 0.0},
        "nocandidate": {"manifold_fraction": 0.0, "fit_fraction": 0.0, "in_sample_candidate": 0.0},
        "single": {
            "manifold_fraction": 0.0,
            "fit_fraction": 0.0,
            "lsi_reach_penalty": None,
            "in_sample_candidate": 0.0,
        },
        "insample": {
            "manifold_fraction": 0.0,
            "fit_fraction": 0.0,
            "in_sample_candidate": 1.0,
            "in_sample_candidate_lsi": True,
        },
        "insamplealone": {
            "manifold_fraction": 0.0,
            "fit_fraction": 0.0,
            "in_sample_candidate": 1.0,
            "in_sample_candidate_lsi": False,
        },
        # the model's fit is a one-off before training, not a step cost: kept short here
        "drift": {"manifold_fraction": 0.0, "fit_fraction": 0.0, "drift_penalty": 1.0, "drift_model_steps": 200},
    }[stage]
    return TrainConfig(algo=algo, steps=10**7, fast_matmul=fast_matmul, **(extra if algo == "spar" else {}))


def run_one(method: str, transitions: int, steps: int, fast_matmul: bool = False, profile_steps: int = 0) -> dict:
    import numpy as np

    import spar_rectify  # before torch: MKL's fast path, when SPAR_MKL_INTEL_PATH allows it

    # isort: split
    import torch
    from gymnasium import spaces

    from spar_rectify import BCPolicy
    from spar_rectify.data import from_arrays
    from spar_rectify.matmul import bf16_status
    from spar_rectify.trainer import Trainer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    obs_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    obs = rng.normal(size=(transitions, OBS_DIM)).astype(np.float32)
    done = np.zeros(transitions, bool)
    done[999::1000] = True
    data = from_arrays(
        obs,
        rng.uniform(-1, 1, (transitions, ACT_DIM)).astype(np.float32),
        rng.normal(size=transitions).astype(np.float32),
        np.roll(obs, -1, 0),
        np.zeros(transitions, bool),
        done,
        obs_space,
        act_space,
        name="synthetic",
    )
    if method == "iql-reference":
        t = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
        step = reference_iql_steps(
            t(obs),
            t(rng.uniform(-1, 1, (transitions, ACT_DIM))),
            t(rng.normal(size=transitions)),
            t(np.roll(obs, -1, 0)),
            t(~done),
        )
        rate, cpu_rate = timed(step, steps)
        gflops = round(rate * flops_per_step(step) / 1e9, 1)
        profiled = {"profile": op_shares(step, profile_steps)} if profile_steps else {}
        return {
            "steps_per_s": round(rate, 1),
            "steps_per_cpu_s": round(cpu_rate, 1),
            "gflops": gflops,
            "mkl_intel_path": spar_rectify.mkl.status()["active"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **profiled,
        }
    del obs
    config = method_config(method, fast_matmul)
    algo = config.algo
    anchor = BCPolicy(obs_space, act_space) if algo == "spar" else None
    trainer = Trainer(config, data, anchor)
    fit = trainer.fit()
    # Five timed windows; the median window resists the load of whatever else runs on the machine.
    rate, cpu_rate = timed(lambda: next(fit), steps)
    flops = flops_per_step(lambda: next(fit))
    profiled = {"profile": op_shares(lambda: next(fit), profile_steps)} if profile_steps else {}
    return {
        "steps_per_s": round(rate, 1),
        "steps_per_cpu_s": round(cpu_rate, 1),
        "gflops": round(rate * flops / 1e9, 1),
        "gflop_per_step": round(flops / 1e9, 3),
        "mkl_intel_path": spar_rectify.mkl.status()["active"],
        "fast_matmul": fast_matmul and bf16_status()["available"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **profiled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=200, help="steps per timed window (5 windows)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all methods; the median round counts")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        help="methods to time (default: all); spar is SPAR's full step at today's defaults (mu and the reach "
        "policy), spar:cvae its first stage, spar:single its full step with one latent policy "
        "(lsi_reach_penalty=None), spar:insample with in_sample_candidate=1 (spar:insamplealone: and "
        "in_sample_candidate_lsi=False), spar:drift its full step with "
        "drift_penalty=1",
    )
    parser.add_argument(
        "--mkl",
        choices=("on", "off", "both"),
        default="both",
        help="MKL's Intel code path (spar_rectify.mkl): time with it on, off, or both (interleaved)",
    )
    parser.add_argument(
        "--matmul",
        choices=("fp32", "bf16", "both"),
        default="both",
        help="matrix products of the gradient steps (TrainConfig.fast_matmul): float32, bf16, or both (interleaved)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile N steps of each method after timing it (torch.profiler) and record the top operators' "
        "shares of the CPU time (0: off)",
    )
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fast-matmul", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "train_throughput.json"))
    args = parser.parse_args()
    if args.profile < 0:
        parser.error(f"--profile {args.profile}: give a number of steps >= 0 (0: no profile)")
    if args.only:
        print(json.dumps(run_one(args.only, args.transitions, args.steps, args.fast_matmul, args.profile)))
        return
    import numpy as np

    # Methods (and settings) take turns, round after round: this machine's speed drifts by 10-20%
    # over minutes, and interleaving spreads that drift over every method instead of favouring one.
    # A setting is (MKL's Intel path, matrix-product precision); the first is the library's default.
    mkls = ["on", "off"] if args.mkl == "both" else [args.mkl]
    matmuls = ["fp32", "bf16"] if args.matmul == "both" else [args.matmul]
    settings = [(m, p) for p in matmuls for m in mkls]
    names = args.methods
    rounds: dict[tuple, list[dict]] = {(m, k): [] for m in names for k in settings}
    for r in range(args.rounds):
        for method in names:
            for setting in settings:
                mkl, matmul = setting
                env = {**os.environ, "SPAR_MKL_INTEL_PATH": "1" if mkl == "on" else "0"}
                command = [sys.executable, __file__, "--only", method, "--transitions", str(args.transitions)]
                command += ["--steps", str(args.steps), "--profile", str(args.profile)]
                command += ["--fast-matmul"] if matmul == "bf16" else []
                out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
                rounds[(method, setting)].append(json.loads(out.stdout.strip().splitlines()[-1]))
                shown = {k: v for k, v in rounds[(method, setting)][-1].items() if k != "profile"}
                print(f"round {r + 1}: {method} mkl {mkl} matmul {matmul} {shown}", flush=True)

    def summary(setting: tuple) -> dict:
        out = {}
        for m in names:
            v = rounds[(m, setting)]
            out[m] = {
                "steps_per_s": round(float(np.median([x["steps_per_s"] for x in v])), 1),
                "steps_per_s_rounds": [x["steps_per_s"] for x in v],
                "steps_per_cpu_s": round(float(np.median([x["steps_per_cpu_s"] for x in v])), 1),
                "steps_per_cpu_s_rounds": [x["steps_per_cpu_s"] for x in v],
                "gflops": round(float(np.median([x["gflops"] for x in v])), 1),
                "mkl_intel_path": all(x["mkl_intel_path"] for x in v),
                "fast_matmul": all(x.get("fast_matmul", False) for x in v),
                "peak_rss_mb": max(x["peak_rss_mb"] for x in v),
            }
            if "gflop_per_step" in v[0]:
                out[m]["gflop_per_step"] = v[0]["gflop_per_step"]
            if "profile" in v[-1]:
                out[m]["profile_last_round"] = v[-1]["profile"]
        return out

    from spar_rectify.mkl import cpu_model  # the measurements ran in child processes; this one only reports

    primary = summary(settings[0])
    main_methods = ("bc", "td3bc", "iql", "spar")
    result = {
        "methods": {k: v for k, v in primary.items() if k in main_methods},
        "setting": {"mkl": settings[0][0], "matmul": settings[0][1]},
        "cpu": cpu_model(),
        "batch_size": 256,
        "hidden": [256, 256],
        "threads": 1,
        "transitions": args.transitions,
        "obs_dim": OBS_DIM,
        "act_dim": ACT_DIM,
        "timed_steps": 5 * args.steps,
        "rounds": args.rounds,
        "command": " ".join(["python benchmarks/train_throughput.py", *sys.argv[1:]]),
    }
    if "spar:cvae" in primary:
        result["spar_stage1_cvae"] = primary["spar:cvae"]
    if "spar:single" in primary:
        result["spar_one_latent_policy"] = primary["spar:single"]
    if "spar:insample" in primary:
        result["spar_with_in_sample_candidate"] = primary["spar:insample"]
    if "spar:insamplealone" in primary:
        result["spar_with_in_sample_candidate_alone"] = primary["spar:insamplealone"]
    if "spar:drift" in primary:
        result["spar_with_drift_penalty"] = primary["spar:drift"]
    if "iql-reference" in primary:
        result["iql_reference"] = primary["iql-reference"]
    if "spar" in primary and "iql" in primary:
        result["spar_step_time_vs_iql"] = round(primary["iql"]["steps_per_s"] / primary["spar"]["steps_per_s"], 3)
    for setting in settings[1:]:
        mkl, matmul = setting
        other = summary(setting)
        label = f"mkl_{mkl}_matmul_{matmul}"
        result[f"methods_{label}"] = other
        result[f"speedup_{label}_vs_default"] = {
            m: round(other[m]["steps_per_s"] / primary[m]["steps_per_s"], 3) for m in names
        }
        result[f"speedup_per_cpu_s_{label}_vs_default"] = {
            m: round(other[m]["steps_per_cpu_s"] / primary[m]["steps_per_cpu_s"], 3) for m in names
        }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
