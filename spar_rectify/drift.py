"""Offline drift check: does a rectified policy leave the data's states more often than its base policy?

Defines `DynamicsEnsemble`, `StateBox`, `live_starts`, `rollout_draws`, `model_rollout`, `ModelStep`,
`load_or_fit`, `state_support`, `drift_check`, `least_penalised_within`, `choose_alpha`, `AlphaChoice`,
`choose_penalty`, `PenaltyChoice`, `in_sample_replaces`, `GAIN_MARGIN_SE` and `DRIFT_ALPHAS`.

A rectifier can keep every single action close to the data and still lead the system, step after step,
into states the data never reached: on hopper medium a small consistent shift (0.18 in normalised
action units) took 14.5% of the visited states off the data, while on the data's own states each
rectified action was as close to the data as a logged one (benchmarks/README.md, session 13). No
one-step test sees that. `drift_check` looks for it without the env: it rolls both policies from the
same dataset states through an ensemble of dynamics models fitted to the data's transitions, with the
same random member at every step for both, and counts the model states beyond the data's state-support
threshold (`SupportMetric` on states alone). The model's own error makes the absolute shares large; the
difference between the two policies is the signal.

`choose_alpha` turns the check into the rectifier's default: the largest residual scale whose drift stays
within a threshold of the base policy's. `spar train` runs it after every SPAR training (TrainConfig's
auto_alpha): on hopper medium, where the whole residual drifted (+7.4 points in the model, 14.5% of the
env's states off the data), it picks alpha 0.5 (model excess 0.0; env: 70.5 normalised against 80.0 at
alpha 1 and 66.6 for the anchor, 0.9% of the states off the data); on the runs that did not drift it keeps 1.
"""

from __future__ import annotations

import json
import math
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from spar_rectify.checkpoint import check_alpha
from spar_rectify.config import IN_SAMPLE_RULES
from spar_rectify.data import OfflineData
from spar_rectify.networks import EnsembleMLP
from spar_rectify.rectified_policy import RectifiedPolicy
from spar_rectify.spaces import ActionScaler
from spar_rectify.support import SupportMetric

if TYPE_CHECKING:
    from spar_rectify.critic_gain import GainComparison

MODEL_FILE = "dynamics.safetensors"
META_FILE = "dynamics.json"


