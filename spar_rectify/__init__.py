"""spar_rectify: Support-Preserving Action Rectification for pretrained robot policies.

A frozen base policy proposes an action; a learned residual, bounded and learned only where the
logged data supports it, corrects it at every `step`.
"""

import os as _os
import sys as _sys

# The one place the rendering default is set, before anything imports mujoco: headless Linux has no
# window system for MuJoCo's default (glfw), so offscreen EGL. Set MUJOCO_GL yourself to override.
if _sys.platform.startswith("linux") and not (_os.environ.get("DISPLAY") or _os.environ.get("WAYLAND_DISPLAY")):
    _os.environ.setdefault("MUJOCO_GL", "egl")

from spar_rectify import mkl as _mkl
from spar_rectify._version import __version__ as __version__

_mkl.enable()  # MKL's fast path on AMD CPUs; SPAR_MKL_INTEL_PATH=0 turns it off (see spar_rectify.mkl)

from spar_rectify.bc_policy import BCPolicy  # noqa: E402
from spar_rectify.checkpoint import RectifierCheckpoint, load_rectifier, save_rectifier, set_default_alpha  # noqa: E402
from spar_rectify.collect import Exploration, collect  # noqa: E402
from spar_rectify.comparison import Comparison, EpisodePair, compare  # noqa: E402
from spar_rectify.config import TrainConfig  # noqa: E402
from spar_rectify.data import OfflineData, load_minari  # noqa: E402
from spar_rectify.evaluation import evaluate  # noqa: E402
from spar_rectify.importing import import_transitions  # noqa: E402
from spar_rectify.policies import (  # noqa: E402
    BasePolicy,
    CallablePolicy,
    SB3Policy,
    as_base_policy,
    load_policy,
    load_sb3,
)
from spar_rectify.rectified_policy import RectifiedPolicy  # noqa: E402
from spar_rectify.rectifier import Rectifier  # noqa: E402
from spar_rectify.rollout import Episode, rollout  # noqa: E402
from spar_rectify.trainer import Trainer, TrainResult, train  # noqa: E402
from spar_rectify.tuning import AlphaSweep, PolicySweep, save_choice, tune_alpha, tune_run  # noqa: E402
from spar_rectify.wrapper import SPARRectifierVectorWrapper, SPARRectifierWrapper  # noqa: E402

__all__ = [
    # data: collect, import, load
    "collect",
    "Exploration",
    "import_transitions",
    "load_minari",
    "OfflineData",
    # train
    "TrainConfig",
    "train",
    "Trainer",
    "TrainResult",
    # deploy
    "SPARRectifierWrapper",
    "SPARRectifierVectorWrapper",
    "RectifiedPolicy",
    "tune_alpha",
    "AlphaSweep",
    "tune_run",
    "PolicySweep",
    "save_choice",
    # run episodes
    "evaluate",
    "rollout",
    "Episode",
    "compare",
    "Comparison",
    "EpisodePair",
    # base policies
    "BasePolicy",
    "SB3Policy",
    "CallablePolicy",
    "BCPolicy",
    "as_base_policy",
    "load_sb3",
    "load_policy",
    # checkpoints
    "Rectifier",
    "RectifierCheckpoint",
    "save_rectifier",
    "load_rectifier",
    "set_default_alpha",
]
