"""The rectifier checkpoint: round trip without pickle, and a clear error for each failure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spar_rectify import load_rectifier, save_rectifier
from spar_rectify.bundle import FORMAT_VERSION, meta_digest


def _residuals(ck, obs, base):
    with torch.no_grad():
        return ck.rectifier(torch.as_tensor(obs), torch.as_tensor(base)).numpy()


def test_round_trip_is_exact(tmp_path, point_checkpoint, point_anchor):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    assert sorted(p.name for p in path.iterdir()) == ["rectifier.json", "rectifier.safetensors"]
    loaded = load_rectifier(path)
    rng = np.random.default_rng(0)
    obs, base = rng.normal(size=(8, 6)).astype(np.float32), rng.uniform(-1, 1, (8, 2)).astype(np.float32)
    np.testing.assert_array_equal(_residuals(loaded, obs, base), _residuals(point_checkpoint, obs, base))
    assert loaded.anchor_fingerprint == point_checkpoint.anchor_fingerprint
    meta = json.loads((path / "rectifier.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["package_version"]
    assert len(meta["normalization"]["obs_mean"]) == 6 and len(meta["normalization"]["residual_bound"]) == 2
    assert meta["action_space"]["low"] == [-1.0, -1.0]
    loaded.check_anchor(point_anchor)  # same anchor: accepted


def test_a_run_folder_loads_its_rectifier(tmp_path, point_checkpoint):
    save_rectifier(point_checkpoint, tmp_path / "run" / "rectifier")
    assert load_rectifier(tmp_path / "run").path == tmp_path / "run" / "rectifier"


def test_missing_folder_and_files(tmp_path, point_checkpoint):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_rectifier(tmp_path / "nowhere")
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    (path / "rectifier.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"rectifier\.safetensors does not exist"):
        load_rectifier(path)


def test_corrupted_weights(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    weights = path / "rectifier.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"rectifier\.safetensors is corrupted: its SHA-256"):
        load_rectifier(path)


def test_corrupted_json(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    (path / "rectifier.json").write_text("{not json")
    with pytest.raises(ValueError, match="is corrupted: not valid JSON"):
        load_rectifier(path)


def _resign(path, meta):
    """Write `meta` with a matching content digest: a file edited by someone who knows the format."""
    meta["meta_sha256"] = meta_digest(meta)
    (path / "rectifier.json").write_text(json.dumps(meta))


def test_inconsistent_json(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    meta = json.loads((path / "rectifier.json").read_text())
    meta["arch"]["hidden"] = [8, 8]
    _resign(path, meta)
    with pytest.raises(ValueError, match="corrupted or inconsistent"):
        load_rectifier(path)


@pytest.mark.parametrize("value", [float("nan"), 100.0, 1.0])
def test_edited_json_is_refused_by_its_checksum(tmp_path, point_checkpoint, value):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    meta = json.loads((path / "rectifier.json").read_text())
    meta["normalization"]["residual_bound"] = [value, value]  # even a plausible edit is refused
    (path / "rectifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="corrupted or was edited"):
        load_rectifier(path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("residual_bound", [float("nan"), 0.5], r"normalization\.residual_bound .*finite"),
        ("residual_bound", [100.0, 0.5], r"normalization\.residual_bound .*\(0, 2\]"),
        ("residual_bound", [0.0, 0.5], r"normalization\.residual_bound .*\(0, 2\]"),
        ("obs_std", [0.0] * 6, r"normalization\.obs_std .*positive"),
        ("obs_mean", [1.0] * 5, r"normalization\.obs_mean .*6 finite numbers"),
        ("alpha", 2.0, r"alpha = 2\.0, which must be a number in \[0, 1\]"),
        ("anchored", "yes", r"arch\.anchored = 'yes'"),
        ("latent_box", float("inf"), r"arch\.latent_box = inf"),
        ("gate", "no", r"gate = 'no', which must be true, false or absent"),
        ("gate", True, r"gate = True, which must be false or absent for a rectifier without its critic"),
    ],
)
def test_invalid_values_are_refused_even_with_a_matching_checksum(tmp_path, point_checkpoint, field, value, message):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    meta = json.loads((path / "rectifier.json").read_text())
    if field in meta["normalization"]:
        meta["normalization"][field] = value
    elif field in meta["arch"]:
        meta["arch"][field] = value
    else:
        meta[field] = value
    _resign(path, meta)
    with pytest.raises(ValueError, match=message):
        load_rectifier(path)


def test_the_deployment_gate_is_stored_and_deployed_and_an_explicit_gate_wins(tmp_path, point_env, point_anchor):
    from spar_rectify import RectifiedPolicy
    from spar_rectify.checkpoint import set_default_gate
    from tests.helpers import make_checkpoint

    spaces = (point_env.observation_space, point_env.action_space)
    path = save_rectifier(make_checkpoint(*spaces, point_anchor, critic=True), tmp_path / "rect")
    assert "gate" not in json.loads((path / "rectifier.json").read_text())  # absent: on with the critic, as before
    assert load_rectifier(path).gate is None and RectifiedPolicy(point_anchor, path).corrector.gate is True
    set_default_gate(path, False)
    assert load_rectifier(path).gate is False and RectifiedPolicy(point_anchor, path).corrector.gate is False
    assert RectifiedPolicy(point_anchor, path, gate=True).corrector.gate is True  # the caller's choice wins
    set_default_gate(path, None)
    assert "gate" not in json.loads((path / "rectifier.json").read_text())
    without = save_rectifier(make_checkpoint(*spaces, point_anchor), tmp_path / "bare")
    with pytest.raises(ValueError, match="carries no critic to gate with"):
        set_default_gate(without, True)
    with pytest.raises(ValueError, match="gate='off': use True, False or None"):
        set_default_gate(path, "off")


def test_version_1_files_still_load_and_are_validated(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    meta = json.loads((path / "rectifier.json").read_text())
    meta.pop("meta_sha256")
    meta["format_version"] = 1  # written before the JSON had its own checksum
    (path / "rectifier.json").write_text(json.dumps(meta))
    load_rectifier(path)
    meta["normalization"]["residual_bound"] = [float("nan")] * 2
    (path / "rectifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"normalization\.residual_bound"):
        load_rectifier(path)


def test_newer_format_version(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    meta = json.loads((path / "rectifier.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (path / "rectifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"format_version {FORMAT_VERSION + 1}.*upgrade spar_rectify"):
        load_rectifier(path)


def test_not_a_rectifier(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    meta = json.loads((path / "rectifier.json").read_text())
    meta["format"] = "something.else"
    (path / "rectifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not a spar_rectify rectifier file"):
        load_rectifier(path)


def test_loading_never_unpickles(tmp_path, point_checkpoint, monkeypatch):
    import pickle

    path = save_rectifier(point_checkpoint, tmp_path / "rect")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_rectifier(path)


def test_save_over_existing_keeps_a_readable_checkpoint(tmp_path, point_checkpoint):
    path = save_rectifier(point_checkpoint, tmp_path / "rect")
    save_rectifier(point_checkpoint, path)
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]
    load_rectifier(path)
