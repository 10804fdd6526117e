"""Action-space bookkeeping: env units <-> normalised units, and Box checks.

Defines `ActionScaler`, `check_box` and `box_to_json` / `box_from_json`.

Normalised action units map each Box dimension's `[low, high]` affinely onto `[-1, 1]`.
Every learned quantity (residual, bound, anchor action) lives in normalised units; env units
appear only at the very edge, when an action is handed to `env.step`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def check_box(space: Any, who: str, *, finite: bool) -> spaces.Box:
    """Return `space` if it is a 1-D Box (with finite bounds when `finite`), else raise.

    Raises:
        TypeError: `space` is not a `gymnasium.spaces.Box`.
        ValueError: it is not 1-D, or has infinite bounds where finite ones are needed.
    """
    if not isinstance(space, spaces.Box):
        raise TypeError(
            f"{who} needs a gymnasium.spaces.Box, got {type(space).__name__} ({space!r}); "
            "flatten Dict/Tuple spaces with gymnasium.wrappers.FlattenObservation first."
        )
    if len(space.shape) != 1:
        raise ValueError(
            f"{who} needs a 1-D Box, got shape {space.shape}; flatten it with gymnasium.wrappers.FlattenObservation."
        )
    if finite and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(
            f"{who} needs finite action bounds to normalise actions, got low={space.low}, "
            f"high={space.high}; wrap the env with gymnasium.wrappers.RescaleAction or clip it."
        )
    return space


class ActionScaler:
    """Maps actions between env units and normalised units `[-1, 1]` for one Box.

    Args:
        action_space: 1-D Box with finite bounds.

    Example:
        >>> import numpy as np; from gymnasium import spaces
        >>> s = ActionScaler(spaces.Box(0.0, 4.0, (2,), np.float32))
        >>> s.to_normalized(np.array([[0.0, 2.0]])).tolist()
        [[-1.0, 0.0]]
    """

    def __init__(self, action_space: spaces.Box):
        check_box(action_space, "ActionScaler", finite=True)
        self.space = action_space
        self.dtype = action_space.dtype
        self.low = action_space.low.astype(np.float64)
        self.high = action_space.high.astype(np.float64)
        #: (act_dim,) float64: half the range and the centre of each dimension, env units.
        self.half_range = (self.high - self.low) / 2.0
        self.mid = (self.high + self.low) / 2.0
        # Degenerate dimensions (low == high) map to 0 instead of dividing by zero.
        self.inv_half_range = np.where(self.half_range > 0, 1.0 / np.where(self.half_range > 0, self.half_range, 1), 0)
        self._low_t = action_space.low
        self._high_t = action_space.high

    def to_normalized(self, action: np.ndarray) -> np.ndarray:
        """(B, act_dim) env units -> (B, act_dim) float32 normalised units (not clipped)."""
        return ((np.asarray(action, np.float64) - self.mid) * self.inv_half_range).astype(np.float32)

    def to_normalized_clipped(self, action: np.ndarray) -> np.ndarray:
        """(B, act_dim) env units -> (B, act_dim) float32 normalised units clipped to [-1, 1]: the form every
        learned quantity takes an action in (an anchor's action, a logged one slightly outside its Box)."""
        return np.clip(self.to_normalized(action), -1.0, 1.0)

    def to_env(self, action_normalized: np.ndarray) -> np.ndarray:
        """(B, act_dim) normalised units in [-1, 1] -> env units, in the space's dtype.

        The result is clipped to `[low, high]` after the dtype cast, so float rounding can never
        put it outside the space.
        """
        env = np.asarray(action_normalized, np.float64) * self.half_range + self.mid
        return np.clip(env.astype(self.dtype), self._low_t, self._high_t)


def box_to_json(space: spaces.Box) -> dict:
    """JSON-friendly description of a Box: shape, dtype and (finite-or-null) bounds."""

    def clean(values: np.ndarray) -> list:
        return [float(v) if np.isfinite(v) else None for v in values.reshape(-1).tolist()]

    return {
        "shape": list(space.shape),
        "dtype": str(space.dtype),
        "low": clean(space.low),
        "high": clean(space.high),
    }


def box_from_json(data: dict) -> spaces.Box:
    """Inverse of `box_to_json` (null bounds become -inf / +inf)."""
    shape, dtype = tuple(data["shape"]), np.dtype(data["dtype"])
    low = np.array([-np.inf if v is None else v for v in data["low"]], dtype).reshape(shape)
    high = np.array([np.inf if v is None else v for v in data["high"]], dtype).reshape(shape)
    return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def same_box(a: spaces.Box, b: spaces.Box, *, bounds: bool) -> bool:
    """True when two Boxes have the same shape (and, when `bounds`, the same bounds)."""
    if a.shape != b.shape:
        return False
    if not bounds:
        return True
    return bool(np.allclose(a.low, b.low, equal_nan=True) and np.allclose(a.high, b.high, equal_nan=True))
