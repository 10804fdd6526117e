"""The `spar` command line: `spar train`, `spar collect`, `spar import`, `spar evaluate`, `spar tune-alpha`,
`spar drift`, `spar sweep`.

Envs from a module register on import with Gymnasium's `module:EnvId` syntax, e.g.
`--env envs:PointReach-v0`. Loading an SB3 `.zip` runs pickle: pass only files you trust.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro

from spar_rectify import mkl
from spar_rectify.checkpoint import load_rectifier, set_default_alpha, set_default_gate
from spar_rectify.collect import Exploration, collect
from spar_rectify.config import TrainConfig
from spar_rectify.data import load_minari
from spar_rectify.evaluation import EVAL_SEED, evaluate, reference_returns
from spar_rectify.importing import arrays_from_npz, arrays_from_sb3_replay_buffer, import_transitions
from spar_rectify.matmul import bf16_status
from spar_rectify.policies import load_policy
from spar_rectify.rectified_policy import RectifiedPolicy
from spar_rectify.support import DatasetSupport
from spar_rectify.sweep import parse_settings, summarise, sweep
from spar_rectify.trainer import train
from spar_rectify.tuning import DEFAULT_ALPHAS, OFFLINE, TUNE_SEED, save_choice, tune_run
from spar_rectify.wrapper import SPARRectifierWrapper


@dataclass(frozen=True)
class TrainArgs:
    """Train a rectifier (SPAR) or a baseline policy on a Minari dataset."""

    dataset: str
    """Minari dataset id (local; MINARI_DATASETS_PATH sets the root)."""
    run_dir: Path
    """Output folder: config.json, metrics.csv, tb/, checkpoint/, and rectifier/ or policy/."""
    base_policy: Optional[Path] = None
    """The anchor SPAR rectifies: a BCPolicy folder or an SB3 .zip (pickle: trusted files only)."""
    vec_normalize: Optional[Path] = None
    """VecNormalize statistics of an SB3 base policy (pickle: trusted files only)."""
    env: Optional[str] = None
    """Env for evaluation (default: the dataset's recorded env, if Gymnasium's registry knows its id and
    entry point; module:EnvId imports your module first)."""
    trust_dataset_env: bool = False
    """Build the evaluation env from the dataset's recorded spec even when it names code outside
    Gymnasium's registry (imports and runs that code: only for datasets you trust)."""
    resume: bool = False
    """Continue from run_dir/checkpoint."""
    threads: int = 1
    """torch threads (1 is fastest on small nets; resume on the same count for identical results)."""
    quiet: bool = False
    """No progress output (by default: a bar on a terminal, a line every 5% of the steps in a log)."""
    config: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class CollectArgs:
    """Roll a policy in an env into a Minari dataset (hdf5)."""

    policy: Path
    """A BCPolicy folder or an SB3 .zip (pickle: trusted files only)."""
    env: str
    """Gymnasium env id (module:EnvId imports the module first)."""
    dataset: str
    """Minari dataset id to write."""
    steps: int = 100_000
    """Total transitions wanted (whole episodes; with --append, counting what is there)."""
    exploration: Exploration = Exploration()
    seed: int = 0
    """Episode i resets with seed + i."""
    rectifier: Optional[Path] = None
    """Collect rectified behaviour: wrap the env with this rectifier."""
    overwrite: bool = False
    """Replace an existing dataset."""
    append: bool = False
    """Continue an existing dataset (after an interruption, say)."""
    chunk_steps: int = 10_000
    """Write complete episodes every this many steps."""
    vec_normalize: Optional[Path] = None
    """VecNormalize statistics of an SB3 --policy (pickle: trusted files only)."""
    ref_min_score: Optional[float] = None
    """Return of a random policy on this task, recorded for normalised scores (with --ref-max-score)."""
    ref_max_score: Optional[float] = None
    """Return of a reference (expert) policy, recorded for normalised scores (with --ref-min-score)."""
    ref_policy: Optional[Path] = None
    """Measure the reference returns instead: a uniform random policy and this policy (BCPolicy folder or
    SB3 .zip, pickle: trusted files only), --ref-episodes seeded episodes each."""
    ref_episodes: int = 10
    """Episodes per policy when measuring reference returns with --ref-policy."""
    quiet: bool = False
    """No progress output (by default: a bar on a terminal, a line per written chunk in a log)."""


