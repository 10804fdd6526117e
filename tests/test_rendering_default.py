"""The one rendering default: importing spar_rectify on headless Linux picks EGL, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the default applies on Linux only")


def _mujoco_gl_after_import(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY")}
    code = "import os, spar_rectify; print(os.environ.get('MUJOCO_GL', '<unset>'))"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_headless_linux_gets_egl_a_display_keeps_mujocos_default_and_the_user_wins():
    assert _mujoco_gl_after_import() == "egl"
    assert _mujoco_gl_after_import(DISPLAY=":0") == "<unset>"
    assert _mujoco_gl_after_import(MUJOCO_GL="osmesa") == "osmesa"
