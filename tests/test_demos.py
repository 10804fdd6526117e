"""Demos with tiny arguments write decodable videos; bundled assets match their fingerprints."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from spar_rectify import load_policy, load_rectifier, save_rectifier
from tests.helpers import make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "demos" / "assets" / "hopper"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "demos" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_assets_match_their_fingerprints():
    manifest = json.loads((ASSETS / "MANIFEST.json").read_text())
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, name
    policy = load_policy(ASSETS / "sac_medium.zip")  # an SB3 zip: runs pickle; the file is ours
    checkpoint = load_rectifier(ASSETS / "rectifier")
    assert checkpoint.anchor_fingerprint == manifest["anchor_fingerprint"]
    checkpoint.check_anchor(policy)


@pytest.mark.slow
def test_rollout_demo_writes_a_decodable_side_by_side_video(tmp_path):
    imageio = pytest.importorskip("imageio")
    policy = load_policy(ASSETS / "sac_medium.zip")
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    ck = make_checkpoint(env.observation_space, env.action_space, policy, hidden=(16, 16))
    save_rectifier(ck, tmp_path / "rect")
    out = tmp_path / "v.mp4"
    result = _load("rollout").main(
        [
            "--video",
            "--episodes",
            "1",
            "--max-steps",
            "12",
            "--rectifier",
            str(tmp_path / "rect"),
            "--out",
            str(out),
            "--width",
            "96",
            "--height",
            "64",
        ]
    )
    assert out.is_file() and out.stat().st_size > 0
    reader = imageio.get_reader(out)
    frames = [f for f in reader]
    assert len(frames) == result["frames"] == 13  # reset frame + 12 steps (or fewer if the hopper fell)
    assert frames[0].shape == (64, 208, 3)  # 96 + 4 + 96, padded to a multiple of 16
    assert np.isfinite(result["rows"][0]["rectified"])
    assert [p.name for p in result["pictures"]] == ["v_returns.png", "v_support.png"]
    assert all(p.stat().st_size > 1000 for p in result["pictures"])


@pytest.mark.slow
def test_collect_and_rectify_journey_runs_end_to_end(tmp_path, monkeypatch):
    imageio = pytest.importorskip("imageio")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    result = _load("collect_and_rectify").main(
        ["--transitions", "300", "--steps", "30", "--episodes", "1", "--video-steps", "8", "--out", str(tmp_path / "j")]
    )
    assert (result["artifact"] / "rectifier.json").is_file()
    frames = [f for f in imageio.get_reader(tmp_path / "j" / "journey.mp4")]  # list() asks len(): inf
    assert len(frames) == result["video"]["frames"] and 2 <= len(frames) <= 9
    assert (tmp_path / "j" / "journey_learning.png").is_file()


@pytest.mark.slow
def test_arm_demo_runs_with_tiny_arguments(tmp_path, monkeypatch):
    imageio = pytest.importorskip("imageio")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    result = _load("arm").main(
        [
            "--transitions",
            "500",
            "--steps",
            "30",
            "--episodes",
            "1",
            "--video-steps",
            "5",
            "--out",
            str(tmp_path / "arm"),
        ]
    )
    frames = [f for f in imageio.get_reader(tmp_path / "arm" / "journey.mp4")]
    assert len(frames) == result["video"]["frames"] == 6


def test_the_arm_demo_help_describes_the_arm_not_the_hopper_journey(capsys):
    with pytest.raises(SystemExit):
        _load("arm").main(["--help"])
    shown = capsys.readouterr().out
    assert "PlanarArm-v0" in shown and "gravity" in shown and "Hopper-v5" not in shown
    with pytest.raises(SystemExit):
        _load("collect_and_rectify").main(["--help"])
    assert "Hopper-v5" in capsys.readouterr().out


def test_compare_pairs_each_seed_raw_and_rectified_and_needs_frames_to_write(tmp_path):
    import gymnasium as gym

    from spar_rectify import compare, rollout

    policy = load_policy(ASSETS / "sac_medium.zip")
    env = gym.make("Hopper-v5")
    ck = make_checkpoint(env.observation_space, env.action_space, policy, hidden=(16, 16))
    result = compare("Hopper-v5", policy, ck, episodes=2, seed=5, max_steps=20, say=lambda _: None)
    assert [p.seed for p in result.pairs] == [5, 6] and not result.frames
    raw = rollout(env, lambda o: policy(o[None].astype(np.float32))[0], 6, 20).total
    assert result.pairs[1].raw == raw  # the raw side is the base policy alone on that seed
    assert all(0 <= p.held <= 1 and p.residual >= 0 and np.isfinite(p.rectified) for p in result.pairs)
    assert len(result.support_scores) <= 40 and "mean" in result.table().splitlines()[-1]
    with pytest.raises(ValueError, match="render="):
        result.write(tmp_path / "v.mp4", "title")
