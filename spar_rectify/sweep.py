"""Sweeps on Ray: many training jobs (datasets x seeds x settings), one CPU each, each resumable.

Defines `parse_settings`, `grid`, `run_jobs`, `train_job`, `sweep`, `summarise`.

`run_jobs` runs any picklable `fn(job) -> record` over a list of job dicts as Ray tasks (one CPU
each), on a local Ray started with `ray.init()` (as many jobs at once as `num_cpus`) or on an
existing cluster (`address`). A job that fails is retried by Ray (`max_retries`); every training job
here resumes from its own run folder's checkpoint, so a retry, or the same command run again after
an interruption, continues where the job stopped instead of starting over. Records are handed to
`on_result` as each job finishes. Needs the `sweep` extra: `pip install "spar_rectify[sweep]"`.

`sweep` is what `spar sweep` runs: train one config over datasets x seeds x `--set` values, write
one record per run into `<out_dir>/sweep.json` (merged, so runs of several commands accumulate)
and a mean +- std table over seeds into `<out_dir>/sweep.md`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

#: Environment passed to every Ray worker (one thread per job; headless rendering; our datasets).
WORKER_ENV = ("MINARI_DATASETS_PATH", "MUJOCO_GL", "SPAR_MKL_INTEL_PATH", "HF_HUB_OFFLINE", "PYTHONPATH")


def parse_settings(items: Sequence[str]) -> dict[str, list]:
    """`["lsi_temperature=0.5,1,2", "lsi_normalize=none"]` -> `{"lsi_temperature": [0.5, 1, 2], ...}`.

    Each value is read as its field's type (`TrainConfig.parse_value`: true/false, numbers, null,
    else text); every combination must be a valid `TrainConfig`. Raises ValueError naming the bad item and the fix.
    """
    from spar_rectify.config import TrainConfig

    out: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(
                f"--set expects KEY=V1,V2,... (a training setting), got {item!r}; e.g. --set lsi_temperature=0.5,1,2"
            )
        key = key.replace("-", "_")
        out[key] = [TrainConfig.parse_value(key, value) for value in values.split(",")]
    for combo in _combinations(out):
        try:
            TrainConfig.from_dict(combo)
        except (ValueError, TypeError) as err:
            raise ValueError(f"--set {combo}: {err}") from None
    return out


def _combinations(settings: dict[str, list]) -> list[dict]:
    keys = list(settings)
    return [dict(zip(keys, values)) for values in itertools.product(*(settings[k] for k in keys))] or [{}]


def grid(datasets: Iterable[str], seeds: Iterable[int], settings: dict[str, list]) -> list[dict]:
    """One job per dataset x setting combination x seed: `{"dataset", "seed", "overrides"}`."""
    return [
        {"dataset": d, "seed": int(s), "overrides": combo}
        for d in datasets
        for combo in _combinations(settings)
        for s in seeds
    ]


def _ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError('sweeps run on Ray: pip install "spar_rectify[sweep]" (or pip install "ray[tune]")') from err
    return ray


def run_jobs(
    fn: Callable[[dict], dict],
    jobs: Sequence[dict],
    on_result: Callable[[dict, dict], None] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    max_retries: int = 2,
    progress: bool = True,
) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Run `fn(job)` for every job as a Ray task with one CPU.

    Args:
        fn: a function of one job dict returning a JSON-able record; it should resume from its own
            checkpoint when called again for the same job (a retry after a failure).
        jobs: the job dicts.
        on_result: called as `on_result(job, record)` in this process as each job finishes.
        address: an existing Ray cluster ("auto", "ray://host:10001", ...); None starts a local one.
        num_cpus: CPUs of a local Ray (jobs at once); None: all of this machine's.
        max_retries: Ray's retries of a job whose worker failed or that raised.
        progress: a tqdm bar over jobs.

    Returns:
        (records in finishing order, [(job, error text)] for jobs that failed after every retry).
    """
    ray = _ray()
    from tqdm.auto import tqdm

    if not jobs:
        return [], []
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    started_here = not ray.is_initialized()
    if started_here and address is None:
        # Ray runs its workers at nice 15 by default: behind any other load they would starve. Training
        # jobs are the point of a sweep, so a local Ray runs them at normal priority unless told otherwise.
        os.environ.setdefault("RAY_worker_niceness", "0")
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "runtime_env": {"env_vars": env}}
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
        else:
            ray.init(address=address, **kwargs)
    task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=True)(fn)
    pending = {task.remote(job): job for job in jobs}
    records, failures = [], []
    bar = tqdm(total=len(jobs), disable=not progress, desc="sweep", unit="job", dynamic_ncols=True)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except Exception as err:
                failures.append((job, f"{type(err).__name__}: {err}"))
                brief = _brief(job)
                bar.write(f"job failed after {max_retries} retries: {brief}: {str(err).strip().splitlines()[-1]}")
            else:
                records.append(record)
                if on_result is not None:
                    on_result(job, record)
            bar.update(1)
    finally:
        bar.close()
        if started_here:
            ray.shutdown()
    return records, failures


def _brief(job: Any) -> Any:
    """What names a job in a message: its dataset, method, seed and overrides, whether the job is a
    dict or a dataclass; anything else as it is."""
    fields = dataclasses.asdict(job) if dataclasses.is_dataclass(job) else job
    if isinstance(fields, dict):
        return {k: fields[k] for k in ("dataset", "method", "seed", "overrides") if k in fields} or fields
    return job


