"""The suite builder on a tiny budget: datasets that load, keep their flags apart, and score."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spar_rectify.data import load_minari

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT.parent / "shared" / "suite"


def _builder():
    spec = importlib.util.spec_from_file_location("build_suite", ROOT / "benchmarks" / "build_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (SUITE / "hopper" / "sac_medium.zip").is_file(), reason=f"suite inputs not at {SUITE}")
def test_tiny_suite_builds_loads_and_scores(capsys):
    builder = _builder()
    built = builder.main(["--suite", str(SUITE), "--transitions", "600", "--ref-episodes", "2", "--envs", "hopper"])
    ids = built["hopper"]
    assert set(ids) == {"medium", "medium-replay", "medium-expert"}
    medium, replay, mixed = (load_minari(ids[k]) for k in ("medium", "medium-replay", "medium-expert"))
    for data in (medium, replay, mixed):
        assert data.ref_min_score < data.ref_max_score
        score = data.normalized_score(data.episode_returns.mean())
        assert np.isfinite(score)
    assert len(medium) >= 600 and len(replay) == 600 and len(mixed) >= len(medium) + 600
    raw = np.load(SUITE / "hopper" / "replay_to_medium.npz")
    np.testing.assert_array_equal(replay.observations.numpy(), raw["observations"][:600])
    np.testing.assert_array_equal(replay.terminations.numpy().astype(bool), raw["terminations"][:600])
    assert replay.truncations.sum() == 1  # only the cut-off end: the SAC log has no time-limit ends here
    # A second run is a no-op.
    builder.main(["--suite", str(SUITE), "--transitions", "600", "--ref-episodes", "2", "--envs", "hopper"])
    assert capsys.readouterr().out.count("up to date, skipped") == 3


@pytest.mark.skipif(not (SUITE / "hopper" / "sac_medium.zip").is_file(), reason=f"suite inputs not at {SUITE}")
def test_kinds_builds_only_those_and_medium_expert_needs_medium(capsys):
    builder = _builder()
    tiny = ["--suite", str(SUITE), "--transitions", "600", "--ref-episodes", "2", "--envs", "hopper"]
    built = builder.main([*tiny, "--kinds", "medium-replay"])
    assert built == {"hopper": {"medium-replay": "spar-600/hopper/medium-replay-v0"}}
    assert len(load_minari("spar-600/hopper/medium-replay-v0")) == 600
    with pytest.raises(FileNotFoundError, match="add medium to --kinds"):
        builder.main([*tiny, "--kinds", "medium-expert"])
    assert "expert transitions" not in capsys.readouterr().out  # refused before the expert's collection


def test_two_builds_at_once_keep_each_others_manifest_entries(tmp_path):
    builder = _builder()
    path = tmp_path / "suite_manifest.json"
    path.write_text('{"Hopper-v5/ref/20": {"ref_min_score": 1.0}}')
    start = {"Hopper-v5/ref/20": {"ref_min_score": 1.0}}
    # Both builds read the same manifest, then each writes the entries it made.
    hopper = {**start, "spar/hopper/medium-v0": {"seed": 0}}
    cheetah = {**start, "HalfCheetah-v5/ref/20": {"ref_min_score": -280.0}, "spar/halfcheetah/medium-v0": None}
    builder.save_manifest(path, start, hopper)
    builder.save_manifest(path, start, cheetah)
    import json

    assert json.loads(path.read_text()) == {**hopper, **cheetah}
