"""SPAR: residual-manifold CVAE, IQL critic, and Latent Self-Imitation around a frozen anchor.

Defines `SPAR`. Stages by step (see `TrainConfig`): (i) CVAE + critic for `manifold_steps`;
then the decoder is frozen and mu is fitted to the encoder mean for `fit_steps`; then Latent
Self-Imitation (LSI) every `lsi_every` steps, plus, with `in_sample_weight`, an advantage-weighted
regression onto the logged residual's latent at every step (one actor step takes both losses), with
mu's learning rate constant or, with `actor_lr_schedule="cosine"`, decaying to zero over stage (iii).
LSI searches each state's region of a state-conditional prior fitted to the encoder's posteriors in
stage (i) (`latent_search="conditional"`, the default) or the whole latent box ("box"), and with
`lsi_anchor_penalty` charges each candidate for its distance from the anchor's own latent. With
`lsi_reach_penalty`, a second latent policy (the "reach" policy) trains beside mu at that penalty, on the
same batches and critic, and the drift check picks which one is deployed (`trainer.train`). With
`in_sample_candidate`, a third (the "in-sample" policy) trains beside them with LSI plus the in-sample term at
that weight (or the term alone, `in_sample_candidate_lsi=False`): the drift check's fallback where neither of the
others is deployed.
The critic trains at every step throughout. No gradient of Q with respect to the action reaches
the policy: the critic only weighs candidates, and every candidate lies on the decoded support.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from spar_rectify.algos.common import Batch, DataInfo, Deployment, IQLCritic, adam
from spar_rectify.checkpoint import RectifierCheckpoint, save_rectifier
from spar_rectify.config import IQLSettings, SPARSettings, TrainConfig
from spar_rectify.losses import (
    awr_loss,
    conditional_prior_loss,
    cvae_loss,
    latent_fit_loss,
    lsi_loss,
    lsi_weights,
    paired_gains,
)
from spar_rectify.matmul import training_precision
from spar_rectify.networks import mlp
from spar_rectify.offdata import REFRESH_EVERY, ModelWorld, OffDataValue
from spar_rectify.rectified_policy import RectifiedPolicy
from spar_rectify.rectifier import Rectifier

#: The reach policy's generator is seeded with the run's seed plus this (the trainer's uses seed + 1).
REACH_SEED_OFFSET = 1_000_003
#: drift_penalty's off-data value draws its rollouts and minibatches from a generator seeded so.
OFFDATA_SEED_OFFSET = 2_000_003
#: The in-sample candidate's generator (in_sample_candidate) is seeded with the run's seed plus this.
INSAMPLE_SEED_OFFSET = 3_000_017


#: Below this |a - a_b| (normalised units) at the bound's quantile in every dimension, the data's actions are the
#: anchor's own: there is nothing for SPAR to learn a correction from (`SPAR.data_info` warns).
NO_SPREAD = 1e-3
#: Where bound_max caps rho below the data's quantile and the capped rho shortens the logged residual of more than
#: this share of the rows, `SPAR.data_info` warns: the rectifier cannot reproduce those actions.
CLIP_WARN_SHARE = 0.05
#: `bound_lift` lifts the cap only where the rows it cuts come from episodes that returned more than the data's rows
#: on average by over this share of the data's spread of episode returns (`lifts_cap`).
LIFT_RETURN_MARGIN = 0.1


def no_spread_message(quantile: float, largest: float) -> str:
    """The warning for data whose actions are the anchor's own (see `NO_SPREAD`)."""
    return (
        f"the logged actions are the anchor's own: |a - a_b| at the {quantile:g} quantile is at most {largest:.1e} "
        "(normalised units) in every action dimension, so SPAR has no other actions to learn a correction from and "
        "the rectifier will stay at the base policy. Data collected from the base policy itself needs exploration: "
        "spar collect --exploration.kind stochastic (an SB3 model's own sampling) or --exploration.kind gaussian; "
        "or train around another policy than the one that logged the data."
    )


def clipped_message(share: float, largest: float, bound_max: float, returns: "CutReturns | None" = None) -> str:
    """The warning for data whose residuals the capped bound shortens on many rows (see `CLIP_WARN_SHARE`) and the cap
    stays: with what those rows' episodes returned where known (bound_lift was turned off), or that the data carries
    no returns to tell (bound_lift cannot apply)."""
    if returns is not None:
        fix = (
            f" Those rows come from episodes that returned {returns.cut:.4g} on average against {returns.rows:.4g} "
            "over all rows: likely a stronger policy's actions than the anchor's. --config.bound-lift 2 on the "
            "command line (TrainConfig(bound_lift=2) in Python; the default) lifts the cap to 2 where the cut rows "
            "come from better episodes."
        )
    else:
        fix = (
            " The data carries no episode returns, so bound_lift (on by default) cannot tell whether those rows are "
            "a stronger policy's actions or worse ones, and keeps the cap. Where they are better than the anchor's "
            "(data logged by a stronger policy than the one you wrap), --config.bound-max 2 on the command line "
            "(TrainConfig(bound_max=2) in Python) lifts the cap everywhere."
        )
    return (
        f"the residual bound shortens the logged action's residual |a - a_b| on {share:.1%} of the data's rows: it "
        f"reaches {largest:.2f} (normalised units; 2 spans the action range) where bound_max={bound_max:g} caps rho, "
        f"so the rectifier cannot reproduce those actions.{fix} What each changed on the suite: benchmarks/README.md, "
        "the residual bound."
    )


