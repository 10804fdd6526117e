"""Fitted Q Evaluation: a policy's own value on a dataset, without the env.

Defines `fitted_q_evaluation`, `FQEResult` and `paired_difference`.

The kit's critic is IQL's: it values one step of an action followed by the best the data does in-sample, so it
cannot say where a policy's own next steps lead (benchmarks/README.md, session 38: it prefers a HalfCheetah reach
policy that flips the cheetah). FQE (Le, Voloshin and Yue, 2019; the most reliable of the offline selection
methods compared by Paine et al., 2020) fits the policy's own Q by temporal differences on the data's transitions,
the next action taken by the policy itself:

    Q(s, a) <- r + gamma * (1 - terminated) * Q_target(s', pi(s'))

and estimates the policy's discounted return from each episode's first state as Q(s0, pi(s0)), and from the data's
own states as Q(s, pi(s)) on a seeded sample of rows. The second is the one that sees late events: with gamma 0.99 a
fall 300 steps after an episode's start weighs 5% in the first, while the data's states include the moments before
it. Policies evaluated with the same seed share the network's initialisation, the minibatches and the sampled rows,
so their paired difference compares them; it does not measure the fit's own error (compare seeds for that).

Plain FQE extrapolates where a policy's actions leave the data: its target Q(s', pi(s')) is read off the network
where no transition constrains it (session 40: on HalfCheetah medium-expert it ranked first the reach policy that
flips the cheetah). `members` > 1 fits an ensemble of Q networks (independent initialisations, the same
minibatches) and `pessimism` beta makes both the TD target and the estimate a lower confidence bound:

    Q_k(s, a) <- r + gamma * (1 - terminated) * (mean_j Q_target_j(s', pi(s')) - beta * std_j Q_target_j(s', pi(s')))

The members agree where the data's transitions pin Q down and spread apart off them, so a policy that keeps leaving
the data is valued down at every step it does (the ensemble-disagreement penalty of pessimistic offline RL, applied
to evaluation).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from spar_rectify.data import OfflineData
from spar_rectify.networks import EnsembleMLP, mlp
from spar_rectify.spaces import ActionScaler

#: States per call of the policy while its actions on the data are precomputed.
CHUNK = 8192


@dataclass
class FQEResult:
    """One policy's FQE estimate.

    Attributes:
        name: the policy's name.
        start_values: (E,) the estimated discounted return from each episode's first state, reward units.
        state_values: (S,) the same from a seeded sample of the data's states (`fitted_q_evaluation`'s
            `eval_states`).
        steps: TD steps fitted.
        td_loss: mean squared TD error over the last 10% of the steps, in units of the reward's variance.
        seed: the fit's seed (initialisation and minibatches).
        members: Q networks fitted (1: plain FQE).
        pessimism: beta, the members' standard deviations subtracted from their mean in the targets and in the
            values (0: the mean).
        start_spread, state_spread: (E,) and (S,) the members' standard deviation at the same states and actions as
            `start_values` and `state_values` (zeros for one member), reward units.
    """

    name: str
    start_values: np.ndarray
    state_values: np.ndarray
    steps: int
    td_loss: float
    seed: int
    members: int = 1
    pessimism: float = 0.0
    start_spread: np.ndarray | None = None
    state_spread: np.ndarray | None = None

    @property
    def value(self) -> float:
        """The mean estimated discounted return from the data's first states (reward units)."""
        return float(np.mean(self.start_values))

    @property
    def state_value(self) -> float:
        """The mean estimated discounted return from the sampled data states (reward units)."""
        return float(np.mean(self.state_values))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "value": self.value,
            "state_value": self.state_value,
            "steps": self.steps,
            "td_loss": self.td_loss,
            "seed": self.seed,
            "members": self.members,
            "pessimism": self.pessimism,
            "start_spread": _mean_or_zero(self.start_spread),
            "state_spread": _mean_or_zero(self.state_spread),
        }


