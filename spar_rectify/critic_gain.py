"""The critic's estimate of what a deployed rectifier gains over its anchor, and a paired comparison of two.

Defines `deployed_actions`, `deployed_gain`, `GainComparison`, `compare_deployed`.

A rectifier folder deploys at its default alpha and gate (what `RectifiedPolicy` executes); its gain at a state is
`min Q(s, a) - min Q(s, a_b)`, the pessimistic twin critic's value of the executed action over the anchor's, in the
critic's scaled-reward units. Two rectifiers of one run carry the same critic, so their gains on the same states
compare directly; `compare_deployed` scores both with the incumbent's critic and reports the paired difference with
its standard error (TrainConfig.in_sample_rule "larger_gain" reads it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from spar_rectify.checkpoint import RectifierCheckpoint, load_rectifier
from spar_rectify.rectified_policy import RectifiedPolicy
from spar_rectify.spaces import ActionScaler

#: Dataset states (a seeded sample) on which compare_deployed averages the gains.
GAIN_STATES = 4096


@torch.no_grad()
def deployed_actions(
    anchor: Callable[[np.ndarray], np.ndarray], rectifier: str | Path | RectifierCheckpoint, obs: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a rectifier executes at its default alpha and gate, and the anchor's action, on the same states.

    Args:
        anchor: the base policy the rectifier was trained around, (B, obs_dim) -> (B, act_dim), env units.
        rectifier: its folder or loaded checkpoint.
        obs: (B, obs_dim) float32 observations, env units.

    Returns:
        (executed, base): two (B, act_dim) float32 tensors in normalised action units, clipped to [-1, 1].
    """
    checkpoint = rectifier if isinstance(rectifier, RectifierCheckpoint) else load_rectifier(rectifier)
    scaler = ActionScaler(checkpoint.action_space)
    correction = RectifiedPolicy(anchor, checkpoint).correct(np.asarray(obs, np.float32))
    executed = torch.as_tensor(scaler.to_normalized_clipped(correction.executed_action), dtype=torch.float32)
    base = torch.as_tensor(scaler.to_normalized_clipped(correction.base_action), dtype=torch.float32)
    return executed, base


@torch.no_grad()
def deployed_gain(
    anchor: Callable[[np.ndarray], np.ndarray],
    rectifier: str | Path | RectifierCheckpoint,
    obs: np.ndarray,
    critic: RectifierCheckpoint | None = None,
) -> torch.Tensor:
    """Per-state gain of a rectifier's deployed action over the anchor's.

    Args:
        anchor: the base policy the rectifier was trained around, (B, obs_dim) -> (B, act_dim), env units.
        rectifier: its folder or loaded checkpoint; scored at its default alpha and gate.
        obs: (B, obs_dim) float32 observations, env units.
        critic: the checkpoint whose critic scores the actions (default: the rectifier's own).

    Returns:
        (B,) float32: `min Q(s, a_deployed) - min Q(s, a_anchor)`, scaled-reward units.
    """
    checkpoint = rectifier if isinstance(rectifier, RectifierCheckpoint) else load_rectifier(rectifier)
    judge = (critic or checkpoint).rectifier
    obs = np.asarray(obs, np.float32)
    executed, base = deployed_actions(anchor, checkpoint, obs)
    states = torch.as_tensor(obs)
    return judge.q_min(states, executed) - judge.q_min(states, base)


@dataclass(frozen=True)
class GainComparison:
    """Two deployed rectifiers' critic gains over the anchor on the same states (scaled-reward units).

    Attributes:
        challenger, incumbent: the mean gain of each.
        difference: the mean paired difference, challenger minus incumbent.
        difference_se: its standard error over the states.
        states: how many states were scored.
    """

    challenger: float
    incumbent: float
    difference: float
    difference_se: float
    states: int

    def clearly_better(self, margin_se: float) -> bool:
        """Whether the challenger's gain exceeds the incumbent's by more than `margin_se` standard errors."""
        return self.difference > margin_se * self.difference_se

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_deployed(
    anchor: Callable[[np.ndarray], np.ndarray],
    incumbent: str | Path,
    challenger: str | Path,
    obs: torch.Tensor | np.ndarray,
    states: int = GAIN_STATES,
    seed: int = 0,
) -> GainComparison:
    """The critic's paired verdict on two rectifiers trained around `anchor` in one run, each as deployed.

    Args:
        anchor: their base policy, (B, obs_dim) -> (B, act_dim), env units.
        incumbent, challenger: their folders; both are scored with the incumbent's critic.
        obs: (N, obs_dim) observations to sample from (the dataset's), env units.
        states: how many to score (a seeded sample without replacement; all of them when N is smaller).
        seed: the sample's seed.
    """
    if states < 2:
        raise ValueError(f"states={states}: use at least 2 (a standard error needs two)")
    obs = torch.as_tensor(obs, dtype=torch.float32)
    idx = torch.randperm(len(obs), generator=torch.Generator().manual_seed(seed))[:states]
    sample = obs[idx].numpy()
    judge = load_rectifier(incumbent)
    own = deployed_gain(anchor, judge, sample)
    other = deployed_gain(anchor, challenger, sample, critic=judge)
    paired = other - own
    return GainComparison(
        challenger=float(other.mean()),
        incumbent=float(own.mean()),
        difference=float(paired.mean()),
        difference_se=float(paired.std() / math.sqrt(len(paired))),
        states=len(paired),
    )
