"""The cap-share probe reports what `spar train`'s bound computes: rho, the rows the cap cuts, what clipping loses."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bound_cap_share

from spar_rectify.config import TrainConfig


def test_cap_rows_reports_the_share_the_cap_cuts_and_the_residual_it_loses():
    magnitude = torch.full((1000, 2), 0.1)
    magnitude[:100, 1] = 1.6  # 10% of the rows 1.6 from the anchor in dimension 1: the 0.99 quantile is 1.6
    row = bound_cap_share.cap_rows("d", "a", magnitude, [1.0, 2.0], TrainConfig())
    assert row["quantile"] == pytest.approx([0.1, 1.6]) and row["rows"] == 1000
    one, two = row["caps"]["1"], row["caps"]["2"]
    assert one["rho"] == pytest.approx([0.1, 1.0]) and one["share_cut"] == pytest.approx(0.1) and one["over_warn_share"]
    assert one["largest_cut"] == pytest.approx(1.6) and one["mean_shortening"] == pytest.approx(0.1 * 0.6)
    assert two["rho"] == pytest.approx([0.1, 1.6]) and two["share_cut"] == 0 and two["mean_shortening"] == 0
    assert not two["over_warn_share"]
    assert not one["bound_lift_lifts"]  # no returns: never lifted
    returns = np.r_[np.full(100, 90.0), np.full(900, 30.0)]  # the far rows come from the better episodes
    scored = bound_cap_share.cap_rows("d", "a", magnitude, [1.0], TrainConfig(), returns)
    assert scored["rows_episode_score"] == pytest.approx(36.0) and scored["caps"]["1"]["cut_rows_episode_score"] == 90
    assert scored["caps"]["1"]["bound_lift_lifts"] and scored["episode_score_spread"] == 60
    worse = bound_cap_share.cap_rows("d", "a", magnitude, [1.0], TrainConfig(), returns[::-1].copy())
    assert not worse["caps"]["1"]["bound_lift_lifts"]  # the far rows from the worse episodes: kept out


def test_a_cap_outside_the_action_range_is_refused_in_the_flags_words(capsys):
    with pytest.raises(SystemExit):
        bound_cap_share.main(["--caps", "3"])
    assert "--caps [3.0]: each cap must be in (0, 2]" in capsys.readouterr().err
