"""Each loss against numbers computed by hand on a two-sample batch."""

from __future__ import annotations

import math

import pytest
import torch

from spar_rectify import losses

T = torch.tensor


def test_bc_loss():
    # rows: (0.5-0)^2 + (0-1)^2 = 1.25 ; (1-1)^2 + (-1-0)^2 = 1  -> mean 1.125
    assert losses.bc_loss(T([[0.5, 0.0], [1.0, -1.0]]), T([[0.0, 1.0], [1.0, 0.0]])).item() == pytest.approx(1.125)


def test_expectile_loss():
    # diff 2 -> 0.7 * 4 = 2.8 ; diff -1 -> 0.3 * 1 = 0.3 -> mean 1.55
    assert losses.expectile_loss(T([2.0, -1.0]), 0.7).item() == pytest.approx(1.55)


def test_q_regression_loss():
    q = T([[1.0, 2.0], [0.0, 4.0]])  # two members, two samples
    target = T([0.0, 2.0])
    # member 1: (1 + 0) / 2 = 0.5 ; member 2: (0 + 4) / 2 = 2 -> 2.5
    assert losses.q_regression_loss(q, target).item() == pytest.approx(2.5)


def test_awr_loss_weights_and_clip():
    pred, data = T([[1.0], [0.0]]), T([[0.0], [2.0]])
    adv = T([0.0, 10.0])
    # weights: exp(0) = 1 ; exp(30) clipped to 100. errors 1, 4 -> (1 + 400) / 2
    assert losses.awr_loss(pred, data, adv, temperature=3.0, max_weight=100.0).item() == pytest.approx(200.5)


def test_td3bc_actor_loss():
    q = T([2.0, -4.0])  # mean -1, mean |Q| 3 -> lambda = 2.5 / 3
    pred, data = T([[0.5], [0.0]]), T([[0.0], [1.0]])  # mse = (0.25 + 1) / 2 = 0.625
    expected = -(2.5 / 3) * -1.0 + 0.625
    assert losses.td3bc_actor_loss(q, pred, data, 2.5).item() == pytest.approx(expected)


def test_cvae_loss():
    recon, residual = T([[0.1, 0.2], [0.0, 0.0]]), T([[0.0, 0.0], [0.3, 0.4]])
    mean, log_std = T([[1.0], [0.0]]), T([[0.0], [math.log(2.0)]])
    rec = (0.01 + 0.04 + 0.09 + 0.16) / 2  # 0.15
    # KL row 1: 0.5 * (1 + 1 - 1 - 0) = 0.5 ; row 2: 0.5 * (0 + 4 - 1 - 2 ln 2)
    kl = (0.5 + 0.5 * (3 - 2 * math.log(2.0))) / 2
    total, r, k = losses.cvae_loss(recon, residual, mean, log_std, 0.5)
    assert r.item() == pytest.approx(rec) and k.item() == pytest.approx(kl)
    assert total.item() == pytest.approx(rec + 0.5 * kl)


def test_conditional_prior_loss_is_the_kl_to_a_diagonal_gaussian_prior():
    mean, log_std = T([[1.0], [0.0]]), T([[0.0], [math.log(2.0)]])
    zero = torch.zeros(2, 1)
    kl = losses.cvae_loss(zero, zero, mean, log_std, 1.0)[2]
    assert losses.conditional_prior_loss(mean, log_std, zero, zero).item() == pytest.approx(kl.item())  # N(0, I)
    assert losses.conditional_prior_loss(mean, log_std, mean, log_std).item() == pytest.approx(0.0)
    # KL(N(0, 1) || N(1, 2^2)) = ln 2 + (1 + 1) / 8 - 1/2
    one = losses.conditional_prior_loss(T([[0.0]]), T([[0.0]]), T([[1.0]]), T([[math.log(2.0)]]))
    assert one.item() == pytest.approx(math.log(2.0) + 2 / 8 - 0.5)
    prior_mean = T([[0.5]]).requires_grad_(True)
    losses.conditional_prior_loss(mean[:1].requires_grad_(True), log_std[:1], prior_mean, T([[0.0]])).backward()
    assert prior_mean.grad is not None and prior_mean.grad.item() < 0  # pulled toward the posterior mean 1


def test_latent_fit_loss():
    assert losses.latent_fit_loss(T([[1.0, 0.0], [0.0, 0.0]]), T([[0.0, 0.0], [0.0, 2.0]])).item() == pytest.approx(2.5)


