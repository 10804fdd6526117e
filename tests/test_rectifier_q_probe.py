"""benchmarks/rectifier_q_probe.py: the critic's gain of a rectifier's action over the anchor's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from spar_rectify import save_rectifier
from spar_rectify.checkpoint import set_default_alpha
from tests.helpers import make_checkpoint
from tests.helpers_data import point_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import rectifier_q_probe  # noqa: E402


def test_a_rectifier_that_adds_nothing_gains_nothing_and_one_that_moves_is_scored_by_its_critic(
    tmp_path, point_env, point_anchor
):
    data = point_data(episodes=10)
    moving = make_checkpoint(point_env.observation_space, point_env.action_space, point_anchor, critic=True)
    still = make_checkpoint(point_env.observation_space, point_env.action_space, point_anchor, critic=True)
    with torch.no_grad():  # the same critic, a decoder whose residual is zero everywhere
        still.rectifier.decoder[-1].weight.zero_()
        still.rectifier.decoder[-1].bias.zero_()
    folders = [save_rectifier(moving, tmp_path / "moving"), save_rectifier(still, tmp_path / "still")]
    rows = rectifier_q_probe.probe(point_anchor, data, folders, states=64)
    moved, kept = rows
    assert kept["distance_to_anchor"] == pytest.approx(0.0, abs=1e-6) and kept["q_gain"] == pytest.approx(0.0, abs=1e-6)
    assert moved["distance_to_anchor"] > 0.05 and moved["q_gain"] != pytest.approx(0.0, abs=1e-6)
    assert moved["logged_q_gain"] == pytest.approx(kept["logged_q_gain"])  # one critic, the same states
    assert rectifier_q_probe.probe(point_anchor, data, folders[:1], states=64) == rows[:1]  # seeded


def test_deployed_scores_each_folder_at_its_own_default_alpha(tmp_path, point_env, point_anchor):
    data = point_data(episodes=10)
    checkpoint = make_checkpoint(point_env.observation_space, point_env.action_space, point_anchor, critic=True)
    whole = save_rectifier(checkpoint, tmp_path / "whole")
    [full] = rectifier_q_probe.probe(point_anchor, data, [whole], states=64)
    still = set_default_alpha(save_rectifier(checkpoint, tmp_path / "still"), 0.0).path  # deployed as the anchor
    [at_zero] = rectifier_q_probe.probe(point_anchor, data, [still], states=64, deployed=True)
    assert at_zero["alpha"] == 0.0 and at_zero["distance_to_anchor"] == pytest.approx(0.0, abs=1e-6)
    assert at_zero["q_gain"] == pytest.approx(0.0, abs=1e-6) and full["distance_to_anchor"] > 0.05
