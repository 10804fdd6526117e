"""The reach-gain probe refuses a run with no reach policy left out, in the flag's words."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import reach_gain


def test_a_run_whose_reach_policy_was_deployed_is_refused_with_the_fix(tmp_path, capsys):
    run = tmp_path / "seed0"
    (run / "rectifier-alternative").mkdir(parents=True)
    choice = {"deployed_penalty": 0.0, "reach_penalty": 0.0}  # the reach policy went out: nothing left to compare
    (run / "summary.json").write_text(json.dumps({"penalty_choice": choice}))
    args = ["--run", str(run), "--dataset", "d", "--method", "spar", "--seed", "0", "--out", str(tmp_path / "o.json")]
    with pytest.raises(SystemExit):
        reach_gain.main(args)
    assert f"--run {run}: no reach policy left out there" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
