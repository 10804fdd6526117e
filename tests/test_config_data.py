"""Config validation and the data loader's contracts."""

from __future__ import annotations

import json

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from spar_rectify.config import TrainConfig
from spar_rectify.data import from_arrays, load_minari
from tests.helpers_data import point_rollouts


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("algo", "sac", r"TrainConfig.algo must be one of"),
        ("steps", 0, r"TrainConfig.steps must be an integer >= 1, got 0"),
        ("gamma", 1.5, r"TrainConfig.gamma must be in \(0, 1\], got 1.5"),
        ("lr", -1.0, r"TrainConfig.lr must be > 0"),
        ("residual_bound", 3.0, r"TrainConfig.residual_bound must be None or in \(0, 2\]"),
        ("bound_max", 2.5, r"TrainConfig.bound_max must be <= 2 \(a residual of 2 spans the whole"),
        ("fit_fraction", 0.95, r"TrainConfig.fit_fraction must be in \[0, 1\) with manifold_fraction"),
        # types: the text "False" is truthy and 1e5 is no step count, so neither passes silently
        ("lsi_agreement", "False", r"TrainConfig.lsi_agreement must be true or false, got 'False'"),
        ("steps", 1e5, r"TrainConfig.steps must be an integer, got 100000.0"),
        ("kl_weight", "0.1", r"TrainConfig.kl_weight must be a number"),
        ("latent_dim", 2.5, r"TrainConfig.latent_dim must be an integer or None"),
        ("hidden", (64.0,), r"TrainConfig.hidden must be a list of integers"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value})


def test_every_configurable_method_has_an_algorithm_and_back():
    from spar_rectify.algos import ALGORITHMS
    from spar_rectify.config import ALGOS

    assert set(ALGOS) == set(ALGORITHMS)


def test_config_json_round_trip_and_unknown_keys(tmp_path):
    cfg = TrainConfig(algo="iql", steps=123, hidden=(32, 16))
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    # numpy scalars and a list of widths are stored as the plain types they stand for
    assert TrainConfig(algo="iql", steps=np.int64(123), hidden=[32, 16]) == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['stepz'\]"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(FileNotFoundError, match="config not found"):
        TrainConfig.load(tmp_path / "missing.json")


def test_a_switch_stored_as_text_by_older_versions_loads_as_the_boolean():
    # configs and checkpoints written when `--set lsi_improvements_only=False` reached the config as text
    old = TrainConfig.from_dict({"lsi_improvements_only": "False", "lsi_agreement": "True"})
    assert old.lsi_improvements_only is False and old.lsi_agreement is True
    # only the two spellings that were written; anything else is still refused
    with pytest.raises(ValueError, match="must be true or false, got 'yes'"):
        TrainConfig.from_dict({"lsi_agreement": "yes"})


def test_the_residual_bound_follows_the_data_up_to_bound_max():
    """rho is the data's quantile of |a - a_b| clamped to [bound_min, bound_max]: where the anchor and
    the logged actions sit at opposite ends of the range, bound_max 2 lets rho cover them, 1 clips."""
    import torch

    from spar_rectify.algos.common import DataInfo
    from spar_rectify.algos.spar import SPAR

    gen = torch.Generator().manual_seed(0)
    action = torch.rand((4000, 2), generator=gen) * 2 - 1
    action[:, 0] = action[:, 0].sign()  # dimension 0: the data at either end of the range
    base = torch.zeros_like(action)
    base[:, 0] = -action[:, 0]  # the anchor always at the other end: |residual| = 2 there
    info = DataInfo(3, 2, np.zeros(3, np.float32), np.ones(3, np.float32))
    with pytest.warns(UserWarning, match=r"shortens .* on 100.0% of the data's rows.*--config.bound-max 2"):
        low = SPAR.data_info(TrainConfig(bound_max=1.0), info, action, base)[0].residual_bound
    rho = {1.0: low, 2.0: SPAR.data_info(TrainConfig(bound_max=2.0), info, action, base)[0].residual_bound}
    assert rho[1.0][0] == pytest.approx(1.0) and rho[2.0][0] == pytest.approx(2.0)
    assert rho[1.0][1] == pytest.approx(rho[2.0][1]) and rho[2.0][1] < 1  # below the clamp: the data's own
    assert SPAR.data_info(TrainConfig(residual_bound=1.5), info, action, base)[0].residual_bound[1] == 1.5


