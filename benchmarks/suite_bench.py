"""Does rectification pay? Train every method on the suite's datasets and measure return and support.

Usage:
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/suite_bench.py quick   # ~15 min
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/suite_bench.py full    # hours; resumable
    MINARI_DATASETS_PATH=$PWD/datasets python benchmarks/suite_bench.py full --status   # where it stands

Methods, the same gradient-step budget each: `bc` (pure BC), `td3bc`, `iql`, `spar` (anchored to
the pure-BC policy of the same seed, as in the paper), and on every dataset (medium-expert too):
`medium-raw` (the SB3 medium policy as is) and `medium-rectified` (SPAR around it); then
`spar-tuned` and `medium-rectified-tuned`: the same run (no new training), the rectifier and alpha that
`spar_rectify.tune_run` picks on 10 episodes from seed 20000 among the run's rectifiers (the deployed one
and the latent policies its offline checks kept out; a replacement may not leave the dataset's support more),
a deployment step a user takes (`spar tune-alpha`), reported on the usual evaluation episodes. Each trained
policy is evaluated over `--episodes` seeded episodes (seed 10000 + i, the same for all); the
executed (state, action) pairs of those episodes give the support metric
(`spar_rectify.support.SupportMetric`). Finished runs are recorded in the tier's JSON file and
never redone. Writes `results/suite_<tier>.json`, `results/suite_<tier>.md` and
`results/suite_<tier>.png`, and `results/suite.json`: every tier's records in one file, each with
its `tier`. Build the datasets first with `benchmarks/build_suite.py`.

Jobs run as Ray tasks (`spar_rectify.sweep.run_jobs`, one CPU each; `--jobs N` on a local Ray,
`--address` for an existing cluster); a failed job is retried and resumes from its checkpoint.

Variants (a method change measured beside the defaults, never mixed into the tier's own table):
    python benchmarks/suite_bench.py full --variant bound05 --set bound_max=0.5 --methods medium-rectified
trains with those `TrainConfig` overrides under `_work/variant_<name>/` and writes
`results/suite_<tier>_<name>.{json,md,png}`; each record carries `variant` and `overrides`.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)
from spar_rectify.algos import training_fields
from spar_rectify.config import DEPLOYMENT_FIELDS, saved_settings
from spar_rectify.drift import GAIN_MARGIN_SE, AlphaChoice, PenaltyChoice
from spar_rectify.sweep import run_jobs
from spar_rectify.trainer import ALTERNATIVE, IN_SAMPLE, REFUSED

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SUITE = HERE.parent.parent / "shared" / "suite"
TIERS = {
    "quick": {
        "datasets": ["spar/hopper/medium-v0", "spar/hopper/medium-replay-v0"],
        "seeds": [0],
        "steps": 20_000,
        "episodes": 10,
        "jobs": 2,
    },
    "full": {
        "datasets": [
            f"spar/{e}/{k}-v0" for e in ("hopper", "halfcheetah") for k in ("medium", "medium-replay", "medium-expert")
        ],
        "seeds": [0, 1, 2],
        "steps": 200_000,
        "episodes": 10,
        "jobs": 2,
    },
}


@dataclass(frozen=True)
class Method:
    """One column of the suite's table.

    Attributes:
        name: the column's name (`--methods`).
        algo: the `TrainConfig.algo` it trains; None: nothing is trained.
        anchor: the frozen base policy: "bc" (the bc run of the same seed and dataset) or "medium"
            (the suite's SB3 medium policy); None: none.
        tuned_from: re-evaluates this method's trained rectifier at the alpha `tune_alpha` picks on
            other seeds (no training); None: not a tuned method.
    """

    name: str
    algo: str | None = None
    anchor: str | None = None
    tuned_from: str | None = None

    @property
    def run_method(self) -> str:
        """The method whose run folder holds this column's trained policy."""
        return self.tuned_from or self.name


METHODS = {
    m.name: m
    for m in (
        Method("bc", "bc"),
        Method("td3bc", "td3bc"),
        Method("iql", "iql"),
        Method("spar", "spar", anchor="bc"),
        Method("medium-raw", anchor="medium"),
        Method("medium-rectified", "spar", anchor="medium"),
        Method("spar-tuned", anchor="bc", tuned_from="spar"),
        Method("medium-rectified-tuned", anchor="medium", tuned_from="medium-rectified"),
    )
}


def trained_algo(method: str) -> str | None:
    """The `TrainConfig.algo` behind a column of the table: the one its run folder was trained with (a tuned
    column's is its source method's); None for a column that trains nothing."""
    return METHODS[METHODS[method].run_method].algo


@dataclass(frozen=True)
class Job:
    """One run: a method on a dataset and seed, with the tier's budget.

    `work`: the tier's work folder (`<work>/<dataset>/<method>/seed<seed>` holds the run);
    `suite`: the folder of the suite's SB3 policies; `variant`/`overrides`: a named set of
    `TrainConfig` overrides (None / {} for the defaults)."""

    dataset: str
    method: str
    seed: int
    steps: int
    episodes: int
    work: str
    suite: str = str(SUITE)
    variant: str | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def spec(self) -> Method:
        return METHODS[self.method]

    def run_dir(self, method: str | None = None) -> Path:
        """The run folder `<work>/<dataset>/<method>/seed<seed>` (`method`: another method's, same seed)."""
        return Path(self.work) / self.dataset.replace("/", "_") / (method or self.method) / f"seed{self.seed}"


RECORD_FIELDS = (
    "tier",
    "dataset",
    "method",
    "seed",
    "steps",
    "normalized_score",
    "return",
    "support_violation_rate",
    "support_ratio_median",
    "train_seconds",
)
EVAL_SEED = 10_000


def rollouts(policy, env_id: str, episodes: int, lengths: bool = False):
    """Returns (episodes,) and the executed obs (T, obs_dim) and actions (T, act_dim) of seeded
    episodes (seed EVAL_SEED + i), env units; with `lengths`, also each episode's length and
    whether it ended by termination (a fall), as a fourth item `(lengths, terminated)`."""
    import gymnasium as gym
    import numpy as np

    from spar_rectify import rollout
    from spar_rectify.rollout import batched

    env, act = gym.make(env_id), batched(policy)
    episodes_run = [rollout(env, act, EVAL_SEED + i) for i in range(episodes)]
    returns = np.asarray([e.total for e in episodes_run])
    obs = np.concatenate([e.observations[:-1] for e in episodes_run])
    actions = np.concatenate([e.actions for e in episodes_run])
    if lengths:
        ends = np.array([len(e) for e in episodes_run]), np.array([e.terminated for e in episodes_run])
        return returns, obs, actions, ends
    return returns, obs, actions


def medium_policy_path(dataset: str, suite: Path | str = SUITE) -> Path:
    """The suite's SB3 medium policy for a dataset's env (loading it runs pickle: the suite's own file)."""
    return Path(suite) / dataset.split("/")[1] / "sac_medium.zip"


def anchor_policy(dataset_dir: Path, dataset: str, method: str, seed: int, suite: Path | str = SUITE):
    """The frozen anchor of a rectifier run: the `bc` policy of the same seed under `dataset_dir`
    (`<work>/<tier>/<dataset>`) for `spar`, the suite's SB3 medium policy for `medium-rectified`."""
    from spar_rectify import BCPolicy, load_policy

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    kind = METHODS[method].anchor
    if kind == "bc":
        folder = dataset_dir / "bc" / f"seed{seed}" / "policy"  # the bc job of the same seed runs first
        if not folder.is_dir():
            raise FileNotFoundError(
                f"spar's anchor, the bc policy of seed {seed}, is not at {folder}: run the bc job first (leave "
                f"bc in --methods), or for a variant that does not change BC, link the tier's own bc run there"
            )
        return BCPolicy.load(folder)
    if kind == "medium":
        return load_policy(medium_policy_path(dataset, suite))
    raise ValueError(f"method {method!r} has no anchor; expected one with a frozen base policy (spar, medium-*)")


def add_run_probe_arguments(parser) -> None:
    """The arguments of a probe of one finished rectifier run of the harness (`offline_support.py`,
    `model_drift.py`): --run, --dataset, --method, --seed, --suite, --label, --rollout-record."""
    parser.add_argument("--run", required=True, help="a finished rectifier run folder (with rectifier/)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", default="spar", choices=("spar", "medium-rectified"))
    parser.add_argument("--seed", type=int, required=True, help="the run's training seed (finds its BC anchor)")
    parser.add_argument("--suite", default=None, help="folder of the suite's SB3 policies (default: ../shared/suite)")
    parser.add_argument("--label", default="", help="a name for the run in the results (e.g. its kappa)")
    parser.add_argument("--rollout-record", default=None, help="a results JSON whose record of this run to copy in")


def probed_run(parser, args) -> tuple[Path, object]:
    """The run folder of `add_run_probe_arguments`' --run (checked) and its anchor policy."""
    run = Path(args.run)
    if not (run / "rectifier").is_dir():
        parser.error(f"--run {run}: no rectifier/ folder there; pass a finished rectifier run folder")
    return run, anchor_policy(run.parent.parent, args.dataset, args.method, args.seed, args.suite or SUITE)


#: What `rollout_record` copies from a harness record by default: the env-measured score and violations.
ROLLOUT_FIELDS = ("normalized_score", "support_violation_rate", "state_violation_rate")


def rollout_record(
    path: str | None, dataset: str, method: str, seed: int, steps: int, fields: tuple[str, ...] = ROLLOUT_FIELDS
) -> dict | None:
    """`fields` (by default the env-measured score and violations) of one run in a harness results file
    (the last record of that dataset, method, seed and training steps), or None."""
    if not path:
        return None
    runs = json.loads(Path(path).read_text())["runs"]
    match = [
        r
        for r in runs
        if (r["dataset"], r["method"], r["seed"]) == (dataset, method, seed)
        and r.get("config", {}).get("steps") == steps
    ]
    if not match:
        return None
    return {k: match[-1].get(k) for k in fields}


class SuiteSupport:
    """The suite's support metrics for one dataset: on (state, action) pairs and on states alone.

    Queries take executed actions in env units (as `rollouts` returns them)."""

    def __init__(self, data):
        from spar_rectify.spaces import ActionScaler
        from spar_rectify.support import SupportMetric

        self.scaler = ActionScaler(data.action_space)
        self.joint = SupportMetric(data.observations.numpy(), data.actions.numpy())
        self.states = SupportMetric(data.observations.numpy())

    def _pairs(self, obs, actions):
        import numpy as np

        return np.asarray(obs, np.float32), self.scaler.to_normalized_clipped(actions)

    def report(self, obs, actions) -> dict[str, float]:
        """`support_ratio_median`, `support_violation_rate` (pairs) and `state_violation_rate`."""
        obs, actions = self._pairs(obs, actions)
        return {
            **self.joint.report(obs, actions),
            "state_violation_rate": self.states.report(obs)["support_violation_rate"],
        }

    def violations(self, obs, actions):
        """Per step (T,) bool flags: beyond the data for the pair, and for the state alone."""
        obs, actions = self._pairs(obs, actions)
        return self.joint.violations(obs, actions), self.states.violations(obs)


def run_one(job: Job) -> dict:
    """Train (or load) one method on one dataset and seed; evaluate return and support."""
    import spar_rectify  # noqa: F811  (a Ray worker runs this first: before torch, for MKL's path)

    # isort: split
    import torch

    from spar_rectify import RectifiedPolicy, load_policy
    from spar_rectify.data import load_minari
    from spar_rectify.trainer import train

    torch.set_num_threads(1)
    data = load_minari(job.dataset)
    env_id = data.env_spec.id
    spec = job.spec
    run_dir = job.run_dir(spec.run_method)

    def anchor():
        return anchor_policy(run_dir.parent.parent, job.dataset, job.method, job.seed, job.suite)

    start = time.time()
    tuned, result = {}, None
    if spec.algo is None and spec.tuned_from is None:  # the base policy as it is
        policy = anchor()
    elif spec.tuned_from is not None:  # no training: the run's rectifiers, which and its alpha picked on other seeds
        from spar_rectify.tuning import tune_run

        base = anchor()
        sweep = tune_run(base, run_dir, env_id, episodes=job.episodes, data=data)
        policy = RectifiedPolicy(base, sweep.folder, alpha=sweep.best_alpha)
        tuned = {"alpha": sweep.best_alpha, "tune": sweep.to_dict()}
    else:
        cfg = job_config(spec.algo, job.steps, job.seed, job.overrides)
        set_aside_stale(run_dir, cfg)
        base = anchor() if spec.anchor is not None else None
        resume = True  # continues from the run's checkpoint when there is one, else starts
        result = train(cfg, data, run_dir, anchor=base, env=env_id, resume=resume, progress=False)
        policy = load_policy(result.artifact) if base is None else RectifiedPolicy(base, result.artifact)
    # Training time over every resume of the run (the trainer keeps it in its checkpoint), not this call's;
    # for a tuned or untrained method, this call's time.
    seconds = result.train_seconds if result is not None else time.time() - start
    returns, obs, actions = rollouts(policy, env_id, job.episodes)
    support = SuiteSupport(data).report(obs, actions)
    variant = {"variant": job.variant, "overrides": job.overrides} if job.variant else {}
    # The training configuration, so that records trained at older defaults can be told apart.
    config_file = run_dir / "config.json"
    trained = {"config": json.loads(config_file.read_text())} if spec.run_method != "medium-raw" else {}
    # How a rectifier was deployed: the critic gate (on by default when the rectifier carries its critic).
    deployed = {}
    if hasattr(policy, "corrector"):
        corrector = policy.corrector
        deployed = {
            "gate": bool(corrector.gate),
            "alpha": corrector.alpha,
            # rho per dimension: whether its cap clamped it (`same_rho`)
            "residual_bound": [round(float(v), 6) for v in corrector.module.residual_bound],
        }
    summary = json.loads((run_dir / "summary.json").read_text()) if result is not None else {}
    if "bound_cap" in summary:
        deployed["bound_cap"] = summary["bound_cap"]  # what rho's cap cut, whether bound_lift lifted it (`same_rho`)
    if "auto_alpha" in summary:
        deployed["auto_alpha"] = summary["auto_alpha"]  # the offline choice of alpha
    if "penalty_choice" in summary:
        deployed["penalty_choice"] = summary["penalty_choice"]  # which latent policy (lsi_reach_penalty)
    if "gate_choice" in summary:
        deployed["gate_choice"] = summary["gate_choice"]  # gated or ungated (gate_check)
    if "in_sample_choice" in summary:
        deployed["in_sample_choice"] = summary["in_sample_choice"]  # the fallback's check (in_sample_candidate)
    # MKL's code path changes float rounding, and chaotic tasks (HalfCheetah) amplify it: record it.
    deployed["mkl_intel_path"] = spar_rectify.mkl.status()["active"]
    # ...and the CPU behind it; the dataset's size tells a rebuild on another machine apart (the builder's rollouts
    # follow the same float path: hopper medium had 200,048 rows on an Intel machine, 200,091 on an AMD one).
    deployed["machine"] = {"cpu": spar_rectify.mkl.cpu_model(), "dataset_rows": len(data.observations)}
    if result is not None and (run_dir / ALTERNATIVE).is_dir():  # lsi_reach_penalty: the policy not deployed
        deployed["alternative"] = evaluate_alternative(base, run_dir / ALTERNATIVE, data, env_id, job.episodes)
    for name in (IN_SAMPLE, REFUSED):  # in_sample_candidate: the one of LSI's and the in-sample not deployed
        if result is not None and (run_dir / name).is_dir():
            deployed[name] = evaluate_alternative(base, run_dir / name, data, env_id, job.episodes)
    return {
        "dataset": job.dataset,
        "method": job.method,
        "seed": job.seed,
        "steps": _steps(job.method, job.steps),
        "normalized_score": float(data.normalized_score(returns.mean())),
        "return": float(returns.mean()),
        **support,
        "train_seconds": round(seconds, 1),
        **tuned,
        **variant,
        **deployed,
        **trained,
    }


def evaluate_alternative(base, folder: Path, data, env_id: str, episodes: int) -> dict:
    """The return and support of a run's second rectifier (`rectifier-alternative/`, the latent policy the
    drift check did not deploy) at its own offline alpha, on the same seeded episodes: what the other
    choice would have scored."""
    from spar_rectify import RectifiedPolicy

    policy = RectifiedPolicy(base, folder)
    returns, obs, actions = rollouts(policy, env_id, episodes)
    return {
        "lsi_anchor_penalty": policy.corrector.checkpoint.config.get("lsi_anchor_penalty"),
        "alpha": policy.corrector.alpha,
        "gate": bool(policy.corrector.gate),
        "normalized_score": float(data.normalized_score(returns.mean())),
        "return": float(returns.mean()),
        **SuiteSupport(data).report(obs, actions),
    }


def job_config(algo: str, steps: int, seed: int, overrides: dict | None = None):
    """The `TrainConfig` the harness trains a job with: the defaults, the tier's budget and seed, the
    harness's bookkeeping, then a variant's overrides."""
    from spar_rectify.config import TrainConfig

    return TrainConfig.from_dict(
        {
            "algo": algo,
            "steps": steps,
            "seed": seed,
            "eval_every": 0,
            "eval_episodes": 1,
            "checkpoint_every": 10_000,
            "log_every": 1000,
            **(overrides or {}),
        }
    )


def retrain_fields(saved: dict, config) -> list[str]:
    """The fields on which a run folder's saved config differs from `config` in what is trained: the
    deployment settings do not change the weights, so a finished run is re-deployed, not retrained."""
    return [k for k in changed_fields(saved, config) if k not in DEPLOYMENT_FIELDS]


def set_aside_stale(run_dir: Path, config) -> Path | None:
    """Move a run folder trained with other settings than `config` (a checkpoint left by defaults that
    have changed since) to `<run_dir>.stale-<k>`, so that the job trains afresh instead of failing to
    resume; returns where it went (None: nothing to move)."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        return None
    differ = retrain_fields(json.loads(saved.read_text()), config)
    if not differ:
        return None
    k = 0
    while run_dir.with_name(f"{run_dir.name}.stale-{k}").exists():
        k += 1
    target = run_dir.with_name(f"{run_dir.name}.stale-{k}")
    run_dir.rename(target)
    print(f"{run_dir} was trained with other settings ({', '.join(differ)}): moved to {target.name}, training afresh")
    return target


def status_lines(jobs: list[Job], records: list[dict]) -> list[str]:
    """Where each job of a (long, resumable) campaign stands, without training or Ray: one line per job,
    `done` with its recorded score, `started` with its checkpoint's step, or `to do`; a job whose record or run
    folder was trained at other settings says it will train afresh."""
    current = {record_key(r): r for r in records if not stale(r)}
    old = {record_key(r) for r in records if stale(r)}
    lines = []
    for job in jobs:
        name = f"{job.method} {job.dataset} seed {job.seed}"
        record = current.get(record_key(job))
        if record is not None:
            alpha = f", alpha {record['alpha']:g}" if "alpha" in record else ""
            origin = f"; the record of variant {record['adopted_from']}" if "adopted_from" in record else ""
            lines.append(
                f"done     {name}: {record['normalized_score']:.1f} "
                f"({100 * record['support_violation_rate']:.1f}% violations{alpha}{origin})"
            )
            continue
        note = "; its record is from older settings" if record_key(job) in old else ""
        state, saved = job.run_dir() / "checkpoint" / "train_state.json", job.run_dir() / "config.json"
        if job.spec.algo is None or not state.is_file():
            lines.append(f"to do    {name}{note}")
            continue
        step = json.loads(state.read_text())["step"]
        config = job_config(job.spec.algo, job.steps, job.seed, job.overrides)
        differ = retrain_fields(json.loads(saved.read_text()), config) if saved.is_file() else []
        if differ:
            note += f"; its folder trained other settings ({', '.join(differ)}): it will train afresh"
        lines.append(f"started  {name}: checkpoint at step {step} of {_steps(job.method, job.steps)}{note}")
    return lines


def anchor_missing(job: Job, pending: list[Job]) -> bool:
    """Whether `job` (recorded as finished) must train again because a pending job needs its policy as
    the anchor and the policy folder is gone (a fresh checkout keeps the records, not `_work/`)."""
    needed = any(
        METHODS[p.method].anchor == job.method and (p.dataset, p.seed) == (job.dataset, job.seed) for p in pending
    )
    return needed and not (job.run_dir() / "policy").is_dir()


def stale(record: dict) -> bool:
    """Whether a record's policy was trained with settings other than today's defaults (plus its
    variant's overrides): a SPAR-trained record without its config (written before records carried
    it), or one whose config differs in anything but bookkeeping. The baselines' defaults have not
    changed since the first records, so theirs count as current without a config. Fields of other
    methods (`algos.training_fields`) do not count: a BC record stays current when SPAR's change."""
    algo = trained_algo(record["method"])
    if algo is None:
        return False
    if "config" not in record:
        return algo == "spar"
    return bool(record_changes(record)) or tuned_one_of_several(record)


def tuned_one_of_several(record: dict) -> bool:
    """Whether a tuned record chose among a run's rectifiers otherwise than `tune_run` does with the data: it swept
    only the deployed one (before session 39), or every one without measuring their support on the dataset (early
    session 39), in a run that exported others (trained with a reach policy or an in-sample candidate)."""
    tune, config = record.get("tune"), record.get("config") or {}
    others = config.get("lsi_reach_penalty") is not None or bool(config.get("in_sample_candidate"))
    return tune is not None and not tune.get("support_checked") and others


def record_changes(record: dict) -> list[str]:
    """The training fields on which a record's saved config differs from today's defaults plus its variant's
    overrides (`changed_fields`); the record must carry its config and come from a trained method."""
    algo = trained_algo(record["method"])
    config = job_config(algo, record["steps"], record["seed"], record.get("overrides"))
    changed = changed_fields(record["config"], config)
    if "reach_model_margin" in changed and same_reach_decision(record, config.reach_model_margin):
        changed.remove("reach_model_margin")  # deployed the same policy today: the record stands
    if "reach_rule" in changed and same_reach_rule_decision(record, config.reach_rule):
        changed.remove("reach_rule")  # the same latent policy under today's rule: the record stands
    if BOUND_FIELDS & set(changed) and same_rho(record, config):
        changed = [f for f in changed if f not in BOUND_FIELDS]  # the same cap, or the quantile under both: same rho
    # the candidate's weight, recipe and rule: mu and the reach policy train the same without or beside any candidate,
    # so the record stands wherever the rule deploys the same rectifier today (or there is no candidate)
    if CANDIDATE_FIELDS & set(changed) and same_fallback_decision(record, config):
        # in_sample_target also shapes mu where mu has an in-sample term of its own (in_sample_weight)
        mu_too = {"in_sample_target"} if config.in_sample_weight else set()
        changed = [field for field in changed if field not in CANDIDATE_FIELDS - mu_too]
    return changed


def offline_alpha(record: dict) -> float | None:
    """The alpha a rectifier record's offline checks deployed (gate_check's ungated one where it was larger);
    None where the record does not carry them (a tuned record, or one trained without auto_alpha)."""
    if "auto_alpha" not in record:
        return None
    gate = record.get("gate_choice")
    return max(record["auto_alpha"]["alpha"], gate["ungated"]["alpha"]) if gate else record["auto_alpha"]["alpha"]


def anchor_advantage(record: dict) -> float | None:
    """The critic's rating of a record's anchor against the data's value (None where no check read it): the
    candidate's check keeps it (`in_sample_choice`), the reach policy's too (`penalty_choice`; session 28's
    candidate records keep it there only)."""
    saved = (record.get("in_sample_choice") or {}).get("anchor_advantage")
    return saved if saved is not None else (record.get("penalty_choice") or {}).get("anchor_advantage")


def candidate_alpha(record: dict) -> float:
    """The alpha a record's in-sample candidate passed (the larger of its gated and ungated checks)."""
    saved = record["in_sample_choice"]
    return offline_alpha({"auto_alpha": saved["alpha"], "gate_choice": saved["gate_choice"]})


#: What makes the in-sample candidate the policy it is: its weight, whether it also self-imitates, its learning-rate
#: schedule, where its in-sample term regresses (mu's too, where mu has one); each with the value a record saved
#: before the field existed trained with (None: no candidate).
CANDIDATE_RECIPE: dict = {
    "in_sample_candidate": None,
    "in_sample_candidate_lsi": True,
    "in_sample_lr_schedule": "constant",
    "in_sample_target": "latent",
}
#: The fields of the in-sample candidate and of the rule that deploys it (`same_fallback_decision` re-makes it).
CANDIDATE_FIELDS = frozenset(CANDIDATE_RECIPE) | {"in_sample_rule"}


def same_fallback_decision(record: dict, config) -> bool:
    """Whether a record's run would deploy the same rectifier under `config`'s in-sample candidate (`CANDIDATE_RECIPE`)
    and in_sample_rule as it did. The third latent policy leaves mu and the reach policy as
    they train without it, and replaces them only where `drift.in_sample_replaces` says so (never around an anchor the
    critic rates at or above the data's value). A record trained with the candidate carries both offline alphas (and,
    since session 30, the critic's comparison where "larger_gain" needed it), so the rule is re-made from them; where
    "larger_gain" needs a comparison the record lacks, only a re-deployment can tell. One trained without it (or with
    another candidate, not deployed) stands where the rule could not reach a candidate even at alpha 1 (such an anchor,
    LSI's rectifier at alpha 1 under "larger_*", above alpha 0 under "lsi_at_zero") or where `config` trains none."""
    from spar_rectify.critic_gain import GainComparison
    from spar_rectify.drift import in_sample_replaces

    saved = record.get("in_sample_choice")
    if config.in_sample_candidate <= 0.0:  # no candidate today: only a record that deployed LSI's stands
        return not (saved or {}).get("deployed", False)
    advantage = anchor_advantage(record)
    saved_config = record["config"]
    recipe = tuple(saved_config.get(k, v) for k, v in CANDIDATE_RECIPE.items())
    same_candidate = saved is not None and recipe == tuple(getattr(config, k) for k in CANDIDATE_RECIPE)
    if same_candidate:  # trained with this candidate: re-make the decision from its recorded checks
        gain = GainComparison(**saved["gain"]) if saved.get("gain") else None
        try:
            replaces = in_sample_replaces(
                saved["lsi_alpha"], candidate_alpha(record), advantage, config.in_sample_rule, gain
            )
        except ValueError:  # "larger_gain" where the record has no critic comparison: only a re-deployment knows
            return False
        return replaces == saved["deployed"]
    if saved is not None and saved["deployed"]:
        return False  # another candidate (weight or recipe) went out: today's is another policy
    lsi_alpha = saved["lsi_alpha"] if saved is not None else offline_alpha(record)
    if lsi_alpha is None:
        return False
    unrated = -1.0  # no rating recorded: as an anchor below its data, where the rule may reach the candidate
    rated = unrated if advantage is None else advantage
    # even a candidate at alpha 1 (that the critic preferred: "larger_gain" deploys a subset of "larger_alpha")
    rule = "larger_alpha" if config.in_sample_rule == "larger_gain" else config.in_sample_rule
    return not in_sample_replaces(lsi_alpha, 1.0, rated, rule)


#: The fields that set rho's cap: a record differing from today's defaults only there trained the same rho where
#: `same_rho` says so.
BOUND_FIELDS = frozenset({"bound_max", "bound_lift"})
#: The probe of what rho's cap cuts per dataset and anchor (`bound_cap_share.py`): what `same_rho` reads for records
#: written before they carried `bound_cap` (session 37).
BOUND_PROBE = RESULTS / "bound_cap_share.json"


def probed_lift(record: dict, bound_max: float, probe: Path | None = None) -> bool | None:
    """Whether `TrainConfig.bound_lift` lifts the cap of `bound_max` on a record's dataset around its anchor, as
    `bound_cap_share.py` measured it (`bound_lift_lifts`): around the suite's SB3 policy for the `medium-*` methods,
    around the tier's BC of the record's seed (the probe's label `bc_seed<seed>`) for `spar` and `spar-tuned`; None
    where the probe did not measure that dataset, anchor and cap. The probe runs the kit's own rule on the same
    dataset recipe and anchor; a record from another dataset build can sit on other rows, but the rule's margins
    (over 5% of the rows cut, from episodes scoring over 10% of the spread above the rest) are far from where the
    suite's datasets sit.
    `probe`: the probe's results file (default `BOUND_PROBE`)."""
    probe = BOUND_PROBE if probe is None else probe
    if not probe.is_file():
        return None
    anchor = METHODS[record["method"]].anchor
    label = {"medium": "medium", "bc": f"bc_seed{record['seed']}"}.get(anchor)
    for row in _probe_rows(probe):
        cap = row["caps"].get(f"{bound_max:g}")
        if (row["dataset"], row["anchor"]) == (record["dataset"], label) and cap is not None:
            return bool(cap["bound_lift_lifts"])
    return None


_PROBE_CACHE: dict = {}  # {path: ((mtime_ns, size), rows)}: `stale` asks for every record, many times per table


def _probe_rows(probe: Path) -> list[dict]:
    """The rows of the probe's results file, read once while the file stays as it is."""
    stat = probe.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _PROBE_CACHE.get(probe)
    if cached is None or cached[0] != key:
        cached = _PROBE_CACHE[probe] = (key, json.loads(probe.read_text())["rows"])
    return cached[1]


def lift_at(record: dict, bound_max: float) -> bool | None:
    """Whether the cap of `bound_max` is lifted on a record's data around its anchor: from the record's own `bound_cap`
    (recorded since session 37, at the record's bound_max), else from the probe (`probed_lift`); None: unknown."""
    cap = record.get("bound_cap")
    if cap is not None and record["config"].get("bound_max", 1.0) == bound_max:
        return bool(cap["lifts"])
    return probed_lift(record, bound_max)


def effective_cap(bound_max: float, bound_lift: float | None, lifts: bool | None) -> float | None:
    """The cap rho was (or is) clamped at: bound_lift where it lifts (`lifts`) and exceeds bound_max, else bound_max;
    None where a lift is set but whether it applies is unknown."""
    if bound_lift is None or bound_lift <= bound_max:
        return bound_max
    return None if lifts is None else (bound_lift if lifts else bound_max)


def same_rho(record: dict, config) -> bool | None:
    """Whether a record's rho comes out the same under `config`'s bound_max and bound_lift: rho is the data's quantile
    of |a - a_b| clamped at a cap (`effective_cap`: bound_max, or bound_lift where the cap of bound_max cuts many rows
    from better episodes, `algos.spar.lifts_cap`). True where rho did not come from the data's quantile (a fixed
    `residual_bound`, or no anchor), where the record's cap and today's are the same (bound_max=2 then, bound_max=1
    with bound_lift=2 on data where the lift applies now), or where the recorded rho sits below both caps (neither
    clamp touched the quantile: hopper and HalfCheetah medium around the SB3 policy, 0.49-0.80). False where the caps
    differ; None where whether the cap was or is lifted is unknown (a record without `bound_cap` or a probe row of its
    data and anchor) and its rho does not settle it."""
    saved = record["config"]
    if saved.get("residual_bound") is not None or not saved.get("anchored", True):
        return True
    then_max = saved.get("bound_max", 1.0)
    then = effective_cap(then_max, saved.get("bound_lift"), lift_at(record, then_max))
    now = effective_cap(config.bound_max, config.bound_lift, lift_at(record, config.bound_max))
    if then is not None and then == now:
        return True
    rho = record.get("residual_bound")
    caps = [c for c in (then, then_max) if c is not None]  # rho below the record's cap: the quantile itself
    if rho is not None and max(rho) < min(caps) and max(rho) < config.bound_max:
        return True
    return None if then is None or now is None else False


def bound_unknown(record: dict) -> bool:
    """Whether a SPAR-trained record differs from today's defaults (plus its overrides) in rho's cap only as far as
    it cannot say (`same_rho` is None): trained before runs recorded `bound_cap`, around an anchor the probe did not
    measure."""
    algo = trained_algo(record["method"])
    if algo != "spar" or "config" not in record:
        return False
    config = job_config(algo, record["steps"], record["seed"], record.get("overrides"))
    return bool(BOUND_FIELDS & set(changed_fields(record["config"], config))) and same_rho(record, config) is None


def reach_was_deployed(choice: dict) -> bool:
    """Whether a recorded latent-policy choice (summary.json's or a record's `penalty_choice`) deployed the reach
    policy."""
    return choice["deployed_penalty"] == choice["reach_penalty"]


def same_reach_decision(record: dict, margin: float) -> bool:
    """Whether a record's run would deploy the same latent policy at reach_model_margin `margin` as it did: true
    where the reach check did not run (the margin decides nothing), where its per-member excesses are recorded
    and the rule gives the same answer at `margin`, or, without them (records before session 24), where the
    direction of the change cannot flip it (a deployed reach policy under a margin >= 0, a refused one under a
    margin <= 0). Otherwise the run must be re-deployed to know."""
    saved = record.get("penalty_choice")
    if not saved or saved.get("reach_excess_points") is None:
        return True
    reach_deployed = reach_was_deployed(saved)
    members = saved.get("reach_excess_members_points")
    if not members:
        return margin >= 0 if reach_deployed else margin <= 0
    return reach_passes(saved, record["config"]["drift_threshold"], margin) == reach_deployed


#: The critic's verdicts on finished runs' two latent policies, asked after the run (`benchmarks/reach_gain.py`).
REACH_GAIN = RESULTS / "reach_gain.json"


def critic_prefers_reach(record: dict, probes: Path | None = None) -> bool | None:
    """Whether the critic clearly prefers a record's reach policy to its penalised one, each as deployed (paired gain
    above `GAIN_MARGIN_SE` standard errors): the run's own verdict where it asked (`penalty_choice.reach_gain`, under
    reach_rule larger_gain), else `reach_gain.py`'s row of the same run (dataset, method, seed and the deployed
    score) in `probes` (default `REACH_GAIN`); None where nobody asked."""
    gain = (record.get("penalty_choice") or {}).get("reach_gain")
    if gain:
        return gain["difference"] > GAIN_MARGIN_SE * gain["difference_se"]
    probes = REACH_GAIN if probes is None else probes
    rows = json.loads(probes.read_text()) if probes.is_file() else []
    for row in rows:
        same_run = (row["dataset"], row["method"], row["seed"]) == (record["dataset"], record["method"], record["seed"])
        score = (row.get("rollout") or {}).get("normalized_score")
        if same_run and score is not None and abs(score - record["normalized_score"]) < 1e-6:
            return bool(row["clearly_prefers_reach"])
    return None


def reach_offline_alpha(choice: dict) -> float | None:
    """The reach policy's own offline alpha in a recorded `penalty_choice` (None where it was not recorded)."""
    for penalty, check in (choice.get("rectifiers") or {}).items():
        if float(penalty) == float(choice["reach_penalty"]):
            return check.get("alpha")
    return None


def same_reach_rule_decision(record: dict, rule: str, probes: Path | None = None) -> bool:
    """Whether a record's run deploys the same latent policy under TrainConfig.reach_rule `rule` as under the rule it
    ran with. "larger_gain" only adds to "alpha_one": a kept-out reach policy at an offline alpha above 0 that the
    critic clearly prefers (`drift.reach_gains`). So from alpha_one to larger_gain a deployed reach policy stays, one
    kept out at alpha 0 stays out, and one kept out above 0 stays out only where the critic's recorded verdict
    (`critic_prefers_reach`) says it does not prefer it (unknown: not the same, the run must be re-deployed); from
    larger_gain to alpha_one only a reach policy the critic deployed goes out."""
    choice = record.get("penalty_choice")
    if not choice or choice.get("reach_penalty") is None:
        return True  # no reach policy: the rule decides nothing
    then = saved_settings(record.get("config") or {}).get("reach_rule", "alpha_one")
    if then == rule:
        return True
    deployed = reach_was_deployed(choice)
    if rule == "alpha_one":
        return not (deployed and choice.get("reach_gain"))
    if deployed or reach_offline_alpha(choice) == 0:
        return True
    return critic_prefers_reach(record, probes) is False  # its alpha above 0, or not recorded: the critic decides


def reach_passes(saved: dict, threshold: float, margin: float) -> bool:
    """Whether a recorded reach check (a record's `penalty_choice`) passes `choose_penalty`'s third condition at
    reach_model_margin `margin` (`PenaltyChoice.reach_within`)."""
    members = saved.get("reach_excess_members_points")
    return PenaltyChoice(
        saved["deployed_penalty"],
        saved["reach_penalty"],
        {},
        threshold=threshold,
        reach_excess=saved["reach_excess_points"],
        reach_excess_members=tuple(members) if members else None,
        model_margin=margin,
    ).reach_within


def write_study(result: dict, out: Path, script: str, argv, shown: str) -> None:
    """A study's last step (`reach_margin.py`, `alpha_margin.py`): stamp `result` with the command that made it,
    print its table `shown` and write it to `out` as JSON."""
    result["command"] = f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)
    print(shown)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


