"""Training: determinism, resume, the CVAE, and learning on PointReach."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import envs
from spar_rectify import CallablePolicy, RectifiedPolicy, SPARRectifierWrapper, load_rectifier
from spar_rectify.config import TrainConfig
from spar_rectify.evaluation import evaluate
from spar_rectify.losses import awr_loss
from spar_rectify.trainer import Trainer, train
from tests.helpers import FAST, trainer_params
from tests.helpers_data import point_data


@pytest.fixture(scope="module")
def data():
    return point_data(episodes=100)


@pytest.fixture
def anchor(point_env):
    return CallablePolicy(envs.biased_controller, point_env.action_space, name="biased_controller")


@pytest.mark.parametrize("algo", ["bc", "td3bc", "iql", "spar"])
def test_same_seed_same_parameters_different_seed_differs(data, anchor, algo):
    cfg = TrainConfig(algo=algo, steps=40, manifold_fraction=0.25, fit_fraction=0.25, lsi_every=1, **FAST)
    runs = []
    for seed in (0, 0, 1):
        trainer = Trainer(cfg.replace(seed=seed), data, anchor if algo == "spar" else None)
        list(trainer.fit())
        runs.append(trainer_params(trainer))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("algo", ["td3bc", "iql", "spar", "spar-conditional", "spar-reach", "spar-insample"])
def test_resume_equals_uninterrupted(tmp_path, data, anchor, algo):
    search = "conditional" if algo.endswith("-conditional") else "box"  # the prior network is checkpointed too
    reach = 0.0 if algo.endswith("-reach") else None  # the reach policy, its optimiser and its generator too
    in_sample = 1.0 if algo.endswith("-insample") else 0.0  # the in-sample candidate's too
    algo = algo.split("-")[0]
    cfg = TrainConfig(algo=algo, steps=60, manifold_fraction=0.2, fit_fraction=0.2, lsi_every=1, **FAST).replace(
        latent_search=search, lsi_reach_penalty=reach, in_sample_candidate=in_sample
    )
    full = Trainer(cfg, data, anchor if algo == "spar" else None)
    list(full.fit())
    first = Trainer(cfg, data, anchor if algo == "spar" else None)
    list(first.fit(until=25))  # stops inside the fitting stage for SPAR
    first.save_state(tmp_path / "ckpt")
    second = Trainer(cfg, data, anchor if algo == "spar" else None)
    second.load_state(tmp_path / "ckpt")
    assert second.step == 25
    list(second.fit())
    a, b = trainer_params(full), trainer_params(second)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_resume_after_interruption(tmp_path, data, anchor):
    cfg = TrainConfig(algo="spar", steps=50, manifold_fraction=0.2, fit_fraction=0.2, **FAST).replace(
        checkpoint_every=20, eval_episodes=2
    )
    with pytest.raises(KeyboardInterrupt):
        _interrupting_train(cfg, data, anchor, tmp_path / "run", at=30)
    # The finally-block kept the 30 finished steps; --resume continues to the end.
    meta = json.loads((tmp_path / "run" / "checkpoint" / "train_state.json").read_text())
    assert meta["step"] == 30 and meta["train_seconds"] > 0
    with pytest.raises(FileExistsError, match="already holds a training checkpoint"):
        train(cfg, data, tmp_path / "run", anchor=anchor, env="PointReach-v0", progress=False)
    result = train(cfg, data, tmp_path / "run", anchor=anchor, env="PointReach-v0", resume=True, progress=False)
    reference = train(cfg, data, tmp_path / "ref", anchor=anchor, env="PointReach-v0", progress=False)
    assert result.steps == 50
    assert result.train_seconds > meta["train_seconds"]  # the time before the interruption counts too
    a, b = load_rectifier(result.artifact), load_rectifier(reference.artifact)
    for key, value in a.rectifier.state_dict().items():
        assert torch.equal(value, b.rectifier.state_dict()[key]), key
    assert (tmp_path / "run" / "metrics.csv").is_file() and (tmp_path / "run" / "config.json").is_file()
    assert np.array_equal(result.eval_returns, reference.eval_returns)


def test_auto_alpha_sets_the_default_the_final_evaluation_deploys(tmp_path, data, anchor, monkeypatch):
    from spar_rectify import drift
    from spar_rectify.drift import AlphaChoice, DriftReport

    cfg = TrainConfig(algo="spar", steps=30, manifold_fraction=0.2, fit_fraction=0.2, **FAST).replace(
        eval_episodes=3, auto_alpha=True, drift_model_steps=20, drift_threshold=1.5
    )
    asked = {}

    def every_alpha_drifts(
        base, rectifier, data_, model, threshold, seed, members, model_margin, gate
    ):  # test_drift.py
        asked.update(threshold=threshold, fitted=model.fit_steps, dataset=data_.name, members=members)
        asked.update(margin=model_margin)
        return AlphaChoice(0.0, {1.0: 9.0}, threshold, DriftReport({}, {}, 10, 100, model.validation_mse))

    monkeypatch.setattr(drift, "choose_alpha", every_alpha_drifts)
    result = train(cfg, data, tmp_path / "run", anchor=anchor, env="PointReach-v0", progress=False)
    assert asked == {"threshold": 1.5, "fitted": 20, "dataset": data.name, "members": True, "margin": 0.0}
    assert (tmp_path / "run" / "dynamics" / "dynamics.json").is_file()  # kept: a rerun loads it
    assert load_rectifier(result.artifact).alpha == 0.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["auto_alpha"]["alpha"] == 0.0 and summary["auto_alpha"]["excess_points"] == {"1": 9.0}
    cap = summary["bound_cap"]  # what rho's cap cut, for the harness's same_rho
    assert set(cap) >= {"share", "lifts", "lifted"} and not cap["lifts"] and not cap["lifted"]  # nothing to lift here
    # the final evaluation deployed the chosen alpha: alpha 0 executes the anchor's own actions
    assert np.array_equal(result.eval_returns, evaluate(anchor, "PointReach-v0", 3, 10_000))
    # the deployment settings do not change the weights: the finished run resumes under other values
    again = train(
        cfg.replace(auto_alpha=False),
        data,
        tmp_path / "run",
        anchor=anchor,
        env="PointReach-v0",
        resume=True,
        progress=False,
    )
    assert load_rectifier(again.artifact).alpha == 1.0 and "auto_alpha" not in json.loads(
        (tmp_path / "run" / "summary.json").read_text()
    )


@pytest.mark.parametrize("ungated_alpha", [1.0, 0.5])
def test_gate_check_deploys_the_ungated_policy_where_it_passes_at_a_larger_alpha(
    tmp_path, data, anchor, monkeypatch, ungated_alpha
):
    from spar_rectify import drift
    from spar_rectify.drift import AlphaChoice, DriftReport

    cfg = TrainConfig(algo="spar", steps=30, manifold_fraction=0.2, fit_fraction=0.2, **FAST).replace(
        eval_episodes=3,
        auto_alpha=True,
        drift_model_steps=20,
        lsi_reach_penalty=None,
        gate_check=True,
        in_sample_candidate=0.0,  # mu alone: the in-sample candidate's own checks are tested below
    )
    gates = []

    def by_gate(base, rectifier, data_, model, threshold, seed, members, model_margin, gate=None):
        gates.append(gate)  # gated: only 0.5 within; ungated: `ungated_alpha`
        alpha = 0.5 if gate is None else ungated_alpha
        return AlphaChoice(alpha, {1.0: 3.0, 0.5: 1.0}, threshold, DriftReport({}, {}, 10, 100, 0.0))

    monkeypatch.setattr(drift, "choose_alpha", by_gate)
    result = train(cfg, data, tmp_path / "run", anchor=anchor, env="PointReach-v0", progress=False)
    assert gates == [None, False]  # the ungated check runs only because the gated alpha is below 1
    deployed, choice = load_rectifier(result.artifact), json.loads((tmp_path / "run" / "summary.json").read_text())
    if ungated_alpha == 1.0:  # larger than the gated 0.5: deployed ungated, and the checkpoint says so
        assert deployed.alpha == 1.0 and deployed.gate is False
        assert choice["gate_choice"]["deployed_gate"] == "ungated" and choice["gate_choice"]["gated_alpha"] == 0.5
        ungated = RectifiedPolicy(anchor, result.artifact)
        assert ungated.corrector.gate is False and RectifiedPolicy(anchor, result.artifact, gate=True).corrector.gate
        expected = evaluate(RectifiedPolicy(anchor, result.artifact, alpha=1.0, gate=False), "PointReach-v0", 3, 10_000)
    else:  # a tie keeps the gate
        assert deployed.alpha == 0.5 and deployed.gate is None
        assert choice["gate_choice"]["deployed_gate"] == "gated"
        expected = evaluate(RectifiedPolicy(anchor, result.artifact, alpha=0.5, gate=True), "PointReach-v0", 3, 10_000)
    assert np.array_equal(result.eval_returns, expected)  # the final evaluation deploys what was chosen
    assert choice["gate_choice"]["ungated"]["alpha"] == ungated_alpha
    assert TrainConfig(auto_alpha=False, gate_check=True).gate_check is False  # nothing to extend without the check


def test_the_reach_policy_trains_beside_mu_and_leaves_mu_as_it_trains_alone(data, anchor):
    cfg = TrainConfig(algo="spar", steps=60, manifold_fraction=0.2, fit_fraction=0.2, lsi_every=1, **FAST)
    cfg = cfg.replace(lsi_reach_penalty=None)  # one latent policy
    alone, both = Trainer(cfg, data, anchor), Trainer(cfg.replace(lsi_reach_penalty=0.0), data, anchor)
    metrics = [m for _, m in both.fit()]
    list(alone.fit())
    a, b = trainer_params(alone), trainer_params(both)
    assert all(torch.equal(a[k], b[k]) for k in a)  # every shared module: the same batches, draws and updates
    reach = {k[len("reach_actor.") :]: v for k, v in b.items() if k.startswith("reach_actor.")}
    mu = {k[len("rectifier.actor.") :]: v for k, v in b.items() if k.startswith("rectifier.actor.")}
    assert reach.keys() == mu.keys() and any(not torch.equal(reach[k], mu[k]) for k in mu)
    assert {"reach_fit_loss", "reach_lsi_loss", "lsi_loss"} <= set().union(*metrics)


def test_the_in_sample_candidate_trains_beside_mu_and_the_reach_policy_and_leaves_them_as_they_train_alone(
    data, anchor
):
    cfg = TrainConfig(algo="spar", steps=60, manifold_fraction=0.2, fit_fraction=0.2, lsi_every=1, **FAST)
    cfg = cfg.replace(lsi_reach_penalty=0.0, in_sample_candidate=0.0)
    two, three = Trainer(cfg, data, anchor), Trainer(cfg.replace(in_sample_candidate=1.0), data, anchor)
    metrics = [m for _, m in three.fit()]
    list(two.fit())
    a, b = trainer_params(two), trainer_params(three)
    assert all(torch.equal(a[k], b[k]) for k in a)  # mu, the reach policy, critic, CVAE: as without it
    third = {k[len("insample_actor.") :]: v for k, v in b.items() if k.startswith("insample_actor.")}
    mu = {k[len("rectifier.actor.") :]: v for k, v in b.items() if k.startswith("rectifier.actor.")}
    assert third.keys() == mu.keys() and any(not torch.equal(third[k], mu[k]) for k in mu)
    assert {"insample_fit_loss", "insample_lsi_loss", "insample_in_sample_loss"} <= set().union(*metrics)
    assert "in_sample_loss" not in set().union(*metrics)  # mu itself takes no in-sample term
    exported = three.algo.checkpoint(three.deployment(), policy="insample")
    assert exported.config["in_sample_weight"] == 1.0 and exported.config["lsi_anchor_penalty"] == 0.25
    with pytest.raises(ValueError, match="in_sample_candidate"):
        two.algo.checkpoint(two.deployment(), policy="insample")
    with pytest.raises(ValueError, match="'mu', 'reach' or 'insample'"):
        two.algo.checkpoint(two.deployment(), policy="iql")
    with pytest.raises(ValueError, match="in_sample_candidate"):
        TrainConfig(in_sample_candidate=-1.0)


def test_the_in_sample_candidate_without_lsi_regresses_on_logged_residuals_alone_and_resumes_exactly(
    tmp_path, data, anchor
):
    cfg = TrainConfig(algo="spar", steps=60, manifold_fraction=0.2, fit_fraction=0.2, lsi_every=1, **FAST)
    cfg = cfg.replace(lsi_reach_penalty=None, in_sample_candidate=1.0)
    with_lsi = Trainer(cfg.replace(in_sample_candidate_lsi=True), data, anchor)
    alone = Trainer(cfg.replace(in_sample_candidate_lsi=False), data, anchor)
    list(with_lsi.fit())
    metrics = [m for _, m in alone.fit()]
    a, b = trainer_params(with_lsi), trainer_params(alone)
    others = [k for k in a if not k.startswith("insample_actor.")]
    assert all(torch.equal(a[k], b[k]) for k in others)  # mu, critic, CVAE: as with the LSI candidate
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("insample_actor."))
    seen = set().union(*metrics)
    assert "insample_in_sample_loss" in seen and not any(k.startswith("insample_lsi") for k in seen)
    assert any(k.startswith("lsi") for k in seen)  # mu still self-imitates
    first = Trainer(cfg.replace(in_sample_candidate_lsi=False), data, anchor)
    list(first.fit(until=35))
    first.save_state(tmp_path / "ckpt")
    second = Trainer(cfg.replace(in_sample_candidate_lsi=False), data, anchor)
    second.load_state(tmp_path / "ckpt")
    list(second.fit())
    c = trainer_params(second)
    assert all(torch.equal(b[k], c[k]) for k in b)
    assert TrainConfig().in_sample_candidate_lsi is False  # the default: the candidate alone
    # without a candidate the recipe means nothing: saved as runs saved it before the field existed
    assert TrainConfig(in_sample_candidate=0.0, in_sample_candidate_lsi=False).in_sample_candidate_lsi is True


@pytest.mark.parametrize(
    "rule, lsi_alpha, rated, preferred, replaced",
    [
        ("larger_gain", 0.5, -1.0, 0.1, True),  # a larger alpha, and the critic clearly prefers the candidate
        ("larger_gain", 0.5, -1.0, -0.1, False),  # a larger alpha, but the critic prefers LSI's
        ("larger_gain", 1.0, -1.0, None, False),  # the alphas decide: no comparison
        ("larger_gain", 0.0, 1.0, None, False),  # an anchor above its data: no comparison
        ("larger_alpha", 0.0, -1.0, None, True),
        ("larger_alpha", 0.5, -1.0, None, True),  # the candidate passes 0.75
        ("larger_alpha", 1.0, -1.0, None, False),
        ("larger_alpha", 0.0, 1.0, None, False),  # an anchor above its data
        ("lsi_at_zero", 0.0, -1.0, None, True),
        ("lsi_at_zero", 0.5, -1.0, None, False),
    ],
)
def test_the_in_sample_candidate_replaces_lsi_where_it_passes_a_larger_alpha_around_a_weak_anchor(
    tmp_path, data, anchor, monkeypatch, rule, lsi_alpha, rated, preferred, replaced
):
    import spar_rectify.trainer as trainer_mod
    from spar_rectify import critic_gain, drift
    from spar_rectify.critic_gain import GainComparison
    from spar_rectify.drift import AlphaChoice, DriftReport

    cfg = (
        TrainConfig(algo="spar", steps=30, manifold_fraction=0.2, fit_fraction=0.2, **FAST)
        .replace(
            eval_episodes=2, auto_alpha=True, drift_model_steps=20, lsi_reach_penalty=None, in_sample_candidate=1.0
        )
        .replace(in_sample_rule=rule)
    )
    checked = []

    def by_policy(base, rectifier, data_, model, threshold, seed, members, model_margin, gate=None):
        in_sample = load_rectifier(rectifier).config["in_sample_weight"] > 0
        checked.append(("in-sample" if in_sample else "lsi", gate))
        alpha = 0.75 if in_sample else lsi_alpha
        return AlphaChoice(alpha, {1.0: 5.0, 0.75: 1.0}, threshold, DriftReport({}, {}, 10, 100, 0.0))

    compared = []

    def compare(base, incumbent, challenger, obs, seed):  # the critic's paired verdict: tests/test_critic_gain.py
        compared.append((load_rectifier(incumbent).alpha, load_rectifier(challenger).alpha, seed))
        return GainComparison(0.1 + preferred, 0.1, preferred, 0.01, len(obs))

    monkeypatch.setattr(drift, "choose_alpha", by_policy)
    monkeypatch.setattr(critic_gain, "compare_deployed", compare)
    monkeypatch.setattr(trainer_mod, "_anchor_advantage", lambda trainer: rated)  # the critic's verdict on the anchor
    run = tmp_path / "run"
    result = train(cfg, data, run, anchor=anchor, env="PointReach-v0", progress=False)
    assert checked == [("lsi", None), ("in-sample", None), ("in-sample", False)]  # the candidate ungated too
    deployed, summary = load_rectifier(result.artifact), json.loads((run / "summary.json").read_text())
    choice = summary["in_sample_choice"]
    assert choice["alpha"]["alpha"] == 0.75 and choice["lsi_alpha"] == lsi_alpha and choice["anchor_advantage"] == rated
    # each compared as deployed (its own offline alpha), LSI's the incumbent, on the data's states
    assert compared == ([] if preferred is None else [(lsi_alpha, 0.75, cfg.seed)])
    assert choice["gain"] == (
        None
        if preferred is None
        else GainComparison(0.1 + preferred, 0.1, preferred, 0.01, len(data.observations)).to_dict()
    )
    if replaced:  # the candidate passes more than LSI's (under the rule), the anchor below the data: it goes out
        assert choice["deployed"] and deployed.config["in_sample_weight"] == 1.0 and deployed.alpha == 0.75
        assert load_rectifier(run / "rectifier-lsi").alpha == lsi_alpha and not (run / "rectifier-insample").exists()
        assert summary["auto_alpha"]["alpha"] == 0.75
    else:  # LSI's residual goes out, or the anchor is rated above its data: the candidate is kept beside it
        assert not choice["deployed"] and deployed.config["in_sample_weight"] == 0.0 and deployed.alpha == lsi_alpha
        assert load_rectifier(run / "rectifier-insample").alpha == 0.75 and not (run / "rectifier-lsi").exists()
    expected = evaluate(RectifiedPolicy(anchor, result.artifact), "PointReach-v0", 2, 10_000)
    assert np.array_equal(result.eval_returns, expected)  # the final evaluation deploys what was chosen
    other = load_rectifier(run / ("rectifier-lsi" if replaced else "rectifier-insample")).rectifier.state_dict()
    mine = deployed.rectifier.state_dict()
    assert all(torch.equal(mine[k], other[k]) for k in mine if not k.startswith("actor."))  # they differ in mu alone
    assert any(not torch.equal(mine[k], other[k]) for k in mine if k.startswith("actor."))
    if replaced:  # re-deployed with gate_check: LSI's is checked ungated too, and the folders are put back
        checked.clear()  # before the choice is made again
        again = train(
            cfg.replace(gate_check=True), data, run, anchor=anchor, env="PointReach-v0", resume=True, progress=False
        )
        assert checked == [("lsi", None), ("lsi", False), ("in-sample", None), ("in-sample", False)]
        assert load_rectifier(again.artifact).config["in_sample_weight"] == 1.0 and (run / "rectifier-lsi").is_dir()
        assert json.loads((run / "summary.json").read_text())["in_sample_choice"]["gate_choice"]["gated_alpha"] == 0.75


@pytest.mark.parametrize("reach_alpha", [1.0, 0.75])
def test_the_drift_check_picks_which_latent_policy_is_deployed(tmp_path, data, anchor, monkeypatch, reach_alpha):
    from spar_rectify import critic_gain, drift
    from spar_rectify.drift import AlphaChoice, DriftReport

    cfg = TrainConfig(algo="spar", steps=30, manifold_fraction=0.2, fit_fraction=0.2, **FAST).replace(
        eval_episodes=2,
        auto_alpha=True,
        drift_model_steps=20,
        lsi_reach_penalty=0.0,
        reach_weak_anchor_only=False,
        reach_check_horizon=0,
    )

    def by_penalty(base, rectifier, data_, model, threshold, seed, **members):  # the rule: tests/test_drift.py
        reach = load_rectifier(rectifier).config["lsi_anchor_penalty"] == 0.0
        alpha = reach_alpha if reach else 0.5
        return AlphaChoice(alpha, {1.0: 1.0 if alpha == 1.0 else 5.0}, threshold, DriftReport({}, {}, 10, 100, 0.0))

    monkeypatch.setattr(drift, "choose_alpha", by_penalty)
    run = tmp_path / "run"
    result = train(cfg, data, run, anchor=anchor, env="PointReach-v0", progress=False)
    deployed, other = load_rectifier(result.artifact), load_rectifier(run / "rectifier-alternative")
    want = 0.0 if reach_alpha == 1.0 else 0.25
    assert deployed.config["lsi_anchor_penalty"] == want and other.config["lsi_anchor_penalty"] == 0.25 - want
    assert deployed.alpha == (1.0 if want == 0.0 else 0.5)  # each carries its own offline alpha
    assert other.alpha == (0.5 if want == 0.0 else reach_alpha)
    assert not (run / "rectifier-reach").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["penalty_choice"]["deployed_penalty"] == want and summary["auto_alpha"]["alpha"] == deployed.alpha
    advantage = summary["penalty_choice"]["anchor_advantage"]  # the trained critic's, on the data's states
    assert math.isfinite(advantage) and summary["penalty_choice"]["weak_anchor_only"] is False
    # the two differ in their latent policies only
    a, b = deployed.rectifier.state_dict(), other.rectifier.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("actor."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("actor."))
    # without auto_alpha nothing is chosen: mu is deployed, the reach policy kept beside it
    again = train(
        cfg.replace(auto_alpha=False), data, run, anchor=anchor, env="PointReach-v0", resume=True, progress=False
    )
    assert load_rectifier(again.artifact).config["lsi_anchor_penalty"] == 0.25
    assert load_rectifier(run / "rectifier-alternative").config["lsi_anchor_penalty"] == 0.0
    if reach_alpha == 1.0:  # reach_weak_anchor_only: an anchor the critic rates above the data keeps its penalty
        import spar_rectify.trainer as trainer_mod

        def redeploy(config):  # the finished run again: only the end-of-run choice and the evaluation
            return train(config, data, run, anchor=anchor, env="PointReach-v0", resume=True, progress=False)

        for rated, want in ((1.0, 0.25), (-1.0, 0.0)):
            monkeypatch.setattr(trainer_mod, "_anchor_advantage", lambda trainer, rated=rated: rated)
            third = redeploy(cfg.replace(reach_weak_anchor_only=True))
            assert load_rectifier(third.artifact).config["lsi_anchor_penalty"] == want
            summary = json.loads((run / "summary.json").read_text())["penalty_choice"]
            assert summary["anchor_advantage"] == rated and summary["weak_anchor_only"] is True
        # reach_check_horizon: the reach policy against the penalised one it would replace, over that many steps
        seen = {}

        def compared(base, reach, penalised, penalised_alpha, data_, model, horizon, seed, gap, starts, member=None):
            if member is None:
                seen.update(
                    reach=load_rectifier(reach).config["lsi_anchor_penalty"], alpha=penalised_alpha, horizon=horizon
                )
                assert starts == 1000
            else:  # each member alone from a fifth of the starts: all five cost one more check
                assert starts == 200
            shares = {"reach": 0.1 + (gap + (member or 0)) / 100, "penalised": 0.1}
            return DriftReport({n: np.full(3, v) for n, v in shares.items()}, dict.fromkeys(shares, 0.0), 10, 3, 0.0)

        for gap, want in ((8.6, 0.25), (0.6, 0.0)):
            monkeypatch.setattr(drift, "compare_reach", lambda *a, gap=gap, **k: compared(*a, **k, gap=gap))
            fourth = redeploy(cfg.replace(reach_check_horizon=300))
            assert load_rectifier(fourth.artifact).config["lsi_anchor_penalty"] == want
            assert seen == {"reach": 0.0, "alpha": 0.5, "horizon": 300}  # mu at its own offline alpha
            summary = json.loads((run / "summary.json").read_text())["penalty_choice"]
            assert summary["reach_excess_points"] == pytest.approx(gap) and summary["reach_horizon"] == 300
            members = summary["reach_excess_members_points"]  # each member alone, on the same starts: recorded
            assert members == pytest.approx([gap + k for k in range(5)], abs=1e-3)
        # reach_model_margin: the members' spread (standard error 0.71 here) widens the bar, re-deployed, not retrained
        monkeypatch.setattr(drift, "compare_reach", lambda *a, **k: compared(*a, **k, gap=8.6))
        fifth = redeploy(cfg.replace(reach_check_horizon=300, reach_model_margin=10.0))
        assert load_rectifier(fifth.artifact).config["lsi_anchor_penalty"] == 0.0  # 8.6 <= 2 + 10 x 0.71
        summary = json.loads((run / "summary.json").read_text())["penalty_choice"]
        assert summary["reach_model_margin"] == 10.0 and summary["reach_bar_points"] == pytest.approx(9.07, abs=0.01)
    else:  # reach_rule "larger_gain": the reach policy kept out at 0.75 replaces mu where the critic clearly prefers it
        import spar_rectify.trainer as trainer_mod
        from spar_rectify.critic_gain import GainComparison

        monkeypatch.setattr(trainer_mod, "_anchor_advantage", lambda trainer: 1.0)  # a sound anchor: no matter
        asked = []

        def compare(anchor_, incumbent, challenger, obs, seed, difference):
            asked.append((load_rectifier(incumbent).config["lsi_anchor_penalty"], load_rectifier(challenger).alpha))
            return GainComparison(1.0 + difference, 1.0, difference, 0.01, 4096)

        for difference, want, alpha in ((0.21, 0.0, 0.75), (0.015, 0.25, 0.5)):
            monkeypatch.setattr(
                critic_gain, "compare_deployed", lambda *a, d=difference, **k: compare(*a, **k, difference=d)
            )
            config = cfg.replace(reach_rule="larger_gain", reach_weak_anchor_only=True)
            redeployed = train(config, data, run, anchor=anchor, env="PointReach-v0", resume=True, progress=False)
            chosen = load_rectifier(redeployed.artifact)
            assert chosen.config["lsi_anchor_penalty"] == want and chosen.alpha == alpha  # each at its own alpha
            assert asked[-1] == (0.25, 0.75)  # mu as deployed against the reach policy at its offline alpha
            choice = json.loads((run / "summary.json").read_text())["penalty_choice"]
            assert choice["deployed_penalty"] == want and choice["reach_gain"]["difference"] == difference
        assert (
            TrainConfig(lsi_reach_penalty=None, reach_rule="larger_gain").reach_rule == "alpha_one"
        )  # no reach policy


def _interrupting_train(cfg, data, anchor, run_dir, at):
    """Run `train` and raise KeyboardInterrupt from inside the loop after `at` steps."""
    import spar_rectify.trainer as trainer_mod

    original = trainer_mod.Trainer.fit

    def fit(self, until=None):
        for step, metrics in original(self, until):
            yield step, metrics
            if step == at:
                raise KeyboardInterrupt

    trainer_mod.Trainer.fit = fit
    try:
        train(cfg, data, run_dir, anchor=anchor, env="PointReach-v0", progress=False)
    finally:
        trainer_mod.Trainer.fit = original


def test_cvae_reconstructs_residuals_better_than_zero(data, anchor):
    cfg = TrainConfig(algo="spar", steps=600, manifold_fraction=0.9, fit_fraction=0.05, **FAST)
    trainer = Trainer(cfg, data, anchor)
    list(trainer.fit())
    spar = trainer.algo
    batch = trainer.sample()
    x = torch.cat([batch.obs, batch.base_action], -1)
    with torch.no_grad():
        r = spar.data_residual(batch)
        recon = spar.rect.decode(x, spar.encode(x, r)[0])
    recon_err = (recon - r).pow(2).sum(-1).mean().item()
    zero_err = r.pow(2).sum(-1).mean().item()
    assert recon_err < 0.5 * zero_err
    # project: the logged action as the support expresses it, within rho of the anchor and in [-1, 1]
    projected = spar.project(x, batch.base_action, batch.action)
    assert (projected - batch.base_action).abs().le(spar.rho + 1e-6).all() and projected.abs().le(1).all()
    err = (projected - batch.action).pow(2).sum(-1).mean().item()
    assert err < 0.5 * (batch.base_action - batch.action).pow(2).sum(-1).mean().item()
    far = spar.project(x, batch.base_action, batch.base_action + 10.0)  # clipped to rho before encoding
    assert torch.allclose(far, spar.project(x, batch.base_action, batch.base_action + spar.rho))


def test_spar_beats_biased_base_policy_within_bound(tmp_path, data, anchor):
    cfg = TrainConfig(algo="spar", steps=2500, manifold_fraction=0.2, **FAST)
    result = train(cfg, data, tmp_path / "run", anchor=anchor, env="PointReach-v0", progress=False)
    checkpoint = load_rectifier(result.artifact)
    policy = RectifiedPolicy(anchor, checkpoint)
    base_returns = evaluate(anchor, "PointReach-v0", episodes=20, seed=500)
    rect_returns = evaluate(policy, "PointReach-v0", episodes=20, seed=500)
    gap = -envs.CONTROLLER_BIAS  # the ideal residual is about this
    assert rect_returns.mean() > base_returns.mean() + 3.0, (rect_returns.mean(), base_returns.mean())
    # Through the wrapper: every residual stays inside the bound.
    env = SPARRectifierWrapper(__import__("gymnasium").make("PointReach-v0"), result.artifact, base_policy=anchor)
    obs, _ = env.reset(seed=1)
    bound = checkpoint.rectifier.residual_bound.numpy()
    residuals = []
    for _ in range(50):
        obs, _, _, _, info = env.step(anchor(obs[None])[0])
        assert np.all(np.abs(info["residual"]) <= bound + 1e-6)
        residuals.append(info["residual"])
    assert np.sign(np.mean(residuals, 0)).tolist() == np.sign(gap).tolist()


def test_spar_needs_an_anchor(data):
    with pytest.raises(ValueError, match="SPAR needs the frozen anchor policy"):
        Trainer(TrainConfig(algo="spar", steps=10), data)


def test_anchor_with_wrong_spaces_is_refused(data):
    import gymnasium as gym

    other = CallablePolicy(lambda o: np.zeros((len(o), 3)), gym.spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(ValueError, match="base policy acts in"):
        Trainer(TrainConfig(algo="spar", steps=10), data, other)


def test_resume_with_other_config_is_refused_naming_the_fields(tmp_path, data, anchor):
    t = Trainer(TrainConfig(algo="bc", steps=10, **FAST), data)
    list(t.fit())
    t.save_state(tmp_path / "ck")
    other = Trainer(TrainConfig(algo="bc", steps=10, **FAST).replace(gamma=0.99), data)
    with pytest.raises(ValueError, match=r"other settings \(gamma: 0.9 in the checkpoint, 0.99 now\)"):
        other.load_state(tmp_path / "ck")
    # A larger step budget extends a run; bookkeeping settings may change too.
    longer = Trainer(TrainConfig(algo="bc", steps=20, **FAST).replace(log_every=5), data)
    longer.load_state(tmp_path / "ck")
    assert longer.step == 10 and len(list(longer.fit())) == 10
    s = Trainer(TrainConfig(algo="spar", steps=10, **FAST), data, anchor)
    list(s.fit())
    s.save_state(tmp_path / "spar")
    with pytest.raises(ValueError, match="a SPAR run cannot be extended"):
        Trainer(TrainConfig(algo="spar", steps=20, **FAST), data, anchor).load_state(tmp_path / "spar")


def test_a_baseline_resumes_when_only_other_methods_settings_differ(tmp_path, data):
    t = Trainer(TrainConfig(algo="iql", steps=10, **FAST), data)
    list(t.fit(until=5))
    t.save_state(tmp_path / "ck")
    # SPAR's and TD3+BC's settings do not change what IQL trains: the run resumes.
    resumed = Trainer(TrainConfig(algo="iql", steps=10, **FAST).replace(num_prior=2, td3bc_alpha=1.0), data)
    resumed.load_state(tmp_path / "ck")
    assert resumed.step == 5
    # IQL's own settings do.
    with pytest.raises(ValueError, match=r"expectile: 0.7 in the checkpoint, 0.9 now"):
        Trainer(TrainConfig(algo="iql", steps=10, **FAST).replace(expectile=0.9), data).load_state(tmp_path / "ck")


def test_a_checkpoint_from_before_a_new_config_field_still_resumes(tmp_path, data):
    import json

    from spar_rectify.bundle import meta_digest

    t = Trainer(TrainConfig(algo="bc", steps=10, **FAST), data)
    list(t.fit(until=5))
    t.save_state(tmp_path / "ck")
    path = tmp_path / "ck" / "train_state.json"
    meta = json.loads(path.read_text())
    del meta["config"]["lsi_prior_weight"]  # a field added after this checkpoint was written
    meta["meta_sha256"] = meta_digest(meta)
    path.write_text(json.dumps(meta))
    resumed = Trainer(TrainConfig(algo="bc", steps=10, **FAST), data)
    resumed.load_state(tmp_path / "ck")
    assert resumed.step == 5


def test_cosine_schedule_decays_mus_learning_rate_over_self_imitation_only(data, anchor):
    cfg = TrainConfig(algo="spar", steps=40, manifold_fraction=0.25, fit_fraction=0.25, lsi_every=1, **FAST)
    lrs = {}
    for schedule in ("constant", "cosine"):
        t = Trainer(cfg.replace(actor_lr_schedule=schedule), data, anchor)
        seen = []
        for _ in t.fit():
            seen.append(t.algo.actor_opt.param_groups[0]["lr"])
        lrs[schedule] = seen
    assert all(lr == cfg.lr for lr in lrs["constant"])
    cosine = lrs["cosine"]
    assert all(lr == cfg.lr for lr in cosine[:21])  # the CVAE, the fit, and the first LSI step: full rate
    assert all(a > b for a, b in zip(cosine[20:], cosine[21:]))  # then strictly decaying
    assert cosine[-1] < 0.01 * cfg.lr


def test_the_candidates_cosine_schedule_decays_its_rate_alone_and_leaves_mu_as_it_trains(data, anchor):
    cfg = TrainConfig(algo="spar", steps=40, manifold_fraction=0.25, fit_fraction=0.25, lsi_every=1, **FAST)
    cfg = cfg.replace(lsi_reach_penalty=None, in_sample_candidate=1.0, in_sample_candidate_lsi=False)
    constant, cosine = Trainer(cfg, data, anchor), Trainer(cfg.replace(in_sample_lr_schedule="cosine"), data, anchor)
    list(constant.fit())
    rates = []
    for _ in cosine.fit():
        rates.append((cosine.algo.actor_opt.param_groups[0]["lr"], cosine.algo.insample_opt.param_groups[0]["lr"]))
    assert all(mu == cfg.lr for mu, _ in rates)  # mu: constant throughout
    candidate = [lr for _, lr in rates]
    assert all(a > b for a, b in zip(candidate[20:], candidate[21:])) and candidate[-1] < 0.01 * cfg.lr
    a, b = trainer_params(constant), trainer_params(cosine)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("insample_actor."))  # mu, critic, CVAE
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("insample_actor."))
    with pytest.raises(ValueError, match="in_sample_lr_schedule"):
        TrainConfig(in_sample_lr_schedule="linear")


def test_the_candidate_can_regress_its_decoded_residual_and_that_fits_the_logged_residuals_closer(data, anchor):
    cfg = TrainConfig(algo="spar", steps=400, manifold_fraction=0.25, fit_fraction=0.0, lsi_every=1, **FAST)
    cfg = cfg.replace(lsi_reach_penalty=None, in_sample_candidate=1.0, in_sample_candidate_lsi=False)
    latent, residual = Trainer(cfg, data, anchor), Trainer(cfg.replace(in_sample_target="residual"), data, anchor)
    list(latent.fit())
    list(residual.fit())
    a, b = trainer_params(latent), trainer_params(residual)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("insample_actor."))  # mu, critic, CVAE
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("insample_actor."))

    def decoded_error(trainer) -> float:  # the in-sample term's weighted error, measured on the decoded residual
        algo = trainer.algo
        trainer.generator.manual_seed(3)  # the same states for both
        batch = trainer.sample()
        x = torch.cat([batch.obs, batch.base_action], -1)
        with torch.no_grad():
            _, decoded = algo.residual_policy(x, algo.insample_actor)
            advantage = algo.critic.q_min(batch.obs, batch.action) - algo.critic.value(batch.obs)
            inv_std = 1.0 / algo.rect.residual_std
            residual = algo.data_residual(batch)
            return float(awr_loss(decoded * inv_std, residual * inv_std, advantage, cfg.awr_temperature))

    assert decoded_error(residual) < 0.95 * decoded_error(latent)  # measured: 3.73 against 4.15
    with pytest.raises(ValueError, match="in_sample_target"):
        TrainConfig(in_sample_target="action")


def test_logged_metrics_average_over_the_steps_that_report_them(tmp_path, data, anchor):
    cfg = TrainConfig(algo="spar", steps=60, manifold_fraction=0.0, fit_fraction=0.0, **FAST).replace(
        log_every=30, lsi_every=3
    )
    train(cfg, data, tmp_path / "run", anchor=anchor, env=None, progress=False)
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    weights = [float(r["lsi_best_weight"]) for r in rows if r.get("lsi_best_weight")]
    # A softmax over 12 candidates: the best weight is at least 1/12 on every LSI step.
    assert len(weights) == 2 and all(1 / 12 - 1e-6 <= w <= 1.0 for w in weights)


@pytest.mark.parametrize(
    "ablation",
    [
        dict(use_latent=False),
        dict(self_imitation=False),
        dict(anchored=False),
        dict(residual_bound=0.2),
        dict(fit_to="anchor", anchor_candidate=True, lsi_prior_weight=1.0, lsi_normalize="none", lsi_temperature=0.3),
        dict(use_latent=False, fit_to="anchor", anchor_candidate=True),
        dict(lsi_improvements_only=True, num_prior=8, lsi_temperature=0.3),
        dict(lsi_improvements_only=False, num_prior=2),  # the specification's LSI
        dict(lsi_agreement=True),
        dict(lsi_agreement=True, lsi_improvements_only=False),
        dict(in_sample_weight=1.0),
        dict(in_sample_weight=1.0, use_latent=False),
        dict(latent_search="conditional", kl_weight=0.02),
    ],
)
def test_ablations_train_and_deploy(tmp_path, data, anchor, ablation):
    cfg = TrainConfig(algo="spar", steps=30, manifold_fraction=0.3, fit_fraction=0.2, lsi_every=1, **FAST).replace(
        **ablation
    )
    trainer = Trainer(cfg, data, anchor)
    seen = set()
    for _, metrics in trainer.fit():
        seen |= set(metrics)
        if cfg.lsi_improvements_only and "lsi_q_gain" in metrics:  # the target never loses value
            assert float(metrics["lsi_q_gain"]) >= -1e-5
    expected = {"lsi_loss"} if cfg.self_imitation else {"plas_loss"}
    assert expected <= seen and ("cvae_recon" in seen) == cfg.use_latent
    checkpoint = load_rectifier(trainer.export(tmp_path / "rect"))
    bound = checkpoint.rectifier.residual_bound.numpy()
    if "residual_bound" in ablation:
        assert np.allclose(bound, 0.2)
    if not cfg.anchored:
        assert np.allclose(bound, 1.0) and not checkpoint.rectifier.anchored
    policy = RectifiedPolicy(anchor, checkpoint)
    assert np.isfinite(evaluate(policy, "PointReach-v0", episodes=1)).all()


@pytest.mark.parametrize("fit_to", ["data", "anchor"])
def test_fit_to_sets_where_the_rectifier_starts(data, point_env, fit_to):
    # An anchor offset by +0.3 from the data's actions: the data's typical residual is about -0.3.
    offset = CallablePolicy(lambda o: np.clip(envs.biased_controller(o) + 0.3, -1, 1), point_env.action_space)
    cfg = TrainConfig(algo="spar", steps=600, manifold_fraction=0.5, fit_fraction=0.49, fit_to=fit_to, **FAST)
    trainer = Trainer(cfg, data, offset)
    list(trainer.fit())  # the CVAE and the fit only: no self-imitation step
    with torch.no_grad():
        residual = trainer.algo.rect(data.observations[:2000], data.base_actions[:2000]).mean(0)
    if fit_to == "data":
        assert torch.all(residual < -0.15), residual  # it reproduces the data's typical action
    else:
        assert torch.all(residual.abs() < 0.1), residual  # it starts as the base policy


def test_conditional_search_keeps_every_candidate_in_the_states_prior_region(data, anchor):
    cfg = TrainConfig(algo="spar", steps=60, manifold_fraction=0.5, fit_fraction=0.0, lsi_every=1, **FAST).replace(
        latent_search="conditional", search_width=1.5, num_prior=4, search_keeps_anchor=False
    )
    trainer = Trainer(cfg, data, anchor)
    seen = set()
    for _, metrics in trainer.fit():
        seen |= set(metrics)
    assert "prior_kl" in seen and "encoder" in trainer.algo.modules() and "prior" in trainer.algo.modules()
    algo, b = trainer.algo, trainer.sample()
    x = torch.cat([b.obs, b.base_action], -1)[:16]
    far = torch.full((16, algo.rect.latent_dim), 5.0)  # mu far outside: clipped into the region too
    cands = algo._candidates(x, far, algo.data_residual(b)[:16])
    with torch.no_grad():
        centre, log_std = algo.conditional_prior(x)
    low, high = (centre - 1.5 * log_std.exp()).unsqueeze(1), (centre + 1.5 * log_std.exp()).unsqueeze(1)
    assert (cands >= low - 1e-5).all() and (cands <= high + 1e-5).all() and cands.abs().max() <= cfg.latent_box
    assert cfg.replace(use_latent=False).latent_search == "box"  # no latent to search: the box ablation


@pytest.mark.parametrize("keeps_anchor", [True, False])
def test_conditional_search_region_takes_in_the_anchors_latent_unless_switched_off(data, anchor, keeps_anchor):
    cfg = TrainConfig(algo="spar", steps=30, manifold_fraction=0.5, fit_fraction=0.0, lsi_every=1, **FAST).replace(
        latent_search="conditional", search_width=0.01, anchor_candidate=True, search_keeps_anchor=keeps_anchor
    )
    trainer = Trainer(cfg, data, anchor)
    list(trainer.fit())
    algo, b = trainer.algo, trainer.sample()
    x = torch.cat([b.obs, b.base_action], -1)[:16]
    with torch.no_grad():
        cands = algo._candidates(x, algo.rect.latent(x), algo.data_residual(b)[:16])
        low, high = algo.search_region(x)
        centre, log_std = algo.conditional_prior(x)
    anchor_z = algo.anchor_latent(x)
    assert ((anchor_z - centre).abs() > 0.01 * log_std.exp()).any()  # the narrow region alone excludes it
    # the search keeps the base action available exactly when the switch is on
    assert torch.equal(cands[:, -1], anchor_z) is keeps_anchor
    assert (cands >= low.unsqueeze(1) - 1e-6).all() and (cands <= high.unsqueeze(1) + 1e-6).all()


def test_anchor_candidate_is_scored(data, anchor):
    cfg = TrainConfig(
        algo="spar", steps=20, manifold_fraction=0.5, fit_fraction=0.0, anchor_candidate=True, lsi_every=1, **FAST
    )
    trainer = Trainer(cfg, data, anchor)
    list(trainer.fit())
    b = trainer.sample()
    x = torch.cat([b.obs[:8], b.base_action[:8]], -1)
    algo = trainer.algo
    cands = algo._candidates(x, algo.rect.latent(x).detach(), algo.data_residual(b)[:8])
    assert cands.shape[1] == 1 + cfg.num_candidates + 1 + cfg.num_prior + 1
    assert torch.allclose(cands[:, -1], algo.anchor_latent(x))


def test_ctrl_c_stops_at_a_step_boundary_and_resumes_bit_identically(tmp_path, data, monkeypatch, capsys):
    import os
    import signal

    from spar_rectify.algos import ALGORITHMS
    from spar_rectify.bundle import read_bundle

    cfg = TrainConfig(algo="iql", steps=20, **FAST)
    train(cfg, data, tmp_path / "ref", progress=False)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when launched in the background
    calls = {"n": 0}
    update = ALGORITHMS["iql"].update

    def interrupted_update(self, batch, step):
        calls["n"] += 1
        if calls["n"] == 8:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of step 8
        return update(self, batch, step)

    monkeypatch.setattr(ALGORITHMS["iql"], "update", interrupted_update)
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 8"):
        train(cfg, data, tmp_path / "run", progress=False)
    assert "interrupted at step 8, checkpoint saved" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    monkeypatch.setattr(ALGORITHMS["iql"], "update", update)
    train(cfg, data, tmp_path / "run", resume=True, progress=False)
    ref, run = (
        read_bundle(tmp_path / "ref" / "checkpoint", "train_state"),
        read_bundle(tmp_path / "run" / "checkpoint", "train_state"),
    )
    assert run[0]["step"] == ref[0]["step"] == 20 and set(run[1]) == set(ref[1])
    for key, value in ref[1].items():
        assert torch.equal(value, run[1][key]), key


def test_a_checkpoint_write_killed_between_its_moves_leaves_a_complete_bundle(tmp_path, data, monkeypatch):
    import spar_rectify.bundle as bundle

    trainer = Trainer(TrainConfig(algo="bc", steps=10, **FAST), data)
    list(trainer.fit(until=5))
    trainer.save_state(tmp_path / "ck")
    list(trainer.fit())
    real, calls = bundle.os.replace, {"n": 0}

    def killed(src, dst):
        calls["n"] += 1
        if calls["n"] == 4:  # staged weights and JSON written, weights moved in: the kill comes now
            raise SystemExit("killed")
        return real(src, dst)

    monkeypatch.setattr(bundle.os, "replace", killed)
    with pytest.raises(SystemExit):
        trainer.save_state(tmp_path / "ck")
    monkeypatch.setattr(bundle.os, "replace", real)
    resumed = Trainer(TrainConfig(algo="bc", steps=10, **FAST), data)
    with pytest.warns(UserWarning, match="loaded the complete bundle an interrupted save left"):
        resumed.load_state(tmp_path / "ck")
    assert resumed.step == 10
    for key, value in trainer_params(trainer).items():
        assert torch.equal(value, trainer_params(resumed)[key]), key


def test_in_sample_term_trains_mu_on_every_step_between_lsi_updates(data, anchor):
    cfg = TrainConfig(algo="spar", steps=40, manifold_fraction=0.25, fit_fraction=0.25, lsi_every=1000, **FAST)

    def actor_after(config):
        trainer = Trainer(config, data, anchor)
        list(trainer.fit(until=21))  # stage (iii) starts at step 20 with one LSI update
        before = [p.clone() for p in trainer.algo.rect.actor.parameters()]
        metrics = [m for _, m in trainer.fit(until=25)]  # no LSI update in these steps
        after = list(trainer.algo.rect.actor.parameters())
        return any(not torch.equal(a, b) for a, b in zip(before, after)), metrics

    moved, metrics = actor_after(cfg)
    assert not moved and all("in_sample_loss" not in m for m in metrics)
    moved, metrics = actor_after(cfg.replace(in_sample_weight=1.0))
    assert moved and all("in_sample_loss" in m for m in metrics)
    with pytest.raises(ValueError, match="in_sample_weight must be >= 0"):
        cfg.replace(in_sample_weight=-1.0)


def lsi_targets(algo, x, b, critic, configs) -> list[torch.Tensor]:
    """The weighted LSI regression target per state, (n, L), that `algo._improve` builds under each of
    `configs` with `critic` (obs, actions) -> (B,) standing in for the conservative min-Q."""
    seen, targets = {}, []

    def capture(out, cands, weights):
        seen["target"] = (weights.unsqueeze(-1) * cands).sum(1)
        return (out * 0).sum()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(algo.critic, "q_min", critic)
        mp.setattr("spar_rectify.algos.spar.lsi_loss", capture)
        for cfg in configs:
            algo.config = cfg
            algo._improve(x, b)
            targets.append(seen["target"])
    return targets


@pytest.mark.parametrize("search", ["box", "conditional"])
def test_anchor_penalty_moves_the_lsi_target_toward_the_anchor_against_an_optimistic_critic(data, anchor, search):
    cfg = TrainConfig(algo="spar", steps=20, manifold_fraction=0.5, fit_fraction=0.0, lsi_every=1, **FAST)
    cfg = cfg.replace(latent_search=search, anchor_candidate=True, lsi_states=32, lsi_penalty_origin="anchor")
    trainer = Trainer(cfg, data, anchor)
    list(trainer.fit())
    algo, b = trainer.algo, trainer.sample()
    x = torch.cat([b.obs, b.base_action], -1)[:32]
    anchor_z = algo.anchor_latent(x)
    with torch.no_grad():
        scale = algo.conditional_prior(x)[1].exp() if search == "conditional" else torch.ones_like(anchor_z)
    probe = torch.randn(anchor_z.shape[0], 3, anchor_z.shape[1])
    moved = anchor_z.unsqueeze(1) + probe * scale.unsqueeze(1)  # probe is in units of the state's spread
    assert torch.allclose(algo.anchor_distance(x, moved), probe.norm(dim=-1), atol=1e-4)
    assert algo.anchor_distance(x, anchor_z.unsqueeze(1)).abs().max() < 1e-6

    # A critic whose value grows with the distance from the anchor (over-optimistic far from it).
    def optimistic(obs, actions):
        return (actions - b.base_action[:32].repeat_interleave(actions.shape[0] // 32, 0)).pow(2).sum(-1)

    configs = [cfg.replace(lsi_anchor_penalty=kappa) for kappa in (0.0, 50.0)]
    free, pulled = (
        algo.anchor_distance(x, t.unsqueeze(1)).mean() for t in lsi_targets(algo, x, b, optimistic, configs)
    )
    assert pulled < 0.5 * free, (free, pulled)
    with pytest.raises(ValueError, match="lsi_anchor_penalty must be >= 0"):
        cfg.replace(lsi_anchor_penalty=-1.0)


def test_penalty_from_anchor_or_data_lets_lsi_reach_the_logged_action(data, point_env):
    # an anchor 0.3 off the data's actions, so the logged residual's latent is not the anchor's
    offset = CallablePolicy(lambda o: np.clip(envs.biased_controller(o) + 0.3, -1, 1), point_env.action_space)
    cfg = TrainConfig(algo="spar", steps=400, manifold_fraction=0.95, fit_fraction=0.0, lsi_every=1, **FAST)
    cfg = cfg.replace(
        latent_search="conditional", anchor_candidate=True, lsi_states=32, lsi_anchor_penalty=50.0, lsi_temperature=0.1
    )
    trainer = Trainer(cfg, data, offset)
    list(trainer.fit())
    algo, b = trainer.algo, trainer.sample()
    x, logged = torch.cat([b.obs, b.base_action], -1)[:32], algo.data_residual(b)[:32]
    logged_z = algo.encode(x, logged)[0].detach().clamp(-cfg.latent_box, cfg.latent_box).unsqueeze(1)
    assert algo.anchor_distance(x, logged_z, logged).abs().max() < 1e-5  # 0 at the origin it is given

    def likes_the_logged_action(obs, actions):  # a critic right about the data: the logged action is best
        k = actions.shape[0] // 32
        return -(actions - b.action[:32].repeat_interleave(k, 0)).pow(2).sum(-1)

    configs = [cfg.replace(lsi_penalty_origin=origin) for origin in ("anchor", "anchor_or_data")]
    targets = lsi_targets(algo, x, b, likes_the_logged_action, configs)
    from_anchor, from_either = (algo.anchor_distance(x, t.unsqueeze(1), logged).mean() for t in targets)
    assert from_either < 0.5 * from_anchor, (from_anchor, from_either)
