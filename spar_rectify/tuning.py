"""How much of the residual to deploy, and which of a run's rectifiers: picks from seeded episodes.

Defines `AlphaSweep`, `tune_alpha`, `PolicySweep`, `tune_run`, `save_choice`, `run_rectifiers`, `DEFAULT_ALPHAS`,
`TUNE_SEED`, `NOISE_SE`, `MIN_GAIN`, `SUPPORT_SLACK`, `OFFLINE`.

The pick is honest about noise: every alpha runs on the same seeds, and a larger alpha replaces
the smallest one only when its paired gain exceeds `NOISE_SE` standard errors (10 episodes with
return stds of several hundred rarely show that; with the critic gate on, the default deployment
is already safe without this step).

The deployed action is `clip(base + alpha * residual)`. On data where the base policy is far from
what the logged actions did (replay-style data), the full residual (`alpha = 1`) can overshoot
while a part of it pays well (`benchmarks/README.md`: hopper medium-replay, two seeds, alpha
0.25-0.5 scored 58-81 against the raw policy's 47, alpha 1 scored 36-42). Choosing alpha needs
episodes in the env, so this is a deployment step, not offline learning: tune on seeds you will
not report (default `TUNE_SEED`), then evaluate the chosen alpha on fresh seeds.

A `spar train` run folder can hold more than one rectifier: the one the offline checks deployed (`rectifier/`)
and the latent policy they kept out (`rectifier-alternative/`, `rectifier-insample/`, `rectifier-lsi/`). The
offline checks cannot see every failure (on HalfCheetah medium-expert the deployed reach policy turned the cheetah
onto its back in 7 of 10 episodes, which the dynamics model never predicts, while the policy kept out scored 86.8
against 52.4: `benchmarks/README.md`, session 38). `tune_run` sweeps each of them on the same seeds, and replaces
the offline choice only where another rectifier's paired gain over it is clearly above the episodes' noise and
material (`MIN_GAIN`) and, given the training data, where it does not leave the data's support more (`SUPPORT_SLACK`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spar_rectify.checkpoint import load_rectifier, save_rectifier, set_default_alpha
from spar_rectify.evaluation import evaluate, make_env
from spar_rectify.rectified_policy import RectifiedPolicy
from spar_rectify.support import DatasetSupport

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TUNE_SEED = 20_000
"""First reset seed of tuning episodes: apart from `spar evaluate`'s and the benchmarks' seeds."""
NOISE_SE = 2.0
"""A larger alpha is picked only when its paired gain exceeds this many standard errors."""
MIN_GAIN = 0.05
"""Another of a run's rectifiers replaces the deployed one only when its paired gain over it is also at least this
share of the deployed one's mean |return|: the offline checks vetted the deployed one's support, and on a nearly
deterministic task two standard errors can be a sliver (hopper medium-expert, session 39: +68 ± 2 on a return of
3406, for 14% of steps beyond the data's support against 0.3%)."""
SUPPORT_SLACK = 0.01
"""With the training data given, another of a run's rectifiers replaces the deployed one only if its share of executed
steps beyond the data's support is at most the deployed pick's plus this (one point of steps): the replacement may
not buy its return by leaving the data more (hopper medium-expert seed 2, session 39: the reach policy kept out
scored 102.0 against 78.6, at 18.9% of steps beyond the support against 4.7%)."""
OFFLINE = "rectifier-offline"
"""Where `save_choice` keeps the rectifier the offline checks deployed when the episodes pick another of the run's."""
#: A run folder's rectifiers besides the deployed `rectifier/`, in the order they are swept (trainer.ALTERNATIVE,
#: trainer.IN_SAMPLE, trainer.REFUSED, then the offline choice `save_choice` kept).
RUN_ALTERNATIVES = ("rectifier-alternative", "rectifier-insample", "rectifier-lsi", OFFLINE)


def _paired(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of paired differences (..., episodes) over the last axis (inf with one episode)."""
    n = diff.shape[-1]
    se = diff.std(axis=-1, ddof=1) / np.sqrt(n) if n > 1 else np.full(diff.shape[:-1], np.inf)
    return diff.mean(axis=-1), se


@dataclass(frozen=True)
class AlphaSweep:
    """Returns of one rectifier at several alphas on the same seeded episodes.

    Attributes:
        alphas: (A,) residual scales, ascending.
        returns: (A, episodes) undiscounted returns; row i is alpha i, column j episode seed `seed + j`.
        seed: the first episode's reset seed.
        violations: (A,) share of each alpha's executed (state, action) steps beyond the training data's support
            (`SupportMetric`, actions normalised), or None where no data was given.
    """

    alphas: np.ndarray
    returns: np.ndarray
    seed: int
    violations: np.ndarray | None = None

    @property
    def means(self) -> np.ndarray:
        """(A,) mean return per alpha."""
        return self.returns.mean(axis=1)

    @property
    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(A,) mean and (A,) standard error of the paired gain over the smallest alpha (the most
        conservative: the base policy itself when 0 is swept), episode by episode on the same seeds."""
        return _paired(self.returns - self.returns[0])

    def row(self, alpha: float) -> int:
        """The row of `alpha` (one of `alphas`) in `returns` and `violations`."""
        return int(np.searchsorted(self.alphas, alpha))

    @property
    def best_alpha(self) -> float:
        """The alpha of the highest mean return if its paired gain over the smallest alpha exceeds
        `NOISE_SE` standard errors; otherwise the smallest alpha is kept (the gain is not clearly above
        the episodes' noise). A tie goes to the smaller alpha (closer to the base)."""
        best = int(np.argmax(self.means))  # argmax takes the first maximum
        gain, se = self.gains
        return float(self.alphas[best]) if gain[best] > NOISE_SE * se[best] else float(self.alphas[0])

    def table(self) -> str:
        """A plain-text table: alpha, mean and std of the return, paired gain over the smallest alpha
        with its standard error, the share of steps beyond the data's support where known, the pick marked."""
        gain, se = self.gains
        known = self.violations is not None
        lines = [f"alpha   return mean ± std   gain over alpha {self.alphas[0]:g} ± s.e. (paired)"]
        lines[0] += "   beyond support" if known else ""
        for i, (alpha, row, g, e) in enumerate(zip(self.alphas, self.returns, gain, se)):
            mark = "  <- picked" if alpha == self.best_alpha else ""
            share = f"   {self.violations[i]:14.1%}" if known else ""
            lines.append(f"{alpha:5.2f}   {row.mean():10.1f} ± {row.std():6.1f}   {g:+9.1f} ± {e:.1f}{share}{mark}")
        lines.append(f"(a larger alpha is picked only if its gain exceeds {NOISE_SE:g} standard errors)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        gain, se = self.gains
        return {
            "alphas": self.alphas.tolist(),
            "return_mean": self.means.tolist(),
            "return_std": self.returns.std(axis=1).tolist(),
            "gain_mean": gain.tolist(),
            "gain_se": [float(x) for x in se],
            "best_alpha": self.best_alpha,
            "noise_se": NOISE_SE,
            "seed": self.seed,
            "episodes": int(self.returns.shape[1]),
            **({} if self.violations is None else {"support_violation_rate": self.violations.tolist()}),
        }


def tune_alpha(
    base_policy: Any,
    rectifier: Any,
    env: Any,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    episodes: int = 10,
    seed: int = TUNE_SEED,
    progress: bool = False,
    data: Any = None,
) -> AlphaSweep:
    """Evaluate the rectified policy at each alpha on the same `episodes` seeded episodes.

    Args:
        base_policy: the anchor the rectifier was trained with (SB3 model, `BCPolicy`, ...).
        rectifier: a checkpoint folder or `RectifierCheckpoint`.
        env: env id, spec or env.
        alphas: residual scales in [0, 1] (0 is the base policy itself).
        episodes: episodes per alpha; episode j is reset with seed `seed + j` for every alpha.
        seed: first reset seed; keep it apart from the seeds you report results on.
        progress: show a tqdm bar over the alphas.
        data: the `OfflineData` the rectifier was trained on: each alpha's share of executed steps beyond its
            support is measured too (`AlphaSweep.violations`); None: returns only.

    Returns:
        An `AlphaSweep`; `best_alpha` is the choice, `spar_rectify.set_default_alpha` stores it.

    Raises:
        ValueError: no alphas, an alpha outside [0, 1] or not finite, or episodes < 1.
    """
    values = _checked_alphas(alphas, episodes)
    if not hasattr(rectifier, "rectifier"):
        rectifier = load_rectifier(rectifier)
    env = make_env(env)
    base = RectifiedPolicy(base_policy, rectifier).base_policy  # checks the anchor once
    support = DatasetSupport(data) if data is not None else None
    return _sweep(base, rectifier, env, values, episodes, seed, progress, support)


def _checked_alphas(alphas: Sequence[float], episodes: int) -> np.ndarray:
    """(A,) the distinct alphas ascending, or ValueError naming a bad alpha or episode count."""
    values = np.asarray(list(alphas), dtype=np.float64)
    if values.size == 0:
        raise ValueError("tune_alpha needs at least one alpha, e.g. alphas=(0, 0.25, 0.5, 0.75, 1)")
    bad = values[~np.isfinite(values) | (values < 0) | (values > 1)]
    if bad.size:
        raise ValueError(f"alpha must be in [0, 1] (0: the base policy, 1: the full residual), got {bad.tolist()}")
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
    return np.unique(values)  # ascending, no repeats


def _sweep(base, checkpoint, env, values, episodes: int, seed: int, progress: bool, support=None, base_row=None):
    """`AlphaSweep` of one loaded rectifier around the checked `base`; `support`: a `DatasetSupport` (or None) for each
    alpha's share of steps beyond the data; `base_row`: (returns (episodes,), share) of alpha 0 when already
    measured on the same seeds (alpha 0 executes the base action whatever the rectifier)."""
    from tqdm.auto import tqdm

    rows, shares = [], []
    for a in tqdm(values, desc="alphas", disable=not progress, leave=False):
        if a == 0 and base_row is not None:
            rows.append(np.asarray(base_row[0]))
            shares.append(base_row[1])
            continue
        visited: list | None = [] if support is not None else None
        policy = RectifiedPolicy(base, checkpoint, alpha=float(a), check_anchor=False)
        rows.append(evaluate(policy, env, episodes, seed, visited=visited))
        shares.append(support.share(visited) if support is not None else np.nan)
    violations = np.array(shares, dtype=np.float64) if support is not None else None
    return AlphaSweep(values, np.stack(rows), int(seed), violations)


def run_rectifiers(folder: str | Path) -> dict[str, Path]:
    """The rectifiers a folder holds, by name: a rectifier folder is itself (`{"rectifier": folder}`); a `spar train`
    run folder gives its deployed `rectifier/` first, then each of `RUN_ALTERNATIVES` it holds.

    Raises:
        FileNotFoundError: neither a rectifier folder nor a run folder with `rectifier/` in it.
    """
    folder = Path(folder)
    if (folder / "rectifier.json").is_file():
        return {"rectifier": folder}
    if not (folder / "rectifier" / "rectifier.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no rectifier (rectifier.json) and no rectifier/ folder: pass a rectifier folder or a "
            "spar train --run-dir folder"
        )
    named = {"rectifier": folder / "rectifier"}
    named.update({name: folder / name for name in RUN_ALTERNATIVES if (folder / name / "rectifier.json").is_file()})
    return named


@dataclass(frozen=True)
class PolicySweep:
    """A run's rectifiers, each swept over the same alphas on the same seeded episodes.

    Attributes:
        folders: (P,) the rectifiers' folders, the deployed one (the offline checks' choice) first.
        sweeps: (P,) one `AlphaSweep` per folder; alpha 0 (the base policy) is one shared row.
    """

    folders: tuple[Path, ...]
    sweeps: tuple[AlphaSweep, ...]

    @property
    def choice(self) -> tuple[int, float]:
        """(index into `folders`, alpha). The deployed rectifier at its `best_alpha`, unless another rectifier at its
        own `best_alpha` (itself clearly above the base) beats that on the same episodes by more than `NOISE_SE`
        standard errors of the paired difference and by at least `MIN_GAIN` of the deployed pick's mean |return|, and
        (where the sweeps measured it) leaves the data's support on at most `SUPPORT_SLACK` more of its steps than
        the deployed pick; of several such, the highest mean return."""
        first = self.sweeps[0]
        alpha = first.best_alpha
        at = first.row(alpha)
        reference = first.returns[at]
        allowed = None if first.violations is None else first.violations[at] + SUPPORT_SLACK
        best, best_mean = (0, alpha), reference.mean()
        for i, sweep in enumerate(self.sweeps[1:], 1):
            own = sweep.best_alpha
            if own == sweep.alphas[0]:
                continue  # not clearly above the most conservative alpha
            j = sweep.row(own)
            row = sweep.returns[j]
            gain, se = _paired(row - reference)
            clear = gain > NOISE_SE * se and gain >= MIN_GAIN * abs(reference.mean())
            on_data = allowed is None or sweep.violations is None or sweep.violations[j] <= allowed
            if clear and on_data and row.mean() > best_mean:
                best, best_mean = (i, own), row.mean()
        return best

    @property
    def folder(self) -> Path:
        """The chosen rectifier's folder."""
        return self.folders[self.choice[0]]

    @property
    def best_alpha(self) -> float:
        """The chosen rectifier's alpha."""
        return self.choice[1]

    def table(self) -> str:
        """Each rectifier's `AlphaSweep.table` under its folder, then the choice and its paired gain over the
        deployed rectifier's pick."""
        parts = []
        for i, (folder, sweep) in enumerate(zip(self.folders, self.sweeps)):
            role = " (deployed by the offline checks)" if i == 0 and len(self.folders) > 1 else ""
            parts.append(f"== {folder}{role}\n{sweep.table()}")
        index, alpha = self.choice
        if len(self.folders) > 1:
            if index == 0:
                support = "" if self.sweeps[0].violations is None else ", on the data's support"
                parts.append(
                    f"kept {self.folders[0]} at alpha {alpha:g}: no other rectifier beats it on the same episodes by "
                    f"more than {NOISE_SE:g} standard errors and {MIN_GAIN:.0%} of its mean return{support}"
                )
            else:
                gain, se = self.gain_over_deployed
                parts.append(
                    f"picked {self.folders[index]} at alpha {alpha:g}: {gain:+.1f} ± {se:.1f} (paired) over "
                    f"{self.folders[0]} at alpha {self.sweeps[0].best_alpha:g}"
                )
            if self.sweeps[0].violations is None:
                parts.append("(support not checked: give the training dataset to keep picks on the data)")
        return "\n".join(parts)

    @property
    def gain_over_deployed(self) -> tuple[float, float]:
        """Mean and standard error of the chosen rectifier's paired gain over the deployed one's pick (0, 0 when
        the deployed one is kept)."""
        index, alpha = self.choice
        if index == 0:
            return 0.0, 0.0
        first, chosen = self.sweeps[0], self.sweeps[index]
        gain, se = _paired(chosen.returns[chosen.row(alpha)] - first.returns[first.row(first.best_alpha)])
        return float(gain), float(se)

    @property
    def names(self) -> tuple[str, ...]:
        """(P,) "rectifier" for the deployed one, the folder's name for the others (`RUN_ALTERNATIVES`)."""
        return ("rectifier",) + tuple(folder.name for folder in self.folders[1:])

    def to_dict(self) -> dict:
        gain, se = self.gain_over_deployed
        return {
            "rectifier": self.names[self.choice[0]],
            "best_alpha": self.best_alpha,
            "gain_over_deployed": gain,
            "gain_over_deployed_se": se,
            "noise_se": NOISE_SE,
            "min_gain": MIN_GAIN,
            "support_checked": self.sweeps[0].violations is not None,
            "policies": {name: sweep.to_dict() for name, sweep in zip(self.names, self.sweeps)},
        }


def tune_run(
    base_policy: Any,
    folder: str | Path,
    env: Any,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    episodes: int = 10,
    seed: int = TUNE_SEED,
    progress: bool = False,
    data: Any = None,
) -> PolicySweep:
    """`tune_alpha` for every rectifier a folder holds (`run_rectifiers`), on the same seeded episodes: which of a
    run's rectifiers to deploy, and at which alpha. Alpha 0 (the base policy) runs once for all of them.

    Args:
        base_policy: the anchor the run was trained with.
        folder: a `spar train` run folder (or a single rectifier folder: then the same as `tune_alpha`).
        env, alphas, episodes, seed, progress: as `tune_alpha`.
        data: the `OfflineData` the run was trained on: each sweep then measures its share of steps beyond the
            data's support, and a replacement may not leave the data more (`SUPPORT_SLACK`); None: return alone.

    Returns:
        A `PolicySweep`; `folder` and `best_alpha` are the choice, `save_choice` deploys it.

    Raises:
        FileNotFoundError: no rectifier in `folder`.
        ValueError: as `tune_alpha`.
    """
    values = _checked_alphas(alphas, episodes)
    named = run_rectifiers(folder)
    env = make_env(env)
    support = DatasetSupport(data) if data is not None else None  # built once for every rectifier
    base, sweeps, base_row = base_policy, [], None
    for path in named.values():
        checkpoint = load_rectifier(path)
        base = RectifiedPolicy(base, checkpoint).base_policy  # each was trained around this anchor: checked
        sweeps.append(_sweep(base, checkpoint, env, values, episodes, seed, progress, support, base_row))
        if values[0] == 0:  # alpha 0 is the base policy whatever the rectifier: measured once
            first = sweeps[0]
            base_row = (first.returns[0], np.nan if first.violations is None else first.violations[0])
    return PolicySweep(tuple(named.values()), tuple(sweeps))


def save_choice(sweep: PolicySweep) -> Path:
    """Deploy a `PolicySweep`'s choice: its alpha becomes the chosen rectifier's default; where that is not the
    deployed `rectifier/`, it is copied there (atomically, weights unchanged) and the offline checks' choice is kept
    first in `<run>/rectifier-offline/` (copy it back to undo). Wrappers given the run folder then load the choice.

    Returns:
        The deployed rectifier's folder.
    """
    chosen = sweep.folder
    if chosen == sweep.folders[0]:
        return set_default_alpha(chosen, sweep.best_alpha).path
    deployed = sweep.folders[0]
    kept = deployed.parent / OFFLINE
    if not (kept / "rectifier.json").is_file():
        save_rectifier(load_rectifier(deployed), kept)
    checkpoint = load_rectifier(chosen)
    checkpoint.alpha = sweep.best_alpha
    return save_rectifier(checkpoint, deployed)