def alpha_at_margin(check: dict, margin: float) -> float | None:
    """The offline alpha a recorded alpha check (`AlphaChoice.to_dict()`: a record's `auto_alpha`, or a rectifier
    of its `penalty_choice`) gives at alpha_model_margin `margin`, by the kit's own rule
    (`AlphaChoice.offline_alpha`); None where a non-zero margin needs per-member excesses the check did not
    record (checks before session 25)."""
    members = check.get("excess_members_points")
    if margin and not members:
        return None
    excess = {float(a): e for a, e in check["excess_points"].items()}
    apart = {float(a): tuple(x for x in m if x is not None) for a, m in (members or {}).items()} or None
    return AlphaChoice(0.0, excess, check["threshold_points"], None, apart, float(margin)).offline_alpha()


def changed_fields(saved: dict, config) -> list[str]:
    """The fields that change what is trained (`algos.training_fields`) on which a saved config (a run
    folder's or a record's) differs from `config`; a field the saved one lacks counts as what that
    version trained with (`config.saved_settings`), as on resume."""
    now = config.to_dict()
    then = {**now, **saved_settings(saved)}
    return [k for k in training_fields(config) if then[k] != now[k]]


def _steps(method: str, steps: int) -> int:
    """The gradient steps a record of `method` stands for: 0 for a policy that is not trained."""
    spec = METHODS[method]
    return 0 if spec.algo is None and spec.tuned_from is None else steps


