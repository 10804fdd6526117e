"""Pure loss functions of every method, each testable against hand-computed numbers.

Defines `bc_loss`, `expectile_loss`, `q_regression_loss`, `awr_loss`, `td3bc_actor_loss`,
`cvae_loss`, `latent_fit_loss`, `paired_gains`, `lsi_weights`, `lsi_loss`.

Shapes: B states, K candidates per state, A action dims, L latent dims, M critic members.
"""

from __future__ import annotations

import torch


def bc_loss(pred_action: torch.Tensor, data_action: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `||pred - data||^2`, summed over A. (B, A), (B, A) -> ()."""
    return (pred_action - data_action).pow(2).sum(-1).mean()


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's asymmetric L2: `mean(|tau - 1(diff < 0)| * diff^2)`, `diff = target - V`. (B,) -> ()."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def q_regression_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Twin-critic TD loss: sum over members of the batch-mean squared error. (M, B), (B,) -> ()."""
    return (q - target.unsqueeze(0)).pow(2).mean(-1).sum()


def awr_weights(advantage: torch.Tensor, temperature: float, max_weight: float = 100.0) -> torch.Tensor:
    """IQL's extraction weights `min(exp(beta * A), max_w)`, detached. (B,) -> (B,)."""
    return torch.exp(temperature * advantage.detach()).clamp(max=max_weight)


def awr_loss(
    pred_action: torch.Tensor,
    data_action: torch.Tensor,
    advantage: torch.Tensor,
    temperature: float,
    max_weight: float = 100.0,
) -> torch.Tensor:
    """IQL's extraction: `mean(min(exp(beta * A), max_w) * ||pred - a||^2)`. (B, A), (B, A), (B,) -> ()."""
    weight = awr_weights(advantage, temperature, max_weight)
    return (weight * (pred_action - data_action).pow(2).sum(-1)).mean()


def td3bc_actor_loss(
    q: torch.Tensor, pred_action: torch.Tensor, data_action: torch.Tensor, alpha: float
) -> torch.Tensor:
    """TD3+BC: `-lambda * mean(Q(s, pi(s))) + mean((pi(s) - a)^2)`, `lambda = alpha / mean|Q|`
    (detached). (B,), (B, A), (B, A) -> (). The BC term averages over actions as in the paper."""
    lam = alpha / q.abs().mean().detach()
    return -lam * q.mean() + (pred_action - data_action).pow(2).mean()


def cvae_loss(
    recon: torch.Tensor, residual: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual CVAE: `mean ||g - r||^2 + lambda_kl * mean KL(N(mean, std) || N(0, I))`.

    Args: recon, residual (B, A); mean, log_std (B, L).
    Returns: (total, reconstruction, kl), each ().
    """
    rec = (recon - residual).pow(2).sum(-1).mean()
    kl = 0.5 * (mean.pow(2) + torch.exp(2 * log_std) - 1.0 - 2 * log_std).sum(-1).mean()
    return rec + kl_weight * kl, rec, kl


def conditional_prior_loss(
    post_mean: torch.Tensor, post_log_std: torch.Tensor, prior_mean: torch.Tensor, prior_log_std: torch.Tensor
) -> torch.Tensor:
    """Fit of a state-conditional prior p(z | s, a_b) = N(prior_mean, prior_std) to the encoder's
    posteriors of the data's residuals at those states: `mean KL(q(z | s, a_b, r) || p(z | s, a_b))`,
    the posterior held fixed. Its minimiser over the data is the moment match of the posteriors that
    share a state. (B, L) x4 -> ()."""
    post_mean, post_log_std = post_mean.detach(), post_log_std.detach()
    ratio = torch.exp(2 * (post_log_std - prior_log_std))
    gap = (post_mean - prior_mean) * torch.exp(-prior_log_std)
    return 0.5 * (ratio + gap.pow(2) - 1.0 - 2 * (post_log_std - prior_log_std)).sum(-1).mean()


def latent_fit_loss(z_pred: torch.Tensor, z_target: torch.Tensor) -> torch.Tensor:
    """Fitting initialisation of mu: `mean ||mu(s, a_b) - E[q(z | s, a_b, r)]||^2`. (B, L) x2 -> ()."""
    return (z_pred - z_target.detach()).pow(2).sum(-1).mean()


def paired_gains(q_heads: torch.Tensor) -> torch.Tensor:
    """Each candidate's gain over candidate 0 (the current latent) on which every critic head agrees:
    `min_j (Q_j(a_k) - Q_j(a_0))`. (M, B, K) -> (B, K); column 0 is 0.

    Compared with `min_j Q_j(a_k) - min_j Q_j(a_0)` (a difference of pessimistic values), a head is
    only ever compared with itself, so a candidate whose heads cross (head 1 says worse, head 2 says
    better by more) gains nothing: the critic's disagreement, not its optimism, decides. Where the
    heads agree on the order it is the smaller of their two gains.
    """
    return (q_heads - q_heads[..., :1]).min(0).values


def lsi_weights(
    q_candidates: torch.Tensor,
    value: torch.Tensor,
    temperature: float,
    normalize: str = "within",
    log_prior: torch.Tensor | None = None,
    prior_weight: float = 0.0,
    improvements_only: bool = False,
) -> torch.Tensor:
    """Latent Self-Imitation weights `softmax_k(A_k / (beta * s) + lambda * log p(z_k))` per state.
    (B, K), (B,) -> (B, K); `log_prior` (B, K): the candidates' log prior density (up to a constant),
    `prior_weight` lambda (0: the prior plays no part).

    `improvements_only` (self-imitation as in Oh et al. 2018, which imitates only what beat the
    baseline, `max(A, 0)`): candidate 0 must be the current latent; the advantages are taken over
    it, `A_k = q_k - q_0`, and every candidate no better than it gets weight 0. The weighted target
    then never has a lower value than the current latent: where no candidate improves, the target
    is the current latent itself, instead of the mean of the candidates (which, with flat
    weights, drifts toward the data's and the prior's candidates whatever their value).

    `A_k = q_k - V(s)`; the softmax ignores per-state shifts, so only the scale `s` matters:

    - "within": the RMS over the batch of the within-state advantages `A_k - mean_k A_k`
      (weights equally sharp whatever the critic's resolution);
    - "batch": the std of the raw advantages over the batch (the specification's first reading:
      the spread of V across states dominates, measured on PointReach: nearly uniform weights);
    - "none": `s = 1`, advantages in the critic's (scaled-reward) units, as IQL's extraction
      does: the policy moves only where the critic separates candidates by whole reward units.
    """
    if improvements_only:
        return _improvement_weights(q_candidates, temperature, normalize, log_prior, prior_weight)
    adv = q_candidates - value.unsqueeze(-1)
    centred = adv - adv.mean(-1, keepdim=True)
    if normalize == "within":
        scale = centred.pow(2).mean().sqrt() + 1e-6
    elif normalize == "batch":
        scale = adv.std() + 1e-6
    elif normalize == "none":
        scale = 1.0
    else:
        raise ValueError(f"normalize must be 'within', 'batch' or 'none', got {normalize!r}")
    logits = centred / (scale * temperature)
    if prior_weight and log_prior is not None:
        # The data's own density of each candidate: with it the weights target p(z) * exp(A / beta)
        # (the KL-regularised improvement step) rather than the best candidate anywhere in the box.
        logits = logits + prior_weight * log_prior
    return torch.softmax(logits, dim=-1)


def _improvement_weights(
    q: torch.Tensor, temperature: float, normalize: str, log_prior: torch.Tensor | None, prior_weight: float
) -> torch.Tensor:
    """`lsi_weights(..., improvements_only=True)`: softmax over the current latent (column 0) and the
    candidates that beat it; the scale `s` of "within" and "batch" is the RMS / std of the positive
    advantages over the batch."""
    adv = q - q[:, :1]
    keep = adv > 0
    keep[:, 0] = True
    gains = adv[keep & (adv > 0)]
    if normalize == "within":
        scale = gains.pow(2).mean().sqrt() + 1e-6 if gains.numel() else 1.0
    elif normalize == "batch":
        scale = gains.std() + 1e-6 if gains.numel() > 1 else 1.0
    elif normalize == "none":
        scale = 1.0
    else:
        raise ValueError(f"normalize must be 'within', 'batch' or 'none', got {normalize!r}")
    logits = adv.clamp(min=0.0) / (scale * temperature)
    if prior_weight and log_prior is not None:
        logits = logits + prior_weight * log_prior
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


def lsi_loss(z_pred: torch.Tensor, candidates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`mean_B sum_k w_k ||mu(s, a_b) - stopgrad(z_k)||^2`. (B, L), (B, K, L), (B, K) -> ()."""
    dist = (z_pred.unsqueeze(1) - candidates.detach()).pow(2).sum(-1)
    return (weights.detach() * dist).sum(-1).mean()
