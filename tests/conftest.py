"""Shared fixtures: isolated dataset folders, offline hubs, headless rendering, small rectifiers."""

from __future__ import annotations

import os

import spar_rectify  # noqa: F401  (first: the rendering default and MKL's path, before mujoco and torch)

os.environ["HF_HUB_OFFLINE"] = "1"

import gymnasium as gym
import pytest
import torch

import envs
from spar_rectify import CallablePolicy
from tests.helpers import make_checkpoint

torch.set_num_threads(1)
envs.register_envs()


@pytest.fixture(autouse=True)
def _isolated_datasets(tmp_path, monkeypatch):
    """Every test gets its own Minari root and working directory (MUJOCO_LOG.TXT lands there)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def point_env():
    env = gym.make("PointReach-v0")
    yield env
    env.close()


@pytest.fixture
def point_anchor(point_env):
    return CallablePolicy(envs.biased_controller, point_env.action_space, name="biased_controller")


@pytest.fixture
def point_checkpoint(point_env, point_anchor):
    return make_checkpoint(point_env.observation_space, point_env.action_space, point_anchor)