def tuned_ready(job: Job) -> bool:
    """Whether the trained rectifier a tuned job needs exists (its base method's run finished)."""
    return job.spec.tuned_from is None or (job.run_dir(job.spec.tuned_from) / "rectifier" / "rectifier.json").is_file()


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """`--set KEY=VALUE ...` into `args.overrides` (read with `parse_overrides`)."""
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides", help=help)


def parse_overrides(items: list[str]) -> dict:
    """`["bound_max=0.5", "lsi_normalize=batch"]` -> `{"bound_max": 0.5, "lsi_normalize": "batch"}`
    (each value read as its field's type, `TrainConfig.parse_value`), checked against `TrainConfig`."""
    from spar_rectify.config import TrainConfig

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (a TrainConfig field), got {item!r}; e.g. --set bound_max=0.5")
        key = key.replace("-", "_")
        out[key] = TrainConfig.parse_value(key, value)
    TrainConfig.from_dict(out)  # unknown keys and invalid values fail here, before any training
    return out


def jobs_for(
    tier: dict, work: Path, variant: str | None = None, overrides: dict | None = None, suite: Path | str = SUITE
) -> list[list[Job]]:
    """Job waves: BC first (SPAR's anchors), then everything else, then the tuned rectifiers."""
    base = dict(steps=tier["steps"], episodes=tier["episodes"], work=str(work), suite=str(suite))
    if variant:
        base.update(variant=variant, overrides=overrides or {})
    first, second, third = [], [], []
    for dataset in tier["datasets"]:
        for seed in tier["seeds"]:
            first.append(Job(dataset, "bc", seed, **base))
            # SPAR's runs first: they are the point of the benchmark and the longest.
            # The SB3 medium policy raw and rectified on every dataset, medium-expert included: there the data
            # supports expert behaviour, and the rectifier must travel as far as it does.
            second += [
                Job(dataset, m, seed, **base) for m in ("spar", "medium-rectified", "medium-raw", "td3bc", "iql")
            ]
            third += [Job(dataset, m.name, seed, **base) for m in METHODS.values() if m.tuned_from is not None]
    return [first, second, third]


