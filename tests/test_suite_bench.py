"""The suite harness's bookkeeping: job order, the results table and the combined record file."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import suite_bench


def record(dataset, method, seed, score, viol=0.01):
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "steps": 100,
        "normalized_score": score,
        "return": 10.0 * score,
        "support_violation_rate": viol,
        "support_ratio_median": 0.9,
        "train_seconds": 1.0,
    }


def test_jobs_put_bc_first_and_the_medium_policy_on_every_dataset(tmp_path):
    tier = {
        "datasets": ["spar/hopper/medium-v0", "spar/hopper/medium-expert-v0"],
        "seeds": [0, 1],
        "steps": 100,
        "episodes": 2,
    }
    first, second, third = suite_bench.jobs_for(tier, tmp_path)
    assert {j.method for j in first} == {"bc"} and len(first) == 4  # SPAR's anchors exist before SPAR runs
    methods = {(j.dataset, j.method) for j in second}
    assert ("spar/hopper/medium-v0", "medium-rectified") in methods
    assert ("spar/hopper/medium-expert-v0", "medium-rectified") in methods  # can it travel as far as the data?
    # The tuned rectifiers come last (they reuse trained ones), one per rectifier run.
    assert {(j.dataset, j.spec.tuned_from) for j in third} == {
        (d, m) for d, m in methods if m in ("spar", "medium-rectified")
    }
    assert all(j.steps == 100 and j.episodes == 2 for j in first + second + third)  # one budget for every method
    job = third[0]
    assert not suite_bench.tuned_ready(job)
    folder = tmp_path / job.dataset.replace("/", "_") / job.spec.tuned_from / "seed0" / "rectifier"
    folder.mkdir(parents=True)
    (folder / "rectifier.json").write_text("{}")
    assert suite_bench.tuned_ready(job)


def test_summary_table_has_mean_and_std_per_method(tmp_path):
    runs = [
        record("spar/hopper/medium-v0", "bc", 0, 40.0),
        record("spar/hopper/medium-v0", "bc", 1, 50.0),
        {
            **record("spar/hopper/medium-v0", "spar", 0, 60.0, viol=0.02),
            "state_violation_rate": 0.03,
            "config": suite_bench.job_config("spar", 100, 0).to_dict(),  # today's defaults
        },
        # trained at other settings than today's defaults, or before records carried their config
        {
            **record("spar/hopper/medium-v0", "spar", 1, 99.0),
            "config": suite_bench.job_config("spar", 100, 1, {"kl_weight": 0.1}).to_dict(),
        },
        record("spar/hopper/medium-v0", "medium-rectified", 2, 99.0),
    ]
    assert [suite_bench.stale(r) for r in runs] == [False, False, False, True, True]
    # the harness trains the stale ones again (their records are replaced when they land)
    assert suite_bench.finished(runs) == {suite_bench.record_key(r) for r in runs[:3]}
    table = suite_bench.summarise(runs, tmp_path / "t.md", tmp_path / "t.png")
    row = [line for line in table.splitlines() if line.startswith("| spar/hopper/medium-v0 ")][0]
    assert "45.0 ± 5.0 (viol 1.0%, n=2)" in row and "60.0 ± 0.0 (viol 2.0%, states 3.0%, n=1)" in row
    assert "99.0" not in row and "Left out: 2 record(s)" in table and "medium-rectified seed 2" in table
    # every method a column and every dataset of the tier a row: what did not run says so
    assert (
        "| stale only |" in row
        and "| not run |" in row
        and table.splitlines()[0].count("|") == len(suite_bench.METHODS) + 2
    )
    full = suite_bench.summarise(runs, tmp_path / "t.md", tmp_path / "t.png", ["spar/hopper/medium-expert-v0"], 3)
    assert "n=2 of 3" in full and "| spar/hopper/medium-expert-v0 | not run |" in full
    # main's table counts the tier's seeds, not the subset one command ran (--seeds 2 once wrote "n=3 of 1")
    matrix = suite_bench.table_matrix("full")
    assert matrix == {"datasets": suite_bench.TIERS["full"]["datasets"], "seeds": 3}
    assert suite_bench.table_matrix("full", variant="b05") == {}
    assert (tmp_path / "t.md").read_text().count("|") > 6
    pytest.importorskip("matplotlib")
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_combined_file_tags_every_record_with_its_tier(tmp_path):
    (tmp_path / "suite_quick.json").write_text(json.dumps({"runs": [record("spar/hopper/medium-v0", "bc", 0, 1.0)]}))
    (tmp_path / "suite_full.json").write_text(json.dumps({"runs": [record("spar/hopper/medium-v0", "iql", 2, 3.0)]}))
    out = json.loads(suite_bench.combine(tmp_path).read_text())
    assert [(r["tier"], r["method"]) for r in out["runs"]] == [("quick", "bc"), ("full", "iql")]
    assert all(set(out["fields"]) <= set(r) for r in out["runs"])  # the record fields, all present
    # A variant's file joins the combined file, its records still marked as the variant's.
    variant = {**record("spar/hopper/medium-v0", "spar", 0, 5.0), "variant": "b", "overrides": {"bound_max": 0.5}}
    (tmp_path / "suite_full_b.json").write_text(json.dumps({"runs": [variant]}))
    out = json.loads(suite_bench.combine(tmp_path).read_text())
    assert [(r["tier"], r.get("variant")) for r in out["runs"]] == [("quick", None), ("full", None), ("full", "b")]


def test_variant_overrides_are_parsed_checked_and_carried_by_every_job(tmp_path):
    overrides = suite_bench.parse_overrides(["bound_max=0.5", "lsi-normalize=batch", "hidden=[64, 64]"])
    assert overrides == {"bound_max": 0.5, "lsi_normalize": "batch", "hidden": [64, 64]}
    with pytest.raises(ValueError, match="bound_maxx"):
        suite_bench.parse_overrides(["bound_maxx=0.5"])  # a typo fails before any training
    with pytest.raises(ValueError, match="KEY=VALUE"):
        suite_bench.parse_overrides(["bound_max"])
    with pytest.raises(ValueError, match="bound_max"):
        suite_bench.parse_overrides(["bound_max=-1"])  # TrainConfig's own validation
    assert suite_bench.parse_overrides(["lsi_improvements_only=True"]) == {"lsi_improvements_only": True}
    tier = {"datasets": ["spar/hopper/medium-v0"], "seeds": [0], "steps": 100, "episodes": 2}
    jobs = [j for wave in suite_bench.jobs_for(tier, tmp_path, "b05", {"bound_max": 0.5}) for j in wave]
    assert jobs and all(j.variant == "b05" and j.overrides == {"bound_max": 0.5} for j in jobs)
    assert all(j.variant is None and j.overrides == {} for wave in suite_bench.jobs_for(tier, tmp_path) for j in wave)


def test_variant_flags_must_come_together():
    for argv in (
        ["quick", "--variant", "b05"],
        ["quick", "--set", "bound_max=0.5"],
        ["quick", "--variant", "a/b", "--set", "bound_max=0.5"],
        ["quick", "--variant", "x", "--set", "nope=1"],
    ):
        with pytest.raises(SystemExit):
            suite_bench.main(argv)


def test_saving_a_record_keeps_records_written_by_other_processes(tmp_path):
    out = tmp_path / "suite_full.json"
    suite_bench.save_record(out, "full", record("spar/hopper/medium-v0", "bc", 0, 40.0))
    # Another harness process appends its own run to the file in the meantime.
    other = json.loads(out.read_text())
    other["runs"].append(record("spar/hopper/medium-replay-v0", "iql", 0, 20.0))
    out.write_text(json.dumps(other))
    runs = suite_bench.save_record(out, "full", record("spar/hopper/medium-v0", "spar", 0, 50.0))
    assert [(r["dataset"].split("/")[-1], r["method"]) for r in runs] == [
        ("medium-v0", "bc"),
        ("medium-replay-v0", "iql"),
        ("medium-v0", "spar"),
    ]
    # A re-evaluation replaces the run in place of duplicating it, and keeps its training time.
    fresh = {**record("spar/hopper/medium-v0", "bc", 0, 40.0), "state_violation_rate": 0.0, "train_seconds": 0.5}
    runs = suite_bench.save_record(out, "full", fresh, keep_train_seconds=True)
    bc = [r for r in runs if r["method"] == "bc"]
    assert len(bc) == 1 and bc[0]["state_violation_rate"] == 0.0 and bc[0]["train_seconds"] == 1.0


def test_methods_are_typed_and_say_what_they_train_and_around_what(tmp_path):
    m = suite_bench.METHODS
    assert m["spar"].algo == "spar" and m["spar"].anchor == "bc"
    assert m["medium-rectified"].algo == "spar" and m["medium-rectified"].anchor == "medium"
    assert m["medium-raw"].algo is None and m["iql"].anchor is None
    assert m["medium-rectified-tuned"].run_method == "medium-rectified"
    # a record of an untrained policy stands for 0 gradient steps, whatever the tier's budget
    raw = suite_bench.Job("spar/hopper/medium-v0", "medium-raw", 0, 100, 2, str(tmp_path))
    assert suite_bench.record_key(raw) == ("spar/hopper/medium-v0", "medium-raw", 0, 0)
    assert suite_bench.record_key({**record("spar/hopper/medium-v0", "medium-raw", 0, 1.0), "steps": 0}) == (
        suite_bench.record_key(raw)
    )
    with pytest.raises(ValueError, match="has no anchor"):
        suite_bench.anchor_policy(tmp_path, "spar/hopper/medium-v0", "iql", 0)
    with pytest.raises(SystemExit):  # a --suite without the suite's policies is refused before any job
        suite_bench.main(["quick", "--suite", str(tmp_path)])


def test_a_run_folder_left_by_older_defaults_is_set_aside_not_resumed(tmp_path):
    run = tmp_path / "spar_hopper_medium-v0" / "spar" / "seed0"
    run.mkdir(parents=True)
    old = suite_bench.job_config("spar", 100, 0, {"num_prior": 2}).to_dict()
    (run / "config.json").write_text(json.dumps(old))
    assert suite_bench.set_aside_stale(run, suite_bench.job_config("spar", 100, 0, {"num_prior": 2})) is None
    moved = suite_bench.set_aside_stale(run, suite_bench.job_config("spar", 100, 0))
    assert moved == run.with_name("seed0.stale-0") and (moved / "config.json").is_file() and not run.exists()
    # bookkeeping alone (how often it logs or checkpoints) is no reason to retrain
    run.mkdir()
    (run / "config.json").write_text(json.dumps({**old, "num_prior": 8, "log_every": 5}))
    assert suite_bench.set_aside_stale(run, suite_bench.job_config("spar", 100, 0)) is None


def test_a_baseline_record_stays_current_when_spar_defaults_change():
    # A BC record written when SPAR's num_prior default was 2 (its config carries every field).
    bc = {**record("spar/hopper/medium-v0", "bc", 0, 40.0), "steps": 100}
    bc["config"] = suite_bench.job_config("bc", 100, 0, {"num_prior": 2}).to_dict()
    assert not suite_bench.stale(bc)
    assert suite_bench.stale({**bc, "config": {**bc["config"], "lr": 1e-3}})  # its own settings count
    spar = {**record("spar/hopper/medium-v0", "spar", 0, 40.0), "steps": 100, "config": bc["config"] | {"algo": "spar"}}
    assert suite_bench.stale(spar)
    # A SPAR record written before lsi_anchor_penalty existed trained without it: stale at today's kappa.
    today = suite_bench.job_config("spar", 100, 0).to_dict()
    assert not suite_bench.stale({**spar, "config": today})
    assert suite_bench.stale({**spar, "config": {k: v for k, v in today.items() if k != "lsi_anchor_penalty"}})


def test_a_failed_typed_job_is_reported_not_raised():
    from spar_rectify.sweep import _brief

    job = suite_bench.Job("spar/hopper/medium-v0", "spar", 1, 100, 2, "w")
    assert _brief(job) == {"dataset": "spar/hopper/medium-v0", "method": "spar", "seed": 1, "overrides": {}}
    assert _brief({"dataset": "d", "seed": 0, "run_dir": "x"}) == {"dataset": "d", "seed": 0}


def test_a_finished_bc_run_trains_again_when_spar_needs_its_policy_and_the_folder_is_gone(tmp_path):
    tier = {"datasets": ["spar/hopper/medium-v0"], "seeds": [0], "steps": 100, "episodes": 2}
    first, second, _ = suite_bench.jobs_for(tier, tmp_path)
    bc = first[0]
    spar = next(j for j in second if j.method == "spar")
    iql = next(j for j in second if j.method == "iql")
    # A fresh checkout: bc's record exists, its policy folder does not, and SPAR still has to run.
    assert suite_bench.anchor_missing(bc, [spar])
    assert not suite_bench.anchor_missing(bc, [iql])  # nothing pending needs the bc policy
    other_seed = suite_bench.Job(
        spar.dataset, "spar", 1, **{k: getattr(spar, k) for k in ("steps", "episodes", "work")}
    )
    assert not suite_bench.anchor_missing(bc, [other_seed])  # SPAR of another seed has its own anchor
    (bc.run_dir() / "policy").mkdir(parents=True)
    assert not suite_bench.anchor_missing(bc, [spar])  # the policy is there: the record stands


def test_the_readme_table_shows_todays_records_and_says_what_is_not_run():
    import where_spar_stands

    def today(seed):
        return suite_bench.job_config("spar", 100, seed).to_dict()

    spar = [
        {
            **record("spar/hopper/medium-replay-v0", "spar", s, x),
            "config": today(s),
            "alpha": a,
            "state_violation_rate": 0.02,
        }
        for s, x, a in ((0, 80.0, 1.0), (1, 60.0, 0.5))
    ]
    old = {**record("spar/hopper/medium-v0", "spar", 0, 99.0), "config": {**today(0), "lsi_anchor_penalty": 1.0}}
    raw = [{**record("spar/hopper/medium-v0", "medium-raw", s, 47.4), "state_violation_rate": 0.001} for s in (0, 1)]
    rows = where_spar_stands.table([*spar, old, *raw]).splitlines()
    assert len(rows) == 2 + len(suite_bench.TIERS["full"]["datasets"])  # every dataset of the tier has a row
    replay = next(r for r in rows if r.startswith("| hopper medium-replay |"))
    assert "70.0 ± 10.0 (1.0% / 2.0%; seeds 0,1; alpha 1/0.5)" in replay
    medium = next(r for r in rows if r.startswith("| hopper medium |"))
    assert "99.0" not in medium and "| 47.4 (1.0% / 0.1%) |" in medium  # older defaults left out; raw once
    assert medium.count("not run") == len(where_spar_stands.COLUMNS) - 1
    assert not set(where_spar_stands.FOOTNOTES.values()) & set(rows)
    # the raw policy's evaluations differ where they ran on other float paths: then the spread shows
    rounded = [{**r, "dataset": "spar/halfcheetah/medium-v0", "normalized_score": x} for r, x in zip(raw, (37.2, 42.6))]
    cheetah = next(r for r in where_spar_stands.table(rounded).splitlines() if r.startswith("| halfcheetah medium |"))
    assert "| 39.9 ± 2.7 (1.0% / 0.1%; seeds 0,1) |" in cheetah
    # a cell with no record at today's defaults shows one from before the reach policy, marked; not older ones
    one_policy = {**today(0), "lsi_reach_penalty": None, "reach_weak_anchor_only": False, "reach_check_horizon": 0}
    before = {**record("spar/hopper/medium-expert-v0", "spar", 0, 55.0), "config": one_policy, "alpha": 0.5}
    replaced = {**record("spar/hopper/medium-replay-v0", "spar", 2, 10.0), "config": one_policy}
    rows = where_spar_stands.table([*spar, old, before, replaced]).splitlines()
    expert = next(r for r in rows if r.startswith("| hopper medium-expert |"))
    assert "| 55.0 (" in expert and "alpha 0.5) ¹ |" in expert and rows[-1] == where_spar_stands.FOOTNOTES["¹"]
    replay = next(r for r in rows if r.startswith("| hopper medium-replay |"))
    assert "70.0 ± 10.0" in replay and "| 10.0 (" not in replay and "¹" not in replay  # today's records win
    medium = next(r for r in rows if r.startswith("| hopper medium |"))
    assert "99.0" not in medium  # kappa 1: not the reach fields alone
    # ... and one from before the in-sample candidate (²), or before both (¹ ²), where it might have changed the
    # deployment (LSI's below alpha 1 around a weak anchor): shown, marked, each footnote once
    no_candidate = {**today(0), "in_sample_candidate": 0.0, "in_sample_candidate_lsi": True}
    weak = {"penalty_choice": {"anchor_advantage": -0.1}, "auto_alpha": {"alpha": 0.75}, "alpha": 0.75}
    cheetah = {**record("spar/halfcheetah/medium-v0", "spar", 0, 60.0), "config": no_candidate, **weak}
    both = {
        **record("spar/halfcheetah/medium-replay-v0", "spar", 0, 40.0),
        "config": {**one_policy, "in_sample_candidate": 0.0, "in_sample_candidate_lsi": True},
    }
    rows = where_spar_stands.table([before, cheetah, both | weak]).splitlines()
    assert "alpha 0.75) ² |" in next(r for r in rows if r.startswith("| halfcheetah medium |"))
    assert "alpha 0.75) ¹ ² |" in next(r for r in rows if r.startswith("| halfcheetah medium-replay |"))
    assert rows[-2:] == [where_spar_stands.FOOTNOTES["¹"], where_spar_stands.FOOTNOTES["²"]]


def test_a_record_stays_current_under_a_new_reach_margin_only_where_it_deploys_the_same_policy():
    margin = suite_bench.job_config("spar", 100, 0).reach_model_margin
    assert margin == 2.0  # today's default (session 25)

    def spar(excess, deployed_reach, members=None, recorded_margin=None):
        config = suite_bench.job_config("spar", 100, 0).to_dict()
        if recorded_margin is None:
            del config["reach_model_margin"]  # written before the field existed: 0
        else:
            config["reach_model_margin"] = recorded_margin
        choice = {"deployed_penalty": 0.0 if deployed_reach else 0.25, "reach_penalty": 0.0}
        choice |= {"reach_excess_points": excess, "reach_excess_members_points": members}
        return {**record("spar/hopper/medium-replay-v0", "spar", 0, 90.0), "config": config, "penalty_choice": choice}

    assert not suite_bench.stale(spar(0.8, True))  # reach deployed at the threshold alone: a wider bar keeps it
    assert suite_bench.stale(spar(6.1, False))  # refused without members: another margin might deploy it
    assert not suite_bench.stale(spar(None, False))  # the reach check never ran: nothing to decide
    apart = [1.23, 3.43, 0.0, 2.47, 0.98]  # hopper medium-replay seed 1 (session 25): s.e. 0.60
    assert suite_bench.stale(spar(2.99, False, apart))  # 2.99 <= 2 + 2 x 0.60: deployed today, so re-deploy
    assert not suite_bench.stale(spar(8.6, False, [8.0, 9.0, 8.5, 9.5, 8.0]))  # refused at either margin
    assert not suite_bench.stale(spar(2.99, True, apart, recorded_margin=2.0))  # today's margin itself
    assert suite_bench.record_changes(spar(6.1, False)) == ["reach_model_margin"]
    # a stricter margin might refuse a reach policy deployed without members, and keeps a refused one refused
    assert not suite_bench.same_reach_decision(spar(0.8, True), -1.0)
    assert suite_bench.same_reach_decision(spar(6.1, False), -1.0)


def test_a_record_stays_current_under_another_reach_rule_only_where_it_deploys_the_same_latent_policy(
    monkeypatch, tmp_path
):
    probes = tmp_path / "reach_gain.json"
    monkeypatch.setattr(suite_bench, "REACH_GAIN", probes)

    def spar(deployed_reach, reach_alpha=0.5, rule=None, gain=None, seed=0, score=60.0):
        config = suite_bench.job_config("spar", 100, seed).to_dict()
        if rule is None:
            del config["reach_rule"]  # written before the field existed: alpha_one
        else:
            config["reach_rule"] = rule
        choice = {"deployed_penalty": 0.0 if deployed_reach else 0.25, "reach_penalty": 0.0}
        choice["rectifiers"] = {"0.25": {"alpha": 0.75}, "0": {"alpha": reach_alpha}}
        if gain is not None:
            choice["reach_gain"] = {"difference": gain, "difference_se": 0.01}
        data = "spar/hopper/medium-v0"
        return {**record(data, "medium-rectified", seed, score), "config": config, "penalty_choice": choice}

    to_gain = suite_bench.same_reach_rule_decision
    assert to_gain(spar(True, 1.0), "larger_gain")  # deployed: the gain rule keeps it
    assert to_gain(spar(False, 0.0), "larger_gain")  # kept out at alpha 0: it cannot contend
    assert not to_gain(spar(False), "larger_gain")  # kept out above 0, nobody asked the critic: re-deploy
    unrecorded = spar(False)
    del unrecorded["penalty_choice"]["rectifiers"]
    assert not to_gain(unrecorded, "larger_gain")  # its offline alpha not recorded: the critic must decide
    assert suite_bench.critic_prefers_reach(spar(False)) is None
    rows = [
        {"dataset": "spar/hopper/medium-v0", "method": "medium-rectified", "seed": 0, "clearly_prefers_reach": False,
         "rollout": {"normalized_score": 60.0}},
        {"dataset": "spar/hopper/medium-v0", "method": "medium-rectified", "seed": 1, "clearly_prefers_reach": True,
         "rollout": {"normalized_score": 60.0}},
    ]  # fmt: skip
    probes.write_text(json.dumps(rows))
    assert suite_bench.critic_prefers_reach(spar(False)) is False
    assert to_gain(spar(False), "larger_gain")  # the critic's recorded verdict keeps the penalised policy
    assert not to_gain(spar(False, seed=1), "larger_gain")  # it prefers the reach policy: deployed today
    assert suite_bench.critic_prefers_reach(spar(False, score=61.0)) is None  # another run of that cell
    # a run under larger_gain: its own verdict, and back to alpha_one only a policy the critic deployed goes out
    assert suite_bench.critic_prefers_reach(spar(True, rule="larger_gain", gain=0.05)) is True
    assert not to_gain(spar(True, rule="larger_gain", gain=0.05), "alpha_one")
    assert to_gain(spar(False, rule="larger_gain", gain=0.01), "alpha_one")
    assert to_gain(spar(True, 1.0, rule="larger_gain"), "alpha_one")  # deployed by the drift check itself
    assert to_gain({**spar(False), "penalty_choice": None}, "larger_gain")  # no reach policy: nothing to decide
    # wired into the harness's staleness under today's rule
    real = suite_bench.job_config
    monkeypatch.setattr(suite_bench, "job_config", lambda *a: dataclasses.replace(real(*a), reach_rule="larger_gain"))
    assert not suite_bench.stale(spar(False))
    assert suite_bench.stale(spar(False, seed=1))


def test_a_record_stays_current_under_a_new_in_sample_candidate_only_where_it_deploys_the_same_rectifier(monkeypatch):
    from spar_rectify.config import TrainConfig

    def spar(alpha, advantage=None, choice=None, weight=None):
        config = suite_bench.job_config("spar", 100, 0).to_dict()
        del config["in_sample_rule"]  # written before the field existed: session 28's rule
        if weight is None:
            del config["in_sample_candidate"]  # written before the field existed: 0
        else:
            config["in_sample_candidate"] = weight
        out = {**record("spar/hopper/medium-expert-v0", "spar", 0, 50.0), "config": config, "alpha": alpha}
        out["auto_alpha"] = {"alpha": alpha}
        if advantage is not None:
            out["penalty_choice"] = {"anchor_advantage": advantage}
        return out | ({"in_sample_choice": choice} if choice is not None else {})

    def today(**settings):
        monkeypatch.setattr(suite_bench, "job_config", lambda *a, **k: TrainConfig(steps=100, **settings))

    today(in_sample_candidate=1.0, in_sample_rule="lsi_at_zero")
    assert not suite_bench.stale(spar(0.75))  # LSI's went out: the candidate would not be looked at
    assert not suite_bench.stale(spar(0.0, advantage=0.3))  # an anchor above its data keeps LSI's at 0
    assert suite_bench.stale(spar(0.0, advantage=-0.12))  # LSI's at 0 around a weak anchor: retrain to know
    assert suite_bench.stale(spar(0.0))  # no advantage recorded: the same
    assert suite_bench.record_changes(spar(0.0)) == ["in_sample_candidate"]
    tuned = spar(1.0)  # alpha 1 picked on episodes: what the offline checks deployed is not recorded
    del tuned["auto_alpha"]
    assert suite_bench.stale(tuned)
    ungated = spar(0.0) | {"gate_choice": {"gated_alpha": 0.0, "ungated": {"alpha": 0.5}}}
    assert not suite_bench.stale(ungated)  # gate_check deployed LSI's ungated at 0.5
    today(in_sample_candidate=1.0, in_sample_rule="larger_alpha")  # the candidate goes out where it passes more
    assert suite_bench.stale(spar(0.75)) and suite_bench.stale(ungated)  # it might pass 1: retrain to know
    assert not suite_bench.stale(spar(1.0)) and not suite_bench.stale(spar(0.5, advantage=0.3))
    assert sorted(suite_bench.record_changes(spar(0.0))) == ["in_sample_candidate", "in_sample_rule"]
    checked = {"alpha": {"alpha": 0.5}, "gate_choice": {"gated_alpha": 0.5, "ungated": {"alpha": 1.0}}}
    passed_over = checked | {"lsi_alpha": 0.25, "anchor_advantage": -0.03, "deployed": False}  # session 28's rule
    assert suite_bench.record_changes(spar(0.25, choice=passed_over, weight=1.0)) == ["in_sample_rule"]
    went_out = checked | {"lsi_alpha": 0.0, "anchor_advantage": -0.12, "deployed": True}
    assert not suite_bench.stale(spar(1.0, choice=went_out, weight=1.0))  # both rules deploy the candidate
    behind = checked | {"lsi_alpha": 1.0, "anchor_advantage": -0.12, "deployed": False}
    assert not suite_bench.stale(spar(1.0, choice=behind, weight=1.0))  # it passes no more than LSI's
    today(in_sample_candidate=1.0)  # the default rule, larger_gain: a larger alpha and the critic's clear preference
    assert suite_bench.stale(spar(0.75)) and not suite_bench.stale(spar(1.0))  # as under larger_alpha without one
    assert suite_bench.stale(spar(1.0, choice=went_out, weight=1.0))  # no comparison recorded: re-deploy to know
    assert not suite_bench.stale(spar(1.0, choice=behind, weight=1.0))  # the alphas decide
    preferred = {"challenger": 0.2, "incumbent": 0.0, "difference": 0.2, "difference_se": 0.01, "states": 4096}
    assert not suite_bench.stale(spar(1.0, choice=went_out | {"gain": preferred}, weight=1.0))
    doubted = preferred | {"difference": 0.01}  # within two standard errors: LSI's stays
    assert not suite_bench.stale(spar(0.25, choice=passed_over | {"gain": doubted}, weight=1.0))
    assert suite_bench.stale(spar(0.25, choice=passed_over | {"gain": preferred}, weight=1.0))
    old_recipe = spar(1.0, choice=went_out | {"gain": preferred}, weight=1.0)
    old_recipe["config"]["in_sample_candidate_lsi"] = True  # session 28's candidate, with LSI: another policy
    assert sorted(suite_bench.record_changes(old_recipe)) == ["in_sample_candidate_lsi", "in_sample_rule"]
    behind_old = spar(1.0, choice=behind, weight=1.0)
    behind_old["config"]["in_sample_candidate_lsi"] = True
    assert not suite_bench.stale(behind_old)  # LSI's at 1: no candidate can replace it
    today()  # today's defaults: the candidate alone, larger_gain; records from before it stand where LSI's went at 1
    assert suite_bench.record_changes(spar(1.0)) == [] and suite_bench.stale(spar(0.5))
    today(in_sample_candidate=2.0)  # another weight: another candidate, whose checks the record does not have
    assert suite_bench.stale(spar(1.0, choice=went_out, weight=1.0))
    assert suite_bench.stale(spar(0.25, choice=passed_over, weight=1.0))  # LSI's at 0.25: a candidate might pass more
    assert not suite_bench.stale(spar(1.0, choice=behind, weight=1.0))  # LSI's at 1: none can
    today(in_sample_lr_schedule="cosine")  # the candidate's schedule: another candidate, as another weight is
    constant = spar(1.0, choice=went_out | {"gain": preferred}, weight=1.0)
    del constant["config"]["in_sample_lr_schedule"]  # written before the field existed: a constant rate
    assert sorted(suite_bench.record_changes(constant)) == ["in_sample_lr_schedule", "in_sample_rule"]
    constant["in_sample_choice"] = behind
    assert not suite_bench.stale(constant)  # LSI's at 1: no candidate can replace it
    today(in_sample_target="residual")  # where the candidate regresses: another candidate too
    latent = spar(1.0, choice=behind, weight=1.0)
    del latent["config"]["in_sample_target"]  # written before the field existed: in the latent space
    assert not suite_bench.stale(latent)  # LSI's at 1: no candidate can replace it
    latent["config"]["in_sample_weight"] = 1.0  # but where mu regresses in-sample too, mu is another policy
    today(in_sample_target="residual", in_sample_weight=1.0)
    assert suite_bench.record_changes(latent) == ["in_sample_target"]
    today(in_sample_candidate=1.0, in_sample_rule="lsi_at_zero")
    assert not suite_bench.stale(spar(0.25, choice=passed_over, weight=1.0))
    today(in_sample_candidate=0.0)
    used = {"lsi_alpha": 0.0, "anchor_advantage": -0.12, "deployed": True}
    assert suite_bench.stale(spar(1.0, choice=used, weight=1.0))  # its candidate went out: without it, LSI's at 0
    kept = {"lsi_alpha": 0.5, "anchor_advantage": -0.12, "deployed": False}
    assert not suite_bench.stale(spar(0.5, choice=kept, weight=1.0))  # LSI's went out either way
    assert not suite_bench.stale(spar(0.5))  # no candidate then or now: the rule changes nothing


def test_a_record_stays_current_under_a_new_bound_max_only_where_no_clamp_reached_its_rho(monkeypatch):
    """rho is the data's quantile clamped to [bound_min, bound_max]: a record whose rho sat below both the old and the
    new clamp trains bit for bit the same (hopper medium around the SB3 policy); one clamped at 1, one without rho
    recorded, or one with a fixed residual_bound must train again."""
    from spar_rectify.config import TrainConfig

    monkeypatch.setattr(suite_bench, "BOUND_PROBE", Path("no-probe.json"))  # the records alone say

    def spar(rho, **config):
        out = {**record("spar/hopper/medium-v0", "medium-rectified", 0, 67.7)}
        out["config"] = suite_bench.job_config("spar", 100, 0).to_dict() | config
        return out | ({"residual_bound": rho} if rho is not None else {})

    monkeypatch.setattr(suite_bench, "job_config", lambda *a, **k: TrainConfig(steps=100, bound_max=2.0))
    assert not suite_bench.stale(spar([0.53, 0.57, 0.55], bound_max=1.0))  # the quantile itself under both
    assert suite_bench.record_changes(spar([1.0, 0.9, 0.8], bound_max=1.0)) == ["bound_max"]  # clamped at 1
    assert suite_bench.stale(spar(None, bound_max=1.0))  # written before records carried rho: cannot tell
    assert suite_bench.stale(spar([0.5, 0.5, 0.5], bound_max=1.0, residual_bound=0.5))  # a fixed rho, not the data's
    monkeypatch.setattr(suite_bench, "job_config", lambda *a, **k: TrainConfig(steps=100, bound_max=0.5))
    assert suite_bench.stale(spar([0.53, 0.57, 0.55], bound_max=1.0))  # a tighter clamp cuts it


def test_a_record_stays_current_under_a_new_bound_lift_where_the_lift_applies_as_it_did(monkeypatch, tmp_path):
    """bound_lift lifts rho's cap only where the cap cuts many rows from better episodes: a record whose rho the cap
    never reached, or one whose cap (from its own bound_cap, else the probe's row of its data and anchor) is today's,
    trains the same; one clamped at the cap that cannot say, or whose lift decision flips, must train again."""
    from spar_rectify.config import TrainConfig

    monkeypatch.setattr(suite_bench, "BOUND_PROBE", tmp_path / "bound_cap_share.json")  # none yet

    def spar(rho, cap=None, method="medium-rectified", seed=0, **config):
        out = {**record("spar/hopper/medium-expert-v0", method, seed, 53.0)}
        out["config"] = {k: v for k, v in TrainConfig(steps=100).to_dict().items() if k != "bound_lift"} | config
        return out | {"residual_bound": rho} | ({"bound_cap": cap} if cap else {})

    assert TrainConfig().bound_lift == 2.0  # today's default (session 38)
    monkeypatch.setattr(suite_bench, "job_config", lambda *a, **k: TrainConfig(steps=100))
    replay = {"share": 0.4, "lifts": False, "lifted": False}  # the cut rows' episodes returned less
    expert = {"share": 0.116, "lifts": True, "lifted": False}
    assert not suite_bench.stale(spar([0.53, 0.57, 0.55]))  # the cap never reached: nothing to lift
    assert not suite_bench.stale(spar([1.0, 1.0, 1.0], replay))  # reached, but the lift would not apply
    assert suite_bench.record_changes(spar([1.0, 1.0, 1.0], expert)) == ["bound_lift"]  # it would lift today
    assert suite_bench.stale(spar([1.0, 1.0, 1.0]))  # reached, and the record cannot say what the cap cut
    assert suite_bench.stale(spar(None))  # no rho, no bound_cap, no probe: cannot tell
    lifted = {**expert, "lifted": True}
    assert not suite_bench.stale(spar([1.48, 1.41, 1.59], lifted, bound_lift=2.0))  # lifted then and now
    assert suite_bench.stale(spar([1.48, 1.41, 1.59], lifted, bound_lift=1.5))  # lifted to another cap
    fixed = spar([0.5, 0.5, 0.5], residual_bound=0.5)
    assert suite_bench.record_changes(fixed) == ["residual_bound"]  # a fixed rho: no cap to lift, only rho differs
    # bound_max=2 then (a variant's record, nothing cut at 2) is bound_lift=2 today where the cap of 1 lifts...
    wide = spar([1.48, 1.41, 1.59], {"share": 0.0, "lifts": False, "lifted": False}, bound_max=2.0)
    assert suite_bench.stale(wide)  # ... which the record (cut nothing at its cap of 2) cannot say alone
    rows = []

    def probe(dataset, anchor, lifts_at_1):
        row = {"dataset": dataset, "anchor": anchor, "caps": {"1": {"bound_lift_lifts": lifts_at_1}}}
        rows.append(row | {"caps": row["caps"] | {"2": {"bound_lift_lifts": False}}})
        (tmp_path / "bound_cap_share.json").write_text(json.dumps({"rows": rows}))

    probe("spar/hopper/medium-expert-v0", "medium", True)  # the probe around the SB3 policy: lifted at 1
    assert not suite_bench.stale(wide)  # the same cap of 2: the same rho
    assert not suite_bench.stale(spar(None, bound_max=2.0))  # even without rho recorded
    assert suite_bench.stale(spar([1.0, 1.0, 1.0]))  # the cap of 1 then, 2 today
    assert suite_bench.record_changes(spar(None, method="spar", seed=1)) == ["bound_lift"]  # BC of seed 1: not probed
    probe("spar/hopper/medium-expert-v0", "bc_seed1", False)
    assert not suite_bench.stale(spar(None, method="spar", seed=1))  # around its BC the cap is not lifted
    monkeypatch.setattr(suite_bench, "job_config", lambda *a, **k: TrainConfig(steps=100, bound_lift=None))
    assert suite_bench.record_changes(spar([1.48, 1.41, 1.59], lifted, bound_lift=2.0)) == ["bound_lift"]
    assert suite_bench.stale(wide)  # without the lift today: the cap of 1


def test_the_readme_table_adopts_a_variants_record_that_trains_todays_defaults(monkeypatch, tmp_path):
    """A variant's record whose training is today's defaults' all the same (bound_max=2 where today's bound_lift=2
    lifts the cap) stands in for a cell's missing defaults record, on the tier's seeds and steps; a stale record of
    that cell gives way, a current one wins; one that differs is not adopted. A record that cannot say whether the
    cap is lifted today is shown marked ³."""
    import where_spar_stands

    from spar_rectify.config import TrainConfig

    monkeypatch.setattr(suite_bench, "BOUND_PROBE", tmp_path / "probe.json")
    rows = [{"dataset": "spar/hopper/medium-expert-v0", "anchor": "medium", "caps": {"1": {"bound_lift_lifts": True}}}]
    (tmp_path / "probe.json").write_text(json.dumps({"rows": rows}))
    today = TrainConfig(steps=200_000).to_dict()

    def rect(seed, score, overrides=None, **config):
        out = {**record("spar/hopper/medium-expert-v0", "medium-rectified", seed, score), "steps": 200_000}
        out |= {"config": today | {"seed": seed} | config, "state_violation_rate": 0.02}
        return out | ({"variant": "b2", "overrides": overrides} if overrides else {})

    capped = [rect(s, x, bound_lift=None) | {"residual_bound": [1.0] * 3} for s, x in ((0, 100.4), (1, 53.0))]
    b2 = [rect(s, x, {"bound_max": 2}, bound_max=2.0, bound_lift=None) for s, x in ((0, 100.7), (1, 101.5), (3, 90.0))]
    other = rect(2, 70.0, {"bound_max": 2, "kl_weight": 0.5}, bound_max=2.0, bound_lift=None, kl_weight=0.5)
    current = rect(0, 99.0)  # a defaults record of seed 0 (lifted, as today)
    tier = {"steps": 200_000, "seeds": [0, 1, 2]}
    taken = suite_bench.adopted([*b2, other], capped, tier)
    shown = [(r["seed"], r["normalized_score"], r["adopted_from"]) for r in taken]
    assert shown == [(0, 100.7, "b2"), (1, 101.5, "b2")]
    assert all("overrides" not in r for r in taken)
    assert [r["seed"] for r in suite_bench.adopted(b2, [*capped, current], tier)] == [1]  # seed 0's own
    assert suite_bench.adopted(b2, capped, tier | {"steps": 100_000}) == []  # another budget: not this table's
    lines = suite_bench.status_lines(
        [suite_bench.Job("spar/hopper/medium-expert-v0", "medium-rectified", 1, 200_000, 10, str(tmp_path))],
        capped + taken,
    )
    assert lines == [
        "done     medium-rectified spar/hopper/medium-expert-v0 seed 1: 101.5 (1.0% violations; "
        "the record of variant b2)"
    ]
    table = where_spar_stands.table([*capped, *taken]).splitlines()
    expert = next(r for r in table if r.startswith("| hopper medium-expert |"))
    assert "| 101.1 ± 0.4 (1.0% / 2.0%; seeds 0,1; alpha 1/1) |" in expert  # the capped records left out
    # around a BC anchor the probe did not measure: shown, marked ³
    bc = {**rect(0, 40.0, bound_lift=None), "method": "spar", "dataset": "spar/halfcheetah/medium-replay-v0"}
    table = where_spar_stands.table([bc]).splitlines()
    assert "alpha 1) ³ |" in next(r for r in table if r.startswith("| halfcheetah medium-replay |"))
    assert table[-1] == where_spar_stands.FOOTNOTES["³"]
    # a ³ record of a seed that also has a current record (an adopted variant's) gives way to it; other seeds' stay
    bc1 = bc | {"seed": 1, "normalized_score": 44.0, "config": bc["config"] | {"seed": 1}}
    now = {**rect(0, 50.0), "method": "spar", "dataset": "spar/halfcheetah/medium-replay-v0"}
    row = next(r for r in where_spar_stands.table([bc, bc1, now]).splitlines() if "halfcheetah medium-replay" in r)
    assert "| 47.0 ± 3.0 (1.0% / 2.0%; seeds 0,1; alpha 1/1) ³ |" in row


def test_the_alternative_rectifier_is_scored_at_its_own_alpha_on_the_same_episodes(tmp_path, monkeypatch):
    import dataclasses

    import gymnasium as gym
    import numpy as np

    import envs
    from spar_rectify import CallablePolicy, save_rectifier
    from tests.helpers import make_checkpoint
    from tests.helpers_data import point_data

    env = gym.make("PointReach-v0")
    base = CallablePolicy(envs.biased_controller, env.action_space, name="biased_controller")
    checkpoint = make_checkpoint(env.observation_space, env.action_space, base)
    checkpoint = dataclasses.replace(checkpoint, alpha=0.5, config={"lsi_anchor_penalty": 0.25})
    save_rectifier(checkpoint, tmp_path / "rectifier-alternative")
    data = point_data(episodes=20)
    monkeypatch.setattr(type(data), "normalized_score", lambda self, r: r / 10.0)
    seen = {}

    def rollouts(policy, env_id, episodes):  # the seeded episodes are suite_bench.rollouts' own business
        seen.update(alpha=policy.corrector.alpha, env=env_id, episodes=episodes)
        obs = data.observations[:50].numpy()
        return np.array([10.0, 30.0]), obs, policy(obs)

    monkeypatch.setattr(suite_bench, "rollouts", rollouts)
    out = suite_bench.evaluate_alternative(base, tmp_path / "rectifier-alternative", data, "PointReach-v0", 2)
    assert seen == {"alpha": 0.5, "env": "PointReach-v0", "episodes": 2}
    assert out["lsi_anchor_penalty"] == 0.25 and out["alpha"] == 0.5
    assert out["normalized_score"] == 2.0 and out["return"] == 20.0
    assert 0.0 <= out["support_violation_rate"] <= 1.0


def test_status_says_what_is_recorded_started_or_to_do_without_training(tmp_path):
    tier = {"datasets": ["spar/hopper/medium-v0"], "seeds": [0, 1, 2], "steps": 100, "episodes": 2}
    jobs = [j for wave in suite_bench.jobs_for(tier, tmp_path) for j in wave if j.method == "spar"]
    done = {**record("spar/hopper/medium-v0", "spar", 0, 61.5), "alpha": 0.75}
    done["config"] = suite_bench.job_config("spar", 100, 0).to_dict()
    older = {**record("spar/hopper/medium-v0", "spar", 2, 40.0), "config": {**done["config"], "num_prior": 2}}
    started = jobs[1].run_dir()  # seed 1: a checkpoint at step 40, trained at today's settings
    (started / "checkpoint").mkdir(parents=True)
    (started / "checkpoint" / "train_state.json").write_text(json.dumps({"step": 40}))
    (started / "config.json").write_text(json.dumps(suite_bench.job_config("spar", 100, 1).to_dict()))
    lines = suite_bench.status_lines(jobs, [done, older])
    assert lines[0] == "done     spar spar/hopper/medium-v0 seed 0: 61.5 (1.0% violations, alpha 0.75)"
    assert lines[1] == "started  spar spar/hopper/medium-v0 seed 1: checkpoint at step 40 of 100"
    assert lines[2] == "to do    spar spar/hopper/medium-v0 seed 2; its record is from older settings"
    # a folder left by other settings is set aside when the job runs: status says so
    (started / "config.json").write_text(json.dumps({**done["config"], "seed": 1, "num_prior": 2}))
    assert suite_bench.status_lines(jobs[1:2], [])[0].endswith("it will train afresh")
    assert "num_prior" in suite_bench.status_lines(jobs[1:2], [])[0]


def test_a_rectifier_record_carries_what_tells_stale_records_and_builds_apart(tmp_path):
    """`run_one`, end to end on a small PointReach dataset: BC, then SPAR around it. The SPAR record carries
    the training config (`stale`), the deployment (gate, alpha), rho per action dimension (`same_bound`), MKL's
    path and the machine (CPU and dataset rows: a dataset rebuilt on another CPU differs)."""
    import gymnasium as gym

    from tests.helpers_data import write_point_dataset

    rows = write_point_dataset("test/point/tiny-v0", episodes=6, ref_min_score=-100.0, ref_max_score=0.0)
    small = {"hidden": (32, 32), "batch_size": 64, "auto_alpha": False, "manifold_fraction": 0.2, "fit_fraction": 0.2}

    def job(method):
        return suite_bench.Job("test/point/tiny-v0", method, 0, 30, 2, str(tmp_path / "work"), overrides=small)

    bc = suite_bench.run_one(job("bc"))
    spar = suite_bench.run_one(job("spar"))
    assert bc["method"] == "bc" and "residual_bound" not in bc and bc["machine"]["dataset_rows"] == rows
    assert spar["config"]["algo"] == "spar" and spar["config"]["hidden"] == [32, 32]
    assert spar["machine"] == {"cpu": bc["machine"]["cpu"], "dataset_rows": rows}
    assert isinstance(spar["gate"], bool) and spar["alpha"] == 1.0
    assert len(spar["residual_bound"]) == gym.make("PointReach-v0").action_space.shape[0]
    assert all(0.0 < v <= spar["config"]["bound_max"] for v in spar["residual_bound"])
    assert 0.0 <= spar["support_violation_rate"] <= 1.0 and spar["steps"] == 30


def test_a_tuned_record_that_swept_only_the_deployed_rectifier_of_a_run_with_others_is_redone():
    import where_spar_stands

    config = suite_bench.job_config("spar", 100, 0).to_dict()
    assert config["lsi_reach_penalty"] is not None  # today's runs export a reach policy beside the deployed one
    old = {**record("spar/hopper/medium-expert-v0", "medium-rectified-tuned", 0, 90.0), "config": config}
    old["tune"] = {"alphas": [0.0, 1.0], "best_alpha": 1.0}  # before session 39: the deployed rectifier only
    assert suite_bench.tuned_one_of_several(old) and suite_bench.stale(old)
    alone = {**old, "config": {**config, "lsi_reach_penalty": None, "in_sample_candidate": 0.0}}
    assert not suite_bench.tuned_one_of_several(alone)  # nothing else to sweep: the record stands
    blind = {"rectifier": "rectifier-alternative", "best_alpha": 0.75, "policies": {}, "support_checked": False}
    assert suite_bench.stale({**old, "tune": blind})  # every rectifier swept, their support not measured
    swept = {**old, "tune": {**blind, "support_checked": True}, "alpha": 0.75}
    assert not suite_bench.stale(swept)
    row = next(r for r in where_spar_stands.table([swept]).splitlines() if r.startswith("| hopper medium-expert |"))
    assert "alpha 0.75†)" in row and where_spar_stands.table([swept]).endswith(where_spar_stands.OTHER_NOTE)
    # an older tuned record is not shown marked beside today's either, even where its training differs only in a
    # marked field: its pick was made otherwise
    marked = {**old, "config": {**config, "in_sample_candidate": 0.0, "in_sample_candidate_lsi": True}}
    assert where_spar_stands.earlier_marks(marked) == ""
    kept = {**swept, "tune": {**swept["tune"], "rectifier": "rectifier"}}
    assert where_spar_stands.OTHER not in where_spar_stands.table([kept])


def test_append_result_replaces_a_probe_row_run_again_and_keeps_the_others(tmp_path):
    out = tmp_path / "probe.json"
    suite_bench.append_result(out, {"run": "a", "label": "x", "v": 1})
    suite_bench.append_result(out, {"run": "b", "label": "x", "v": 2})
    suite_bench.append_result(out, {"run": "a", "label": "x", "v": 3}, replaces=("run", "label"))
    suite_bench.append_result(out, {"run": "a", "label": "x", "v": 4})  # without replaces: appended
    assert [r["v"] for r in json.loads(out.read_text())] == [2, 3, 4]
