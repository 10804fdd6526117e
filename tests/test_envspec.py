"""A dataset never runs code: its env spec builds only through Gymnasium's registry."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

from spar_rectify.cli import main as cli
from spar_rectify.config import TrainConfig
from spar_rectify.data import load_minari
from spar_rectify.envspec import UntrustedEnvSpec, vet_env_spec
from spar_rectify.trainer import train
from tests.helpers_data import write_point_dataset


def _dataset(dataset_id: str, spec: EnvSpec) -> None:
    """A PointReach dataset whose metadata records `spec` (written as a file from elsewhere would be:
    Minari itself builds the env while writing)."""
    import json

    from minari.storage import get_dataset_path

    write_point_dataset(dataset_id)
    meta_path = get_dataset_path(dataset_id) / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["env_spec"] = spec.to_json()
    meta_path.write_text(json.dumps(meta))


def _evil(env_id: str, marker) -> EnvSpec:
    return EnvSpec(id=env_id, entry_point="os:system", kwargs={"command": f"touch {marker}"})


@pytest.mark.parametrize(
    "env_id, message",
    [("Evil-v0", "not in Gymnasium's registry"), ("PointReach-v0", "Gymnasium registers 'PointReach-v0' as")],
)
def test_a_dataset_naming_foreign_code_never_runs_it(tmp_path, env_id, message):
    marker = tmp_path / "PWNED"
    _dataset("t/evil/data-v0", _evil(env_id, marker))
    data = load_minari("t/evil/data-v0")
    assert data.env_spec is None and message in data.env_refused and "--trust-dataset-env" in data.env_refused
    with pytest.raises(UntrustedEnvSpec, match=message):
        train(TrainConfig(algo="bc", steps=2, eval_every=0), data, tmp_path / "run", progress=False)
    with pytest.raises(SystemExit, match=f"spar: error: .*{message}"):
        cli(
            [
                "train",
                "--dataset",
                "t/evil/data-v0",
                "--run-dir",
                str(tmp_path / "run2"),
                "--config.algo",
                "bc",
                "--config.steps",
                "2",
            ]
        )
    assert not marker.exists()
    # Naming the env yourself trains and evaluates on it, without importing the dataset's code.
    result = train(
        TrainConfig(algo="bc", steps=2, eval_every=0, eval_episodes=1),
        data,
        tmp_path / "run3",
        env="PointReach-v0",
        progress=False,
    )
    assert result.eval_returns.shape == (1,) and not marker.exists()


def test_trust_builds_the_recorded_spec(tmp_path):
    spec = EnvSpec(id="Trusted-v0", entry_point="envs.point_reach:PointReachEnv", max_episode_steps=50)
    _dataset("t/own/data-v0", spec)
    assert load_minari("t/own/data-v0").env_spec is None
    data = load_minari("t/own/data-v0", trust_env=True)
    assert data.env_spec.entry_point == "envs.point_reach:PointReachEnv"
    assert gym.make(data.env_spec).observation_space.shape == (6,)


def test_a_registered_env_uses_the_registry_entry_point():
    recorded = gym.spec("PointReach-v0")
    vetted = vet_env_spec(
        EnvSpec(id="PointReach-v0", entry_point=recorded.entry_point, max_episode_steps=7, kwargs={}), "test"
    )
    assert vetted.entry_point == recorded.entry_point and vetted.max_episode_steps == 7
    env = gym.make(vetted)
    env.reset(seed=0)
    assert np.isfinite(env.step(env.action_space.sample())[1])


def test_a_dataset_without_spaces_and_with_foreign_code_is_refused_before_minari_builds_it(tmp_path):
    import json

    from minari.storage import get_dataset_path

    marker = tmp_path / "PWNED"
    _dataset("t/evil/nospace-v0", _evil("Evil-v0", marker))
    meta_path = get_dataset_path("t/evil/nospace-v0") / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("observation_space"), meta.pop("action_space")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UntrustedEnvSpec, match="stores no spaces"):
        load_minari("t/evil/nospace-v0")
    assert not marker.exists()