def table_matrix(tier: str, variant: str | None = None) -> dict:
    """`summarise`'s rows and seeds per cell: the tier's own datasets and seed count, whatever subset
    (`--datasets`, `--seeds`) one command ran; a variant's table lists only its runs ({})."""
    return {} if variant else {"datasets": list(TIERS[tier]["datasets"]), "seeds": len(TIERS[tier]["seeds"])}


def current_cells(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The records trained at today's defaults (not `stale`), grouped by (dataset, method)."""
    cells: dict = {}
    for r in records:
        if not stale(r):
            cells.setdefault((r["dataset"], r["method"]), []).append(r)
    return cells


def summarise(
    records: list[dict], out_md: Path, out_png: Path, datasets: list[str] | None = None, seeds: int | None = None
) -> str:
    """Write the table of `records` (mean ± std over seeds per dataset and method, with violations) as
    markdown and the score-against-violations plot; returns the table. Every method is a column and every
    one of `datasets` (the tier's, when given) a row, so a cell not run says so ("not run", or "stale only"
    when its only records were trained at older defaults); `seeds`: the tier's seeds per cell ("n=2 of 3")."""
    import numpy as np

    cells = current_cells(records)
    old = [r for r in records if stale(r)]
    outdated = {(r["dataset"], r["method"]) for r in old}
    methods = list(METHODS)
    datasets = sorted(set(datasets or []) | {k[0] for k in cells} | {k[0] for k in outdated})
    of = f" of {seeds}" if seeds else ""
    lines = ["| dataset | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for d in datasets:
        row = []
        for m in methods:
            rs = cells.get((d, m), [])
            if not rs:
                row.append("stale only" if (d, m) in outdated else "not run")
                continue
            s = np.array([r["normalized_score"] for r in rs])
            v = np.mean([r["support_violation_rate"] for r in rs])
            sv = [r["state_violation_rate"] for r in rs if "state_violation_rate" in r]
            states = f", states {100 * np.mean(sv):.1f}%" if len(sv) == len(rs) else ""
            row.append(f"{s.mean():.1f} ± {s.std():.1f} (viol {100 * v:.1f}%{states}, n={len(rs)}{of})")
        lines.append(f"| {d} | " + " | ".join(row) + " |")
    if old:
        listed = ", ".join(f"{r['dataset'].split('/', 1)[-1]} {r['method']} seed {r['seed']}" for r in old)
        lines.append(f"\nLeft out: {len(old)} record(s) trained at older defaults (rerun them at today's): {listed}.")
    table = "\n".join(lines)
    out_md.write_text(
        "Normalised score, mean ± std over seeds (viol: share of executed (state, action) steps "
        "beyond the dataset's 99th-percentile leave-one-out distance; states: the same for the "
        "states alone, where recorded). Records trained at other than today's defaults are left "
        "out and listed.\n\n" + table + "\n"
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # Left: score per dataset and method (bars: mean over seeds, ticks: each seed). Right: the
        # trade-off the product claims, score against support violations, one marker per run.
        fig, (ax, ax2) = plt.subplots(
            1, 2, figsize=(5.5 + 1.6 * len(datasets), 3.8), gridspec_kw={"width_ratios": [1.6 + 1.6 * len(datasets), 4]}
        )
        width = 0.8 / max(len(methods), 1)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        markers = "osD^v<>p"
        for j, m in enumerate(methods):
            x = np.arange(len(datasets)) + j * width
            scores = [[r["normalized_score"] for r in cells.get((d, m), [])] for d in datasets]
            ax.bar(x, [np.mean(v) if v else np.nan for v in scores], width, label=m, color=colors[j % len(colors)])
            for xi, v in zip(x, scores):
                ax.plot([xi] * len(v), v, "k_", ms=6)
            for i, d in enumerate(datasets):
                rs = cells.get((d, m), [])
                ax2.scatter(
                    [100 * r["support_violation_rate"] for r in rs],
                    [r["normalized_score"] for r in rs],
                    color=colors[j % len(colors)],
                    marker=markers[i % len(markers)],
                    s=28,
                )
        labels = [d.split("/", 1)[-1].removesuffix("-v0").replace("/", "\n") for d in datasets]  # env over kind
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, labels, fontsize=8)
        ax.set_ylabel("normalised score")
        ax.legend(fontsize=7)
        for i, d in enumerate(datasets):  # legend entries for the datasets' markers, in grey
            ax2.scatter([], [], color="grey", marker=markers[i % len(markers)], s=28, label=d.split("/", 1)[-1])
        ax2.set_xlabel("support violations (% of executed steps)")
        ax2.set_ylabel("normalised score")
        ax2.set_title("return vs support (marker: dataset)", fontsize=8)
        ax2.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out_png, dpi=120)
    except ImportError:
        pass
    return table


def finished(records: list[dict]) -> set[tuple]:
    """Keys of the records that count as done: those trained at today's defaults. A stale record
    (`stale`) is trained again and replaced, so that rerunning the harness brings its tables to today's
    defaults."""
    return {record_key(r) for r in records if not stale(r)}


def variant_records(out: Path) -> list[dict]:
    """The records of every variant of a tier's results file `out` (`<out's stem>_<variant>.json` beside it)."""
    files = sorted(out.parent.glob(f"{out.stem}_*.json"))
    return [r for path in files for r in json.loads(path.read_text())["runs"]]


def adopted(variants: list[dict], records: list[dict], tier: dict) -> list[dict]:
    """The variant records (`variants`, each with its `overrides`) that train what today's defaults train (`stale`
    without the overrides: bound_max=2 where today's bound_lift=2 lifts the cap), on the `tier`'s seeds and gradient
    steps, for a (dataset, method, seed) that `records` hold no current record of; each without its overrides and
    with `adopted_from` naming its variant. The tier's table counts them, and the harness does not train them again."""
    taken = finished(records)
    out = []
    for r in variants:
        plain = {k: v for k, v in r.items() if k not in ("overrides", "variant")}
        ours = r.get("overrides") and r["seed"] in tier["seeds"] and r["steps"] == tier["steps"]
        if ours and record_key(plain) not in taken and not stale(plain):
            out.append(plain | {"adopted_from": r.get("variant")})
            taken.add(record_key(plain))
    return out


def record_key(r: dict | Job) -> tuple:
    """What identifies a run (a job or a record): dataset, method, seed, gradient steps."""
    r = dataclasses.asdict(r) if isinstance(r, Job) else r
    return r["dataset"], r["method"], r["seed"], _steps(r["method"], r["steps"])


def save_record(out: Path, tier: str, record: dict, keep_train_seconds: bool = False) -> list[dict]:
    """Add (or replace) one run in the tier's JSON, re-reading the file first, under a lock, so that
    harness processes running side by side never drop each other's records. Returns every record."""
    with open(out.with_suffix(".json.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = json.loads(out.read_text())["runs"] if out.is_file() else []
        old = [r for r in records if record_key(r) == record_key(record)]
        if old and keep_train_seconds:  # a re-evaluation: the training time is the original run's
            record = {**record, "train_seconds": old[0]["train_seconds"]}
        records = [r for r in records if record_key(r) != record_key(record)] + [record]
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"tier": tier, "runs": records}, indent=2) + "\n")
        tmp.replace(out)
    return records


