"""The throughput benchmark's profile says where a step's CPU time goes, operator by operator."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import train_throughput


def test_op_shares_ranks_operators_by_their_share_of_the_cpu_time():
    torch.manual_seed(0)
    # The product is about 1,000x the sum's arithmetic, and 20 steps of it outweigh a scheduler preemption
    # landing inside one sum (5 steps of a 4x smaller product once ranked the sum first beside two jobs).
    weight, x = torch.randn(512, 512), torch.randn(1024, 512)

    def step():  # one large matrix product and one small elementwise op per call
        (x @ weight).sum()

    ops = train_throughput.op_shares(step, steps=20, top=3)
    assert len(ops) == 3
    assert ops[0]["op"] == "aten::mm"  # the product dominates
    assert ops[0]["calls_per_step"] == 1.0
    shares = [o["share"] for o in ops]
    assert shares == sorted(shares, reverse=True) and 0.0 < sum(shares) <= 1.0
    assert all(o["us_per_call"] > 0 for o in ops)


def test_spar_times_the_default_step_and_spar_single_the_step_without_the_reach_policy():
    from spar_rectify.config import TrainConfig

    default = train_throughput.method_config("spar")
    assert default.lsi_reach_penalty == TrainConfig().lsi_reach_penalty is not None  # mu and the reach policy
    assert default.manifold_steps == default.fit_steps == 0  # straight at the full step
    single = train_throughput.method_config("spar:single", fast_matmul=True)
    assert single.lsi_reach_penalty is None and single.fast_matmul and single.manifold_steps == 0
    assert train_throughput.method_config("spar:cvae").manifold_steps > 0
    third = train_throughput.method_config("spar:insample")  # the default step plus in_sample_candidate's policy
    assert third.in_sample_candidate == 1.0 and third.lsi_reach_penalty == default.lsi_reach_penalty
    assert default.in_sample_candidate == TrainConfig().in_sample_candidate
    alone = train_throughput.method_config("spar:insamplealone")  # that third without its LSI: today's default
    assert alone.in_sample_candidate == 1.0 and alone.in_sample_candidate_lsi is False and third.in_sample_candidate_lsi
    assert alone == default and not default.in_sample_candidate_lsi
    before = train_throughput.method_config("spar:nocandidate")  # the step of sessions 21-29
    assert before.in_sample_candidate == 0.0 and before.lsi_reach_penalty == default.lsi_reach_penalty
    assert single.in_sample_candidate == 0.0  # one latent policy: mu alone
    assert train_throughput.method_config("iql").algo == "iql"
