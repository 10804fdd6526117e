"""Raw versus rectified on the same seeds: the comparison `demos/rollout.py` and the journey demos
print, and with a render size the side-by-side video and pictures they write.

Defines `EpisodePair`, `Comparison` (with `table` and `write`), `compare`.

Units: returns as the env pays them; residuals in normalised action units ([-1, 1], as the wrapper's
`info` reports them); support scores per step as the
wrapper reports them (1: the data's typical residual; near 0: far in its tail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from spar_rectify import plots, video
from spar_rectify.checkpoint import RectifierCheckpoint
from spar_rectify.policies import BasePolicy
from spar_rectify.rollout import rollout
from spar_rectify.wrapper import SPARRectifierWrapper


@dataclass
class EpisodePair:
    """One seed, rolled once raw and once rectified.

    Attributes:
        seed: the reset seed of both episodes.
        raw, rectified: their returns.
        support: mean per-step support score of the rectified episode.
        residual: mean |applied residual| of the rectified episode, normalised action units.
        held: share of its steps where the gate kept the base action (0 without a gate).
    """

    seed: int
    raw: float
    rectified: float
    support: float
    residual: float
    held: float


@dataclass
class Comparison:
    """Episode pairs, every rectified step's support score, and the side-by-side frames (none
    unless `compare` rendered)."""

    pairs: list[EpisodePair]
    support_scores: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)

    def table(self) -> str:
        """One line per seed and the means, as the demos print it."""
        lines = [
            f"{'seed':>5} {'return raw':>11} {'rectified':>11} {'support score':>14} {'mean |residual|':>16} "
            f"{'gate held':>10}"
        ]
        for p in self.pairs:
            lines.append(
                f"{p.seed:>5} {p.raw:>11.1f} {p.rectified:>11.1f} {p.support:>14.3f} {p.residual:>16.3f} "
                f"{100 * p.held:>9.0f}%"
            )
        raw, rect = np.mean([p.raw for p in self.pairs]), np.mean([p.rectified for p in self.pairs])
        lines.append(f" mean {raw:>11.1f} {rect:>11.1f}")
        return "\n".join(lines)

    def write(
        self,
        path: str | Path,
        title: str,
        fps: int = 60,
        run_dir: str | Path | None = None,
        say: Callable[[str], None] = print,
    ) -> tuple[Path, list[Path]]:
        """Write the side-by-side video (`path`: .mp4, or .gif) and, beside it, `<stem>_returns.png`,
        `<stem>_support.png` and, when `run_dir` holds a training run's `metrics.csv`,
        `<stem>_learning.png`.

        Returns:
            the video's path and the pictures' paths.

        Raises:
            ValueError: no frames (`compare` ran without `render`).
        """
        if not self.frames:
            raise ValueError("no frames to write: run compare(..., render=(width, height)) for a video")
        path = Path(path)
        say(f"encoding {len(self.frames)} frames into {path}")
        out = video.write_video(self.frames, path, fps=fps)
        say("plotting returns, support scores and learning curves")
        stem = path.with_suffix("")
        raw, rect = [p.raw for p in self.pairs], [p.rectified for p in self.pairs]
        pictures = [
            plots.plot_returns(raw, rect, f"{stem}_returns.png", title=title),
            plots.plot_support_scores(self.support_scores, f"{stem}_support.png"),
        ]
        if run_dir is not None and (Path(run_dir) / "metrics.csv").is_file():
            pictures.append(plots.plot_learning_curves(run_dir, f"{stem}_learning.png"))
        return out, pictures


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def compare(
    env_id: str,
    policy: BasePolicy,
    checkpoint: RectifierCheckpoint,
    episodes: int,
    seed: int = 0,
    max_steps: int = 1000,
    render: tuple[int, int] | None = None,
    say: Callable[[str], None] = print,
) -> Comparison:
    """Roll `policy` raw and through `SPARRectifierWrapper(checkpoint)` on seeds `seed .. seed +
    episodes - 1`; with `render=(width, height)` also record labelled side-by-side frames.

    `say` gets a line per phase (rendering takes minutes on two cores)."""

    def act(obs: np.ndarray) -> np.ndarray:
        return policy(np.asarray(obs, np.float32)[None])[0]

    def make(rectified: bool) -> gym.Env:
        wrap = (lambda e: SPARRectifierWrapper(e, checkpoint, base_policy=policy)) if rectified else None
        if render:
            return video.make_render_env(env_id, *render, wrapper=wrap)
        env = gym.make(env_id)
        return wrap(env) if wrap else env

    raw_env, rect_env = make(False), make(True)
    result = Comparison(pairs=[])
    for i in range(episodes):
        s = seed + i

        def raw_text(info: dict, total: float, t: int) -> list[str]:
            return [f"raw base policy   episode {i + 1}, seed {s}", f"step {t}  return {total:8.1f}"]

        def rect_text(info: dict, total: float, t: int) -> list[str]:
            r = np.abs(info.get("residual", np.zeros(1))).max()
            gate = "  gate: base action" if info.get("rectifier_gate_held") else ""
            head = f"rectified (SPAR)   episode {i + 1}, seed {s}"
            return [head, f"step {t}  return {total:8.1f}", f"|residual| {r:.3f}{gate}"]

        if render:
            say(f"episode {i + 1}/{episodes} (seed {s}): raw, rendering")
            lf, lt, raw_ret, _ = video.rollout_frames(raw_env, act, s, max_steps, raw_text)
            say(f"episode {i + 1}/{episodes} (seed {s}): rectified, rendering")
            rf, rt, rect_ret, infos = video.rollout_frames(rect_env, act, s, max_steps, rect_text)
            result.frames += video.side_by_side(lf, lt, rf, rt)
        else:
            say(f"episode {i + 1}/{episodes} (seed {s}): raw and rectified")
            raw_ret = rollout(raw_env, act, s, max_steps).total
            rect = rollout(rect_env, act, s, max_steps)
            rect_ret, infos = rect.total, rect.infos
        scores = [inf["support_score"] for inf in infos]
        result.support_scores += scores
        result.pairs.append(
            EpisodePair(
                seed=s,
                raw=raw_ret,
                rectified=rect_ret,
                support=_mean(scores),
                residual=_mean([np.abs(inf["residual"]).mean() for inf in infos]),
                held=_mean([inf.get("rectifier_gate_held", False) for inf in infos]),
            )
        )
    raw_env.close()
    rect_env.close()
    return result