class DynamicsEnsemble:
    """`members` MLPs predicting the standardised state change from (standardised state, action).

    Args:
        obs_dim, act_dim: sizes of the state and of the (normalised) action.
        members: ensemble size (>= 2: the disagreement needs two).
        hidden: hidden widths of each member.
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 5, hidden: Sequence[int] = (200, 200, 200)):
        if members < 2:
            raise ValueError(f"members={members}: use at least 2 (their disagreement is part of the report)")
        self.obs_dim, self.act_dim, self.members, self.hidden = obs_dim, act_dim, members, tuple(hidden)
        self.net = EnsembleMLP(members, obs_dim + act_dim, obs_dim, self.hidden)
        self.stats = {k: torch.zeros(obs_dim) for k in ("obs_mean", "delta_mean")}
        self.stats |= {k: torch.ones(obs_dim) for k in ("obs_std", "delta_std")}
        self.validation_mse = float("nan")
        self.fit_steps = 0
        self.dataset: str | None = None  # the name of the data it was fitted to

    @classmethod
    def fit(
        cls,
        data: OfflineData,
        members: int = 5,
        steps: int = 20_000,
        seed: int = 0,
        batch_size: int = 256,
        lr: float = 1e-3,
        progress: Callable[[str], None] | None = None,
        hidden: Sequence[int] = (200, 200, 200),
    ) -> DynamicsEnsemble:
        """Fit on `data`'s transitions (each member on its own bootstrap batches); 2% are held out for
        `validation_mse`, the mean squared error in units of the state change's variance."""
        if steps < 1:
            raise ValueError(f"steps={steps}: fit the dynamics for at least 1 gradient step (about 20000 is typical)")
        obs, act, nxt = data.observations, data.actions, data.next_observations
        with torch.random.fork_rng(devices=[]):  # seeded members, the caller's global RNG untouched
            torch.manual_seed(seed)
            model = cls(obs.shape[1], act.shape[1], members, hidden)
        delta = nxt - obs
        model.stats = {
            "obs_mean": obs.mean(0),
            "obs_std": obs.std(0).clamp_min(1e-3),
            "delta_mean": delta.mean(0),
            "delta_std": delta.std(0).clamp_min(1e-6),
        }
        inputs = model._inputs(obs, act)
        targets = (delta - model.stats["delta_mean"]) / model.stats["delta_std"]
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(inputs), generator=g)
        val, train = order[: max(len(order) // 50, 1)], order[max(len(order) // 50, 1) :]
        opt = torch.optim.Adam(model.net.parameters(), lr)
        start = time.perf_counter()
        for step in range(steps):
            idx = train[torch.randint(len(train), (members, batch_size), generator=g)]
            loss = (model.net(inputs[idx]) - targets[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None and ((step + 1) % max(steps // 10, 1) == 0 or step + 1 == steps):
                seconds = time.perf_counter() - start
                progress(f"dynamics: step {step + 1}/{steps}, loss {loss.item():.4f} ({seconds:.0f} s)")
        with torch.no_grad():
            model.validation_mse = float((model.net(inputs[val]) - targets[val]).pow(2).mean())
        model.fit_steps, model.dataset = steps, data.name
        return model

    def _inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([(obs - self.stats["obs_mean"]) / self.stats["obs_std"], act], -1)

    @torch.no_grad()
    def step(
        self, states: torch.Tensor, actions: torch.Tensor, pick: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One model step.

        Args:
            states: (B, obs_dim) env units.
            actions: (B, act_dim) normalised units, in [-1, 1].
            pick: (B,) long, the member that moves each row.

        Returns:
            next states (B, obs_dim) env units, and the members' disagreement (B,): the mean over
            dimensions of the std of their predicted next states, in units of the data's state std.
        """
        preds = self.net(self._inputs(states, actions)) * self.stats["delta_std"] + self.stats["delta_mean"]
        spread = (preds.std(0) / self.stats["obs_std"]).mean(-1)
        return states + preds[pick, torch.arange(len(states))], spread

    def save(self, folder: str | Path) -> Path:
        """Write `dynamics.safetensors` and `dynamics.json` into `folder` (loads without pickle)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()}
        tensors |= {f"stats.{k}": v.contiguous() for k, v in self.stats.items()}
        save_file(tensors, folder / MODEL_FILE)
        meta = dict(
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            members=self.members,
            hidden=list(self.hidden),
            validation_mse=self.validation_mse,
            fit_steps=self.fit_steps,
            dataset=self.dataset,
        )
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> DynamicsEnsemble:
        """Read a model `save` wrote (safetensors and JSON only: no code runs)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
            raise FileNotFoundError(
                f"{folder}: no {MODEL_FILE} and {META_FILE} there; fit a model first (spar drift --model-dir "
                f"{folder} fits and saves one when the folder is empty)"
            )
        meta = json.loads((folder / META_FILE).read_text())
        model = cls(meta["obs_dim"], meta["act_dim"], meta["members"], meta["hidden"])
        tensors = load_file(folder / MODEL_FILE)
        model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        model.stats = {k[6:]: v for k, v in tensors.items() if k.startswith("stats.")}
        model.validation_mse, model.fit_steps = meta["validation_mse"], meta["fit_steps"]
        model.dataset = meta.get("dataset")
        return model


class StateBox(NamedTuple):
    """Where model states are kept: the data's state range widened by its span on each side, so a
    diverging model stays finite (a state that far out is off the data's support anyway).

    low, high: (obs_dim,) env-unit bounds.
    """

    low: torch.Tensor
    high: torch.Tensor

    @classmethod
    def of(cls, states: torch.Tensor) -> StateBox:
        """The box of (N, obs_dim) env-unit states."""
        low, high = states.min(0).values, states.max(0).values
        span = high - low
        return cls(low - span, high + span)

    def step(
        self, model: DynamicsEnsemble, states: torch.Tensor, actions: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`model.step` (states (B, obs_dim) env units, actions (B, act_dim) normalised, members (B,)), its next
        states kept in the box: ((B, obs_dim) next states, (B,) the ensemble's disagreement)."""
        nxt, spread = model.step(states, actions, members)
        return torch.maximum(torch.minimum(nxt, self.high), self.low), spread


def live_starts(data: OfflineData) -> torch.Tensor:
    """(N, obs_dim) the data's non-terminal states (env units): where model rollouts start.

    Raises:
        ValueError: every transition is terminal.
    """
    live = torch.nonzero(data.terminations == 0).squeeze(1)
    if len(live) == 0:
        raise ValueError(f"{data.name}: every transition is terminal; there is no state to start a rollout from")
    return data.observations[live]


def rollout_draws(
    data: OfflineData, model: DynamicsEnsemble, starts: int, horizon: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draws of a set of model rollouts, to share between the policies compared: ((starts,
    obs_dim) start states from `live_starts(data)`, (horizon, starts) the member used at each step), from
    `seed`."""
    g = torch.Generator().manual_seed(seed)
    live = live_starts(data)
    first = live[torch.randint(len(live), (starts,), generator=g)]
    return first, torch.randint(model.members, (horizon, starts), generator=g)


class ModelStep(NamedTuple):
    """One step of `model_rollout`: states (B, obs_dim) and next_states (env units), actions (B, act_dim)
    as the policy returned them (env units) and normalised (clipped to [-1, 1]), spread (B,) the
    ensemble's disagreement."""

    states: torch.Tensor
    actions: np.ndarray
    normalised: torch.Tensor
    next_states: torch.Tensor
    spread: torch.Tensor


def model_rollout(
    policy: Callable[[np.ndarray], np.ndarray],
    first: torch.Tensor,
    picks: torch.Tensor,
    model: DynamicsEnsemble,
    box: StateBox,
    scaler: ActionScaler,
    name: str = "policy",
) -> Iterator[ModelStep]:
    """Roll `policy` ((B, obs_dim) -> (B, act_dim), env units) from `first` through `model`, member
    `picks[t]` at step t (`rollout_draws`), states kept in `box`; yields a `ModelStep` per step.

    Raises:
        ValueError: the policy returned a non-finite action (named by `name` and the step).
    """
    states = first.clone()
    for t, members in enumerate(picks):
        actions = np.asarray(policy(states.numpy()), np.float64)
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"policy {name!r} returned a non-finite action at model step {t}")
        normalised = torch.as_tensor(scaler.to_normalized_clipped(actions), dtype=torch.float32)
        nxt, spread = box.step(model, states, normalised, members)
        yield ModelStep(states, actions, normalised, nxt, spread)
        states = nxt


def load_or_fit(
    data: OfflineData,
    folder: str | Path | None = None,
    members: int = 5,
    steps: int = 20_000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> DynamicsEnsemble:
    """The dynamics model of `data` saved in `folder`, or a new one fitted to it (and saved there when
    `folder` is given).

    Raises:
        ValueError: `folder` holds a model fitted to another dataset.
    """
    if folder is not None and (Path(folder) / META_FILE).is_file():
        model = DynamicsEnsemble.load(folder)
        if model.dataset not in (None, data.name):
            raise ValueError(
                f"{folder} holds a dynamics model of {model.dataset}, not of {data.name}; pass an empty folder "
                "(a model of this dataset is fitted and saved there)"
            )
        if progress is not None:
            progress(f"dynamics model loaded from {folder}")
        return model
    if progress is not None:
        progress(f"fitting a {members}-member dynamics model to {data.name} ({steps} steps)")
    model = DynamicsEnsemble.fit(data, members, steps, seed, progress=progress)
    if folder is not None:
        model.save(folder)
        if progress is not None:
            progress(f"dynamics model saved to {folder} (loaded from there next time)")
    return model


_SUPPORT_CACHE: list = []  # [(weak reference to the observations tensor, its SupportMetric)], one entry


def state_support(data: OfflineData) -> SupportMetric:
    """The support metric on `data`'s states alone (`SupportMetric(data.observations)`), built once and kept
    while that observations tensor lives: the end of a training run rolls a dozen or more checks against the
    same data, and one build takes seconds (about 3 s on HalfCheetah medium-replay's 70k 17-dim states)."""
    if _SUPPORT_CACHE and _SUPPORT_CACHE[0][0]() is data.observations:
        return _SUPPORT_CACHE[0][1]
    support = SupportMetric(data.observations.numpy())
    _SUPPORT_CACHE[:] = [(weakref.ref(data.observations), support)]
    return support


@dataclass
class DriftReport:
    """Per-step shares of model states beyond the data's state support, for each policy.

    Attributes:
        per_step: policy name -> (horizon,) share of the rollouts off the data after each step.
        disagreement: policy name -> the ensemble's mean disagreement along its rollouts.
        starts, horizon: rollouts per policy and steps per rollout.
        validation_mse: the model's held-out error (units of the state change's variance).
        per_rollout: policy name -> (starts,) share of each rollout's steps off the data (rollout i of every
            policy starts from the same state with the same member draws); empty where not kept.
    """

    per_step: dict[str, np.ndarray]
    disagreement: dict[str, float]
    starts: int
    horizon: int
    validation_mse: float
    notes: list[str] = field(default_factory=list)
    per_rollout: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self, name: str) -> float:
        """Share of `name`'s model states off the data, averaged over the horizon."""
        return float(np.mean(self.per_step[name]))

    def excess(self, name: str = "rectified", reference: str = "base") -> float:
        """`name`'s mean share minus `reference`'s, in percentage points (> 0: it drifts more)."""
        return 100.0 * (self.mean(name) - self.mean(reference))

    def excess_se(self, name: str = "rectified", reference: str = "base") -> float:
        """The standard error of `excess(name, reference)` over the start states, in percentage points: the
        paired per-rollout differences' standard deviation over sqrt(starts). It measures what other start
        states and member draws of the same model would give, not the model's own error; nan where the
        per-rollout shares were not kept."""
        if name not in self.per_rollout or reference not in self.per_rollout:
            return float("nan")
        diff = self.per_rollout[name] - self.per_rollout[reference]
        if len(diff) < 2:
            return float("nan")
        return 100.0 * float(np.std(diff, ddof=1) / math.sqrt(len(diff)))

    def to_dict(self) -> dict:
        return {
            "starts": self.starts,
            "horizon": self.horizon,
            "validation_mse": self.validation_mse,
            "policies": {
                name: {
                    "state_violation_rate": self.mean(name),
                    "state_violation_last": float(steps[-1]),
                    "disagreement": self.disagreement[name],
                    "per_step_violation": [round(float(v), 4) for v in steps],
                }
                for name, steps in self.per_step.items()
            },
            "excess_points": self.excess() if {"base", "rectified"} <= set(self.per_step) else None,
            "excess_se_points": _finite_or_none(self.excess_se()),
        }

    def table(self) -> str:
        """The report as aligned text lines."""
        w = max(10, *map(len, self.per_step))
        lines = [f"{'policy':>{w}} {'off the data (mean)':>20} {'at the last step':>17} {'disagreement':>13}"]
        for name, steps in self.per_step.items():
            share, last = 100 * self.mean(name), 100 * steps[-1]
            lines.append(f"{name:>{w}} {share:>19.1f}% {last:>16.1f}% {self.disagreement[name]:>13.4f}")
        return "\n".join(lines)


@torch.no_grad()
def drift_check(
    policies: dict[str, Callable[[np.ndarray], np.ndarray]],
    data: OfflineData,
    model: DynamicsEnsemble,
    starts: int = 1000,
    horizon: int = 100,
    seed: int = 0,
    member: int | None = None,
) -> DriftReport:
    """Roll each policy from the same `starts` dataset states for `horizon` model steps.

    Args:
        policies: name -> callable (B, obs_dim) env-unit observations -> (B, act_dim) env-unit actions
            (a `BasePolicy`, a `RectifiedPolicy`), e.g. {"base": ..., "rectified": ...}.
        data: the dataset the model and the rectifier were fitted to (the starts and the support).
        model: a `DynamicsEnsemble` fitted to `data`.
        starts: rollouts per policy, from non-terminal dataset states drawn with `seed`.
        horizon: model steps per rollout (drift compounds: over 100 steps the runs that drifted in the
            env stood 6 points or more apart from the others, over 25 steps 0.3 points).
        seed: the draws of the start states and of the member at each step (shared by the policies).
        member: roll every step through this one member instead of a random one per step (the members are
            independent fits: how far the excess moves from member to member is the model's share of its
            uncertainty, which `DriftReport.excess_se` does not see).

    Returns:
        a `DriftReport`.
    """
    if starts < 10:
        raise ValueError(f"starts={starts}: use at least 10 start states (1000 is typical)")
    if horizon < 1:
        raise ValueError(f"horizon={horizon}: use at least 1 model step (100 is typical)")
    if model.obs_dim != data.observations.shape[1] or model.act_dim != data.actions.shape[1]:
        raise ValueError(
            f"the dynamics model is for obs_dim={model.obs_dim}, act_dim={model.act_dim} but the dataset has "
            f"{data.observations.shape[1]} and {data.actions.shape[1]}; fit the model on this dataset"
        )
    if member is not None and not 0 <= member < model.members:
        raise ValueError(f"member={member}: the ensemble has members 0..{model.members - 1}")
    scaler = ActionScaler(data.action_space)
    support = state_support(data)
    box = StateBox.of(data.observations)
    first, picks = rollout_draws(data, model, starts, horizon, seed)
    if member is not None:
        picks = torch.full_like(picks, member)
    per_step, disagreement, per_rollout = {}, {}, {}
    for name, policy in policies.items():
        off, spreads = [], []
        for step in model_rollout(policy, first, picks, model, box, scaler, name):
            off.append(np.asarray(support.violations(step.next_states.numpy()), np.float64))
            spreads.append(float(step.spread.mean()))
        off = np.stack(off)  # (horizon, starts)
        per_step[name], per_rollout[name] = off.mean(axis=1), off.mean(axis=0)
        disagreement[name] = float(np.mean(spreads))
    return DriftReport(per_step, disagreement, starts, horizon, model.validation_mse, per_rollout=per_rollout)


def _finite_or_none(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


def least_penalised_within(
    report: DriftReport, penalties: dict[str, float | None], threshold: float = 2.0, reference: str = "base"
) -> str | None:
    """The rectifier to deploy among several of `report`: of those whose excess over `reference` is at most
    `threshold` percentage points, the one trained with the smallest lsi_anchor_penalty (the most reach the
    data's states allow), ties broken by the smaller excess; None when every one drifts.

    Args:
        report: a `DriftReport` with `reference` and every name of `penalties`.
        penalties: policy name -> its training lsi_anchor_penalty (None when unknown: counts as the largest).
        threshold: the largest excess, in points, that counts as not drifting.
    """
    within = [name for name in penalties if report.excess(name, reference) <= threshold]
    if not within:
        return None
    return min(within, key=lambda n: (math.inf if penalties[n] is None else penalties[n], report.excess(n, reference)))


def _members_se(members: Sequence[float] | None) -> float | None:
    """The standard deviation of per-member excesses over the square root of their number (points): the dynamics
    model's own uncertainty about an excess; None with fewer than two finite members."""
    finite = [x for x in members or () if math.isfinite(x)]
    if len(finite) < 2:
        return None
    return float(np.std(finite, ddof=1) / math.sqrt(len(finite)))


def member_starts(starts: int, members: int) -> int:
    """Start states for each dynamics member's own check: a share of `starts` (at least 10), so that the members'
    checks together cost about one more check."""
    return max(10, starts // members)


def _bar(threshold: float, margin: float, se: float | None) -> float:
    """The most excess still within: threshold + margin * se (the threshold alone without an se or a margin)."""
    return threshold + (margin * se if se is not None and margin else 0.0)


#: The residual scales `choose_alpha` tries, largest first.
DRIFT_ALPHAS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)


@dataclass
class AlphaChoice:
    """A rectifier's default alpha chosen offline by `choose_alpha`.

    Attributes:
        alpha: the chosen residual scale in [0, 1] (0: every tried scale drifts; the base policy).
        excess: tried alpha -> its drift excess over the base policy, in percentage points.
        threshold: the largest excess, in points, that counted as not drifting.
        report: the `DriftReport` ("base" and one policy per tried alpha, named "alpha <a>").
        members: tried alpha -> its excess through each dynamics member alone (points), where measured.
        model_margin: the allowance for the model's spread, in its standard errors (`model_se`): an alpha
            counts as not drifting when its excess is at most threshold + model_margin * model_se(alpha).
    """

    alpha: float
    excess: dict[float, float]
    threshold: float
    report: DriftReport
    members: dict[float, tuple[float, ...]] | None = None
    model_margin: float = 0.0

    def excess_se(self, alpha: float) -> float:
        """The standard error of `excess[alpha]` over the start states, in points (nan where not measured)."""
        return self.report.excess_se(f"alpha {alpha:g}")

    def model_se(self, alpha: float) -> float | None:
        """The model's uncertainty about `excess[alpha]`: the standard deviation of its per-member excesses over
        the square root of their number (points); None with fewer than two members measured."""
        return _members_se((self.members or {}).get(alpha))

    def bar(self, alpha: float) -> float:
        """The most excess at `alpha` that counts as not drifting: threshold + model_margin * model_se(alpha)."""
        return _bar(self.threshold, self.model_margin, self.model_se(alpha))

    def offline_alpha(self) -> float:
        """The rule of `choose_alpha`: the largest tried alpha whose excess is within its `bar`; 0 (the base
        policy) when none is. With the `alpha` field left aside, the decision can be re-made from recorded
        excesses under another threshold or margin (`replace(choice, model_margin=z).offline_alpha()`)."""
        within = [a for a in sorted(self.excess, reverse=True) if self.excess[a] <= self.bar(a)]
        return within[0] if within else 0.0

    def to_dict(self) -> dict:
        out = {
            "alpha": self.alpha,
            "threshold_points": self.threshold,
            "excess_points": {f"{a:g}": round(e, 3) for a, e in self.excess.items()},
            "excess_se_points": {f"{a:g}": _finite_or_none(self.excess_se(a)) for a in self.excess},
            "horizon": self.report.horizon,
            "starts": self.report.starts,
            "model_validation_mse": self.report.validation_mse,
        }
        if self.members is not None:
            out["excess_members_points"] = {f"{a:g}": [_finite_or_none(x) for x in m] for a, m in self.members.items()}
            out["model_margin"] = self.model_margin
        return out

    def table(self) -> str:
        """One line per tried alpha: its excess and whether it stays within the threshold."""
        spreads = {alpha: self.excess_se(alpha) for alpha in self.excess}
        shown = any(math.isfinite(se) for se in spreads.values())
        unit = "points +- s.e." if shown else "points"
        allowance = f" + {self.model_margin:g} x the members' s.e." if self.members and self.model_margin else ""
        lines = [f"alpha   drift excess over the base policy ({unit}, within +{self.threshold:g}{allowance})"]
        for alpha, excess in self.excess.items():
            mark = "  <- default" if alpha == self.alpha else ""
            spread = f" +- {spreads[alpha]:4.1f}" if shown else ""
            verdict = "within" if excess <= self.bar(alpha) else "drifts"
            each = (self.members or {}).get(alpha)
            apart = f"  (each member alone: {', '.join(f'{x:+.1f}' for x in each)})" if each else ""
            lines.append(f"{alpha:5.2f}   {excess:+6.1f}{spread}  {verdict}{mark}{apart}")
        if self.alpha == 0:
            lines.append(
                "every tried alpha drifts: the default is 0 (the base policy). To stay on the data, retrain with a "
                "larger lsi_anchor_penalty; to deploy more of the residual anyway, off the data's states, pass an "
                "alpha (spar evaluate --alpha, SPARRectifierWrapper(alpha=...)) after trying it on the system "
                "(spar tune-alpha)"
            )
        return "\n".join(lines)


def choose_alpha(
    base: Callable[[np.ndarray], np.ndarray],
    rectifier,
    data: OfflineData,
    model: DynamicsEnsemble,
    alphas: Sequence[float] = DRIFT_ALPHAS,
    threshold: float = 2.0,
    starts: int = 1000,
    horizon: int = 100,
    seed: int = 0,
    members: bool = False,
    model_margin: float = 0.0,
    gate: bool | None = None,
) -> AlphaChoice:
    """The largest of `alphas` whose rectified policy (critic gate as deployed) drifts off the data's
    states at most `threshold` percentage points more than `base` (`drift_check`); 0 when none does.
    Needs no env episode: the default a rectifier can be deployed at without trying it on the system.

    Args:
        base: the anchor the rectifier was trained around ((B, obs_dim) -> (B, act_dim), env units).
        rectifier: its checkpoint folder or `RectifierCheckpoint`.
        data, model: the training dataset and a `DynamicsEnsemble` fitted to it.
        alphas: residual scales to try, each in [0, 1].
        threshold: points of excess that still count as not drifting (the hopper runs that drifted in the
            env stood at +7.4 and +7.8, the others at +1.1 or less; benchmarks/README.md).
        starts, horizon, seed: as in `drift_check`.
        members: also roll every policy through each dynamics member alone, each from a share of `starts`
            (so all of them cost one more check), and record the per-member excesses (`AlphaChoice.members`):
            how far another fit of the model could move each excess.
        model_margin: with members, an alpha counts as not drifting when its excess is at most threshold +
            model_margin standard errors of its per-member excesses (TrainConfig.alpha_model_margin); 0: the
            threshold alone.
        gate: the rectified policy's critic gate (`RectifiedPolicy`); None: as deployed (on when the rectifier
            carries its critic), False: the policy checked ungated.
    """
    tried = sorted({check_alpha(a) for a in alphas}, reverse=True)
    if not tried:
        raise ValueError("alphas: give at least one residual scale in [0, 1] to try")
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold={threshold}: use a finite number of points >= 0 (2 is the default)")
    if not math.isfinite(model_margin):
        raise ValueError(f"model_margin={model_margin}: give a finite number (0: the threshold alone)")
    if model_margin and not members:
        raise ValueError(f"model_margin={model_margin} needs members=True: the margin is in the members' spread")
    policies = {"base": base}
    policies |= {
        f"alpha {a:g}": RectifiedPolicy(base, rectifier, alpha=a, check_anchor=False, gate=gate) for a in tried
    }
    report = drift_check(policies, data, model, starts, horizon, seed)
    excess = {a: report.excess(f"alpha {a:g}") for a in tried}
    apart = None
    if members:
        share = member_starts(starts, model.members)
        reports = [drift_check(policies, data, model, share, horizon, seed, member=k) for k in range(model.members)]
        apart = {a: tuple(r.excess(f"alpha {a:g}") for r in reports) for a in tried}
    choice = AlphaChoice(0.0, excess, threshold, report, apart, float(model_margin))
    return replace(choice, alpha=choice.offline_alpha())


@dataclass
class PenaltyChoice:
    """Which of a run's two latent policies is deployed (`choose_penalty`).

    Attributes:
        deployed: the lsi_anchor_penalty of the deployed one.
        reach: the reach policy's penalty (TrainConfig.lsi_reach_penalty).
        choices: penalty -> that rectifier's `AlphaChoice` (its offline alpha and drift excesses).
        anchor_advantage: the anchor's mean advantage over the data's value, `min Q(s, a_b) - V(s)` on the
            data's states (scaled-reward units), where it was measured; None otherwise.
        weak_anchor_only: whether the reach policy needed a negative anchor_advantage to be deployed.
        reach_excess: points of model states off the data by which the reach policy (alpha 1) exceeds the
            penalised one at its offline alpha over `reach_horizon` steps (`compare_reach`); None where not
            measured (the rule was off, or the reach policy was out already).
        reach_horizon: the model steps of that comparison (0: not run).
        threshold: the points of reach_excess still deployed.
        reach_excess_se: reach_excess's standard error over the start states (points), where measured.
        reach_excess_members: reach_excess through each dynamics member alone (points), where measured.
        model_margin: TrainConfig.reach_model_margin, the allowance in the model's standard errors.
        reach_gain: TrainConfig.reach_rule "larger_gain": the critic's paired comparison of the reach policy (the
            challenger) with the penalised one, each as deployed (`critic_gain.GainComparison.to_dict()`), where it
            ran; None otherwise.
    """

    deployed: float
    reach: float
    choices: dict[float, AlphaChoice]
    anchor_advantage: float | None = None
    weak_anchor_only: bool = False
    reach_excess: float | None = None
    reach_horizon: int = 0
    threshold: float = 2.0
    reach_excess_se: float | None = None
    reach_excess_members: tuple[float, ...] | None = None
    model_margin: float = 0.0
    reach_gain: dict | None = None

    @property
    def reach_model_se(self) -> float | None:
        """The model's uncertainty about reach_excess: the standard deviation of the per-member excesses over
        the square root of their number (points); None with fewer than two members measured."""
        return _members_se(self.reach_excess_members)

    @property
    def reach_bar(self) -> float:
        """The most reach_excess still deployed: threshold + model_margin * reach_model_se (the threshold alone
        where the members were not measured or model_margin is 0)."""
        return _bar(self.threshold, self.model_margin, self.reach_model_se)

    @property
    def reach_within(self) -> bool:
        """`choose_penalty`'s third condition: reach_excess not measured, or at most reach_bar."""
        return self.reach_excess is None or self.reach_excess <= self.reach_bar

    def to_dict(self) -> dict:
        members = self.reach_excess_members
        return {
            "deployed_penalty": self.deployed,
            "reach_penalty": self.reach,
            "rectifiers": {f"{k:g}": c.to_dict() for k, c in self.choices.items()},
            "anchor_advantage": self.anchor_advantage,
            "weak_anchor_only": self.weak_anchor_only,
            "reach_excess_points": self.reach_excess,
            "reach_horizon": self.reach_horizon,
            "reach_excess_se_points": None if self.reach_excess_se is None else _finite_or_none(self.reach_excess_se),
            "reach_excess_members_points": None if members is None else [_finite_or_none(x) for x in members],
            "reach_model_se_points": None if self.reach_model_se is None else _finite_or_none(self.reach_model_se),
            "reach_model_margin": self.model_margin,
            "reach_bar_points": _finite_or_none(self.reach_bar),
            "reach_gain": self.reach_gain,
        }

    def table(self) -> str:
        """One line per latent policy: its penalty, offline alpha, excess at alpha 1, and which is deployed;
        then the anchor's advantage over the data's value where it was measured."""
        lines = ["kappa   offline alpha   excess at alpha 1 (points)"]
        for kappa, choice in self.choices.items():
            mark = "  <- deployed" if kappa == self.deployed else ""
            excess = choice.excess.get(1.0, float("nan"))
            lines.append(f"{kappa:5.2f}   {choice.alpha:13.2f}   {excess:+10.1f}{mark}")
        if self.anchor_advantage is not None:
            verdict = "below" if self.anchor_advantage < 0 else "at or above"
            rule = " (reach_weak_anchor_only: the reach policy needs it below)" if self.weak_anchor_only else ""
            lines.append(
                f"anchor's advantage over the data's value: {self.anchor_advantage:+.3f} "
                f"(the critic rates the anchor {verdict} what the data does){rule}"
            )
        if self.reach_excess is not None:
            se = self.reach_excess_se
            spread = f" +- {se:.1f}" if se is not None and math.isfinite(se) else ""
            bar = f"+{self.threshold:g}"
            if self.model_margin and self.reach_model_se is not None:
                bar = f"+{self.reach_bar:.1f} = {self.threshold:g} + {self.model_margin:g} x {self.reach_model_se:.1f}"
            lines.append(
                f"reach policy against the penalised one over {self.reach_horizon} model steps: "
                f"{self.reach_excess:+.1f}{spread} points off the data (deployed within {bar})"
            )
            if self.reach_excess_members:
                each = ", ".join(f"{x:+.1f}" for x in self.reach_excess_members)
                se = self.reach_model_se
                model = f"; the model's standard error {se:.1f}" if se is not None else ""
                lines.append(f"  the same through each dynamics member alone: {each}{model}")
        if self.reach_gain is not None:
            g = self.reach_gain
            lines.append(
                f"critic's gain of the reach policy over the penalised one, each as deployed (reach_rule larger_gain): "
                f"{g['difference']:+.3f} +- {g['difference_se']:.3f} over {g['states']} dataset states"
            )
        return "\n".join(lines)


def choose_penalty(
    choices: dict[float, AlphaChoice],
    reach: float,
    anchor_advantage: float | None = None,
    weak_anchor_only: bool = False,
    reach_excess: float | None = None,
    reach_horizon: int = 0,
    threshold: float = 2.0,
    reach_excess_se: float | None = None,
    reach_excess_members: Sequence[float] | None = None,
    model_margin: float = 0.0,
) -> PenaltyChoice:
    """The latent policy to deploy of a run that trained two (TrainConfig.lsi_reach_penalty): the reach policy
    (trained at the smaller penalty, `reach`) when its whole residual stays on the data's states (its offline
    alpha is 1: the drift excess at alpha 1 within the threshold), else the other at its own offline alpha.
    A penalty holds the search near the anchor where the critic might be wrong; where the reach policy does
    not drift, that caution only costs return (hopper medium-replay seed 1, 200k: 97.4 at kappa 0, 50.5 at
    0.25), and where it drifts (hopper medium at kappa 0: 10% of the env's states off the data) the penalised
    policy's offline alpha is the safer default. With `weak_anchor_only` the reach policy also needs a
    negative `anchor_advantage`: the critic must rate the anchor below the data's value. With `reach_excess`
    (`compare_reach`, over a longer horizon) it also must not leave the data's states more often than the
    penalised policy it would replace by more than `threshold` points: a weak anchor drifts far in the
    model itself, so "no more than the anchor" is a lenient bar exactly where the reach policy is eligible
    (hopper medium-replay at 200k, seed 0: -2.0 against the anchor over 100 steps, +8.6 against the
    penalised policy over 300; 27% of the env's states off the data against 0.2%).

    Args:
        choices: penalty -> the `AlphaChoice` of the rectifier trained at it (two entries, `reach` one of them).
        reach: the reach policy's penalty.
        anchor_advantage: the anchor's mean `min Q(s, a_b) - V(s)` on the data's states (`SPAR.anchor_advantage`);
            recorded, and with weak_anchor_only required.
        weak_anchor_only: TrainConfig.reach_weak_anchor_only.
        reach_excess: the reach policy's points off the data over the penalised one's (`compare_reach`);
            None: not measured (no condition).
        reach_horizon: the model steps it was measured over (recorded).
        threshold: the most points of reach_excess still deployed (TrainConfig.drift_threshold).
        reach_excess_se: reach_excess's standard error (`DriftReport.excess_se`); recorded, not used.
        reach_excess_members: reach_excess measured through each dynamics member alone (`compare_reach(member=k)`):
            how far the model's own fit moves it, which reach_excess_se does not see (`PenaltyChoice.reach_model_se`).
        model_margin: TrainConfig.reach_model_margin: the reach policy is refused when reach_excess exceeds
            threshold + model_margin * reach_model_se (`PenaltyChoice.reach_bar`); 0: the threshold alone.
    """
    if reach not in choices or len(choices) != 2:
        raise ValueError(f"choose_penalty needs the reach policy's choice ({reach}) and one other, got {list(choices)}")
    if weak_anchor_only and anchor_advantage is None:
        raise ValueError("choose_penalty(weak_anchor_only=True) needs anchor_advantage: the anchor's mean advantage")
    if not math.isfinite(model_margin):
        raise ValueError(f"choose_penalty(model_margin={model_margin}): give a finite number (0: the threshold alone)")
    other = next(k for k in choices if k != reach)
    choice = PenaltyChoice(
        reach,
        reach,
        dict(choices),
        anchor_advantage,
        weak_anchor_only,
        reach_excess,
        reach_horizon,
        threshold,
        reach_excess_se,
        None if reach_excess_members is None else tuple(float(x) for x in reach_excess_members),
        float(model_margin),
    )
    keep = reach_eligible(choices[reach], anchor_advantage, weak_anchor_only) and choice.reach_within
    return choice if keep else replace(choice, deployed=other)


def reach_contends(reach: AlphaChoice, penalty: PenaltyChoice) -> bool:
    """TrainConfig.reach_rule "larger_gain": whether the critic's comparison can still deploy the reach policy (and is
    worth running): `choose_penalty` kept it out and it passes an offline alpha above 0."""
    return penalty.deployed != penalty.reach and reach.alpha > 0


def reach_gains(reach: AlphaChoice, penalty: PenaltyChoice, gain: "GainComparison | None") -> bool:
    """TrainConfig.reach_rule "larger_gain": whether a reach policy `choose_penalty` kept out replaces the penalised
    one: it contends (`reach_contends`) and the critic rates its deployed actions above the penalised policy's
    by more than `GAIN_MARGIN_SE` standard errors of their paired difference (`gain`, None: not measured)."""
    if not reach_contends(reach, penalty) or gain is None:
        return False
    return gain.difference > GAIN_MARGIN_SE * gain.difference_se


def reach_eligible(reach: AlphaChoice, anchor_advantage: float | None, weak_anchor_only: bool) -> bool:
    """Whether the reach policy passes `choose_penalty`'s first two conditions: its whole residual within the
    drift threshold against the anchor (offline alpha 1) and, with weak_anchor_only, a negative anchor_advantage."""
    return reach.alpha == 1.0 and not (weak_anchor_only and anchor_advantage is not None and anchor_advantage >= 0)


#: TrainConfig.in_sample_rule "larger_gain": the candidate's critic gain must exceed the incumbent's by this many
#: standard errors of their paired difference (LSI's policy is kept unless the critic clearly prefers the candidate).
GAIN_MARGIN_SE = 2.0


def in_sample_replaces(
    lsi_alpha: float,
    candidate_alpha: float,
    anchor_advantage: float,
    rule: str = "larger_gain",
    gain: "GainComparison | None" = None,
) -> bool:
    """Whether the in-sample candidate (TrainConfig.in_sample_candidate) replaces LSI's deployed rectifier.

    Args:
        lsi_alpha, candidate_alpha: the alpha each goes out at (the larger of its gated and ungated checks).
        anchor_advantage: the critic's rating of the anchor against the data's value; the candidate pulls the anchor
            toward the data's better actions, which would pull an anchor better than its data (>= 0) back toward
            the data, so it never replaces LSI's there.
        rule: TrainConfig.in_sample_rule: "larger_gain", where the candidate passes a larger alpha than LSI's
            *and* the critic rates its deployed actions above LSI's deployed ones by more than GAIN_MARGIN_SE
            standard errors (`gain`); "larger_alpha", where it passes a larger alpha; "lsi_at_zero", only where
            LSI's goes out at alpha 0 and the candidate above it.
        gain: `critic_gain.GainComparison` of the candidate (challenger) against LSI's rectifier (incumbent), each
            at its deployed alpha and gate; needed by "larger_gain" wherever the other conditions hold.

    Raises:
        ValueError: an unknown rule, or "larger_gain" without `gain` where it would decide.
    """
    if rule not in IN_SAMPLE_RULES:
        raise ValueError(f"rule={rule!r}: use one of {list(IN_SAMPLE_RULES)} (TrainConfig.in_sample_rule)")
    if anchor_advantage >= 0.0 or candidate_alpha <= lsi_alpha:
        return False
    if rule == "lsi_at_zero":
        return lsi_alpha == 0.0
    if rule == "larger_alpha":
        return True
    if gain is None:
        raise ValueError(
            "in_sample_rule='larger_gain' needs the critic's comparison of the two deployed rectifiers (gain=, "
            "critic_gain.compare_deployed) where the candidate passes a larger alpha around a weak anchor"
        )
    return gain.clearly_better(GAIN_MARGIN_SE)


def compare_reach(
    base: Callable[[np.ndarray], np.ndarray],
    reach: str | Path,
    penalised: str | Path,
    penalised_alpha: float,
    data: OfflineData,
    model: DynamicsEnsemble,
    horizon: int = 300,
    starts: int = 1000,
    seed: int = 0,
    member: int | None = None,
) -> DriftReport:
    """The reach policy's rectifier at alpha 1 and the penalised one at its offline alpha, rolled from the same
    `starts` dataset states through the same member draws for `horizon` model steps (`drift_check`; gates as
    deployed). `report.excess("reach", "penalised")` is the points by which the reach policy leaves the data's
    states more often than the policy it would replace (`choose_penalty`'s third condition).

    Args:
        base: the anchor both were trained around.
        reach, penalised: the two rectifier folders of the run.
        penalised_alpha: the penalised rectifier's offline alpha (what would be deployed instead).
        data, model, starts, seed: as in `drift_check`.
        horizon: model steps; longer than the alpha check's 100, because the drift that separates the
            two compounds slowly (benchmarks/README.md, "The reach policy against the policy it replaces").
        member: roll through this one dynamics member alone (`drift_check`'s `member`).
    """
    policies = {
        "reach": RectifiedPolicy(base, reach, alpha=1.0, check_anchor=False),
        "penalised": RectifiedPolicy(base, penalised, alpha=penalised_alpha, check_anchor=False),
    }
    return drift_check(policies, data, model, starts, horizon, seed, member=member)