@dataclass(frozen=True)
class EvaluateArgs:
    """Seeded evaluation of a policy; with --rectifier, raw and rectified side by side on the same seeds."""

    policy: Path
    """The base policy: a BCPolicy folder or an SB3 .zip (pickle: trusted files only)."""
    env: str
    """Gymnasium env id (module:EnvId imports the module first)."""
    rectifier: Optional[Path] = None
    """A rectifier folder (or spar train run folder) trained around --policy."""
    alpha: Optional[float] = None
    """Residual scale in [0, 1] with --rectifier; default: the rectifier's own (see spar tune-alpha)."""
    gate: Optional[bool] = None
    """The critic gate with --rectifier (default: on when the rectifier carries its critic)."""
    episodes: int = 10
    """Episodes per policy; episode i resets with seed --seed + i."""
    seed: int = EVAL_SEED
    """First reset seed (apart from spar collect's default 0, so evaluation does not replay the first
    collected episodes' initial states)."""
    dataset: Optional[str] = None
    """A Minari dataset (the one the rectifier was trained on): adds the support figures of every
    executed (state, action) pair against it (median distance ratio, share beyond its 99th percentile)."""
    json: bool = False
    """Print JSON instead of a table."""
    vec_normalize: Optional[Path] = None
    """VecNormalize statistics of an SB3 --policy (pickle: trusted files only)."""