def _mean_or_zero(x: np.ndarray | None) -> float:
    return float(np.mean(x)) if x is not None and len(x) else 0.0


def paired_difference(a: FQEResult, b: FQEResult, on: str = "starts") -> tuple[float, float]:
    """`a`'s value minus `b`'s and its standard error over their shared states (reward units): the data's first
    states (`on="starts"`) or the sampled data states (`on="states"`)."""
    if on not in ("starts", "states"):
        raise ValueError(f"on={on!r}: use 'starts' (the episodes' first states) or 'states' (the sampled rows)")
    x, y = (a.start_values, b.start_values) if on == "starts" else (a.state_values, b.state_values)
    if x.shape != y.shape:
        raise ValueError(f"{a.name!r} and {b.name!r} were evaluated on different states; fit both on one dataset")
    diff = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return float(diff.mean()), se


def episode_starts(data: OfflineData) -> np.ndarray:
    """(E,) the row index of each episode's first transition (row 0 and every row after an end flag)."""
    return np.flatnonzero(np.r_[True, data.episode_ends()[:-1]])


@torch.no_grad()
def _policy_actions(policy: Callable[[np.ndarray], np.ndarray], states: torch.Tensor, scaler: ActionScaler, name: str):
    """(N, act_dim) float32 normalised actions of `policy` (env units in and out) at `states` (N, obs_dim)."""
    out = []
    for i in range(0, len(states), CHUNK):
        actions = np.asarray(policy(states[i : i + CHUNK].numpy()), np.float64)
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"policy {name!r} returned a non-finite action on the data's states")
        out.append(torch.as_tensor(scaler.to_normalized_clipped(actions), dtype=torch.float32))
    return torch.cat(out)


