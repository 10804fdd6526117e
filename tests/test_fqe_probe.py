"""The FQE probe finds each exported rectifier's env score in the run's record and refuses bad flags in their words."""

import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import fqe_probe


def test_env_scores_map_each_exported_folder_to_its_score_in_the_record(tmp_path):
    record = {
        "dataset": "d",
        "method": "medium-rectified",
        "seed": 1,
        "normalized_score": 52.4,
        "config": {"steps": 200},
        "alternative": {"normalized_score": 86.8},
        "rectifier-insample": {"normalized_score": 71.3},
    }
    other_run = dict(record, seed=0, normalized_score=10.0)
    path = tmp_path / "suite_full.json"
    path.write_text(json.dumps({"runs": [other_run, record]}))
    args = Namespace(dataset="d", method="medium-rectified", seed=1)
    scores = fqe_probe.env_scores(str(path), args, 200)
    assert scores == {"rectifier": 52.4, "rectifier-alternative": 86.8, "rectifier-insample": 71.3}
    assert fqe_probe.env_scores(str(path), args, 100) == {}  # another training length: not this run's record
    assert fqe_probe.env_scores(None, args, 200) == {}


def test_bad_steps_and_a_folder_without_a_rectifier_are_refused_with_the_fix(tmp_path, capsys):
    base = ["--dataset", "d", "--method", "spar", "--seed", "0", "--out", str(tmp_path / "o.json")]
    with pytest.raises(SystemExit):
        fqe_probe.main(["--run", str(tmp_path), "--steps", "0", *base])
    assert "--steps 0: give at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fqe_probe.main(["--run", str(tmp_path), "--folders", "rectifier-alternative", *base])
    assert "--folders rectifier-alternative: include rectifier" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fqe_probe.main(["--run", str(tmp_path), "--members", "0", *base])
    assert "--members 0: give at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fqe_probe.main(["--run", str(tmp_path), "--pessimism", "1", *base])
    assert "--pessimism 1.0 needs the members' spread: add --members 5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fqe_probe.main(["--run", str(tmp_path), "--members", "5", "--pessimism", "-1", *base])
    assert "--pessimism -1.0: give a beta >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fqe_probe.main(["--run", str(tmp_path), *base])
    assert "no rectifier/ folder there" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_calibration_discounts_from_the_first_step_and_refuses_bad_flags(capsys, tmp_path):
    import fqe_calibration

    assert fqe_calibration.discounted(np.array([1.0, 1.0, 1.0]), 0.5) == pytest.approx(1.75)
    with pytest.raises(SystemExit):
        fqe_calibration.main(["--dataset", "d", "--episodes", "0"])
    assert "--episodes 0 --steps 20000: give at least 1 of each" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fqe_calibration.main(["--dataset", "spar/hopper/medium-v0", "--policies", "nobody", "--suite", str(tmp_path)])
    assert "--policies nobody: not found" in capsys.readouterr().err