def test_lsi_weights_use_within_state_scale():
    q = T([[1.0, 3.0], [10.0, 10.0]])  # state 2 candidates are equal
    v = T([0.0, 100.0])  # per-state shifts never matter
    w = losses.lsi_weights(q, v, temperature=1.0)
    # centred: [-1, 1], [0, 0] -> rms over batch = sqrt(2 / 4) ; scaled: +-sqrt(2)
    s = math.sqrt(2.0)
    assert w[0, 1].item() == pytest.approx(math.exp(s) / (math.exp(s) + math.exp(-s)), rel=1e-5)
    assert w[1].tolist() == pytest.approx([0.5, 0.5])
    assert torch.allclose(w.sum(-1), torch.ones(2))


def test_lsi_loss():
    z = T([[0.0], [1.0]])
    cands = T([[[1.0], [2.0]], [[1.0], [3.0]]])
    w = T([[0.5, 0.5], [1.0, 0.0]])
    # state 1: 0.5 * 1 + 0.5 * 4 = 2.5 ; state 2: 1 * 0 = 0 -> 1.25
    assert losses.lsi_loss(z, cands, w).item() == pytest.approx(1.25)
    z.requires_grad_(True)
    losses.lsi_loss(z, cands.requires_grad_(True), w).backward()
    assert z.grad is not None


def test_lsi_weights_prior_term_is_the_kl_regularised_target():
    q = torch.tensor([[1.0, 2.0, 2.0]])
    v = torch.tensor([0.0])
    log_prior = torch.tensor([[0.0, 0.0, -2.0]])  # the third candidate lies further out in latent space
    w0 = losses.lsi_weights(q, v, 0.5, "none", log_prior, prior_weight=0.0)
    w1 = losses.lsi_weights(q, v, 0.5, "none", log_prior, prior_weight=1.0)
    assert torch.allclose(w0[0, 1], w0[0, 2])  # without the prior: equal advantages, equal weights
    # with it: softmax(A / beta + log p) = p * exp(A / beta), normalised
    expected = torch.tensor([torch.e**2, torch.e**4, torch.e**2])
    assert torch.allclose(w1[0], expected / expected.sum())


def test_lsi_weights_improvements_only_imitate_what_beats_the_current_latent():
    # column 0 is the current latent; state 1 has one better candidate, state 2 none
    q = T([[1.0, 3.0, 0.0, 1.0], [5.0, 4.0, 2.0, 5.0]])
    v = T([0.0, 0.0])
    w = losses.lsi_weights(q, v, 1.0, "none", improvements_only=True)
    # state 1: only the current (advantage 0) and candidate 1 (advantage 2) are eligible
    assert w[0].tolist() == pytest.approx([1 / (1 + math.e**2), math.e**2 / (1 + math.e**2), 0.0, 0.0], rel=1e-5)
    # state 2: nothing beats the current latent (a tie is no improvement): the target stays put
    assert w[1].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    # the target's value is never below the current latent's, unlike the plain softmax
    for weights in (w, losses.lsi_weights(q, v, 1.0, "within", improvements_only=True)):
        assert ((weights * q).sum(-1) >= q[:, 0] - 1e-6).all()
    plain = losses.lsi_weights(q, v, 1.0, "none")
    assert (plain * q).sum(-1)[1] < q[1, 0]
    # "within" scales by the RMS of the positive advantages over the batch: here the one gain of 2
    w_within = losses.lsi_weights(q, v, 0.5, "within", improvements_only=True)
    assert w_within[0, 1].item() == pytest.approx(math.e**2 / (1 + math.e**2), rel=1e-5)


def test_paired_gains_count_only_what_every_head_agrees_on():
    # two heads, one state; candidate 0 is the current latent
    q_heads = T([[[10.0, 9.5, 11.0, 12.0]], [[9.0, 9.6, 9.5, 10.0]]])  # (M=2, B=1, K=4)
    gains = losses.paired_gains(q_heads)
    # candidate 1: head 1 says -0.5, head 2 says +0.6 -> no agreed gain (the min of the heads' Q
    # would call it +0.5 better: 9.5 against 9.0)
    assert gains[0].tolist() == pytest.approx([0.0, -0.5, 0.5, 1.0])
    min_q = q_heads.min(0).values
    assert (min_q[0, 1] - min_q[0, 0]).item() == pytest.approx(0.5)
    w = losses.lsi_weights(gains, T([0.0]), 1.0, "none", improvements_only=True)
    assert w[0, 1].item() == 0.0  # the crossing candidate gets no weight
    expected = T([1.0, 0.0, math.e**0.5, math.e**1.0])
    assert w[0].tolist() == pytest.approx((expected / expected.sum()).tolist(), rel=1e-5)