@dataclass(frozen=True)
class TuneAlphaArgs:
    """Pick how much of the residual to deploy: evaluate the rectified policy at several alphas on
    the same seeded episodes; with --save, store the best as the rectifier's default alpha. Given a
    spar train run folder, every rectifier it holds (the deployed one and the latent policies the
    offline checks kept out) is swept on the same episodes, and another replaces the deployed one only
    where its paired gain over it exceeds two standard errors and 5% of its return; --save then copies it into the run's
    rectifier/ (the offline choice is kept in rectifier-offline/)."""

    policy: Path
    """The base policy the rectifier was trained with (an SB3 zip runs pickle on load: use your own files)."""
    rectifier: Path
    """The rectifier folder, or a spar train run folder: every rectifier in it is swept (episodes x (1 + 4 per
    rectifier) with the default alphas; pass <run>/rectifier to tune the deployed one alone)."""
    env: str
    """Gymnasium env id (module:EnvId imports the module first)."""
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Residual scales in [0, 1] to try (0: the base policy alone)."""
    episodes: int = 10
    """Episodes per alpha (the same seeds for every alpha)."""
    seed: int = TUNE_SEED
    """First reset seed of the tuning episodes; report results on other seeds (spar evaluate uses 0..)."""
    save: bool = False
    """Write the best alpha into the rectifier folder as its default (and deploy the chosen rectifier of a run)."""
    dataset: Optional[str] = None
    """The Minari dataset the rectifier was trained on (default: the one a run folder's summary.json names): each
    setting's share of steps beyond its support is measured, and a rectifier the offline checks kept out replaces
    the deployed one only if it does not leave the data more (one point of steps of slack)."""
    vec_normalize: Optional[Path] = None
    """VecNormalize statistics of an SB3 --policy (pickle: trusted files only)."""


@dataclass(frozen=True)
class DriftArgs:
    """Offline, without the env: does a rectified policy lead the system off the data's states more
    often than the base policy? Fits a dynamics ensemble to the dataset (or loads one from --model-dir),
    rolls the base policy and each rectifier from the same dataset states through it, and reports the
    share of model states beyond the data's state support. A single action close to the data can still
    drift, step after step. Given several rectifiers (e.g. trained at several lsi_anchor_penalty values),
    it names the one with the smallest penalty that does not drift."""

    policy: Path
    """The base policy the rectifier was trained with (an SB3 zip runs pickle on load: use your own files)."""
    rectifier: tuple[Path, ...]
    """The rectifier folder(s) (or spar train run folders) to check, all trained around --policy."""
    dataset: str
    """The Minari dataset the rectifiers were trained on."""
    threshold: float = 2.0
    """Excess over the base policy, in percentage points of model states off the data, above which a
    rectifier counts as drifting (on hopper: +7.4 and +7.8 for the runs that drifted in the env, +1.1 or
    less for the others; benchmarks/README.md)."""
    horizon: int = 100
    """Model steps per rollout (drift compounds: over 25 steps the runs measured barely separated)."""
    starts: int = 1000
    """Rollouts per policy, from non-terminal dataset states."""
    members: int = 5
    """Dynamics models in the ensemble."""
    model_steps: int = 20_000
    """Gradient steps fitting the ensemble (minutes on one CPU core; skipped when --model-dir has one)."""
    model_dir: Optional[Path] = None
    """Where the fitted model is kept: loaded from there when present, fitted and saved there when not."""
    seed: int = 0
    """Seeds the model's fit, the start states and the member drawn at each step."""
    json: bool = False
    """Print JSON instead of a table."""
    vec_normalize: Optional[Path] = None
    """VecNormalize statistics of an SB3 --policy (pickle: trusted files only)."""
    alphas: Optional[tuple[float, ...]] = None
    """With one --rectifier: deploy it at each of these residual scales and name the largest within
    --threshold (what spar train does after training, TrainConfig.auto_alpha); e.g. 1 0.75 0.5 0.25."""
    save: bool = False
    """With --alphas: write the chosen alpha into the rectifier folder as its default."""
    per_member: bool = False
    """With --alphas: also roll every alpha through each dynamics member alone (a share of --starts each: one
    more check) and print the per-member excesses, as spar train records them: how far another fit of the
    model could move each excess."""
    model_margin: float = 0.0
    """With --per-member: an alpha counts as within while its excess is at most --threshold plus this many
    standard errors of its per-member excesses (TrainConfig.alpha_model_margin; 0: the threshold alone)."""
    gate: Optional[bool] = None
    """The critic gate of the rectified policies checked (default: as deployed, the rectifier's own default: on
    when it carries its critic); False checks them ungated, and with --alphas --save stores the gate with the
    alpha. Per-step switching between the base action and the rectified one can itself lead off the data
    (hopper medium-expert: +3.35 gated, +0.92 ungated; benchmarks/README.md)."""


@dataclass(frozen=True)
class ImportArgs:
    """Write logged transitions (no policy needed) as a Minari dataset: from an .npz file with arrays
    observations, actions, rewards, next_observations, terminations, truncations (env units), or from
    an SB3 replay buffer saved with model.save_replay_buffer (pickle: trusted files only)."""

    env: str
    """Gymnasium env id the log comes from (module:EnvId imports the module first)."""
    dataset: str
    """Minari dataset id to write, e.g. me/hopper/logs-v0."""
    npz: Optional[Path] = None
    """An .npz file with the six arrays (loaded without pickle)."""
    sb3_replay_buffer: Optional[Path] = None
    """An SB3 ReplayBuffer .pkl (loading it runs pickle: only files you trust)."""
    overwrite: bool = False
    """Replace an existing dataset of that id."""


@dataclass(frozen=True)
class SweepArgs:
    """Train one config over datasets x seeds x settings, one CPU per job, on Ray (pip install
    "spar_rectify[sweep]"). Records land in OUT_DIR/sweep.json as jobs finish, with a table in
    OUT_DIR/sweep.md; run the same command again to resume interrupted jobs from their checkpoints."""

    datasets: tuple[str, ...]
    """Minari dataset ids (local; MINARI_DATASETS_PATH sets the root)."""
    out_dir: Path
    """Sweep folder: sweep.json, sweep.md and one run folder per job."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds."""
    set: tuple[str, ...] = ()
    """Settings to sweep, KEY=V1,V2,... for any --config field, e.g. --set lsi_temperature=0.5,1,2."""
    base_policy: Optional[Path] = None
    """The anchor (SPAR): a BCPolicy folder or an SB3 .zip (pickle: trusted files only)."""
    episodes: int = 10
    """Seeded evaluation episodes per job (seeds 10000..)."""
    env: Optional[str] = None
    """Env for evaluation (default: each dataset's recorded env; module:EnvId for your own)."""
    address: Optional[str] = None
    """An existing Ray cluster (e.g. auto); default: start Ray on this machine."""
    num_cpus: Optional[int] = None
    """Jobs at once on a local Ray (default: every CPU of this machine)."""
    config: TrainConfig = field(default_factory=TrainConfig)


def run_sweep(args: SweepArgs) -> None:
    settings = parse_settings(args.set)
    if args.config.algo == "spar" and args.base_policy is None:
        raise ValueError(
            "--config.algo spar needs --base-policy (the anchor to rectify); train --config.algo bc "
            "first to start from data alone"
        )
    records = sweep(
        args.datasets,
        args.seeds,
        settings,
        args.out_dir,
        args.config,
        args.base_policy,
        args.episodes,
        args.address,
        args.num_cpus,
        env=args.env,
    )
    print(summarise(records))
    print(f"records: {args.out_dir / 'sweep.json'}")


def run_import(args: ImportArgs) -> None:
    if (args.npz is None) == (args.sb3_replay_buffer is None):
        raise ValueError("pass exactly one of --npz FILE or --sb3-replay-buffer FILE")
    if args.npz is not None:
        arrays, source = arrays_from_npz(args.npz), str(args.npz)
    else:
        arrays, source = arrays_from_sb3_replay_buffer(args.sb3_replay_buffer), str(args.sb3_replay_buffer)
    summary = import_transitions(arrays, args.env, args.dataset, overwrite=args.overwrite, source=source)
    print(
        f"{summary['dataset']}: {summary['transitions']} transitions in {summary['episodes']} episodes "
        f"({summary['terminations']} ended by termination, {summary['truncations']} truncated or cut off), "
        f"written to {summary['folder']}"
    )


def run_train(args: TrainArgs) -> None:
    import torch

    torch.set_num_threads(args.threads)
    print(f"MKL fast path: {mkl.status()['reason']}", flush=True)
    if args.config.fast_matmul:
        print(f"--config.fast-matmul: {bf16_status()['reason']}", flush=True)
    data = load_minari(args.dataset, trust_env=args.trust_dataset_env)
    anchor = load_policy(args.base_policy, args.vec_normalize) if args.base_policy else None
    result = train(
        args.config,
        data,
        args.run_dir,
        anchor=anchor,
        env=args.env,
        resume=args.resume,
        progress=False if args.quiet else None,
    )
    rectifier = (result.artifact / "rectifier.json").is_file()  # SPAR: say the alpha it deploys by default
    print(
        json.dumps(
            {
                "artifact": str(result.artifact),
                "steps": result.steps,
                "train_seconds": round(result.train_seconds, 1),
                "eval_return_mean": None if result.eval_returns is None else float(result.eval_returns.mean()),
                "normalized_score": result.normalized_score,
                **({"default_alpha": load_rectifier(result.artifact).alpha} if rectifier else {}),
            },
            indent=2,
        )
    )


def run_collect(args: CollectArgs) -> None:
    import gymnasium as gym

    if (args.ref_min_score is None) != (args.ref_max_score is None):
        raise ValueError(
            f"--ref-min-score and --ref-max-score go together (got {args.ref_min_score} and {args.ref_max_score}); "
            "or pass --ref-policy to measure both"
        )
    if args.ref_policy is not None and args.ref_max_score is not None:
        raise ValueError("pass either --ref-policy (measure the reference returns) or --ref-min/max-score, not both")
    if args.ref_min_score is not None and not args.ref_max_score > args.ref_min_score:
        raise ValueError(f"--ref-max-score ({args.ref_max_score}) must be above --ref-min-score ({args.ref_min_score})")
    policy = load_policy(args.policy, args.vec_normalize)
    refs = (args.ref_min_score, args.ref_max_score)
    if args.ref_policy is not None:
        refs = reference_returns(args.env, load_policy(args.ref_policy), args.ref_episodes)
        print(f"reference returns over {args.ref_episodes} episodes: random {refs[0]:.1f}, --ref-policy {refs[1]:.1f}")
    env = gym.make(args.env)
    if args.rectifier is not None:
        env = SPARRectifierWrapper(env, args.rectifier, base_policy=policy)
    ds = collect(
        policy,
        env,
        args.dataset,
        args.steps,
        exploration=args.exploration,
        seed=args.seed,
        overwrite=args.overwrite,
        append=args.append,
        chunk_steps=args.chunk_steps,
        ref_min_score=refs[0],
        ref_max_score=refs[1],
        progress=False if args.quiet else None,
    )
    from minari.storage import get_dataset_path

    print(
        f"{args.dataset}: {ds.total_episodes} episodes, {ds.total_steps} steps, written to "
        f"{get_dataset_path(args.dataset)} (MINARI_DATASETS_PATH sets the root)"
    )
    if args.exploration.kind == "none" and args.rectifier is None:
        print(
            "actions: --policy's own (--exploration.kind none). To train a rectifier around this same policy, "
            "collect with --exploration.kind stochastic (an SB3 model's sampling) or gaussian: SPAR learns its "
            "correction from actions that differ from the base policy's"
        )


def run_evaluate(args: EvaluateArgs) -> None:
    import numpy as np

    base = load_policy(args.policy, args.vec_normalize)
    support = DatasetSupport(load_minari(args.dataset)) if args.dataset is not None else None
    rows = {"raw": {"policy": str(args.policy)}}
    policies = {"raw": base}
    if args.rectifier is not None:
        rectified = RectifiedPolicy(base, args.rectifier, alpha=args.alpha, gate=args.gate)
        steps: dict[str, list] = {"support": [], "held": []}

        def tracked(obs):
            c = rectified.correct(obs)
            steps["support"] += c.support_score.tolist()
            steps["held"] += c.gate_held.tolist()
            return c.executed_action

        policies["rectified"] = tracked
        rows["rectified"] = {
            "policy": f"{args.policy} + {args.rectifier}",
            "alpha": rectified.corrector.alpha,
            "gate": rectified.corrector.gate,
        }
    for name, row in rows.items():
        visited: list = []
        returns = evaluate(policies[name], args.env, args.episodes, args.seed, visited=visited)
        row.update(
            return_mean=float(returns.mean()),
            return_std=float(returns.std()),
            episodes=args.episodes,
            seeds=f"{args.seed}..{args.seed + args.episodes - 1}",
            returns=returns.tolist(),
        )
        if support is not None:
            row.update(support.report(visited), support_dataset=args.dataset)
        if name == "rectified":
            row.update(
                support_score_mean=float(np.mean(steps["support"])), gate_held_share=float(np.mean(steps["held"]))
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(_evaluate_table(rows, support is not None))
    said = f"seeds {rows['raw']['seeds']} for every policy"
    if "rectified" in rows:
        r = rows["rectified"]
        said += f"; rectified at alpha {r['alpha']}, gate {'on' if r['gate'] else 'off'}"
        said += "; residual score: 1 = the data's typical residual"
    if support is not None:
        said += (
            f"; support against {args.dataset}: median nearest-neighbour distance of the executed (state, action) "
            "pairs over the data's own (1 = as close as the data to itself), and the share beyond its 99th percentile"
        )
    else:
        said += "; add --dataset ID for the support figures against the training data"
    print(said)


def _evaluate_table(rows: dict, with_support: bool) -> str:
    head = f"{'policy':>10} {'mean return':>12} {'std':>8} {'episodes':>9}"
    if with_support:
        head += f" {'support ratio':>14} {'violations':>11}"
    head += f" {'residual score':>15} {'gate held':>10}"
    lines = [head]
    for name, row in rows.items():
        line = f"{name:>10} {row['return_mean']:>12.1f} {row['return_std']:>8.1f} {row['episodes']:>9}"
        if with_support:
            line += f" {row['support_ratio_median']:>14.2f} {100 * row['support_violation_rate']:>10.1f}%"
        if name == "rectified":
            line += f" {row['support_score_mean']:>15.3f} {100 * row['gate_held_share']:>9.0f}%"
        else:
            line += f" {'-':>15} {'-':>10}"
        lines.append(line)
    return "\n".join(lines)


def run_drift(args: DriftArgs) -> None:
    from spar_rectify.drift import META_FILE, drift_check, least_penalised_within, load_or_fit

    for flag, value, low in (
        ("--horizon", args.horizon, 1),
        ("--starts", args.starts, 10),
        ("--members", args.members, 2),
    ):
        if value < low:
            raise ValueError(f"{flag} {value}: use at least {low}")
    if args.model_steps < 1:
        raise ValueError(f"--model-steps {args.model_steps}: use at least 1 (about 20000 is typical)")
    if not args.rectifier:
        raise ValueError("--rectifier: give at least one rectifier folder to check")
    if args.alphas is not None and len(args.rectifier) != 1:
        raise ValueError(f"--alphas: give one --rectifier to choose its alpha (got {len(args.rectifier)})")
    if args.alphas is not None:
        for alpha in args.alphas:
            if not 0 <= alpha <= 1:
                raise ValueError(f"--alphas {alpha}: each residual scale must lie in [0, 1] (1: the whole residual)")
    if args.save and args.alphas is None:
        raise ValueError("--save stores the alpha --alphas chooses: add e.g. --alphas 1 0.75 0.5 0.25")
    if args.per_member and args.alphas is None:
        raise ValueError("--per-member checks the alphas --alphas tries: add e.g. --alphas 1 0.75 0.5 0.25")
    if not math.isfinite(args.model_margin):
        raise ValueError(f"--model-margin {args.model_margin}: give a finite number of standard errors (0: off)")
    if args.model_margin and not args.per_member:
        raise ValueError(f"--model-margin {args.model_margin} is in the members' spread: add --per-member")
    # The policies first: a wrong folder or a rectifier of another anchor stops before minutes of fitting.
    base = load_policy(args.policy, args.vec_normalize)
    policies: dict = {"base": base}
    penalties: dict[str, float | None] = {}
    for i, folder in enumerate(args.rectifier):
        name = "rectified" if len(args.rectifier) == 1 else f"rectified {i + 1}"
        policies[name] = RectifiedPolicy(base, folder, gate=args.gate)
        penalties[name] = policies[name].corrector.checkpoint.config.get("lsi_anchor_penalty")
    data = load_minari(args.dataset)
    if args.model_dir is not None and (args.model_dir / META_FILE).is_file():
        fitted_to = json.loads((args.model_dir / META_FILE).read_text()).get("dataset")
        if fitted_to not in (None, data.name):
            raise ValueError(
                f"--model-dir {args.model_dir} holds a dynamics model of {fitted_to}, not of --dataset "
                f"{args.dataset}; pass an empty folder (a model of this dataset is fitted and saved there)"
            )
    model = load_or_fit(
        data, args.model_dir, args.members, args.model_steps, args.seed, progress=lambda line: print(line, flush=True)
    )
    if args.alphas is not None:
        _drift_alphas(args, base, data, model)
        return
    report = drift_check(policies, data, model, args.starts, args.horizon, args.seed)
    pick = least_penalised_within(report, penalties, args.threshold)
    folders = dict(zip(penalties, map(str, args.rectifier)))
    if args.json:
        extra = {"rectifiers": folders, "pick": pick and folders[pick], "gate": args.gate}
        print(json.dumps(report.to_dict() | extra, indent=2))
        return
    print(report.table())
    for name in penalties:
        verdict = "drifts" if report.excess(name) > args.threshold else "within"
        print(
            f"{name}: {folders[name]} (lsi_anchor_penalty {penalties[name]}): excess {report.excess(name):+.1f} "
            f"+- {report.excess_se(name):.1f} points (s.e. over the start states), {verdict} the "
            f"+{args.threshold:g} threshold"
        )
    print(
        f"excess: rectified minus base, share of model states beyond the data's 99th-percentile nearest-neighbour "
        f"distance, mean over {args.horizon} model steps from {args.starts} dataset states (model validation error "
        f"{100 * model.validation_mse:.2f}% of the state change's variance; its own error makes every share large: "
        "read the differences). The +- is over the start states only: another fit of the model (--seed, a new "
        "--model-dir) moves the excess more (on hopper medium-expert by 2.7 points; benchmarks/README.md)."
    )
    if pick is None:
        print("pick: none stays within the threshold; deploy a smaller alpha, or retrain with a larger penalty")
    else:
        print(f"pick: {folders[pick]}, the smallest lsi_anchor_penalty within the threshold")


def _drift_alphas(args: DriftArgs, base, data, model) -> None:
    """spar drift --alphas: the largest alpha of one rectifier within --threshold (--save stores it)."""
    from spar_rectify.drift import choose_alpha

    folder = args.rectifier[0]
    chosen = choose_alpha(
        base,
        folder,
        data,
        model,
        args.alphas,
        args.threshold,
        args.starts,
        args.horizon,
        args.seed,
        members=args.per_member,
        model_margin=args.model_margin,
        gate=args.gate,
    )
    if args.save:
        set_default_alpha(folder, chosen.alpha)
        if args.gate is not None:  # the alpha was chosen for this gate: deploy the two together
            set_default_gate(folder, args.gate)
    if args.json:
        print(
            json.dumps(chosen.to_dict() | {"rectifier": str(folder), "saved": args.save, "gate": args.gate}, indent=2)
        )
        return
    print(chosen.report.table())
    print(chosen.table())
    gate = "" if args.gate is None else f", gate {'on' if args.gate else 'off'}"
    print(
        f"default alpha of {folder} is now {chosen.alpha:g}{gate}" if args.save else "(--save stores it as the default)"
    )


def _training_data(dataset: str | None, folder: Path):
    """The dataset `spar tune-alpha` measures support on: --dataset, else the one a run folder's summary.json names
    (None, said, where that one cannot be loaded here)."""
    summary = folder / "summary.json"
    if dataset is None and summary.is_file():
        dataset = json.loads(summary.read_text()).get("dataset")
        if dataset is not None:
            try:
                return load_minari(dataset)
            except (FileNotFoundError, ValueError) as err:
                print(f"support not checked: the run's dataset {dataset} does not load here ({err}); pass --dataset")
                return None
    return load_minari(dataset) if dataset is not None else None


def run_tune_alpha(args: TuneAlphaArgs) -> None:
    sweep = tune_run(
        load_policy(args.policy, args.vec_normalize),
        args.rectifier,
        args.env,
        args.alphas,
        args.episodes,
        args.seed,
        progress=True,
        data=_training_data(args.dataset, args.rectifier),
    )
    print(sweep.table())
    if args.save:
        folder = save_choice(sweep)
        if sweep.folder == folder:
            print(f"default alpha of {folder} is now {sweep.best_alpha}")
        else:
            print(
                f"deployed {sweep.folder} at alpha {sweep.best_alpha} into {folder}; the offline checks' choice is "
                f"kept in {folder.parent / OFFLINE} (copy it back to undo)"
            )
    print(json.dumps(sweep.to_dict()))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `spar` console script."""
    command = tyro.extras.subcommand_cli_from_dict(
        {
            "train": TrainArgs,
            "collect": CollectArgs,
            "evaluate": EvaluateArgs,
            "tune-alpha": TuneAlphaArgs,
            "drift": DriftArgs,
            "sweep": SweepArgs,
            "import": ImportArgs,
        },
        args=argv,
        prog="spar",
        description="spar_rectify: support-preserving action rectification.",
    )
    try:
        runners = {
            TrainArgs: run_train,
            CollectArgs: run_collect,
            EvaluateArgs: run_evaluate,
            TuneAlphaArgs: run_tune_alpha,
            DriftArgs: run_drift,
            SweepArgs: run_sweep,
            ImportArgs: run_import,
        }
        runners[type(command)](command)
    except KeyboardInterrupt:
        raise SystemExit(130) from None  # what was done is saved and said (e.g. "interrupted at step N")
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError, RuntimeError) as err:
        # A user's mistake gets its message, not a traceback; set SPAR_DEBUG=1 for the traceback.
        if os.environ.get("SPAR_DEBUG"):
            raise
        raise SystemExit(f"spar: error: {err}") from None


if __name__ == "__main__":
    main()