def append_result(out: Path, row: dict, replaces: tuple[str, ...] = ()) -> None:
    """Append one row to a probe's results file (a JSON list), re-reading it first, under a lock, so that
    probes running side by side never drop each other's rows; with `replaces` (field names, e.g. ("run",
    "label")), a row that has the same values in them is dropped first (a probe run again replaces its row)."""
    with open(out.with_suffix(".json.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(out.read_text()) if out.is_file() else []
        if replaces:
            rows = [r for r in rows if [r.get(k) for k in replaces] != [row.get(k) for k in replaces]]
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps([*rows, row], indent=2) + "\n")
        tmp.replace(out)


def probe_row(args, run: Path, script: str, **fields) -> dict:
    """A results row of a probe of one harness run (`add_run_probe_arguments`): the run, its label,
    dataset, method and seed, `fields`, the run's training config, the harness's env-measured record of
    it (with --rollout-record, when found) and the command."""
    row = {
        "run": str(run),
        "label": args.label,
        "dataset": args.dataset,
        "method": args.method,
        "seed": args.seed,
        **fields,
        "config": json.loads((run / "config.json").read_text()),
    }
    rollout = rollout_record(args.rollout_record, args.dataset, args.method, args.seed, row["config"]["steps"])
    if rollout is not None:
        row["rollout"] = rollout
    row["command"] = f"python benchmarks/{script} " + " ".join(sys.argv[1:])
    return row


def combine(results: Path = RESULTS) -> Path:
    """Write `results/suite.json`: the records of every `suite_<tier>.json` and of its variants
    (`suite_<tier>_<variant>.json`), each tagged with its tier."""
    runs = []
    for tier in TIERS:
        for path in [results / f"suite_{tier}.json", *sorted(results.glob(f"suite_{tier}_*.json"))]:
            if path.is_file():
                runs += [{"tier": tier, **r} for r in json.loads(path.read_text())["runs"]]
    out = results / "suite.json"
    out.write_text(json.dumps({"fields": list(RECORD_FIELDS), "runs": runs}, indent=2) + "\n")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tier", choices=list(TIERS))
    parser.add_argument("--steps", type=int, default=None, help="override the tier's gradient-step budget")
    parser.add_argument("--jobs", type=int, default=None, help="jobs at once on a local Ray (one CPU each)")
    parser.add_argument(
        "--address",
        default=None,
        help="an existing Ray cluster to run the jobs on (default: a local Ray started for this command)",
    )
    parser.add_argument("--datasets", nargs="+", default=None, help="override the tier's datasets")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override the tier's seeds")
    parser.add_argument("--episodes", type=int, default=None, help="override evaluation episodes")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(METHODS),
        help="run only these methods (spar still needs the bc run of its seed)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="name of a method variant (needs --set): its own work "
        "folder and result files, never mixed into the tier's",
    )
    add_overrides_argument(parser, "TrainConfig overrides of a --variant, e.g. bound_max=0.5")
    parser.add_argument("--work", default=None, help="work folder (default _work, or _work/variant_<name>)")
    parser.add_argument(
        "--suite",
        default=str(SUITE),
        help="folder of the suite's SB3 policies (<env>/sac_medium.zip; default %(default)s)",
    )
    parser.add_argument("--out", default=None, help="result JSON (default results/suite_<tier>.json)")
    parser.add_argument(
        "--status",
        action="store_true",
        help="print where each selected job stands (recorded, checkpoint step, or to do) and exit: no training",
    )
    parser.add_argument(
        "--refresh-support",
        action="store_true",
        help="re-evaluate finished runs that lack state_violation_rate (from their final checkpoints)",
    )
    args = parser.parse_args(argv)
    if bool(args.variant) != bool(args.overrides):
        parser.error("--variant NAME and --set KEY=VALUE go together (a variant is a named set of overrides)")
    if args.variant and not args.variant.replace("-", "").replace("_", "").isalnum():
        parser.error(f"--variant {args.variant!r}: use letters, digits, '-' and '_' (it names files)")
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as e:
        parser.error(str(e))
    if not any(Path(args.suite).glob("*/sac_medium.zip")):
        parser.error(f"--suite {args.suite}: no <env>/sac_medium.zip there; pass the folder of the suite's policies")
    work = Path(args.work) if args.work else HERE / "_work" / (f"variant_{args.variant}" if args.variant else "")
    tier = dict(TIERS[args.tier])
    for key in ("steps", "datasets", "seeds", "episodes"):
        if getattr(args, key):
            tier[key] = getattr(args, key)
    out = (
        Path(args.out)
        if args.out
        else RESULTS / (f"suite_{args.tier}_{args.variant}.json" if args.variant else f"suite_{args.tier}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(out.read_text())["runs"] if out.is_file() else []
    if not args.variant and not args.out:  # the tier's own table: variants' records that train today's defaults count
        records += adopted(variant_records(out), records, tier)
    done = finished(records)
    jobs = jobs_for(tier, work / args.tier, args.variant, overrides, args.suite)
    if args.methods:
        jobs = [[j for j in wave if j.method in args.methods] for wave in jobs]
    if args.status:
        print("\n".join(status_lines([j for wave in jobs for j in wave], records)))
        return
    if args.refresh_support:  # re-evaluate finished runs (no training: their checkpoints are final)
        stale = {record_key(r) for r in records if "state_violation_rate" not in r}
        jobs = [[j for wave in jobs for j in wave if record_key(j) in stale]]
    pending = [j for wave in jobs for j in wave if record_key(j) not in done]
    for wave in jobs:
        todo = wave if args.refresh_support else [j for j in wave if record_key(j) not in done]
        if not args.refresh_support:
            todo += [j for j in wave if record_key(j) in done and anchor_missing(j, pending)]
        waiting = [j for j in todo if not tuned_ready(j)]
        for j in waiting:
            print(
                f"skipped {j.method} {j.dataset} seed {j.seed}: its {j.spec.tuned_from} run has not finished",
                flush=True,
            )
        todo = [j for j in todo if j not in waiting]

        def land(job: Job, record: dict) -> None:  # as each job finishes, in this process
            save_record(out, args.tier, record, keep_train_seconds=args.refresh_support)
            if out.parent == RESULTS:
                combine()
            print(json.dumps(record), flush=True)

        # Each job is a Ray task with one CPU; a failed one is retried and resumes from its checkpoint.
        _, failed = run_jobs(
            run_one, todo, on_result=land, address=args.address, num_cpus=args.jobs or tier["jobs"], progress=False
        )
        for job, error in failed:
            print(
                f"FAILED {job.method} {job.dataset} seed {job.seed}: {error.strip().splitlines()[-1]}; "
                "run the same command again to resume it",
                flush=True,
            )
    records = json.loads(out.read_text())["runs"] if out.is_file() else []  # with other processes' runs
    if not args.variant and not args.out:
        records += adopted(variant_records(out), records, tier)
    matrix = table_matrix(args.tier, args.variant)
    print(summarise(records, out.with_suffix(".md"), out.with_suffix(".png"), **matrix))
    if out.parent == RESULTS:
        print(f"all tiers: {combine()}")


if __name__ == "__main__":
    main()
