"""How much of the residual to deploy: pick a rectifier's `alpha` from seeded episodes.

Defines `AlphaSweep`, `tune_alpha`, `DEFAULT_ALPHAS`, `TUNE_SEED`, `NOISE_SE`.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from spar_rectify.checkpoint import load_rectifier
from spar_rectify.evaluation import evaluate, make_env
from spar_rectify.rectified_policy import RectifiedPolicy

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TUNE_SEED = 20_000
"""First reset seed of tuning episodes: apart from `spar evaluate`'s and the benchmarks' seeds."""
NOISE_SE = 2.0
"""A larger alpha is picked only when its paired gain exceeds this many standard errors."""


@dataclass(frozen=True)
class AlphaSweep:
    """Returns of one rectifier at several alphas on the same seeded episodes.

    Attributes:
        alphas: (A,) residual scales, ascending.
        returns: (A, episodes) undiscounted returns; row i is alpha i, column j episode seed `seed + j`.
        seed: the first episode's reset seed.
    """

    alphas: np.ndarray
    returns: np.ndarray
    seed: int

    @property
    def means(self) -> np.ndarray:
        """(A,) mean return per alpha."""
        return self.returns.mean(axis=1)

    @property
    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(A,) mean and (A,) standard error of the paired gain over the smallest alpha (the most
        conservative: the base policy itself when 0 is swept), episode by episode on the same seeds."""
        diff = self.returns - self.returns[0]
        n = diff.shape[1]
        se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(diff), np.inf)
        return diff.mean(axis=1), se

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
        with its standard error, the pick marked."""
        gain, se = self.gains
        lines = [f"alpha   return mean ± std   gain over alpha {self.alphas[0]:g} ± s.e. (paired)"]
        for alpha, row, g, e in zip(self.alphas, self.returns, gain, se):
            mark = "  <- picked" if alpha == self.best_alpha else ""
            lines.append(f"{alpha:5.2f}   {row.mean():10.1f} ± {row.std():6.1f}   {g:+9.1f} ± {e:.1f}{mark}")
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
        }


def tune_alpha(
    base_policy: Any,
    rectifier: Any,
    env: Any,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    episodes: int = 10,
    seed: int = TUNE_SEED,
    progress: bool = False,
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

    Returns:
        An `AlphaSweep`; `best_alpha` is the choice, `spar_rectify.set_default_alpha` stores it.

    Raises:
        ValueError: no alphas, an alpha outside [0, 1] or not finite, or episodes < 1.
    """
    from tqdm.auto import tqdm

    values = np.asarray(list(alphas), dtype=np.float64)
    if values.size == 0:
        raise ValueError("tune_alpha needs at least one alpha, e.g. alphas=(0, 0.25, 0.5, 0.75, 1)")
    bad = values[~np.isfinite(values) | (values < 0) | (values > 1)]
    if bad.size:
        raise ValueError(f"alpha must be in [0, 1] (0: the base policy, 1: the full residual), got {bad.tolist()}")
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
    values = np.unique(values)  # ascending, no repeats
    if not hasattr(rectifier, "rectifier"):
        rectifier = load_rectifier(rectifier)
    env = make_env(env)
    base = RectifiedPolicy(base_policy, rectifier).base_policy  # checks the anchor once
    returns = np.stack(
        [
            evaluate(RectifiedPolicy(base, rectifier, alpha=float(a), check_anchor=False), env, episodes, seed)
            for a in tqdm(values, desc="alphas", disable=not progress, leave=False)
        ]
    )
    return AlphaSweep(values, returns, int(seed))