def lifted_message(cap: dict, bound_max: float, bound_lift: float) -> str | None:
    """The progress line of a run whose rho's cap bound_lift lifted (`bound_cap` of `SPAR.data_info`: share, lifted,
    cut_return, rows_return); None where it was not lifted."""
    if not cap or not cap.get("lifted"):
        return None
    return (
        f"residual bound: the cap of {bound_max:g} would shorten {cap['share']:.1%} of the logged residuals, from "
        f"episodes that returned {cap['cut_return']:.4g} on average against {cap['rows_return']:.4g} over all rows: "
        f"lifted to {bound_lift:g} (bound_lift; --config.bound-lift 1 keeps the cap)"
    )


class CappedBound(NamedTuple):
    """rho under a cap, and what the cap costs the data (see `capped_bound`)."""

    bound: torch.Tensor
    """(act_dim,) rho, normalised units."""
    share: float
    """Share of the rows whose residual the cap shortens (in a dimension where it cut the quantile), in [0, 1]."""
    largest: float
    """The largest |a - a_b| in those dimensions (normalised units; 0 where the cap cut no quantile)."""
    cut: torch.Tensor
    """(N,) bool: the rows the cap shortens."""


def capped_bound(quantile: torch.Tensor, magnitude: torch.Tensor, bound_min: float, bound_max: float) -> CappedBound:
    """rho from the data's `quantile` of |a - a_b| `(act_dim,)` clamped to [bound_min, bound_max], with the rows
    of `magnitude` (`(N, act_dim)`, |a - a_b| in normalised units) whose residual that cap shortens."""
    bound = quantile.clamp(bound_min, bound_max)
    far = magnitude[:, bound >= bound_max]  # the dimensions whose quantile the cap cut
    if not far.shape[1]:
        return CappedBound(bound, 0.0, 0.0, torch.zeros(magnitude.shape[0], dtype=torch.bool))
    cut = (far > bound_max).any(-1)
    return CappedBound(bound, float(cut.float().mean()), float(far.max()), cut)


class CutReturns(NamedTuple):
    """The returns of the episodes the cap's cut rows come from, against all rows' (see `cut_returns`)."""

    cut: float
    """Mean over the cut rows of their episode's return."""
    rows: float
    """Mean over all rows of their episode's return."""
    spread: float
    """Largest minus smallest episode return of the data."""


def cut_returns(cap: CappedBound, row_return: np.ndarray | None) -> CutReturns | None:
    """What the rows `cap` cuts earned, from `row_return` `(N,)` (each row's episode return); None without
    returns or cut rows."""
    if row_return is None or not bool(cap.cut.any()):
        return None
    returns = np.asarray(row_return, np.float64)
    cut = cap.cut.numpy()
    return CutReturns(float(returns[cut].mean()), float(returns.mean()), float(returns.max() - returns.min()))


def lifts_cap(cap: CappedBound, returns: CutReturns | None) -> bool:
    """Whether `TrainConfig.bound_lift` lifts the cap: it shortens the logged residual on more than
    `CLIP_WARN_SHARE` of the rows, and those rows come from episodes that returned more than the data's rows on
    average by over `LIFT_RETURN_MARGIN` of the data's spread of episode returns (actions of a stronger policy
    than the anchor, not the early, worse ones of a replay buffer)."""
    if cap.share <= CLIP_WARN_SHARE or returns is None:
        return False
    return returns.cut - returns.rows > LIFT_RETURN_MARGIN * returns.spread


class LatentPolicy(NamedTuple):
    """One latent policy SPAR trains: its metrics' prefix, the actor and its optimiser, the lsi_anchor_penalty
    its LSI scores with, the generator of its candidates, the weight of its in-sample term (0: none), whether
    it self-imitates (LSI) at all, and its learning-rate schedule over stage (iii) ("constant" or "cosine")."""

    prefix: str
    actor: torch.nn.Module
    optimizer: torch.optim.Optimizer
    penalty: float
    generator: torch.Generator
    in_sample: float
    lsi: bool = True
    schedule: str = "constant"


