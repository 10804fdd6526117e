"""The one correction code path shared by the wrapper, the vector wrapper and `RectifiedPolicy`.

Defines `Corrector`, `Correction`, `build_corrector` (and re-exports `checkpoint.check_alpha`).

`executed = clip(clip(base, -1, 1) + alpha * residual(obs, base), -1, 1)` in normalised action
units, then mapped to env units and cast to the action space's dtype. A row whose observation or
residual is not finite executes the (clipped) base action instead and says why.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gymnasium import spaces

from spar_rectify.checkpoint import RectifierCheckpoint, check_alpha, load_rectifier
from spar_rectify.kernel import FLAG_EXECUTED, FLAG_OBS, FLAG_RESIDUAL, FastRectifier
from spar_rectify.policies import as_base_policy
from spar_rectify.rectifier import Rectifier
from spar_rectify.spaces import ActionScaler, check_box

try:  # the clip ufunc: several times faster than np.clip on tiny arrays
    from numpy._core.umath import clip as _clip
except ImportError:  # numpy < 2
    from numpy.core.umath import clip as _clip

#: Reasons reported in `info["rectifier_fallback"]` ("" when the residual was applied).
FALLBACK_OBS = "non-finite observation: executed the base action"
FALLBACK_RESIDUAL = "non-finite residual: executed the base action"
FALLBACK_EXECUTED = "non-finite or out-of-bounds rectified action: executed the base action"


class Correction(NamedTuple):
    """Result of correcting a batch of B base actions.

    Attributes:
        executed_action: (B, act_dim) env units, the action space's dtype, inside the space.
        base_action: (B, act_dim) the base actions as given, env units.
        residual: (B, act_dim) float32 normalised units, the applied `alpha * residual`
            (zero on fallback rows).
        support_score: (B,) float32 in (0, 1], see `Corrector.support_score`.
        fallback: (B,) str, "" where the residual was applied, else the reason it was not.
        gate_held: (B,) bool, True where the critic gate executed the base action because the
            pessimistic critic did not score the rectified action above it.
    """

    executed_action: np.ndarray
    base_action: np.ndarray
    residual: np.ndarray
    support_score: np.ndarray
    fallback: np.ndarray
    gate_held: np.ndarray


class Corrector:
    """Applies a rectifier's bounded residual to base actions of one action space.

    Clipping the base action to [-1, 1] in normalised units equals clipping it to [low, high] in
    env units (the map is affine and increasing per dimension), so the executed action is
    computed as `clip(clip(base, low, high) + alpha * rho * tanh(.) * half_range, low, high)`
    without a round trip through normalised units.

    Args:
        module: a trained `Rectifier` module (the wrappers' `rectifier=` is a folder or a checkpoint;
            `build_corrector` loads it and passes its module here).
        action_space: the env's 1-D Box action space (finite bounds).
        alpha: residual scale in [0, 1]; 0 is an exact pass-through of the clipped base action.
        gate: execute the residual only where the rectifier's own pessimistic critic (min of its twin
            Q) scores the rectified action above the base action; None: on when the rectifier
            carries a critic. True without a critic is an error.
    """

    def __init__(self, module: Rectifier, action_space: spaces.Box, alpha: float = 1.0, gate: bool | None = None):
        alpha = check_alpha(alpha)
        if gate and module.critic is None:
            raise ValueError(
                "gate=True needs a rectifier that carries its critic; this one was exported before "
                "the gate existed: retrain it (spar train), or deploy it with gate=False"
            )
        self.gate = module.critic is not None if gate is None else bool(gate)
        self.module = module
        self.scaler = ActionScaler(action_space)
        self.alpha = alpha
        self.act_dim = action_space.shape[0]
        self.obs_dim = module.obs_dim
        self.dtype = action_space.dtype
        self.low, self.high = action_space.low, action_space.high
        self.fast = FastRectifier(module, self.low, self.high, alpha)
        self._empty_reasons: dict[int, np.ndarray] = {}

    def support_score(self, residual: np.ndarray) -> np.ndarray:
        """(B, act_dim) applied residual -> (B,) float32 in (0, 1]: Gaussian typicality of the
        residual under the dataset's residual statistics (1: the data's mean residual; small:
        far in its tail). A cheap per-step proxy; benchmarks use the kNN support metric."""
        u = residual - self.fast.res_mean
        u *= self.fast.res_inv_std
        sq = np.einsum("ij,ij->i", u, u)
        sq *= self.fast.score_k
        return np.exp(sq, out=sq)

    def _no_fallback(self, batch: int) -> np.ndarray:
        cached = self._empty_reasons.get(batch)
        if cached is None:
            cached = self._empty_reasons[batch] = np.full(batch, "", dtype=object)
            cached.flags.writeable = False
        return cached

    def __call__(self, obs: np.ndarray, base_action: np.ndarray) -> Correction:
        """Correct `(B, act_dim)` env-unit base actions taken at observations `(B, obs_dim)`.

        Raises:
            ValueError: base actions of the wrong shape or not finite.
        """
        base_action = np.asarray(base_action)
        if base_action.ndim != 2 or base_action.shape[1] != self.act_dim:
            raise ValueError(
                f"expected base actions of shape (B, {self.act_dim}), got {base_action.shape}; "
                "pass one action per observation in env units."
            )
        batch = base_action.shape[0]
        if self.alpha == 0.0:
            self._check_finite(base_action)
            base = _clip(base_action, self.low, self.high).astype(self.dtype, copy=False)
            residual = np.zeros((batch, self.act_dim), np.float32)
            return Correction(
                base,
                base_action,
                residual,
                self.support_score(residual),
                self._no_fallback(batch),
                np.zeros(batch, bool),
            )
        obs = np.asarray(obs)
        if obs.shape != (batch, self.obs_dim):
            raise ValueError(f"expected observations of shape ({batch}, {self.obs_dim}), got {obs.shape}")
        ad = self.act_dim
        out, worst = self.fast(obs, base_action, self.gate)
        executed, residual, score = out[:, :ad], out[:, ad : 2 * ad], out[:, 2 * ad]
        held = out[:, 2 * ad + 2] != 0
        fallback = self._no_fallback(batch)
        if self.dtype != np.float32:
            executed = _clip(executed.astype(self.dtype), self.low, self.high)
        if worst:
            self._check_finite(base_action)
            flags = out[:, 2 * ad + 1]
            # The kernel already executed the clipped base there; redo it in the space's dtype.
            base = _clip(base_action, self.low, self.high).astype(self.dtype, copy=False)
            executed[flags != 0] = base[flags != 0]
            fallback = np.full(batch, "", dtype=object)
            fallback[flags == FLAG_OBS] = FALLBACK_OBS
            fallback[flags == FLAG_RESIDUAL] = FALLBACK_RESIDUAL
            fallback[flags == FLAG_EXECUTED] = FALLBACK_EXECUTED
        if held.any() and self.dtype != np.float32:  # the kernel executed the clipped base there
            executed[held] = _clip(base_action[held], self.low, self.high).astype(self.dtype, copy=False)
        return Correction(executed, base_action, residual, score, fallback, held)

    @staticmethod
    def _check_finite(base_action: np.ndarray) -> None:
        if not np.isfinite(base_action).all():
            raise ValueError(
                f"base action is not finite ({base_action.tolist()}); the base policy produced NaN "
                "or inf, check its inputs and weights."
            )


def build_corrector(
    rectifier,
    observation_space,
    action_space,
    base_policy=None,
    alpha: float | None = None,
    where: str = "SPARRectifierWrapper",
    gate: bool | None = None,
) -> Corrector:
    """Load (if a path) and validate a rectifier for an env, then build its `Corrector`.

    Args:
        rectifier: a checkpoint folder path or a `RectifierCheckpoint`.
        observation_space, action_space: the env's (single, not batched) spaces.
        base_policy: optional; if given, it must be the anchor the rectifier was trained with.
        alpha: residual scale in [0, 1]; None uses the checkpoint's default.
        where: who is asking, for error messages.
        gate: the critic gate (see `Corrector`); None: the checkpoint's default (`RectifierCheckpoint.gate`: on
            when the rectifier carries a critic, unless the offline check chose to deploy it ungated).

    Raises:
        TypeError: `rectifier` is neither a path nor a checkpoint.
        ValueError: spaces or anchor mismatch; FileNotFoundError / ValueError from loading.
    """
    from pathlib import Path

    if isinstance(rectifier, (str, Path)):
        rectifier = load_rectifier(rectifier)
    if not isinstance(rectifier, RectifierCheckpoint):
        raise TypeError(
            f"{where} needs rectifier= a checkpoint folder path or a RectifierCheckpoint, got "
            f"{type(rectifier).__name__}"
        )
    check_box(action_space, f"{where} action space", finite=True)
    rectifier.check_spaces(observation_space, action_space, where)
    if base_policy is not None:
        rectifier.check_anchor(as_base_policy(base_policy, action_space))
    gate = rectifier.gate if gate is None else gate
    corrector = Corrector(rectifier.rectifier, action_space, rectifier.alpha if alpha is None else alpha, gate)
    corrector.checkpoint = rectifier
    return corrector
