"""Side-by-side MuJoCo videos of raw and rectified behaviour.

Defines `check_rendering`, `make_render_env`, `render_frame`, `rollout_frames`, `side_by_side`,
`write_video`.
Needs the `video` extra (imageio, imageio-ffmpeg, pillow).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from spar_rectify.rollout import rollout


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"videos need {module}: pip install 'spar_rectify[video]'") from err


def make_render_env(
    env_id: str, width: int = 320, height: int = 240, shadow: int = 1024, wrapper: Callable | None = None
) -> gym.Env:
    """An `rgb_array` env with a small shadow map (software rendering is slow at MuJoCo's 4096^2).

    Raises:
        RuntimeError: no rendering backend works (the message says which MUJOCO_GL to try).
    """
    try:
        env = gym.make(env_id, render_mode="rgb_array", width=width, height=height)
    except TypeError:  # envs without width/height arguments
        env = gym.make(env_id, render_mode="rgb_array")
    model = getattr(env.unwrapped, "model", None)
    if model is not None and hasattr(model, "vis"):
        model.vis.quality.shadowsize = shadow
    env = wrapper(env) if wrapper else env
    check_rendering(env)
    return env


def check_rendering(env: gym.Env) -> None:
    """Render once; turn backend failures into an error that says what to try."""
    try:
        env.reset(seed=0)
        frame = render_frame(env)
    except Exception as err:
        raise RuntimeError(
            f"rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} ({type(err).__name__}: {err}); "
            "headless machines: set MUJOCO_GL=egl before starting Python (or MUJOCO_GL=osmesa with libosmesa6 "
            "installed); with a display, MUJOCO_GL=glfw."
        ) from err
    if frame is None or np.asarray(frame).ndim != 3:
        raise RuntimeError("env.render() returned no RGB frame; create the env with render_mode='rgb_array'")


def render_frame(env: gym.Env) -> np.ndarray:
    """`env.render()`, with the camera following the env's `trackbodyid` along x.

    Gymnasium's offscreen renderer resets its camera to a free camera at every render, so the
    tracking that `default_camera_config` asks for (Hopper, HalfCheetah, ...) never happens and
    the robot walks out of the picture; moving the free camera's look-at point restores it.
    """
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    body = (getattr(renderer, "default_cam_config", None) or {}).get("trackbodyid")
    if renderer is not None and body is not None and body >= 0:
        viewer = renderer._get_viewer(env.unwrapped.render_mode)
        viewer.cam.lookat[0] = env.unwrapped.data.xpos[body][0]
    return env.render()


def rollout_frames(
    env: gym.Env,
    act: Callable[[np.ndarray], np.ndarray],
    seed: int,
    max_steps: int,
    overlay: Callable[[dict, float, int], list[str]],
) -> tuple[list[np.ndarray], list[list[str]], float, list[dict]]:
    """Run one seeded episode, rendering every step.

    Returns:
        frames (T + 1 RGB arrays), per-frame text lines, the return, and the step infos.
    """
    frames, texts = [], [overlay({}, 0.0, 0)]

    def record(info: dict, total: float, t: int) -> None:
        frames.append(render_frame(env))
        texts.append(overlay(info, total, t))

    def first_frame(obs: np.ndarray) -> np.ndarray:  # the reset frame, rendered before the first action
        if not frames:
            frames.append(render_frame(env))
        return act(obs)

    episode = rollout(env, first_frame, seed, max_steps, on_step=record)
    return frames, texts, episode.total, episode.infos


def _annotate(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    image = _need("PIL.Image").fromarray(np.ascontiguousarray(frame))
    draw = _need("PIL.ImageDraw").Draw(image)
    for i, line in enumerate(lines):
        xy = (6, 4 + 13 * i)
        draw.text((xy[0] + 1, xy[1] + 1), line, fill=(0, 0, 0))
        draw.text(xy, line, fill=(255, 255, 255))
    return np.asarray(image)


def side_by_side(
    left: list[np.ndarray], left_text: list[list[str]], right: list[np.ndarray], right_text: list[list[str]]
) -> list[np.ndarray]:
    """Pair frames with their text; the episode that ends first holds its last frame, labelled
    "episode ended", while the other plays on. A white divider of 4-19 px, as wide as it takes for
    the frame to be a multiple of 16 px wide (no black padding)."""
    n = max(len(left), len(right))

    def panel(frames: list[np.ndarray], texts: list[list[str]], i: int) -> np.ndarray:
        if i < len(frames):
            return _annotate(frames[i], texts[i])
        return _annotate(frames[-1], [*texts[-1], f"episode ended (step {len(frames) - 1}): holding"])

    out = []
    for i in range(n):
        a, b = panel(left, left_text, i), panel(right, right_text, i)
        gap = -(a.shape[1] + b.shape[1] + 4) % 16 + 4
        divider = np.full((a.shape[0], gap, 3), 255, np.uint8)
        out.append(np.concatenate([a, divider, b], axis=1))
    return out


def _pad16(frame: np.ndarray) -> np.ndarray:
    """Pad with black to multiples of 16 pixels, as H.264 players expect (no rescaling)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, -h % 16), (0, -w % 16), (0, 0)))


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write frames as mp4 (H.264 via imageio-ffmpeg, padded to multiples of 16 px) or, for a
    `.gif` path, a GIF."""
    imageio = _need("imageio")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        _need("imageio_ffmpeg")
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(_pad16(frame))
    return path
