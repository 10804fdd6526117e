"""A MuJoCo robot arm, rectified from collected data.

PlanarArm-v0 (envs/planar_arm.py): a two-link arm in a vertical plane reaching targets under
gravity. The bundled base policy, `envs.planar_arm:gravity_blind_controller`, is a task-space PD
controller that is good at reaching but ignores gravity, so the fingertip settles below the
target. This demo collects noisy rollouts of that controller, trains SPAR on them, and shows raw
against rectified: table, side-by-side video and PNGs under runs/arm. The flags are the journey's
(demos/collect_and_rectify.py); these defaults: PlanarArm-v0, the gravity-blind controller with Gaussian
exploration noise 0.3, 50k transitions, 20k gradient steps, 10 evaluation episodes.

    python demos/arm.py            # 20k steps + offline checks (58 min beside 2 jobs)
    python demos/arm.py --full     # more data and gradient steps
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # `envs` lives beside demos/; the journey demo beside this file

import collect_and_rectify  # noqa: E402  (the journey this demo runs with the arm's settings)

import envs  # noqa: E402  (registers PlanarArm-v0)

DEFAULTS = [
    "--env",
    "PlanarArm-v0",
    "--base-policy",
    "envs.planar_arm:gravity_blind_controller",
    "--noise",
    "0.3",
    "--transitions",
    "50000",
    "--steps",
    "20000",
    "--episodes",
    "10",
    "--video-steps",
    "100",
    "--out",
    "runs/arm",
]


def main(argv=None):
    return collect_and_rectify.main(DEFAULTS + list(sys.argv[1:] if argv is None else argv), description=__doc__)


if __name__ == "__main__":
    assert envs.PlanarArmEnv  # the import registered the env
    main()