def test_a_capped_bound_that_shortens_many_logged_residuals_warns_with_the_fix():
    """Where bound_max caps rho and the cap shortens the logged residual on more than CLIP_WARN_SHARE of the rows
    (data from a stronger policy than the anchor: hopper medium-expert around the SB3 medium policy, 11.6%),
    data_info says so and names the flag; a cap that shortens a few rows (medium-replay around BC, 3.0%) does not,
    nor does a bound set by hand."""
    import warnings

    import torch

    from spar_rectify.algos.common import DataInfo
    from spar_rectify.algos.spar import CLIP_WARN_SHARE, SPAR

    info = DataInfo(3, 2, np.zeros(3, np.float32), np.ones(3, np.float32))
    gen = torch.Generator().manual_seed(0)

    def data(far_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logged actions near the anchor, except on the first far_rows rows: 1.6 away in dimension 1."""
        base = torch.rand((4000, 2), generator=gen) * 0.2 - 0.1
        action = base + 0.1 * torch.randn((4000, 2), generator=gen)
        base[:far_rows, 1], action[:far_rows, 1] = -0.6, 1.0
        return action, base

    action, base = data(int(4000 * 2 * CLIP_WARN_SHARE))
    with pytest.warns(UserWarning, match=r"shortens .* on 10\.0% of the data's rows: it reaches 1\.60 .*bound-max 2"):
        SPAR.data_info(TrainConfig(), info, action, base)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SPAR.data_info(TrainConfig(), info, *data(int(4000 * 0.6 * CLIP_WARN_SHARE)))  # capped, but on 3%
        SPAR.data_info(TrainConfig(bound_max=2.0), info, action, base)  # no cap: rho is the data's own
        SPAR.data_info(TrainConfig(residual_bound=1.0), info, action, base)  # set by hand: the user chose


def test_bound_lift_raises_the_cap_only_where_it_cuts_many_rows_from_better_episodes():
    """bound_lift: where bound_max shortens the logged residual on over CLIP_WARN_SHARE of the rows and those rows
    come from episodes that returned more (a stronger policy's actions), rho is the one bound_max=bound_lift gives,
    bit for bit and silently; where they come from worse episodes (a replay's early actions), where the cap cuts a
    few rows, or where the returns are unknown, the one bound_max gives."""
    import warnings

    import torch

    from spar_rectify.algos.common import DataInfo
    from spar_rectify.algos.spar import CLIP_WARN_SHARE, SPAR, capped_bound, lifted_message

    info = DataInfo(3, 2, np.zeros(3, np.float32), np.ones(3, np.float32))
    gen = torch.Generator().manual_seed(0)
    n = 4000

    def data(far_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        base = torch.rand((n, 2), generator=gen) * 0.2 - 0.1
        action = base + 0.1 * torch.randn((n, 2), generator=gen)
        base[:far_rows, 1], action[:far_rows, 1] = -0.6, 1.0  # 1.6 from the anchor in dimension 1
        return action, base

    def rho(config: TrainConfig, action, base, returns) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither a lifted cap nor one that keeps out worse rows warns
            return SPAR.data_info(config, info, action, base, returns)[0].residual_bound

    far = int(n * 2 * CLIP_WARN_SHARE)
    many, few = data(far), data(int(n * 0.6 * CLIP_WARN_SHARE))
    better = np.r_[np.full(far, 3000.0), np.full(n - far, 1000.0)]  # the far rows' episodes returned more
    worse = np.r_[np.full(far, 200.0), np.full(n - far, 1000.0)]
    lift = TrainConfig(bound_lift=2.0)
    lifted = rho(lift, *many, better)
    assert lifted[1] == pytest.approx(1.6) and np.array_equal(lifted, rho(TrainConfig(bound_max=2.0), *many, better))
    kept = rho(lift, *many, worse)
    assert kept[1] == 1.0 and np.array_equal(kept, rho(TrainConfig(bound_lift=None), *many, worse))
    assert rho(lift, *few, better)[1] == 1.0  # 3% of the rows: outliers, not a stronger policy
    assert TrainConfig().bound_lift == 2.0 and np.array_equal(rho(TrainConfig(), *many, better), lifted)  # default
    said = lifted_message(SPAR.data_info(lift, info, *many, better)[0].bound_cap, 1.0, 2.0)  # spar train's line
    assert said.startswith("residual bound: the cap of 1 would shorten 10.0% of the logged residuals")
    assert "returned 3000 on average against 1200" in said and "lifted to 2" in said and "--config.bound-lift 1" in said
    assert lifted_message(SPAR.data_info(lift, info, *many, worse)[0].bound_cap, 1.0, 2.0) is None
    for off in (TrainConfig(bound_lift=None), TrainConfig(bound_lift=1.0)):  # turned off: kept, and says so
        with pytest.warns(
            UserWarning, match=r"returned 3000 on average against 1200 over all rows.*--config.bound-lift 2"
        ):
            assert SPAR.data_info(off, info, *many, better)[0].residual_bound[1] == 1.0
    with pytest.warns(UserWarning, match=r"shortens .* on 10\.0%.*no episode returns.*--config.bound-max 2"):
        assert SPAR.data_info(lift, info, *many)[0].residual_bound[1] == 1.0  # returns unknown: never lifted
    cap = capped_bound(torch.tensor([0.3, 1.6]), (many[0] - many[1]).abs(), 0.05, 1.0)
    assert cap.share == pytest.approx(0.1) and cap.largest == pytest.approx(1.6) and cap.bound.tolist()[1] == 1.0
    assert int(cap.cut.sum()) == far and bool(cap.cut[:far].all())
    with pytest.raises(ValueError, match=r"bound_lift must be None or in \[bound_max \(1\), 2\], got 0.5"):
        TrainConfig(bound_lift=0.5)
    saved = {k: v for k, v in lift.to_dict().items() if k != "bound_lift"}  # a run written before the field
    assert TrainConfig.from_saved(saved).bound_lift is None


def test_row_returns_spreads_each_episodes_return_over_its_rows():
    from gymnasium import spaces

    from spar_rectify.data import from_arrays

    box = spaces.Box(-1.0, 1.0, (1,), np.float32)
    term, trunc = np.array([0, 1, 0, 0, 0], bool), np.array([0, 0, 0, 0, 1], bool)
    zeros = np.zeros((5, 1))
    data = from_arrays(zeros, zeros, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), zeros, term, trunc, box, box)
    assert data.row_returns().tolist() == [3.0, 3.0, 12.0, 12.0, 12.0]


def test_data_whose_actions_are_the_anchors_own_warns_with_the_fix():
    """Data collected with the base policy's deterministic actions gives SPAR nothing to learn a correction
    from: data_info says so and names the collection flag; data with spread around the anchor does not warn."""
    import warnings

    import torch

    from spar_rectify.algos.common import DataInfo
    from spar_rectify.algos.spar import SPAR

    info = DataInfo(3, 2, np.zeros(3, np.float32), np.ones(3, np.float32))
    base = torch.rand((2000, 2), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.warns(UserWarning, match=r"anchor's own.*--exploration.kind stochastic"):
        out = SPAR.data_info(TrainConfig(), info, base + 1e-5, base)[0]
    assert out.residual_bound == pytest.approx([0.05, 0.05])  # clamped up to bound_min, as before
    noisy = base + 0.1 * torch.randn((2000, 2), generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SPAR.data_info(TrainConfig(), info, noisy, base)
        SPAR.data_info(TrainConfig(residual_bound=0.5), info, base, base)  # a bound set by hand: no quantile


def test_a_reach_penalty_is_checked_and_dropped_where_there_is_nothing_to_choose():
    assert TrainConfig(lsi_reach_penalty=0.0).lsi_reach_penalty == 0.0
    with pytest.raises(ValueError, match="lsi_reach_penalty must be None or >= 0, got -0.5"):
        TrainConfig(lsi_reach_penalty=-0.5)
    # the same penalty as mu's, or no self-imitation (the penalty is LSI's): one latent policy
    assert TrainConfig(lsi_anchor_penalty=0.0, lsi_reach_penalty=0.0).lsi_reach_penalty is None
    assert TrainConfig(self_imitation=False, lsi_reach_penalty=0.0).lsi_reach_penalty is None
    # the defaults (session 21): a reach policy at kappa 0, deployed only around a weak anchor
    assert TrainConfig().lsi_reach_penalty == 0.0 and TrainConfig().reach_weak_anchor_only is True
    assert TrainConfig().reach_check_horizon == 300
    with pytest.raises(ValueError, match="reach_check_horizon must be an integer >= 0"):
        TrainConfig(reach_check_horizon=-1)
    # its deployment rule goes with it, so that configs that train and deploy alike compare equal
    one = TrainConfig(lsi_reach_penalty=None)
    assert one.reach_weak_anchor_only is False and one.reach_check_horizon == 0
    assert TrainConfig(lsi_reach_penalty=None, reach_weak_anchor_only=True) == one
    assert TrainConfig(lsi_anchor_penalty=0.0).reach_weak_anchor_only is False
    # the reach check's allowance for the model's spread: finite, and nothing without a reach check
    assert TrainConfig().reach_model_margin == 2.0 and TrainConfig(reach_model_margin=-1.0).reach_model_margin == -1.0
    # a config saved before the margin existed deployed at the threshold alone
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "reach_model_margin"}
    assert TrainConfig.from_saved(saved).reach_model_margin == 0.0
    assert TrainConfig(lsi_reach_penalty=None, reach_model_margin=2.0) == one
    assert TrainConfig(reach_check_horizon=0, reach_model_margin=2.0).reach_model_margin == 0.0
    with pytest.raises(ValueError, match="reach_model_margin must be a finite number"):
        TrainConfig(reach_model_margin=float("inf"))
    # the alpha check's allowance likewise: nothing without an alpha check
    assert TrainConfig().alpha_model_margin == 0.0 and TrainConfig(alpha_model_margin=2.0).alpha_model_margin == 2.0
    assert TrainConfig(auto_alpha=False, alpha_model_margin=2.0) == TrainConfig(auto_alpha=False)
    with pytest.raises(ValueError, match="alpha_model_margin must be a finite number"):
        TrainConfig(alpha_model_margin=float("nan"))
    # a config saved before the reach policy existed trained one latent policy, and resumes so
    reach = ("lsi_reach_penalty", "reach_weak_anchor_only", "reach_check_horizon")
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k not in reach}
    assert TrainConfig.from_saved(saved) == one


def test_a_config_saved_before_a_field_existed_means_what_that_version_trained(tmp_path):
    # A run folder written before lsi_anchor_penalty and latent_search existed (their defaults changed since).
    added = ("lsi_anchor_penalty", "lsi_penalty_origin", "latent_search")
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in added}
    (tmp_path / "config.json").write_text(json.dumps(old))
    saved = TrainConfig.load(tmp_path / "config.json")
    # not today's 1.0, "anchor_or_data", "conditional"
    assert (saved.lsi_anchor_penalty, saved.lsi_penalty_origin, saved.latent_search) == (0.0, "anchor", "box")
    assert saved == TrainConfig.from_saved(old) != TrainConfig()
    # a user's partial settings still mean today's defaults for the rest
    assert TrainConfig.from_dict({"steps": 5}).lsi_anchor_penalty == TrainConfig().lsi_anchor_penalty == 0.25


def _buffers(r, n_episodes=5):
    ends = np.flatnonzero(r["term"] | r["trunc"])
    starts = np.r_[0, ends[:-1] + 1]
    out = []
    for i, (s, e) in enumerate(zip(starts[:n_episodes], ends[:n_episodes])):
        obs = np.concatenate([r["obs"][s : e + 1], r["next"][e : e + 1]])
        out.append(
            EpisodeBuffer(
                id=i,
                observations=obs,
                actions=r["act"][s : e + 1],
                rewards=r["rew"][s : e + 1],
                terminations=r["term"][s : e + 1],
                truncations=r["trunc"][s : e + 1],
                infos={},
            )
        )
    return out


def test_load_minari_from_buffers_follows_the_n_plus_one_rule():
    r = point_rollouts(episodes=5)
    env = r["env"]
    minari.create_dataset_from_buffers(
        "test/point/buffers-v0",
        _buffers(r),
        observation_space=env.observation_space,
        action_space=env.action_space,
        data_format="hdf5",
    )
    data = load_minari("test/point/buffers-v0")
    assert len(data) == 250 and len(data.episode_returns) == 5
    np.testing.assert_array_equal(data.observations.numpy(), r["obs"])
    np.testing.assert_array_equal(data.next_observations.numpy(), r["next"])
    np.testing.assert_allclose(data.rewards.numpy(), r["rew"].astype(np.float32))
    assert data.truncations.sum() == 5 and data.terminations.sum() == 0
    np.testing.assert_allclose(data.episode_returns.sum(), r["rew"].sum(), rtol=1e-5)


def test_load_minari_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'nope/none-v0' not found at .*minari"):
        load_minari("nope/none-v0")


def test_non_box_spaces_are_refused():
    with pytest.raises(TypeError, match="needs a gymnasium.spaces.Box, got Discrete"):
        from_arrays(
            np.zeros((2, 3)),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros((2, 3)),
            np.zeros(2),
            np.ones(2),
            gym.spaces.Box(-1, 1, (3,)),
            gym.spaces.Discrete(2),
        )


def test_non_finite_values_are_reported_or_dropped():
    r = point_rollouts(episodes=2)
    env = r["env"]
    obs = r["obs"].copy()
    obs[7, 1] = np.nan
    obs[30, 0] = np.inf
    args = (obs, r["act"], r["rew"], r["next"], r["term"], r["trunc"], env.observation_space, env.action_space)
    with pytest.raises(
        ValueError, match=r"has 2 transitions with NaN/inf values \(first at transition indices \[7, 30\]\)"
    ):
        from_arrays(*args)
    data = from_arrays(*args, nonfinite="drop")
    assert len(data) == 98 and np.isfinite(data.observations.numpy()).all()


def test_cut_off_last_episode_counts_as_truncated():
    r = point_rollouts(episodes=2)
    env = r["env"]
    n = 75  # cut the second episode mid-way, neither flag set at the end
    data = from_arrays(
        r["obs"][:n],
        r["act"][:n],
        r["rew"][:n],
        r["next"][:n],
        r["term"][:n],
        r["trunc"][:n],
        env.observation_space,
        env.action_space,
    )
    assert data.truncations[-1] == 1 and len(data.episode_returns) == 2


def test_training_fields_are_the_sections_each_method_reads_and_match_the_help_tags():
    """A SPAR setting never makes a BC run non-resumable; each field's [tag] in its docstring (what
    `spar train --help` shows) names exactly the methods whose sections hold it."""
    import ast
    import inspect
    import re

    from spar_rectify import config as config_module
    from spar_rectify.algos import training_fields
    from spar_rectify.config import ALGOS, BOOKKEEPING, CommonSettings, section_fields

    tags = {}
    for section in (CommonSettings, config_module.IQLSettings, config_module.TD3BCSettings, config_module.SPARSettings):
        body = ast.parse(inspect.getsource(section)).body[0].body
        for field, doc in zip(body, body[1:]):
            if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr):
                tag = re.match(r"\[([^\]]+)\]", doc.value.value)
                words = set(re.findall(r"[a-z0-9]+", tag.group(1))) if tag else set(ALGOS)
                tags[field.target.id] = {a for a in ALGOS if a in words}
    assert tags["num_prior"] == {"spar"} and tags["expectile"] == {"iql", "spar"} and tags["lr"] == set(ALGOS)
    assert set(tags) | set(BOOKKEEPING) == set(section_fields(TrainConfig))  # every field in one section
    for algo in ALGOS:
        expected = {f for f, methods in tags.items() if algo in methods}
        assert set(training_fields(TrainConfig(algo=algo))) == expected, algo
    assert "kl_weight" not in training_fields(TrainConfig(algo="bc"))
