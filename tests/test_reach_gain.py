"""The reach-gain probe refuses a run with no second latent policy, in the flag's words."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import reach_gain


def test_a_run_without_a_second_latent_policy_is_refused_with_the_fix(tmp_path, capsys):
    run = tmp_path / "seed0"
    (run / "rectifier").mkdir(parents=True)  # one latent policy: no rectifier-alternative/, no penalty_choice
    (run / "summary.json").write_text(json.dumps({"auto_alpha": {"alpha": 1.0}}))
    args = ["--run", str(run), "--dataset", "d", "--method", "spar", "--seed", "0", "--out", str(tmp_path / "o.json")]
    with pytest.raises(SystemExit):
        reach_gain.main(args)
    assert f"--run {run}: no second latent policy there" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