def fitted_q_evaluation(
    policy: Callable[[np.ndarray], np.ndarray],
    data: OfflineData,
    steps: int = 20_000,
    gamma: float = 0.99,
    hidden: Sequence[int] = (256, 256),
    batch_size: int = 256,
    lr: float = 3e-4,
    tau: float = 0.05,
    seed: int = 0,
    name: str = "policy",
    progress: Callable[[str], None] | None = None,
    eval_states: int = 10_000,
    members: int = 1,
    pessimism: float = 0.0,
) -> FQEResult:
    """Fit `policy`'s own Q on `data` and estimate its discounted return from the data's first states.

    Args:
        policy: callable (B, obs_dim) env-unit observations -> (B, act_dim) env-unit actions (a `BasePolicy`, a
            `RectifiedPolicy`); called once on the data's next states, first states and sampled states (in chunks),
            then no more.
        data: the transitions; rewards are divided by their standard deviation for the fit and the estimate is
            given back in reward units.
        steps: TD steps (each a minibatch of `batch_size` transitions).
        gamma: the discount (the training's).
        hidden: the Q network's hidden widths.
        lr, tau: Adam's rate and the target network's Polyak rate. The value travels one bootstrap per target
            refresh, about 1 / tau steps, and needs a few times 1 / (1 - gamma) of them: at tau 0.005 and 15k steps
            the SB3 medium policy's value on HalfCheetah medium-expert came out at 139 from the first states, at
            0.05 at 331, against 323 discounted from reset in the env; the expert's 211 and 656 against 678
            (`benchmarks/fqe_calibration.py`).
        seed: initialisation and minibatch draws; the same seed for the policies compared.
        name: names the policy in errors and in the result.
        progress: called with a line of text every 10% of the steps.
        eval_states: the data rows (drawn with `seed`, all of them where the data holds fewer) whose states the
            result's `state_values` start from.
        members: Q networks fitted side by side (independent initialisations from `seed`, the same minibatches);
            1 is plain FQE, bit for bit. Five took about 1.6x a plain fit's time here (HalfCheetah, one core).
        pessimism: beta >= 0, with `members` >= 2: targets and values are the members' mean minus beta times their
            standard deviation (a lower confidence bound); 0 is the ensemble's mean.

    Returns:
        an `FQEResult`.

    Raises:
        ValueError: bad settings (named with the fix), or the policy returned a non-finite action.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps={steps}, batch_size={batch_size}: both must be at least 1 (20000 and 256 are typical)")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma={gamma}: use a discount in [0, 1), the training's (0.99 is typical)")
    if not 0.0 < tau <= 1.0 or eval_states < 1:
        raise ValueError(
            f"tau={tau}, eval_states={eval_states}: use tau in (0, 1] and at least one state (0.05, 10000)"
        )
    if members < 1:
        raise ValueError(f"members={members}: fit at least 1 Q network (1 is plain FQE; 5 for a pessimistic one)")
    if not (math.isfinite(pessimism) and pessimism >= 0.0):
        raise ValueError(f"pessimism={pessimism}: use a finite beta >= 0 (0 is the ensemble's mean; 1 is typical)")
    if pessimism > 0.0 and members < 2:
        raise ValueError(
            f"pessimism={pessimism} with members={members}: a lower bound needs the members' spread; pass members=5"
        )
    scaler = ActionScaler(data.action_space)
    mean, std = (torch.as_tensor(x) for x in data.obs_stats())
    obs = (data.observations - mean) / std
    next_obs = (data.next_observations - mean) / std
    reward_std = float(data.rewards.double().std()) if len(data) > 1 else 1.0
    reward_std = reward_std if reward_std > 1e-8 else 1.0
    rewards = data.rewards / reward_std
    alive = 1.0 - data.terminations
    next_actions = _policy_actions(policy, data.next_observations, scaler, name)
    starts = torch.as_tensor(episode_starts(data))
    start_actions = _policy_actions(policy, data.observations[starts], scaler, name)
    rows = np.random.default_rng(seed).permutation(len(data))[:eval_states]
    rows = torch.as_tensor(np.sort(rows))
    row_actions = _policy_actions(policy, data.observations[rows], scaler, name)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        in_dim = obs.shape[1] + next_actions.shape[1]
        q = mlp(in_dim, 1, hidden) if members == 1 else EnsembleMLP(members, in_dim, 1, hidden)

    def bound(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' lower bound and spread from `x`'s network output: (B,) each."""
        if members == 1:
            return x.squeeze(-1), torch.zeros(x.shape[0], dtype=x.dtype)
        x = x.squeeze(-1)
        spread = x.std(0)
        return x.mean(0) - pessimism * spread, spread

    target = copy.deepcopy(q).requires_grad_(False)
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(1, steps + 1):
        idx = torch.randint(len(data), (batch_size,), generator=draws)
        with torch.no_grad():
            ahead = bound(target(torch.cat([next_obs[idx], next_actions[idx]], -1)))[0]
            y = rewards[idx] + gamma * alive[idx] * ahead
        fit = q(torch.cat([obs[idx], data.actions[idx]], -1)).squeeze(-1)
        loss = torch.nn.functional.mse_loss(fit, y.expand_as(fit))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, p_target in zip(q.parameters(), target.parameters()):
                p_target.lerp_(p, tau)
        if step > steps - max(1, steps // 10):
            losses.append(loss.item())
        if progress is not None and step % max(1, steps // 10) == 0:
            progress(f"FQE {name}: step {step}/{steps}, TD loss {loss.item():.4f}")

    @torch.no_grad()
    def read(at: torch.Tensor, actions: torch.Tensor) -> list[np.ndarray]:
        """The fitted bound and spread at the data rows `at` with the policy's `actions` there, reward units."""
        return [x.double().numpy() * reward_std for x in bound(q(torch.cat([obs[at], actions], -1)))]

    values, start_spread = read(starts, start_actions)
    from_rows, row_spread = read(rows, row_actions)
    return FQEResult(
        name, values, from_rows, steps, float(np.mean(losses)), seed, members, pessimism, start_spread, row_spread
    )