def train_job(job: dict) -> dict:
    """One sweep job: train (resuming from `job["run_dir"]` if a checkpoint is there), evaluate, record.

    Job keys: dataset, seed, overrides (TrainConfig fields), config (the base TrainConfig as a
    dict), run_dir, episodes, and optional base_policy (path of the anchor: an SB3 zip, which runs
    pickle on load, or a BCPolicy folder) and env (an env id, `module:EnvId` for your own; default:
    the dataset's recorded env, when Gymnasium's registry knows it).
    """
    import spar_rectify  # noqa: F401  (before torch: MKL's fast path)

    # isort: split
    import torch

    from spar_rectify.config import TrainConfig
    from spar_rectify.data import load_minari
    from spar_rectify.policies import load_policy
    from spar_rectify.trainer import has_checkpoint, train

    torch.set_num_threads(1)
    config = TrainConfig.from_dict({**job["config"], **job["overrides"], "seed": job["seed"]})
    data = load_minari(job["dataset"])
    anchor = load_policy(job["base_policy"]) if job.get("base_policy") else None
    run_dir = Path(job["run_dir"])
    resume = has_checkpoint(run_dir)
    # The final evaluation of `train`: episodes seeded 10000.., the same for every job and method.
    result = train(
        config.replace(eval_every=0, eval_episodes=job["episodes"]),
        data,
        run_dir,
        anchor=anchor,
        env=job.get("env"),
        resume=resume,
        progress=False,
    )
    returns = result.eval_returns
    score = data.normalized_score(returns.mean())
    return {
        "dataset": job["dataset"],
        "seed": job["seed"],
        "overrides": job["overrides"],
        "algo": config.algo,
        "steps": result.steps,
        "return": float(returns.mean()),
        "return_std": float(returns.std()),
        "normalized_score": None if score is None else float(score),
        "train_seconds": round(result.train_seconds, 1),
        "resumed": resume,
        "run_dir": str(run_dir),
    }


def _key(r: dict) -> tuple:
    return r["dataset"], r["seed"], json.dumps(r["overrides"], sort_keys=True)


def save_records(path: Path, new: Sequence[dict]) -> list[dict]:
    """Merge `new` into the records at `path` (a re-run replaces its own), atomically; returns all."""
    records = json.loads(path.read_text())["runs"] if path.is_file() else []
    keys = {_key(r) for r in new}
    records = [r for r in records if _key(r) not in keys] + list(new)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"runs": records}, indent=2) + "\n")
    tmp.replace(path)
    return records


def summarise(records: Sequence[dict]) -> str:
    """Markdown table: per dataset and setting, mean +- std over seeds of the score (or return)."""
    import numpy as np

    cells: dict[tuple, list] = {}
    for r in records:
        cells.setdefault((r["dataset"], json.dumps(r["overrides"], sort_keys=True)), []).append(r)
    lines = ["| dataset | setting | score (mean ± std) | seeds |", "|---|---|---|---|"]
    for (dataset, setting), rs in sorted(cells.items()):
        values = np.array([r["normalized_score"] if r["normalized_score"] is not None else r["return"] for r in rs])
        seeds = ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        lines.append(
            f"| {dataset} | {setting if setting != '{}' else 'defaults'} | "
            f"{values.mean():.1f} ± {values.std():.1f} | {seeds} |"
        )
    return "\n".join(lines)


def _tag(overrides: dict) -> str:
    return "_".join(f"{k}={v}" for k, v in sorted(overrides.items())).replace("/", "-") or "defaults"


def sweep(
    datasets: Sequence[str],
    seeds: Sequence[int],
    settings: dict[str, list],
    out_dir: str | Path,
    config: Any,
    base_policy: str | Path | None = None,
    episodes: int = 10,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    env: str | None = None,
) -> list[dict]:
    """Train `config` over datasets x seeds x settings on Ray; records into `<out_dir>/sweep.json`.

    A job whose record is already in `sweep.json` is not run again; an interrupted one resumes
    from `<out_dir>/<dataset>/<setting>/seed<seed>/checkpoint`. Returns every record in the file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "sweep.json"
    done = {_key(r) for r in (json.loads(path.read_text())["runs"] if path.is_file() else [])}
    base = config.to_dict()
    jobs = []
    for job in grid(datasets, seeds, settings):
        if _key(job) in done:
            continue
        run_dir = out_dir / job["dataset"].replace("/", "_") / _tag(job["overrides"]) / f"seed{job['seed']}"
        jobs.append(
            {
                **job,
                "config": base,
                "run_dir": str(run_dir.resolve()),
                "episodes": episodes,
                "env": env,
                "base_policy": str(Path(base_policy).resolve()) if base_policy else None,
            }
        )
    start = time.time()

    def land(job, record):
        save_records(path, [record])

    _, failures = run_jobs(train_job, jobs, on_result=land, address=address, num_cpus=num_cpus, progress=progress)
    records = json.loads(path.read_text())["runs"] if path.is_file() else []
    (out_dir / "sweep.md").write_text(summarise(records) + "\n")
    if failures:
        listed = "; ".join(f"{j['dataset']} seed {j['seed']} {j['overrides']}: {e}" for j, e in failures)
        raise RuntimeError(
            f"{len(failures)} of {len(jobs)} sweep jobs failed after retries ({listed}); run the "
            f"same command again to resume them ({time.time() - start:.0f} s elapsed)"
        )
    return records
