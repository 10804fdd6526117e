"""The state-event probe: flags states on one dimension, counts them over model rollouts, refuses an incomplete run."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import state_event

from spar_rectify.drift import DynamicsEnsemble
from tests.helpers_data import point_data


def test_flagged_states_are_those_beyond_the_threshold_on_either_side():
    states = np.array([[0.0, 1.6], [0.0, -1.6], [0.0, 1.4], [9.0, 0.0]])
    assert state_event.flagged(states, 1, 1.5).tolist() == [True, True, False, False]


def test_model_rollouts_count_the_flagged_states_of_each_policy_from_unflagged_starts():
    data = point_data(episodes=20)
    model = DynamicsEnsemble.fit(data, members=2, steps=300, hidden=(32, 32))
    above = float(np.percentile(np.abs(data.observations.numpy()[:, 0]), 90))

    def push(obs):  # full throttle along x: leaves the data's positions
        return np.tile([1.0, 0.0], (len(obs), 1))

    def still(obs):
        return np.zeros((len(obs), 2))

    from spar_rectify.drift import rollout_draws

    first, picks = rollout_draws(data, model, 100, 30, 0)
    out = state_event.model_side({"push": push, "still": still}, data, model, first, picks, 0, above)
    assert set(out) == {"push", "still"}
    for name in out:
        assert 0 <= out[name]["flagged_share"] <= out[name]["rollouts_ever_flagged"] <= 1
    assert out["push"]["flagged_share"] > out["still"]["flagged_share"] + 0.1


def test_onset_starts_are_the_rows_k_steps_before_a_flagged_state_begins_within_one_unbroken_episode():
    from types import SimpleNamespace

    import torch

    pitch = [0, 0, 0, 2, 2, 0, 0, 0, 0, 2, 0, 0, 2]  # onsets at rows 3, 9 and 12
    ends = [0] * 13
    ends[10] = 1  # an episode ends at row 10: the onset at 12 has only one row of its own episode before it
    data = SimpleNamespace(
        observations=torch.tensor([[0.0, p] for p in pitch]),
        terminations=torch.tensor(ends),
        truncations=torch.zeros(13, dtype=torch.int64),
    )
    assert state_event.onset_starts(data, 1, 1.5, 2).tolist() == [1, 7]
    assert state_event.onset_starts(data, 1, 1.5, 3).tolist() == [0, 6]
    assert state_event.onset_starts(data, 1, 1.5, 4).tolist() == [5]  # 3 has no row 4 steps back
    assert state_event.onset_starts(data, 1, 1.5, 6).tolist() == []  # the rows before 9 run through the flagged 3-4


def test_a_run_without_both_rectifiers_and_its_dynamics_model_is_refused_with_the_fix(tmp_path, capsys):
    run = tmp_path / "full" / "d" / "spar" / "seed0"
    (run / "rectifier").mkdir(parents=True)
    (tmp_path / "full" / "d" / "bc" / "seed0" / "policy").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({}))
    args = ["--run", str(run), "--dataset", "d", "--method", "spar", "--seed", "0", "--dim", "1", "--above", "1.5"]
    with pytest.raises(SystemExit):
        state_event.main([*args, "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert "no rectifier-alternative, dynamics there" in err and not (tmp_path / "o.json").exists()