class SPAR:
    """Trains a `Rectifier` (latent policy mu + residual decoder g) around the anchor."""

    needs_anchor = True
    settings = (IQLSettings, SPARSettings)  # IQL's for the conservative critic
    scaled_rewards = True
    staged = True  # manifold_fraction and fit_fraction are shares of `steps`
    artifact = "rectifier"

    @classmethod
    def data_info(
        cls,
        config: TrainConfig,
        info: DataInfo,
        action: torch.Tensor,
        base: torch.Tensor | None,
        row_return: np.ndarray | None = None,
    ) -> tuple[DataInfo, torch.Tensor]:
        """The residual statistics of the data around the anchor: the bound rho (the `bound_quantile`
        of `|a - a_b|` per dimension, clamped to [bound_min, bound_max], or to [bound_min, bound_lift] where
        the cap of bound_max cuts rows from better episodes (`lifts_cap`); unless `residual_bound` sets it), and
        the mean and std of the residuals clipped to it. `row_return` `(N,)`: the return of each row's episode
        (None: unknown, never lifted). `bound_cap` in the returned info: the share of rows the cap of bound_max
        cuts, whether `lifts_cap` holds and whether bound_lift lifted it, and the returns it compared. The "no
        anchor" ablation (`anchored=False`) trains a global policy around zero with rho = 1."""
        if not config.anchored:
            base = torch.zeros_like(action)
        residual = action - base
        if not config.anchored:
            bound = torch.ones(info.act_dim)
        elif config.residual_bound is not None:
            bound = torch.full((info.act_dim,), float(config.residual_bound))
        else:
            magnitude = residual.abs()
            quantile = torch.quantile(magnitude[:1_000_000], config.bound_quantile, dim=0)
            if float(quantile.max()) < NO_SPREAD:
                warnings.warn(no_spread_message(config.bound_quantile, float(quantile.max())), stacklevel=2)
            cap = capped_bound(quantile, magnitude, config.bound_min, config.bound_max)
            returns = cut_returns(cap, row_return)
            lifts = lifts_cap(cap, returns)
            lifted = lifts and config.bound_lift is not None and config.bound_lift > config.bound_max
            cut = dict(share=round(cap.share, 6), lifts=lifts, lifted=lifted)
            if returns is not None:
                cut.update(cut_return=returns.cut, rows_return=returns.rows, return_spread=returns.spread)
            if lifted:
                cap = capped_bound(quantile, magnitude, config.bound_min, config.bound_lift)
            elif cap.share > CLIP_WARN_SHARE and (returns is None or lifts):
                warnings.warn(clipped_message(cap.share, cap.largest, config.bound_max, returns), stacklevel=2)
            bound = cap.bound
        clipped = torch.maximum(torch.minimum(residual, bound), -bound)
        stats = dict(
            residual_bound=bound.numpy(),
            residual_mean=clipped.mean(0).numpy(),
            residual_std=clipped.std(0).clamp_min(1e-3).numpy(),
            bound_cap=cut if config.anchored and config.residual_bound is None else None,
        )
        return info._replace(**stats), base

    def __init__(self, info: DataInfo, config: TrainConfig, generator: torch.Generator):
        self.config, self.generator = config, generator
        obs_dim, act_dim = info.obs_dim, info.act_dim
        latent = (config.latent_dim or 2 * act_dim) if config.use_latent else 0
        self.rect = Rectifier(
            obs_dim,
            act_dim,
            info.residual_bound,
            info.obs_mean,
            info.obs_std,
            latent_dim=latent,
            latent_box=config.latent_box,
            hidden=config.hidden,
            anchored=config.anchored,
            residual_mean=info.residual_mean,
            residual_std=info.residual_std,
        )
        self.rho = self.rect.residual_bound
        self.critic = IQLCritic(obs_dim, act_dim, config)
        self.actor_opt = adam(self.rect.actor.parameters(), config.lr)
        self.encoder = self.prior = None
        if config.use_latent:
            self.encoder = mlp(obs_dim + 2 * act_dim, 2 * latent, config.hidden)
            params = [*self.encoder.parameters(), *self.rect.decoder.parameters()]
            self.cvae_opt = adam(params, config.lr)
        if config.latent_search == "conditional":  # p(z | s, a_b), fitted beside the CVAE in stage (i)
            self.prior = mlp(obs_dim + act_dim, 2 * latent, config.hidden)
            self.prior_opt = adam(self.prior.parameters(), config.lr)
        self.reach_actor = None  # lsi_reach_penalty's latent policy: mu's start, its own optimiser and draws
        if config.lsi_reach_penalty is not None:
            self.reach_actor = copy.deepcopy(self.rect.actor)
            self.reach_opt = adam(self.reach_actor.parameters(), config.lr)
            self.reach_generator = torch.Generator().manual_seed(config.seed + REACH_SEED_OFFSET)
        self.insample_actor = None  # in_sample_candidate's latent policy: mu's start, its own optimiser and draws
        if config.in_sample_candidate:
            self.insample_actor = copy.deepcopy(self.rect.actor)
            self.insample_opt = adam(self.insample_actor.parameters(), config.lr)
            self.insample_generator = torch.Generator().manual_seed(config.seed + INSAMPLE_SEED_OFFSET)
        self.offdata = self.world = None  # drift_penalty's off-data value, and the model world it rolls out in
        if config.drift_penalty:
            self.offdata = OffDataValue(
                obs_dim, act_dim, config.hidden, config.drift_discount, config.lr, config.drift_branches
            )
            self.offdata_generator = torch.Generator().manual_seed(config.seed + OFFDATA_SEED_OFFSET)

    @classmethod
    def needs_model(cls, config: TrainConfig) -> bool:
        """Whether training needs the data's dynamics model before it starts (`attach_model`)."""
        return config.drift_penalty > 0

    def attach_model(self, world: ModelWorld) -> None:
        """Give drift_penalty's off-data value the model world its rollouts run in (the trainer does this)."""
        self.world = world

    def modules(self) -> dict:
        mods = {"rectifier": self.rect, "critic": self.critic}
        if self.encoder is not None:
            mods["encoder"] = self.encoder
        if self.prior is not None:
            mods["prior"] = self.prior
        if self.reach_actor is not None:
            mods["reach_actor"] = self.reach_actor
        if self.insample_actor is not None:
            mods["insample_actor"] = self.insample_actor
        if self.offdata is not None:
            mods["offdata"] = self.offdata
        return mods

    def generators(self) -> dict:
        """Random generators besides the trainer's own, by name (checkpointed with it)."""
        out = {"reach": self.reach_generator} if self.reach_actor is not None else {}
        if self.insample_actor is not None:
            out["insample"] = self.insample_generator
        if self.offdata is not None:
            out["offdata"] = self.offdata_generator
        return out

    def latent_policies(self) -> list[LatentPolicy]:
        """Each latent policy trained (`LatentPolicy`): mu first, then the reach policy (with lsi_reach_penalty),
        then the in-sample candidate (with in_sample_candidate)."""
        cfg = self.config
        weight = cfg.in_sample_weight
        mu = (self.rect.actor, self.actor_opt, cfg.lsi_anchor_penalty, self.generator, weight)
        out = [LatentPolicy("", *mu, schedule=cfg.actor_lr_schedule)]
        if self.reach_actor is not None:
            reach = (self.reach_actor, self.reach_opt, cfg.lsi_reach_penalty, self.reach_generator, weight)
            out.append(LatentPolicy("reach_", *reach, schedule=cfg.actor_lr_schedule))
        if self.insample_actor is not None:
            insample = (self.insample_actor, self.insample_opt, cfg.lsi_anchor_penalty, self.insample_generator)
            recipe = (cfg.in_sample_candidate, cfg.in_sample_candidate_lsi, cfg.in_sample_lr_schedule)
            out.append(LatentPolicy("insample_", *insample, *recipe))
        return out

    def optimizers(self) -> dict:
        opts = {"critic": self.critic.optimizer, "actor": self.actor_opt}
        if self.encoder is not None:
            opts["cvae"] = self.cvae_opt
        if self.prior is not None:
            opts["prior"] = self.prior_opt
        if self.reach_actor is not None:
            opts["reach_actor"] = self.reach_opt
        if self.insample_actor is not None:
            opts["insample_actor"] = self.insample_opt
        if self.offdata is not None:
            opts["offdata"] = self.offdata.optimizer
        return opts

    # -- pieces -------------------------------------------------------------------------------
    def data_residual(self, b: Batch) -> torch.Tensor:
        """Dataset residual `a - a_b` clipped to the bound: (B, act_dim)."""
        return torch.maximum(torch.minimum(b.action - b.base_action, self.rho), -self.rho)

    def encode(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | s, a_b, r): mean and log-std, (B, L) each."""
        mean, log_std = self.encoder(torch.cat([x, residual], -1)).chunk(2, -1)
        return mean, log_std.clamp(-4.0, 4.0)

    def conditional_prior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | s, a_b) (with `latent_search="conditional"`): mean and log-std, (B, L) each."""
        mean, log_std = self.prior(x).chunk(2, -1)
        return mean, log_std.clamp(-4.0, 4.0)

    @torch.no_grad()
    def search_region(
        self,
        x: torch.Tensor,
        width: float | None = None,
        prior: tuple[torch.Tensor, torch.Tensor] | None = None,
        anchor: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditional search's region at each state (with `latent_search="conditional"`): the
        conditional prior's mean +- `width` (default `search_width`) of its stds, widened per dimension
        to take in the anchor's own latent (`search_keeps_anchor`). The latent box clips it later.

        Args:
            x: normalised observation and anchor action, (B, obs_dim + act_dim).
            prior: `conditional_prior(x)` where the caller has it already (mean, log-std).
            anchor: `anchor_latent(x)` where the caller has it already, (B, L).

        Returns:
            lower and upper corners, (B, L) each.
        """
        centre, log_std = self.conditional_prior(x) if prior is None else prior
        half = (self.config.search_width if width is None else width) * log_std.exp()
        low, high = centre - half, centre + half
        if self.config.search_keeps_anchor:
            anchor = self.anchor_latent(x) if anchor is None else anchor
            low, high = torch.minimum(low, anchor), torch.maximum(high, anchor)
        return low, high

    @torch.no_grad()
    def project(self, x: torch.Tensor, base: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """What the decoded support can express of `target`: its residual to `base` clipped to rho,
        encoded (mean, clipped to the latent box as LSI's candidates are) and decoded.

        Args:
            x: normalised observation and anchor action, (B, obs_dim + act_dim).
            base, target: anchor and wanted actions in normalised units [-1, 1], (B, act_dim).

        Returns:
            the expressible action `base + g(x, z)` in [-1, 1], (B, act_dim); without a CVAE
            (`use_latent=False`), the clipped residual itself.
        """
        r = torch.maximum(torch.minimum(target - base, self.rho), -self.rho)
        if self.encoder is not None:
            r = self.rect.decode(x, self.residual_latent(x, r))
        return (base + r).clamp(-1.0, 1.0)

    def actor_output(self, x: torch.Tensor, actor: torch.nn.Module | None = None) -> torch.Tensor:
        """What a latent policy (default mu) outputs at inputs x (B, obs+act): its latent in the box (B, L),
        or without a latent the residual itself (B, act_dim), bounded by rho."""
        actor = self.rect.actor if actor is None else actor
        if self.encoder is None:
            return self.rho * torch.tanh(actor(x))
        return self.rect.latent_box * torch.tanh(actor(x))

    def residual_policy(
        self, x: torch.Tensor, actor: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent or residual the actor (default mu) outputs, decoded residual), from inputs x (B, obs+act)."""
        out = self.actor_output(x, actor)
        return (out, out) if self.encoder is None else (out, self.rect.decode(x, out))

    # -- stages -------------------------------------------------------------------------------
    def update(self, b: Batch, step: int) -> dict:
        cfg = self.config
        advantage, metrics = self.critic.update(b)
        start = cfg.manifold_steps + cfg.fit_steps
        if step < cfg.manifold_steps:
            metrics.update(self._cvae(torch.cat([b.obs, b.base_action], -1), b))
            return metrics
        if self.encoder is not None and self.rect.decoder[0].weight.requires_grad:
            self.rect.decoder.requires_grad_(False)  # stage (i) is over: the support is fixed
        x = torch.cat([b.obs, b.base_action], -1)
        if step < start:
            metrics.update(self._fit(x, b))
            return metrics
        if self.offdata is not None:
            metrics.update(self._offdata_step(step - start))
        for prefix, actor, opt, penalty, generator, in_sample, lsi, schedule in self.latent_policies():
            losses = []
            if in_sample:
                loss, m = self._in_sample(x, b, advantage, actor)
                losses.append(in_sample * loss)
                metrics.update({prefix + k: v for k, v in m.items()})
            if lsi and (step - start) % cfg.lsi_every == 0:
                n = min(cfg.lsi_states, b.obs.shape[0])
                loss, m = self._improve(x[:n], b, actor, penalty, generator)
                losses.append(loss)
                metrics.update({prefix + k: v for k, v in m.items()})
            if losses:
                if schedule == "cosine":  # stateless: a function of the step, so resuming is exact
                    done = (step - start) / max(cfg.steps - start, 1)
                    opt.param_groups[0]["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
                self._step_actor(sum(losses), actor, opt)
        return metrics

    def _cvae(self, x: torch.Tensor, b: Batch) -> dict:
        if self.encoder is None:
            return {}
        r = self.data_residual(b)
        mean, log_std = self.encode(x, r)
        z = mean + log_std.exp() * torch.randn(mean.shape, generator=self.generator)
        # Reconstruction in units of the data's residual std: with raw units and lambda_kl = 0.5
        # the latent collapsed whenever residuals were small (std <= 0.5: measured on PointReach,
        # encoder means of std 0.02 and a decoder that ignored z).
        inv_std = 1.0 / self.rect.residual_std
        loss, rec, kl = cvae_loss(self.rect.decode(x, z) * inv_std, r * inv_std, mean, log_std, self.config.kl_weight)
        self.cvae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.cvae_opt.step()
        metrics = {"cvae_recon": rec.detach(), "cvae_kl": kl.detach()}
        if self.prior is not None:
            prior_loss = conditional_prior_loss(mean, log_std, *self.conditional_prior(x))
            self.prior_opt.zero_grad(set_to_none=True)
            prior_loss.backward()
            self.prior_opt.step()
            metrics["prior_kl"] = prior_loss.detach()
        return metrics

    @torch.no_grad()
    def anchor_advantage(self, obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The anchor's advantage over the data's value, `min Q_target(s, a_b) - V(s)`: standardised obs
        (B, obs_dim) and normalised anchor actions (B, act_dim) -> (B,), scaled-reward units. V is the in-sample
        expectile value of the data's actions, so a negative mean says the critic rates the anchor below what
        the data does at its states (TrainConfig.reach_weak_anchor_only)."""
        return self.critic.q_min(obs, base) - self.critic.value(obs)

    @torch.no_grad()
    def rectified_action(self, obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """mu's whole residual (alpha 1, no gate) on the anchor's action: standardised obs (B, obs_dim) and
        normalised anchor actions (B, act_dim) -> normalised actions in [-1, 1], (B, act_dim)."""
        return (base + self.residual_policy(torch.cat([obs, base], -1))[1]).clamp(-1.0, 1.0)

    @torch.no_grad()
    def branch_actions(self, obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """drift_branches first actions per state, drawn from mu's LSI candidates (its perturbations, the
        anchor's latent in the logged one's place, prior samples; mu itself left out: the rollout takes it):
        standardised obs (B, obs_dim), normalised anchor actions (B, act_dim) -> (B, branches, act_dim)
        normalised actions in [-1, 1]. Draws from the off-data value's generator."""
        g, x = self.offdata_generator, torch.cat([obs, base], -1)
        cands = self._candidates(x, self.actor_output(x), torch.zeros_like(base), generator=g)
        n, k, dim = cands.shape
        pick = 1 + torch.randint(k - 1, (n, self.offdata.branches), generator=g)
        chosen = cands.gather(1, pick.unsqueeze(-1).expand(-1, -1, dim))
        if self.encoder is None:
            res = chosen
        else:
            flat = x.repeat_interleave(self.offdata.branches, 0)
            res = self.rect.decode(flat, chosen.reshape(-1, dim)).view(n, self.offdata.branches, -1)
        return (base.unsqueeze(1) + res).clamp(-1.0, 1.0)

    def _offdata_step(self, step: int) -> dict:
        """drift_penalty: refresh the off-data value's model rollouts every REFRESH_EVERY steps of stage
        (iii) (`step` counts from its start), then one TD step."""
        if self.world is None:
            raise RuntimeError(
                "drift_penalty needs the data's dynamics model: train through Trainer (it fits or loads one), "
                "or call SPAR.attach_model(...) first"
            )
        metrics = {}
        if step % REFRESH_EVERY == 0:
            explore = self.branch_actions if self.offdata.branches else None
            metrics.update(self.offdata.refresh(self.world, self.rectified_action, self.offdata_generator, explore))
        batch = self.config.batch_size
        metrics.update(self.offdata.update(self.rectified_action, self.offdata_generator, batch))
        return metrics

    def _step_actor(self, loss: torch.Tensor, actor: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(actor.parameters()))
        opt.step()

    def anchor_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent (or, without one, the residual) of the anchor's own action: (B, L), in the box."""
        zero = torch.zeros(x.shape[0], self.rect.act_dim)
        return zero if self.encoder is None else self.residual_latent(x, zero)

    @torch.no_grad()
    def residual_latent(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The latent of a residual: the encoder's mean for it, clipped to the latent box, (B, L).
        `residual`: (B, act_dim), clipped to rho."""
        return self.encode(x, residual)[0].clamp(-self.config.latent_box, self.config.latent_box)

    @torch.no_grad()
    def anchor_distance(
        self,
        x: torch.Tensor,
        candidates: torch.Tensor,
        residual: torch.Tensor | None = None,
        prior: tuple[torch.Tensor, torch.Tensor] | None = None,
        origin: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """How far each candidate is from the anchor's own action (or from `base + residual`), in the data's
        spread at that state: the Euclidean distance from that action's latent in the conditional prior's
        stds (with `latent_search="conditional"`), in latent units otherwise (the box's prior is N(0, I));
        without a latent, of the residuals in units of the bound rho.

        Args:
            x: normalised observation and anchor action, (B, obs_dim + act_dim).
            candidates: latents (or residuals without a latent), (B, K, L).
            residual: the origin's residual to the anchor, e.g. the logged one, clipped to rho, (B, act_dim);
                None: the anchor's own action (a zero residual).
            prior: `conditional_prior(x)` where the caller has it already (mean, log-std).
            origin: the origin's latent where the caller has it already (`anchor_latent(x)`, or
                `residual_latent(x, residual)`), (B, L); with a latent only.

        Returns:
            distances, (B, K), >= 0; 0 at the origin's latent.
        """
        if self.encoder is None:
            origin = 0.0 if residual is None else residual.unsqueeze(1)
            return ((candidates - origin) / self.rho).norm(dim=-1)
        if origin is None:
            origin = self.anchor_latent(x) if residual is None else self.residual_latent(x, residual)
        if self.prior is None:
            scale = 1.0
        else:
            scale = (self.conditional_prior(x) if prior is None else prior)[1].exp().unsqueeze(1)
        return ((candidates - origin.unsqueeze(1)) / scale).norm(dim=-1)

    def _fit(self, x: torch.Tensor, b: Batch) -> dict:
        r = torch.zeros_like(b.action) if self.config.fit_to == "anchor" else self.data_residual(b)
        target = r if self.encoder is None else self.residual_latent(x, r)
        metrics = {}
        for policy in self.latent_policies():
            loss = latent_fit_loss(self.actor_output(x, policy.actor), target)
            self._step_actor(loss, policy.actor, policy.optimizer)
            metrics[policy.prefix + "fit_loss"] = loss.detach()
        return metrics

    def _improve(
        self,
        x: torch.Tensor,
        b: Batch,
        actor: torch.nn.Module | None = None,
        penalty: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """LSI's loss for one latent policy (default mu, at lsi_anchor_penalty, its candidates drawn from the
        trainer's generator) on the first rows of the batch; x: (n, obs+act)."""
        cfg = self.config
        actor = self.rect.actor if actor is None else actor
        penalty = cfg.lsi_anchor_penalty if penalty is None else penalty
        n = x.shape[0]  # the first lsi_states rows of the (random) batch
        obs, base = b.obs[:n], b.base_action[:n]
        if not cfg.self_imitation:  # PLAS-style ablation: follow dQ/da through the frozen decoder
            residual = self.residual_policy(x)[1]
            q = self.critic.q(torch.cat([obs, (base + residual).clamp(-1.0, 1.0)], -1))[0]
            loss = -q.mean()
            return loss, {"plas_loss": loss.detach()}
        # What the actor outputs: the latent (or, without a latent, the residual itself).
        out = self.actor_output(x, actor)
        # Candidates are ranked by Q differences far smaller than Q itself: scored in full float32 even under
        # fast_matmul (bf16 inputs flipped the best candidate on about a fifth of the states in a probe).
        with torch.no_grad(), training_precision(False):
            # Once per update: the prior, and the latents of the anchor's action and of the logged one
            # (the candidates, the search region and the penalty's origins share them).
            prior = self.conditional_prior(x) if self.prior is not None else None
            logged = self.data_residual(b)[:n]
            anchor_z = data_z = None
            if self.encoder is not None:
                anchor_z, data_z = self.anchor_latent(x), self.encode(x, logged)[0]
            cands = self._candidates(x, out.detach(), logged, prior, anchor_z, data_z, generator)
            k = cands.shape[1]
            flat_x = x.unsqueeze(1).expand(-1, k, -1).reshape(n * k, -1)
            if self.encoder is None:
                res = cands.reshape(n * k, -1)
            else:
                res = self.rect.decode(flat_x, cands.reshape(n * k, -1))
            actions = (base.repeat_interleave(k, 0) + res).clamp(-1.0, 1.0)
            if cfg.lsi_agreement:
                heads = self.critic.q_target(torch.cat([obs.repeat_interleave(k, 0), actions], -1)).view(-1, n, k)
                q, scores, value = heads.min(0).values, paired_gains(heads), torch.zeros(n)
            else:
                q = self.critic.q_min(obs.repeat_interleave(k, 0), actions).view(n, k)
                scores, value = q, self.critic.value(obs)
            spread = (scores - scores.mean(-1, keepdim=True)).pow(2).mean().sqrt()
            if self.offdata is not None and actor is self.rect.actor:  # pessimism about where it leads
                ahead = self.offdata(obs.repeat_interleave(k, 0), actions).view(n, k).clamp_min(0.0)
                scores = scores - cfg.drift_penalty * spread * ahead
            if penalty:  # pessimism growing with the distance from the anchor
                distance = self.anchor_distance(x, cands, prior=prior, origin=anchor_z)
                if cfg.lsi_penalty_origin == "anchor_or_data":
                    box = cfg.latent_box
                    data = self.anchor_distance(
                        x, cands, logged, prior, None if data_z is None else data_z.clamp(-box, box)
                    )
                    distance = torch.minimum(distance, data)
                scores = scores - penalty * spread * 0.5 * distance.pow(2)
            log_prior = None
            if self.encoder is not None and cfg.lsi_prior_weight:
                centre = anchor_z.unsqueeze(1) if cfg.fit_to == "anchor" else 0.0
                log_prior = -0.5 * (cands - centre).pow(2).sum(-1)
            weights = lsi_weights(
                scores,
                value,
                cfg.lsi_temperature,
                cfg.lsi_normalize,
                log_prior,
                cfg.lsi_prior_weight,
                improvements_only=cfg.lsi_improvements_only,
            )
        loss = lsi_loss(out, cands, weights)
        return loss, {
            "lsi_loss": loss.detach(),
            "lsi_best_weight": weights.max(-1).values.mean(),
            "lsi_q_gain": (q * weights).sum(-1).mean() - q[:, 0].mean(),
        }

    def _in_sample(
        self, x: torch.Tensor, b: Batch, advantage: torch.Tensor, actor: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, dict]:
        """IQL's extraction in the residual's latent space: mu regressed onto the latent of the logged
        residual with weight `min(exp(beta * A), max_w)`, A the in-sample advantage min Q_target(s, a) - V(s)
        of the logged action (the critic was trained there). Every state of the batch, every step. With
        `in_sample_target="residual"` the decoded residual is regressed onto the logged one instead, both in
        units of the data's residual std (the decoder is frozen: only the latent policy moves)."""
        cfg = self.config
        out = self.actor_output(x, actor)
        r = self.data_residual(b)
        if self.encoder is None:
            pred, target = out, r
        elif cfg.in_sample_target == "residual":
            inv_std = 1.0 / self.rect.residual_std
            pred, target = self.rect.decode(x, out) * inv_std, r * inv_std
        else:
            pred, target = out, self.residual_latent(x, r)
        loss = awr_loss(pred, target, advantage, cfg.awr_temperature, cfg.awr_max_weight)
        return loss, {"in_sample_loss": loss.detach()}

    def _candidates(
        self,
        x: torch.Tensor,
        current: torch.Tensor,
        data_residual: torch.Tensor,
        prior: tuple[torch.Tensor, torch.Tensor] | None = None,
        anchor_z: torch.Tensor | None = None,
        data_z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(n, 1 + K + 1 + P [+ 1], L): current, K perturbations, the data's own, P prior samples
        [and, with `anchor_candidate`, the anchor's own]. Where the caller has them already: `prior`,
        `conditional_prior(x)`; `anchor_z`, `anchor_latent(x)`; `data_z`, the encoder's mean for
        `data_residual` (unclipped); `generator`, the draws' (default the trainer's)."""
        cfg, g = self.config, self.generator if generator is None else generator
        n, dim = current.shape
        if self.encoder is None:  # "no latent": isotropic noise on the residual itself
            scale, box = cfg.candidate_sigma * self.rho, self.rho
            data = data_residual
            drawn = (2 * torch.rand((n, cfg.num_prior, dim), generator=g) - 1) * self.rho
        elif self.prior is not None:  # the state's own region: N(m, s^2) of p(z | s, a_b), within width * s
            centre, log_std = self.conditional_prior(x) if prior is None else prior
            std = log_std.exp().unsqueeze(1)
            scale, box = cfg.candidate_sigma * std, cfg.latent_box
            data = self.encode(x, data_residual)[0] if data_z is None else data_z
            drawn = centre.unsqueeze(1) + std * torch.randn((n, cfg.num_prior, dim), generator=g)
        else:
            scale, box = cfg.candidate_sigma, cfg.latent_box
            data = self.encode(x, data_residual)[0] if data_z is None else data_z
            drawn = torch.randn((n, cfg.num_prior, dim), generator=g)
        noise = torch.randn((n, cfg.num_candidates, dim), generator=g) * scale
        parts = [current.unsqueeze(1), current.unsqueeze(1) + noise, data.unsqueeze(1), drawn]
        if cfg.anchor_candidate:
            parts.append((self.anchor_latent(x) if anchor_z is None else anchor_z).unsqueeze(1))
        cands = torch.cat(parts, 1)
        if self.prior is not None:
            low, high = self.search_region(x, prior=(centre, log_std), anchor=anchor_z)
            cands = torch.maximum(torch.minimum(cands, high.unsqueeze(1)), low.unsqueeze(1))
        return torch.maximum(torch.minimum(cands, box), -box) if torch.is_tensor(box) else cands.clamp(-box, box)

    # -- products -----------------------------------------------------------------------------
    def checkpoint(self, deployment: Deployment, policy: str = "mu") -> RectifierCheckpoint:
        """The deployable rectifier with everything needed to load it safely; the target twin critic
        that LSI scored candidates with travels along for the deployment gate. `policy`: which latent policy
        it carries, "mu", "reach" (its config's lsi_anchor_penalty is then the penalty that policy trained at,
        and lsi_reach_penalty mu's) or "insample" (its config's in_sample_weight the weight it trained at)."""
        d = deployment
        rect = self.rect.with_critic(self.critic.q_target)
        config = d.config.to_dict()
        if policy == "reach":
            if self.reach_actor is None:
                raise ValueError("this SPAR run trains no reach policy (lsi_reach_penalty is None)")
            rect.actor = copy.deepcopy(self.reach_actor)
            config |= {
                "lsi_anchor_penalty": d.config.lsi_reach_penalty,
                "lsi_reach_penalty": d.config.lsi_anchor_penalty,
            }
        elif policy == "insample":
            if self.insample_actor is None:
                raise ValueError("this SPAR run trains no in-sample candidate (in_sample_candidate is 0)")
            rect.actor = copy.deepcopy(self.insample_actor)
            config |= {"in_sample_weight": d.config.in_sample_candidate}
        elif policy != "mu":
            raise ValueError(f"policy={policy!r}: use 'mu', 'reach' or 'insample'")
        rect = rect.eval().requires_grad_(False)
        return RectifierCheckpoint.from_anchor(
            rect, d.observation_space, d.action_space, d.anchor, d.probe_obs, config=config
        )

    def policy(self, deployment: Deployment):
        return RectifiedPolicy(deployment.anchor, self.checkpoint(deployment), check_anchor=False)

    def deployed(self, deployment: Deployment, folder: str | Path):
        """The policy `export` wrote to `folder`, as deployed (its default alpha included)."""
        return RectifiedPolicy(deployment.anchor, folder, check_anchor=False)

    def export(self, deployment: Deployment, folder: str | Path, policy: str = "mu") -> Path:
        """Write the rectifier carrying latent policy `policy` (see `checkpoint`) into `folder`."""
        return save_rectifier(self.checkpoint(deployment, policy), folder)
