"""Offline training: `Trainer.fit()` yields `(step, metrics)`; `train()` runs a whole job.

Defines `Trainer`, `train`, `TrainResult`.

`fit` is the loop only (sample, update, yield). `train` adds what a user expects around it: a
progress bar with live metrics, CSV + TensorBoard logs, seeded evaluation episodes, atomic
checkpoints every N steps, `resume=True`, and the exported policy or rectifier at the end.
Resuming from a checkpoint ends bit-identical to an uninterrupted run on the same machine and
thread count: weights, optimiser moments and the sampling generator are all restored.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from spar_rectify import critic_gain, drift, mkl  # <module>.<name> at each call: tests patch the modules
from spar_rectify.algos import ALGORITHMS, Batch, DataInfo, training_fields
from spar_rectify.algos.common import Deployment
from spar_rectify.algos.spar import lifted_message
from spar_rectify.bundle import read_bundle, write_bundle
from spar_rectify.checkpoint import set_default_alpha, set_default_gate
from spar_rectify.config import BOOKKEEPING, DEPLOYMENT_FIELDS, TrainConfig  # noqa: F401  (BOOKKEEPING: re-exported)
from spar_rectify.data import OfflineData
from spar_rectify.envspec import UntrustedEnvSpec
from spar_rectify.evaluation import evaluate
from spar_rectify.logger import RunLogger
from spar_rectify.matmul import training_precision
from spar_rectify.offdata import ModelWorld
from spar_rectify.policies import BasePolicy, as_base_policy
from spar_rectify.spaces import ActionScaler

NUM_PROBES = 64


class Trainer:
    """Holds one algorithm, its prepared data and its sampling generator.

    Args:
        config: what to train.
        data: the dataset (`load_minari` / `from_arrays`).
        anchor: the frozen base policy (required for SPAR; ignored by the others).
        run_dir: where the anchor-action cache and checkpoints go (optional for `fit` alone).
        progress: called with a line of text while the trainer prepares long pieces (SPAR's dynamics model
            with drift_penalty); None: quiet.

    Raises:
        ValueError: SPAR without an anchor, or an anchor that does not fit the data.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: OfflineData,
        anchor: Any = None,
        run_dir: str | Path | None = None,
        progress: Callable[[str], None] | None = None,
    ):
        self.config, self.data = config, data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.anchor: BasePolicy | None = None
        algo_cls = ALGORITHMS[config.algo]
        if algo_cls.needs_anchor:
            if anchor is None:
                raise ValueError(
                    f"{config.algo.upper()} needs the frozen anchor policy it rectifies: --base-policy PATH on the "
                    "command line (anchor=... in Python: an SB3 model, a BCPolicy or a BasePolicy); to start from "
                    "data alone, train --config.algo bc first and pass its policy folder."
                )
            self.anchor = as_base_policy(anchor, data.action_space)
            cache = self.run_dir / "anchor_actions.safetensors" if self.run_dir else None
            data.attach_anchor(self.anchor, cache=cache)
        self.obs_mean, self.obs_std = data.obs_stats()
        mean, std = torch.from_numpy(self.obs_mean), torch.from_numpy(self.obs_std)
        self._obs = (data.observations - mean) / std
        self._next_obs = (data.next_observations - mean) / std
        self._action = data.actions
        self._reward = data.rewards * self.reward_scale()
        self._not_done = 1.0 - data.terminations
        plain = DataInfo(self._obs.shape[1], self._action.shape[1], self.obs_mean, self.obs_std)
        base = data.base_actions if algo_cls.needs_anchor else None
        info, self._base = algo_cls.data_info(config, plain, self._action, base, data.row_returns())
        torch.manual_seed(config.seed)  # network initialisation
        self.generator = torch.Generator().manual_seed(config.seed + 1)  # batches and noise
        self.algo = algo_cls(info, config, self.generator)
        if getattr(algo_cls, "needs_model", None) and algo_cls.needs_model(config):
            self.algo.attach_model(self._model_world(progress))
        self.info = info
        self.step = 0
        self.mid_step = False  # True while an update is half-applied (see `fit`)
        self.train_seconds = 0.0  # wall-clock seconds of training so far, over every resume (s)

    def _model_world(self, progress: Callable[[str], None] | None = None):
        """The dynamics model of the data (loaded from, or fitted and saved to, `run_dir/dynamics`, where
        auto_alpha finds it again at the end), its state support and the anchor: what SPAR's
        drift_penalty rolls its off-data value out in."""
        config, data, anchor = self.config, self.data, self.anchor
        folder = self.run_dir / "dynamics" if self.run_dir is not None else None
        model = drift.load_or_fit(data, folder, steps=config.drift_model_steps, seed=config.seed, progress=progress)
        scaler = ActionScaler(data.action_space)

        def anchor_actions(obs: np.ndarray) -> np.ndarray:
            if not config.anchored:  # the "no anchor" ablation trains around a zero base action
                return np.zeros((len(obs), data.actions.shape[1]), np.float32)
            return scaler.to_normalized_clipped(anchor(obs))

        mean, std = torch.from_numpy(self.obs_mean), torch.from_numpy(self.obs_std)
        support, box = drift.state_support(data), drift.StateBox.of(data.observations)
        return ModelWorld(model, support, anchor_actions, drift.live_starts(data), mean, std, box)

    # -- data ---------------------------------------------------------------------------------
    def reward_scale(self) -> float:
        """IQL's locomotion convention `1000 / (max - min episode return)` for the methods that use it
        (IQL, SPAR); 1 for the others or with `reward_scale="none"`."""
        if self.config.reward_scale == "none" or not ALGORITHMS[self.config.algo].scaled_rewards:
            return 1.0
        spread = float(np.max(self.data.episode_returns) - np.min(self.data.episode_returns))
        return 1000.0 / spread if spread > 1e-6 else 1.0

    def sample(self) -> Batch:
        idx = torch.randint(len(self._reward), (self.config.batch_size,), generator=self.generator)
        base = self._base[idx] if self._base is not None else None
        return Batch(
            self._obs[idx], self._action[idx], self._reward[idx], self._next_obs[idx], self._not_done[idx], base
        )

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> Iterator[tuple[int, dict[str, float]]]:
        """Run gradient steps up to `until` (default: `config.steps`), yielding `(step, metrics)`."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        while self.step < until:
            self.mid_step = True  # stays True if the update raises: the state mixes two steps
            with training_precision(self.config.fast_matmul):
                metrics = self.algo.update(self.sample(), self.step)
            self.step += 1
            self.mid_step = False
            yield self.step, {k: float(v) for k, v in metrics.items()}

    # -- products -----------------------------------------------------------------------------
    def probe_obs(self) -> np.ndarray:
        """Fixed observations (spread over the dataset) that fingerprint the anchor."""
        idx = np.linspace(0, len(self._reward) - 1, NUM_PROBES).astype(int)
        return self.data.observations[idx].numpy()

    def deployment(self) -> Deployment:
        """What the algorithm needs besides its weights to build the deployable policy."""
        return Deployment(
            self.data.observation_space,
            self.data.action_space,
            self.obs_mean,
            self.obs_std,
            self.anchor,
            self.probe_obs(),
            self.config,
            f"{self.config.algo}:{self.data.name}",
        )

    def policy(self) -> BasePolicy:
        """The current deployable policy (a snapshot of the weights)."""
        return self.algo.policy(self.deployment())

    def export(self, folder: str | Path | None = None) -> Path:
        """Write the deployable artefact (default: `run_dir/<artifact>`, e.g. `rectifier/` for SPAR,
        `policy/` for the baselines); returns its folder."""
        if folder is None:
            if self.run_dir is None:
                raise ValueError("Trainer.export needs a folder when the trainer has no run_dir")
            folder = self.run_dir / self.algo.artifact
        return self.algo.export(self.deployment(), folder)

    # -- checkpoints --------------------------------------------------------------------------
    def save_state(self, folder: str | Path) -> Path:
        """Atomically write everything needed to resume (weights, optimisers, generator, step)."""
        tensors: dict[str, torch.Tensor] = {"generator": self.generator.get_state()}
        for name, generator in self._algo_generators().items():
            tensors[f"generator.{name}"] = generator.get_state()
        for name, module in self.algo.modules().items():
            for key, value in module.state_dict().items():
                tensors[f"module.{name}.{key}"] = value
        optim_meta = {}
        for name, opt in self.algo.optimizers().items():
            state = opt.state_dict()
            keys = {}
            for pid, slots in state["state"].items():
                keys[str(pid)] = sorted(slots)
                for slot, value in slots.items():
                    tensors[f"optim.{name}.{pid}.{slot}"] = torch.as_tensor(value)
            optim_meta[name] = {"param_groups": state["param_groups"], "slots": keys}
        meta = {
            "step": self.step,
            "config": self.config.to_dict(),
            "optimizers": optim_meta,
            "dataset": self.data.name,
            "n": len(self._reward),
            "train_seconds": self.train_seconds,
            "mkl_intel_path": mkl.status()["active"],
        }
        return write_bundle(folder, "train_state", meta, tensors)

    def _algo_generators(self) -> dict[str, torch.Generator]:
        """The algorithm's own random generators besides the trainer's (SPAR's reach policy has one)."""
        return self.algo.generators() if hasattr(self.algo, "generators") else {}

    def load_state(self, folder: str | Path) -> None:
        """Restore a `save_state` folder. Raises ValueError when it belongs to another config."""
        meta, tensors = read_bundle(folder, "train_state")
        if meta["n"] != len(self._reward):
            raise ValueError(
                f"checkpoint at {folder} was written on a dataset of {meta['n']} transitions, this one "
                f"has {len(self._reward)}; resume on the same dataset, or start a new run directory."
            )
        _check_resumable_config(TrainConfig.from_saved(meta["config"]), self.config, int(meta["step"]), folder)
        for name, module in self.algo.modules().items():
            prefix = f"module.{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in self.algo.optimizers().items():
            info = meta["optimizers"][name]
            state = {
                int(pid): {slot: tensors[f"optim.{name}.{pid}.{slot}"] for slot in slots}
                for pid, slots in info["slots"].items()
            }
            opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        self.generator.set_state(tensors["generator"])
        for name, generator in self._algo_generators().items():
            generator.set_state(tensors[f"generator.{name}"])
        recorded, now = meta.get("mkl_intel_path"), mkl.status()["active"]
        if recorded is not None and recorded != now:
            warnings.warn(
                f"checkpoint at {folder} was written with MKL's Intel path {'on' if recorded else 'off'}, this "
                f"process has it {'on' if now else 'off'} ({mkl.status()['reason']}); the run continues but will "
                f"not be bit-identical to an uninterrupted one. Set {mkl.ENV_VAR}={int(recorded)} to match.",
                stacklevel=2,
            )
        self.step = int(meta["step"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))  # 0 for checkpoints written before it was kept


class _StopAtStepBoundary:
    """While active (main thread only), SIGINT and SIGTERM ask the training loop to stop after the
    current step instead of interrupting it; a second SIGINT interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now (the last checkpoint stays as it was)
        self.requested = True
        print(
            f"\n{signal.Signals(signum).name}: stopping after the current step (Ctrl-C again to stop now)", flush=True
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether `run_dir/checkpoint` holds a training checkpoint to resume (a complete one, or the
    staged pair a save cut off between its two moves left; see `bundle.write_bundle`)."""
    ckpt = Path(run_dir) / "checkpoint"
    return (ckpt / "train_state.json").exists() or (ckpt / "train_state.json.new").exists()


def _check_resumable_config(saved: TrainConfig, now: TrainConfig, step: int, folder) -> None:
    """Raise ValueError naming the fields that differ, unless only bookkeeping or other methods' fields
    differ (`algos.training_fields`), or the step budget of a run without stages
    (`Algorithm.staged`) grew. Fields added to `TrainConfig` after the checkpoint was written take
    the value that version trained with (`TrainConfig.from_saved`), so older checkpoints stay resumable
    and never resume under a default that changed since."""
    a, b = saved.to_dict(), now.to_dict()
    differ = [k for k in training_fields(now) if a[k] != b[k] and k not in DEPLOYMENT_FIELDS]
    staged = ALGORITHMS[now.algo].staged
    if differ == ["steps"] and not staged and now.steps >= step:
        return  # extending (or shortening to no less than what is done) a run whose schedule has no stages
    if differ:
        listed = ", ".join(f"{k}: {a[k]!r} in the checkpoint, {b[k]!r} now" for k in differ)
        hint = (
            f" ({now.algo.upper()}'s stages are fractions of steps, so a {now.algo.upper()} run cannot be "
            "extended: start a new run directory)"
            if "steps" in differ and staged
            else ""
        )
        raise ValueError(
            f"checkpoint at {folder} was trained with other settings ({listed}){hint}; resume with the "
            "same settings (--config.<field>), or start a new run directory."
        )


ALTERNATIVE = "rectifier-alternative"
"""The run folder's second rectifier when SPAR trained a reach policy (lsi_reach_penalty): the one not deployed."""
IN_SAMPLE = "rectifier-insample"
"""The run folder's in-sample candidate (in_sample_candidate) where it is not deployed."""
REFUSED = "rectifier-lsi"
"""Where the rectifier the drift check chose among LSI's policies goes when the in-sample candidate replaces it."""


#: Dataset states (a seeded sample) over which the anchor's advantage is averaged.
ANCHOR_ADVANTAGE_STATES = 10_000
#: Start states of the reach check (`drift.compare_reach`), split among the members for their own checks.
REACH_CHECK_STARTS = 1000


def _anchor_advantage(trainer: Trainer) -> float:
    """The anchor's mean advantage over the data's value (`SPAR.anchor_advantage`) on a seeded sample of up to
    ANCHOR_ADVANTAGE_STATES of the data's states, scaled-reward units."""
    gen = torch.Generator().manual_seed(trainer.config.seed)
    idx = torch.randperm(len(trainer._obs), generator=gen)[:ANCHOR_ADVANTAGE_STATES]
    return float(trainer.algo.anchor_advantage(trainer._obs[idx], trainer._base[idx]).mean())


def _choose_default_alpha(
    trainer: Trainer, artifact: Path, run_dir: Path, say: bool, reach: Path | None = None, in_sample: Path | None = None
):
    """TrainConfig.auto_alpha: the exported rectifier's default alpha, chosen offline by the drift check
    (`drift.choose_alpha`; the dynamics model is kept in `run_dir/dynamics`) and written into `artifact`.
    With `reach` (the reach policy's rectifier, exported there), `drift.choose_penalty` picks which of the
    two is deployed: it ends in `artifact`, the other in `run_dir/rectifier-alternative`. With
    TrainConfig.gate_check, the deployed rectifier is also checked ungated where its gated alpha is below 1, and
    deployed ungated (`RectifierCheckpoint.gate` False) at that check's alpha when it is larger. With `in_sample`
    (the in-sample candidate's rectifier, exported there), that one is checked the same way, gated and (with or
    without gate_check) ungated, and replaces the chosen rectifier where `drift.in_sample_replaces` says so under
    TrainConfig.in_sample_rule (by default: it passes at a larger alpha than the chosen one, the critic rates its
    deployed actions clearly above the chosen one's (`critic_gain.compare_deployed`), and the critic rates the anchor
    below the data's value): it then ends in `artifact` and the one it replaced in `run_dir/rectifier-lsi`.

    Returns:
        the deployed rectifier's `AlphaChoice` (of the gated policy), the `PenaltyChoice` (None without `reach`),
        the gate check (None where it did not run): {"gated_alpha", "ungated": the ungated policy's `AlphaChoice`
        as a dict, "deployed_gate": "gated" | "ungated"}, and the in-sample candidate's check (None without
        `in_sample`): {"alpha", "gate_choice", "lsi_alpha", "anchor_advantage", "gain" (the critic's comparison, None
        where the rule did not need it), "deployed"}."""
    config = trainer.config
    tell = (lambda line: print(line, flush=True)) if say else None
    model = drift.load_or_fit(
        trainer.data, run_dir / "dynamics", steps=config.drift_model_steps, seed=config.seed, progress=tell
    )
    started = time.perf_counter()

    def note(what: str) -> None:
        """A progress line before each offline check (each takes seconds to minutes, with no output of its own)."""
        if say:
            print(f"offline check ({time.perf_counter() - started:.0f} s): {what}", flush=True)

    def checked(folder: Path, gate: bool | None = None) -> drift.AlphaChoice:
        note(f"{folder.name}{' ungated' if gate is False else ''}: drift in the dynamics model at each alpha")
        return drift.choose_alpha(
            trainer.anchor,
            folder,
            trainer.data,
            model,
            threshold=config.drift_threshold,
            seed=config.seed,
            members=True,  # recorded on every run: how far the model's own fit moves each excess
            model_margin=config.alpha_model_margin,
            gate=gate,
        )

    def offline_alpha(folder: Path):
        chosen = checked(folder)
        set_default_alpha(folder, chosen.alpha)
        return chosen

    chosen, penalty = offline_alpha(artifact), None
    # the critic's verdict on the anchor against the data's value: the reach policy and the candidate both read it
    advantage = _anchor_advantage(trainer) if reach is not None or in_sample is not None else None
    if reach is not None:
        reach_choice, excess, excess_se = offline_alpha(reach), None, None
        members = None
        if config.reach_check_horizon and drift.reach_eligible(reach_choice, advantage, config.reach_weak_anchor_only):

            def compared(member: int | None = None, starts: int = REACH_CHECK_STARTS) -> drift.DriftReport:
                return drift.compare_reach(
                    trainer.anchor,
                    reach,
                    artifact,
                    chosen.alpha,
                    trainer.data,
                    model,
                    horizon=config.reach_check_horizon,
                    starts=starts,
                    seed=config.seed,
                    member=member,
                )

            note(f"the reach policy against the penalised one over {config.reach_check_horizon} model steps")
            report = compared()
            excess, excess_se = report.excess("reach", "penalised"), report.excess_se("reach", "penalised")
            # the same through each member alone: how far the model's own fit moves the excess (the allowance of
            # reach_model_margin). Each from a share of the starts, so that all of them together cost one more
            # check (a check's time grows with its model states: the rollouts and the support search over them)
            share = drift.member_starts(REACH_CHECK_STARTS, model.members)
            members = [compared(k, share).excess("reach", "penalised") for k in range(model.members)]
        penalty = drift.choose_penalty(
            {config.lsi_anchor_penalty: chosen, config.lsi_reach_penalty: reach_choice},
            reach=config.lsi_reach_penalty,
            anchor_advantage=advantage,
            weak_anchor_only=config.reach_weak_anchor_only,
            reach_excess=excess,
            reach_horizon=config.reach_check_horizon if excess is not None else 0,
            threshold=config.drift_threshold,
            reach_excess_se=excess_se,
            reach_excess_members=members,
            model_margin=config.reach_model_margin,
        )
        if config.reach_rule == "larger_gain" and drift.reach_contends(reach_choice, penalty):
            note("the critic's gain of the reach policy against the penalised one (reach_rule larger_gain)")
            gain = critic_gain.compare_deployed(
                trainer.anchor, artifact, reach, trainer.data.observations, seed=config.seed
            )
            deployed = config.lsi_reach_penalty if drift.reach_gains(reach_choice, penalty, gain) else penalty.deployed
            penalty = dataclass_replace(penalty, deployed=deployed, reach_gain=gain.to_dict())
        alternative = run_dir / ALTERNATIVE
        shutil.rmtree(alternative, ignore_errors=True)
        if penalty.deployed == config.lsi_reach_penalty:  # the reach policy's rectifier becomes the artefact
            artifact.rename(alternative)
            reach.rename(artifact)
        else:
            reach.rename(alternative)
        chosen = penalty.choices[penalty.deployed]
        if say:
            print(f"latent policy, chosen offline (lsi_reach_penalty):\n{penalty.table()}", flush=True)
    if say:
        print(f"default alpha, chosen offline (auto_alpha):\n{chosen.table()}", flush=True)

    def gate_checked(folder: Path, gated: drift.AlphaChoice, wanted: bool) -> tuple[dict | None, float]:
        """The ungated check on `folder` where `wanted` (gated alpha `gated.alpha`): (its record or None, the
        alpha that goes out)."""
        if not wanted or gated.alpha >= 1.0:  # at alpha 1 the gated policy has nothing to gain
            return None, gated.alpha
        ungated = checked(folder, gate=False)
        deployed = "ungated" if ungated.alpha > gated.alpha else "gated"
        if deployed == "ungated":
            set_default_alpha(folder, ungated.alpha)
            set_default_gate(folder, False)
        out = max(ungated.alpha, gated.alpha)
        if say:
            print(
                f"{folder.name} without the critic gate (gate_check):\n{ungated.table()}\n"
                f"deployed {deployed} at alpha {out:g}",
                flush=True,
            )
        return {"gated_alpha": gated.alpha, "ungated": ungated.to_dict(), "deployed_gate": deployed}, out

    gate, alpha = gate_checked(artifact, chosen, config.gate_check)
    fallback = None
    if in_sample is not None:
        own = offline_alpha(in_sample)
        own_gate, own_alpha = gate_checked(in_sample, own, True)  # its own reach is the data's gait: gate or not
        gain = None  # the critic's paired verdict, where the rule would otherwise go to the candidate
        if config.in_sample_rule == "larger_gain" and drift.in_sample_replaces(
            alpha, own_alpha, advantage, "larger_alpha"
        ):
            note("the critic's gain of the in-sample candidate against LSI's deployed policy")
            gain = critic_gain.compare_deployed(
                trainer.anchor, artifact, in_sample, trainer.data.observations, seed=config.seed
            )
        replace = drift.in_sample_replaces(alpha, own_alpha, advantage, config.in_sample_rule, gain)
        fallback = {
            "alpha": own.to_dict(),
            "gate_choice": own_gate,
            "lsi_alpha": alpha,
            "anchor_advantage": advantage,
            "gain": None if gain is None else gain.to_dict(),
            "deployed": replace,
        }
        shutil.rmtree(run_dir / REFUSED, ignore_errors=True)
        if replace:
            artifact.rename(run_dir / REFUSED)
            in_sample.rename(artifact)
            chosen, gate = own, own_gate
        if say:
            rated = (
                ""
                if gain is None
                else f"; the critic's gain {gain.challenger:+.3f} against LSI's {gain.incumbent:+.3f}"
            )
            if replace:
                verdict = f"deployed at alpha {own_alpha:g}: LSI's policies went out at alpha {alpha:g}{rated}"
            elif gain is not None:
                verdict = (
                    f"kept in {in_sample}: it passes alpha {own_alpha:g} against LSI's {alpha:g}, but the critic does "
                    f"not rate it clearly above LSI's (gain {gain.challenger:+.3f} against {gain.incumbent:+.3f}, "
                    f"difference {gain.difference:+.3f} +- {gain.difference_se:.3f})"
                )
            elif own_alpha <= alpha:
                verdict = f"kept in {in_sample}: it passes alpha {own_alpha:g}, LSI's went out at {alpha:g}"
            elif advantage >= 0.0:
                verdict = f"kept in {in_sample}: the critic rates the anchor {advantage:+.3f} against the data's value"
            else:  # in_sample_rule "lsi_at_zero"
                verdict = f"kept in {in_sample}: LSI's went out at {alpha:g} (in_sample_rule lsi_at_zero)"
            print(f"the in-sample candidate (in_sample_candidate):\n{own.table()}\n{verdict}", flush=True)
    return chosen, penalty, gate, fallback


@dataclass
class TrainResult:
    """What `train` produced: the artefact folder, the run folder, the final evaluation."""

    artifact: Path
    run_dir: Path
    steps: int
    train_seconds: float
    eval_returns: np.ndarray | None
    normalized_score: float | None


class _Pace:
    """What `train` says about its progress without a bar: the budget first, the measured rate and
    the time left after the first 1,000 steps, then (`lines`) a line about every 5% of the steps."""

    def __init__(self, total: int, first: int, say: bool, lines: bool):
        self.total, self.first, self.say, self.lines = total, first, say, lines
        self.every = max(total // 20, 1)
        self.start = time.perf_counter()
        self.estimated = False

    def begin(self, what: str) -> None:
        if self.say:
            left = self.total - self.first
            resumed = f" (resuming at step {self.first})" if self.first else ""
            print(f"training {what}: {left:,} gradient steps to go of {self.total:,}{resumed}", flush=True)

    def tick(self, step: int) -> None:
        if not self.say or step == self.first:
            return
        done = step - self.first
        if not self.estimated and (done >= 1000 or step == self.total):
            self.estimated = True
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            print(
                f"measured {rate:.0f} steps/s: about {_duration((self.total - step) / rate)} for the remaining "
                f"{self.total - step:,} steps (--config.steps sets the budget)",
                flush=True,
            )
        elif self.lines and step % self.every == 0:
            rate = done / max(time.perf_counter() - self.start, 1e-9)
            print(
                f"step {step:,}/{self.total:,} ({100 * step / self.total:.0f}%), {rate:.0f} steps/s, "
                f"about {_duration((self.total - step) / rate)} left",
                flush=True,
            )


def _duration(seconds: float) -> str:
    """'2 h 05 min', '7 min', '40 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{int(round(seconds / 60))} min" if seconds >= 90 else f"{int(round(seconds))} s"


def train(
    config: TrainConfig,
    data: OfflineData,
    run_dir: str | Path,
    anchor: Any = None,
    env: Any = None,
    resume: bool = False,
    progress: bool | None = None,
    eval_seed: int = 10_000,
) -> TrainResult:
    """Train, log, evaluate, checkpoint and export in one call.

    Args:
        config: what to train.
        data: the dataset.
        run_dir: output folder (`config.json`, `metrics.csv`, `tb/`, `checkpoint/`, and `rectifier/`
            or `policy/`).
        anchor: the base policy (SPAR).
        env: env id / spec / env for evaluation; None: the dataset's env spec if it has one.
        resume: continue from `run_dir/checkpoint`.
        progress: True: a tqdm bar; None (default): the bar on a terminal, otherwise a plain line
            about every 5% of the steps (logs stay small); False: quiet. Unless quiet, the first
            lines say the step budget and, once measured, the time it will take.
        eval_seed: evaluation episode i uses seed `eval_seed + i` (the same for every method).

    Raises:
        FileExistsError: `run_dir` already holds a checkpoint and `resume` is False.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint"
    found = has_checkpoint(run_dir)
    if found and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a training checkpoint; pass resume=True (--resume) "
            "to continue it, or choose another run directory."
        )
    if env is None and data.env_refused and config.eval_episodes:
        raise UntrustedEnvSpec(data.env_refused)  # before any training: evaluation would need that env
    run_dir.mkdir(parents=True, exist_ok=True)
    tell = (lambda line: print(line, flush=True)) if progress is not False else None
    trainer = Trainer(config, data, anchor, run_dir, tell)
    lifted = lifted_message(trainer.info.bound_cap, config.bound_max, config.bound_lift or config.bound_max)
    if tell is not None and lifted is not None:
        tell(lifted)
    if resume and found:
        trainer.load_state(ckpt)
    config.save(run_dir / "config.json")
    env = env if env is not None else data.env_spec
    logger = RunLogger(run_dir)

    def run_eval(step: int, policy: BasePolicy | None = None) -> tuple[np.ndarray, float | None]:
        returns = evaluate(trainer.policy() if policy is None else policy, env, config.eval_episodes, eval_seed)
        score = data.normalized_score(returns.mean())
        row = {"eval_return": float(returns.mean()), "eval_return_std": float(returns.std())}
        if score is not None:
            row["eval_normalized_score"] = float(score)
        logger.log(step, row)
        return returns, score

    start, before = time.perf_counter(), trainer.train_seconds
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # per metric: SPAR's LSI metrics exist only on every lsi_every-th step
    bar_on = progress if progress is not None else sys.stderr.isatty()
    pace = _Pace(config.steps, trainer.step, say=(progress is not False), lines=(progress is None and not bar_on))
    pace.begin(f"{config.algo} on {data.name}")
    bar = tqdm(
        total=config.steps,
        initial=trainer.step,
        disable=not bar_on,
        desc=f"{config.algo} {data.name}",
        dynamic_ncols=True,
    )
    steps = trainer.fit()
    with _StopAtStepBoundary() as stop:
        try:
            while not stop.requested:
                try:
                    step, metrics = next(steps)
                except StopIteration:
                    break
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
                if step % config.log_every == 0 or step == config.steps:
                    means = {k: v / counts[k] for k, v in sums.items()}
                    logger.log(step, means)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
                    sums, counts = {}, {}
                if env is not None and config.eval_every and step % config.eval_every == 0 and step < config.steps:
                    returns, _ = run_eval(step)
                    if progress is not False:
                        bar.write(f"step {step}: eval return {returns.mean():.1f} +- {returns.std():.1f}")
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    trainer.train_seconds = before + time.perf_counter() - start
                    trainer.save_state(ckpt)
                bar.update(1)
                pace.tick(step)
        finally:
            bar.close()
            trainer.train_seconds = before + time.perf_counter() - start
            # Every finished step is kept; a step cut off half-way (an error, a second Ctrl-C) is not
            # written over the last checkpoint, whose state it would mix with the next step's.
            if trainer.step > 0 and not trainer.mid_step:
                trainer.save_state(ckpt)
    if stop.requested and trainer.step < config.steps:  # asked after the last step: finish normally
        logger.close()
        print(
            f"interrupted at step {trainer.step}, checkpoint saved in {ckpt}; resume with `spar train ... "
            f"--resume` (resume=True)",
            flush=True,
        )
        raise KeyboardInterrupt(f"training interrupted at step {trainer.step}; checkpoint saved in {ckpt}")
    seconds = trainer.train_seconds
    artifact = trainer.export()
    final, chosen, penalty, gate, fallback = None, None, None, None, None
    reach = in_sample = None
    if getattr(trainer.algo, "reach_actor", None) is not None:  # lsi_reach_penalty: the second latent policy
        staged = run_dir / (ALTERNATIVE if not config.auto_alpha else "rectifier-reach")
        shutil.rmtree(staged, ignore_errors=True)
        reach = trainer.algo.export(trainer.deployment(), staged, policy="reach")
    if getattr(trainer.algo, "insample_actor", None) is not None:  # in_sample_candidate: the third
        shutil.rmtree(run_dir / IN_SAMPLE, ignore_errors=True)
        in_sample = trainer.algo.export(trainer.deployment(), run_dir / IN_SAMPLE, policy="insample")
    if trainer.anchor is not None and config.auto_alpha:
        chosen, penalty, gate, fallback = _choose_default_alpha(
            trainer, artifact, run_dir, say=progress is not False, reach=reach, in_sample=in_sample
        )
        final = trainer.algo.deployed(trainer.deployment(), artifact)
    returns, score = run_eval(trainer.step, final) if env is not None and config.eval_episodes else (None, None)
    logger.close()
    summary = {
        "algo": config.algo,
        "dataset": data.name,
        "steps": trainer.step,
        "train_seconds": seconds,
        "artifact": str(artifact),
        "eval_return_mean": None if returns is None else float(returns.mean()),
        "eval_returns": None if returns is None else returns.tolist(),
        "normalized_score": None if score is None else float(score),
    }
    if trainer.info.bound_cap is not None:
        summary["bound_cap"] = trainer.info.bound_cap  # what rho's cap cut, and whether bound_lift lifted it
    if chosen is not None:
        summary["auto_alpha"] = chosen.to_dict()
    if penalty is not None:
        summary["penalty_choice"] = penalty.to_dict()
    if gate is not None:
        summary["gate_choice"] = gate
    if fallback is not None:
        summary["in_sample_choice"] = fallback
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return TrainResult(artifact, run_dir, trainer.step, seconds, returns, None if score is None else float(score))
