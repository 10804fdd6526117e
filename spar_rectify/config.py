"""Training configuration: one frozen dataclass, validated, saved as JSON beside every run.

Defines `TrainConfig` (its sections `CommonSettings`, `IQLSettings`, `TD3BCSettings`, `SPARSettings`,
`Bookkeeping`), `ALGOS`, `IN_SAMPLE_RULES`, `BOOKKEEPING`, `SAVED_BEFORE_FIELD`, `saved_settings`, `section_fields`.

Defaults follow the papers of each method (TD3+BC: Fujimoto & Gu 2021; IQL: Kostrikov et al.
2021, locomotion settings) and `shared/design/spar-method.md` for SPAR; every SPAR default is a
starting point that the benchmarks measure.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, get_args, get_origin, get_type_hints

#: The methods `TrainConfig.algo` names (the one list; `algos.ALGORITHMS` maps each to its class).
Algo = Literal["spar", "bc", "td3bc", "iql"]
ALGOS: tuple[str, ...] = get_args(Algo)
#: The rules `TrainConfig.in_sample_rule` names (`drift.in_sample_replaces` applies them).
InSampleRule = Literal["larger_gain", "larger_alpha", "lsi_at_zero"]
IN_SAMPLE_RULES: tuple[str, ...] = get_args(InSampleRule)


@dataclass(frozen=True)
class CommonSettings:
    """Settings every method reads."""

    algo: Algo = "spar"
    """Method: spar (rectifier around the anchor), bc (pure behaviour cloning), td3bc, iql."""
    steps: int = 1_000_000
    """Gradient steps (the same budget for every method in a comparison). The default 1,000,000 takes
    hours on a laptop CPU (SPAR ran about 110 steps/s on one core here: 2.5 h); 100k-200k already
    separate the methods on the suite's datasets. spar train prints its measured pace early on."""
    batch_size: int = 256
    """Transitions per gradient step."""
    seed: int = 0
    """Seeds network initialisation, batch sampling and every training-time noise."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of every network (actors, critics, CVAE)."""
    lr: float = 3e-4
    """Adam learning rate of every network."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of target networks."""
    reward_scale: Literal["returns", "none"] = "returns"
    """returns: rewards * 1000 / (max - min episode return) (IQL's locomotion convention)."""
    fast_matmul: bool = False
    """Gradient steps multiply matrices on the CPU's bf16 units (inputs rounded to bfloat16, float32
    accumulation; AMX / AVX512-BF16 only, a no-op elsewhere): 1.0-1.2x faster gradient steps measured on an
    AMX CPU. Evaluation and the deployed policy stay float32. See spar_rectify.matmul."""


@dataclass(frozen=True)
class IQLSettings:
    """IQL's settings; SPAR's conservative critic (and its in-sample term) reads them too."""

    expectile: float = 0.7
    """[iql; spar critic] Expectile of V's regression onto min(Q1, Q2); higher: closer to the in-sample max."""
    awr_temperature: float = 3.0
    """[iql; spar in_sample_weight] IQL's inverse temperature beta for advantage-weighted extraction."""
    awr_max_weight: float = 100.0
    """[iql; spar in_sample_weight] Clip of the exponentiated advantage weights."""


@dataclass(frozen=True)
class TD3BCSettings:
    """TD3+BC's settings."""

    td3bc_alpha: float = 2.5
    """[td3bc] Weight of the Q term relative to the BC term (lambda = alpha / mean|Q|)."""
    policy_noise: float = 0.2
    """[td3bc] Target policy smoothing noise (normalised action units)."""
    noise_clip: float = 0.5
    """[td3bc] Clip of the smoothing noise."""
    policy_freq: int = 2
    """[td3bc] Actor updates every this many critic updates (TD3+BC)."""


@dataclass(frozen=True)
class SPARSettings:
    """SPAR's settings: the residual manifold (stage i), the latent policy's fit and Latent
    Self-Imitation (stage iii), and the ablation switches."""

    # SPAR stage (i): residual manifold
    latent_dim: Optional[int] = None
    """[spar] Size of the CVAE latent; None: 2 * act_dim."""
    latent_box: float = 2.0
    """[spar] c: the latent policy stays in |z_i| <= c."""
    kl_weight: float = 0.02
    """[spar] lambda_kl of the residual CVAE. Small (0.02, the default since session 11): a precise support
    that can express the data's precise actions (IQL's own policy on hopper medium-replay, executed through
    it, lost 2-7 of its 45.6 points; at the specification's 0.5, 9-15), whose latent box also decodes
    residuals the data never had at a state, so the default searches each state's own region
    (latent_search) and charges the distance from the anchor (lsi_anchor_penalty). Larger: every latent in
    the box decodes a residual the data has near that state (conservative, imprecise; benchmarks/README.md)."""
    residual_bound: Optional[float] = None
    """[spar] rho for every dimension, in (0, 2] (normalised units: 2 spans the whole action range); None:
    the data's quantile of |residual| per dimension."""
    bound_quantile: float = 0.99
    """[spar] Quantile of |a - a_b| per dimension that sets rho when residual_bound is None."""
    bound_min: float = 0.05
    """[spar] Lower clamp of the data-derived rho."""
    bound_max: float = 1.0
    """[spar] Upper clamp of the data-derived rho, at most 2; larger: bigger corrections, further from the
    anchor. At 1, the data's residual is clipped where the anchor and the logged action sit at opposite
    halves of the action range (on hopper medium-expert around the SB3 medium policy: 22% of the expert's
    states); 2 changed neither the return nor the drift there (100k, seed 0; benchmarks/README.md). With the
    in-sample candidate (200k, seed 0, sessions 32-33) the candidate at 2 scored 100.7 at 0.29% / 0.56% against
    100.4 at 1.8% / 2.2% at 1 on the same dataset build; only data whose 0.99 quantile exceeds 1 (medium-replay,
    medium-expert; not hopper or HalfCheetah medium) trains differently at 2. On hopper medium-replay around BC
    (200k, seeds 0-1, session 34) 2 let the reach policy drift, the drift check refused it and the deployed score
    fell from 95.5 / 98.1 to 82.0 / 50.3: the default stays 1."""
    bound_lift: Optional[float] = 2.0
    """[spar] A higher cap (in [bound_max, 2]) for data the cap of bound_max cuts where it matters: where bound_max
    shortens the logged residual |a - a_b| on more than 5% of the rows (`algos.spar.CLIP_WARN_SHARE`) and those rows
    come from episodes that returned more than the data's rows on average, by over 10% of the data's spread of
    episode returns (`algos.spar.lifts_cap`: a stronger policy's actions than the anchor's), rho is clamped to
    [bound_min, bound_lift] instead. None or bound_max: bound_max everywhere (`--config.bound-lift 1` turns it off).
    Elsewhere it trains bit for bit as without it. On the suite around the SB3 medium policy
    (`benchmarks/bound_cap_share.py`) it lifts medium-expert (hopper: 11.6% of the rows cut, from episodes scoring
    97.5 against 70.4 over all rows; HalfCheetah 36.8%, 94.1 against 67.4), not medium-replay (39.8% / 58.4% cut,
    from episodes scoring 9.8 / 9.7 against 14.5 / 17.9: the replay's early actions) nor any dataset around BC
    (0-1.5% cut on hopper; 12% from worse episodes on HalfCheetah medium-replay). Where it lifts, it trained better
    on every seed measured (200k steps, benchmarks/README.md, sessions 36-38): hopper medium-expert 100.7 / 101.5 /
    78.6 against 100.4 / 53.0 / 58.2 at the cap of 1 (IQL 100.9 +- 0.4), HalfCheetah medium-expert seed 0 52.4
    against 48.2 (the penalised policy beside it 86.8 against 47.2). The default since session 38 (None before,
    which a resumed older run keeps)."""
    manifold_fraction: float = 0.1
    """[spar] Share of the steps spent training the CVAE (with the critic), before it is frozen."""
    fit_fraction: float = 0.05
    """[spar] Share of the steps spent fitting mu to the encoder mean, before self-imitation."""

    fit_to: Literal["data", "anchor"] = "data"
    """[spar] What mu is fitted to before self-imitation: "data", the encoder mean of the dataset's residual
    (the specification: the rectifier starts by reproducing the data's typical action), or "anchor",
    the encoder mean of a zero residual (it starts as the base policy). "anchor" also centres the LSI
    prior term (lsi_prior_weight) on the anchor's latent."""

    # SPAR stage (iii): Latent Self-Imitation
    num_candidates: int = 8
    """[spar] K perturbations of mu per state."""
    candidate_sigma: float = 0.5
    """[spar] Std of the perturbations in latent units."""
    num_prior: int = 8
    """[spar] Prior samples z ~ N(0, I) added to the candidates of each state: a search over the whole
    decoded support, not only around mu (the specification's default: 2)."""
    anchor_candidate: bool = False
    """[spar] Add the anchor's own action (the latent of a zero residual) to each state's candidates, so the
    critic can prefer the base action itself over every residual."""
    lsi_temperature: float = 1.0
    """[spar] beta in softmax(A / beta) over a state's candidates (advantages standardised first)."""
    lsi_normalize: Literal["within", "batch", "none"] = "within"
    """[spar] Scale of the advantages in the LSI softmax: within-state RMS, batch std, or none (raw
    scaled-reward units, like IQL's extraction). See `losses.lsi_weights`."""
    lsi_prior_weight: float = 0.0
    """[spar] lambda: adds lambda * log N(z_k; 0, I) to each candidate's scaled advantage in the LSI softmax, so
    the weights target p_data(z | s, a_b) * exp(A / beta), the KL-regularised improvement step, instead
    of the best candidate in the box. 0: off (the specification's LSI). See `losses.lsi_weights`."""
    lsi_improvements_only: bool = True
    """[spar] Self-imitation of improvements only: advantages are taken over the current latent and only the
    candidates that beat it (and the current latent itself) get weight, so the regression target never
    has a lower conservative value than where mu already is. False: the specification's softmax over
    every candidate, whose flat weights drift mu toward the data's behaviour (benchmarks/README.md).
    See `losses.lsi_weights`."""
    lsi_anchor_penalty: float = 0.25
    """[spar] kappa: pessimism that grows with the distance from the anchor. Each candidate's score (its
    conservative Q) loses `kappa * S * d^2 / 2` before the LSI weights are taken, d the candidate's distance
    from the anchor's own latent (or the logged action's, see lsi_penalty_origin) in the state's
    conditional-prior stds (latent_search="conditional"), in
    latent units otherwise (in units of rho without a latent), S the RMS within-state spread of the scores
    over the batch: a candidate 2 stds away must beat one at the anchor by 2 * kappa typical spreads. The
    critic is trustworthy near what it was trained on and over-optimistic far from it (benchmarks/README.md). 0: off
    (the specification's LSI). See `SPAR.anchor_distance` and lsi_penalty_origin. 0.25 (the default since
    session 14, with auto_alpha), measured on hopper, 100k, seed 0, against 1 (session 11's default): above it on
    all four cells (BC anchor: medium-replay 58.7 against 36.5, medium 70.5 against 61.1; the SB3 medium
    policy: medium-replay 54.4 against 49.9, medium 66.6 against 58.3), at 200k on medium-replay 86.2 against
    47.3. Alone it reaches too far on narrow data (hopper medium: 14.5% of the env's states off the data at
    alpha 1); auto_alpha finds that offline and deploys a part of the residual (0.5 there). Not yet better
    everywhere: at 200k on hopper medium (seed 0) the offline alpha (0.75) scored 64.3 at 1.3% violations
    where kappa 1 scored 64.6 at 0.4%, and on medium-replay seed 1 it reached 50.5 (IQL 92.1)."""
    lsi_penalty_origin: Literal["anchor", "anchor_or_data"] = "anchor_or_data"
    """[spar] Where lsi_anchor_penalty's distance is measured from: the nearer of the anchor's and the
    logged residual's latent at that state (the default since session 11: the critic was trained on the
    logged action, so it is trusted near either), or the anchor's latent alone. From the anchor alone the
    rectifier could not travel where the data does: the SB3 medium policy on hopper medium-expert 56.8
    against 103.1 from either (100k, benchmarks/README.md)."""
    lsi_reach_penalty: Optional[float] = 0.0
    """[spar] kappa of a second latent policy trained beside the first (the same batches, critic, CVAE and
    prior; its own candidates, drawn from its own generator, so the first trains exactly as it would alone),
    for data where lsi_anchor_penalty holds the rectifier back: on hopper medium-replay seed 1 (200k) kappa
    0.25 scored 50.5 where kappa 0 scored 97.4 at 0.37% violations, while on hopper medium kappa 0 drifted
    (benchmarks/README.md). With auto_alpha, the drift check deploys the second policy when its whole
    residual (alpha 1) stays within drift_threshold of the anchor (and, with reach_weak_anchor_only, the
    anchor is weak), else the first at its own offline alpha (`drift.choose_penalty`); the one not deployed
    is exported beside it (`rectifier-alternative/`). Without auto_alpha the first is deployed. 0 (the
    default since session 21, with reach_weak_anchor_only): measured at 200k on hopper medium-replay (BC
    anchor) and at 100k on hopper medium (benchmarks/README.md, "The reach policy becomes the default").
    None: one latent policy (the defaults before session 21). Costs a second latent-policy update: 1.2x
    SPAR's step time (25.4 against 21.0 steps per CPU-second, AMD family 23,
    `benchmarks/results/train_throughput_reach.json`)."""
    drift_penalty: float = 0.0
    """[spar] beta: pessimism about where a candidate leads. Each of mu's LSI candidates (not the reach
    policy's) loses `beta * S * D(s, a)` before the LSI weights are taken, S as in lsi_anchor_penalty and D the
    off-data value (`spar_rectify.offdata.OffDataValue`): the discounted count of future states beyond the
    data's state support when the candidate's action is taken and the rectified policy acts after, learnt by
    TD on 10-step rollouts of the current policy through the dynamics model auto_alpha uses (fitted before
    training then, drift_model_steps, and kept in the run folder's dynamics/). For data where each action stays
    in its state's data but the policy still walks off the data's states (hopper medium-expert: the whole
    residual at IQL's return with a third of its states off the data; benchmarks/README.md). 0 (the default):
    off. Not measured on a dataset yet. Costs 1.3x SPAR's step time (23.2 against 30.3 steps per CPU-second,
    AMD family 23, `benchmarks/results/train_throughput_drift.json`) plus a model rollout refresh every 1,000
    steps, and the model's fit before training."""
    drift_discount: float = 0.9
    """[spar] gamma_d of drift_penalty's off-data value, in [0, 1): it counts about 1 / (1 - gamma_d) states
    ahead (10 at 0.9)."""
    drift_branches: int = 0
    """[spar] With drift_penalty: candidate actions branched from each rollout's start state, drawn as LSI
    draws its candidates (mu's perturbations, the anchor's latent, prior samples), one model step each, so
    that the off-data value learns how the first action changes where the policy leads: the rollouts alone
    hold only mu's own action at each state, so D's differences between LSI's candidates are extrapolated.
    0 (the default, as in session 17): the rollouts alone. Being measured (4: `--set drift_branches=4`)."""
    lsi_agreement: bool = False
    """[spar] Score each candidate by the gain over the current latent that *both* critic heads agree on
    (min over heads of Q_j(candidate) - Q_j(mu), see `losses.paired_gains`) instead of min-Q(candidate) -
    min-Q(mu): a candidate the heads disagree about gains nothing, so LSI does not chase the critic's noise."""
    in_sample_weight: float = 0.0
    """[spar] lambda of an in-sample term added to the latent policy's loss in stage (iii): mu regressed onto
    the latent of the *logged* residual with IQL's weights min(exp(awr_temperature * A), awr_max_weight), A the
    advantage of the logged action, where the critic was trained (IQL's extraction in the residual's latent
    space; every state of every batch). 0: off (LSI alone, the specification)."""
    in_sample_candidate: float = 1.0
    """[spar] lambda of a third latent policy trained beside mu (the same batches, critic, CVAE and prior; its own
    draws, so mu and the reach policy train exactly as they would without it): IQL's in-sample extraction in the
    residual's latent space at this weight (in_sample_weight's term), plus LSI where in_sample_candidate_lsi. It is the
    fallback of auto_alpha: checked after LSI's policies, gated and ungated (the gate's switching between the base and a
    data-like gait is what drifted on medium-expert), and deployed at its own offline alpha where in_sample_rule says so
    (by default: around an anchor the critic rates below the data's value, where it passes a larger alpha than LSI's and
    the critic rates its deployed actions clearly above LSI's deployed ones); otherwise it is kept in the run folder
    (`rectifier-insample/`; without auto_alpha always, for you to deploy by hand). Where LSI's policies leave the data's
    states, the in-sample term keeps the residual on logged actions: around the SB3 medium policy on hopper medium-
    expert (200k, seeds 0-2), where LSI's went out at alpha 0 / 0.25 / 0.25 (47.4 / 51.3 / 49.6), the candidate goes out
    at 1 and scores 63.3 / 100.0 alone (seeds 0-1) and 100.8 with LSI (seed 2; IQL 100.7); on hopper medium (the SB3
    policy and BC, seed 0) the critic keeps LSI's 0.75 (67.7, 64.3) over it (50.6, 49.9); wherever LSI's goes out at
    alpha 1 (hopper and HalfCheetah medium-replay, HalfCheetah medium) it cannot change the deployment
    (benchmarks/README.md, sessions 28-30). On by default since session 30. Costs a third latent policy's update at
    every step: 1.2x SPAR's step time alone, 1.45x with LSI (66 and 55 against 79 steps per CPU-second beside two jobs,
    `benchmarks/results/train_throughput_insamplealone.json`). 0: none (SPAR before session 30)."""
    in_sample_candidate_lsi: bool = False
    """[spar] Whether the in-sample candidate (in_sample_candidate) also self-imitates (LSI at lsi_anchor_penalty, every
    lsi_every steps, as mu does). False (the default): the in-sample term alone, IQL's extraction in the residual's
    latent space, which regresses only toward logged residuals (so the candidate stays on the data's actions wherever
    the critic weighs them) and skips the candidate's share of LSI's scoring: 1.2x SPAR's step time where the candidate
    with LSI costs 1.45x; on hopper medium-expert seeds 0-1 it scored 63.3 / 100.0 against 54.0 / 100.0 with LSI. True:
    LSI plus the term, the candidate of session 28. Without a candidate (in_sample_candidate 0) it is set to True, as
    runs saved it before the field existed."""
    in_sample_rule: InSampleRule = "larger_gain"
    """[spar] When the in-sample candidate (in_sample_candidate) replaces LSI's deployed rectifier, always only around
    an anchor the critic rates below the data's value and only where the candidate passes a larger offline alpha
    than LSI's (each the larger of its gated and ungated checks): "larger_gain" (the default since session 30)
    where, besides, the run's critic rates the candidate's deployed actions above LSI's deployed ones on the data's
    states by more than `drift.GAIN_MARGIN_SE` standard errors of the paired difference
    (`critic_gain.compare_deployed`); "larger_alpha" (session 29) on the alphas alone; "lsi_at_zero" (session 28)
    only where LSI's goes out at alpha 0. On hopper medium-expert around the SB3 medium policy (200k, seeds 0-2)
    LSI went out at 0 / 0.25 / 0.25 and the candidate at 1, the critic's gains +0.18 / +0.21 / +0.20 against
    0.00 / +0.10 / +0.10: both larger_* rules deploy the candidate (63.3 / 100.0 / 100.8; IQL 100.7). On hopper
    medium around BC (seed 0) LSI went out at 0.75 (64.3) and the candidate at 1 (50.6), gains +0.03 against
    +0.10: larger_alpha hands the cell to the candidate, larger_gain keeps LSI's (benchmarks/README.md, session
    30). A deployment setting: a finished run is re-deployed, not retrained."""
    actor_lr_schedule: Literal["constant", "cosine"] = "constant"
    """[spar] Learning rate of the latent policy mu over stage (iii): constant (the specification), or cosine
    decay from lr to zero at the last step, as IQL's extraction decays its actor's (mu then settles on the
    average of its late targets instead of tracking the latest one)."""
    in_sample_lr_schedule: Literal["constant", "cosine"] = "constant"
    """[spar] Learning rate of the in-sample candidate's latent policy (in_sample_candidate) over stage (iii),
    as actor_lr_schedule is mu's (and the reach policy's): constant, or cosine decay from lr to zero at the last
    step, as IQL decays its own actor's (the candidate is IQL's extraction in the residual's latent space); mu and
    the reach policy train the same either way. Measured where the candidate fell short around the SB3 policy
    (hopper medium-expert, seed 0, 200k): cosine 49.6 against 63.3 at a constant rate (IQL 100.7), so the last
    iterate is not what failed there; the default stays constant (benchmarks/README.md, session 31)."""
    in_sample_target: Literal["latent", "residual"] = "latent"
    """[spar] Where the in-sample term (in_sample_weight, in_sample_candidate) regresses: "latent" (the default),
    the latent policy's output onto the encoder's mean for the logged residual, IQL's extraction in the latent
    space; "residual", the decoded residual (through the frozen decoder) onto the logged residual itself (clipped
    to rho), in units of the data's residual std as the CVAE reconstructs, IQL's extraction in action space with
    the decoder as the policy's last layer. Only the in-sample term changes; LSI regresses in the latent space
    either way. Where the candidate fell short around the SB3 policy (hopper medium-expert seed 0) the CVAE
    reproduced the expert's residuals to within 0.05 of the logged ones on average (benchmarks/README.md,
    session 31): "residual" asks the latent policy for the latent that decodes closest instead. Measured there
    (200k, seed 0, session 32): 100.5 at 2.9% / 5.0%, against 100.4 at 1.8% / 2.2% for "latent" on the same build
    (session 33)."""
    latent_search: Literal["box", "conditional"] = "conditional"
    """[spar] Where Latent Self-Imitation searches: "box", the whole latent box (the specification; every
    latent there decodes a residual the data has near that state only while the KL term is strong), or
    "conditional", a state-conditional prior p(z | s, a_b) fitted to the encoder's posteriors in stage (i):
    prior candidates are drawn from it, perturbations scale with its std, and every candidate (mu's own
    latent included) is clipped to within search_width of its stds around its mean, so mu is pulled toward
    what the data did near each state however weak the KL term. Training only: the deployed rectifier is
    the same module. The default since session 11; "box" when use_latent is false (there is no latent to
    search). Measured with kl_weight=0.02 (benchmarks/README.md): far above the box on narrow data (hopper
    medium) at about its violations; with lsi_anchor_penalty=0, below the raw policy around a sound one on
    mixed data."""
    search_width: float = 2.0
    """[spar] With latent_search="conditional": the half-width of the searched region in the conditional
    prior's stds."""
    search_keeps_anchor: bool = True
    """[spar] With latent_search="conditional": widen each state's region (per dimension) to take in the
    anchor's own latent, so the search can always keep the base action. Around an anchor far from the
    data's typical action (a sound policy on mixed data) the region alone excluded it on 41% of states
    (benchmarks/README.md). False: the data's region alone (the ablation)."""
    lsi_states: int = 64
    """[spar] States of each batch whose candidates are scored per update (cost grows with it)."""
    lsi_every: int = 3
    """[spar] Latent-policy updates every this many critic updates. Scoring 12 candidates for 64 states
    costs about as much as a critic step, so 3 keeps SPAR's step as cheap as IQL's
    (benchmarks/train_throughput.py)."""

    # SPAR ablations
    use_latent: bool = True
    """[spar] False: no latent; the residual actor is improved with isotropic noise candidates."""
    self_imitation: bool = True
    """[spar] False: plain dQ/da through the frozen decoder (PLAS style)."""
    anchored: bool = True
    """[spar] False: no anchor; a global policy (zero base action) with rho = 1."""

    # SPAR deployment: the rectifier's default alpha, chosen offline (does not change the weights)
    auto_alpha: bool = True
    """[spar] After training, choose the rectifier's default alpha without env episodes
    (`spar_rectify.drift.choose_alpha`): fit a dynamics model to the data (drift_model_steps; saved in the
    run folder's dynamics/), roll the anchor and the rectified policy at alpha 1, 0.75, 0.5 and 0.25 from
    the same dataset states through it, and keep the largest alpha whose share of states off the data
    exceeds the anchor's by at most drift_threshold points (0, the base policy, when none does). A
    rectifier can keep every single action near the data and still drift, step after step, where the data
    never went (hopper medium: 14.5% of the env's states at alpha 1; the check picked 0.5: 0.9% of the states
    off the data, 70.5 normalised against the anchor's 66.6). Adds minutes on a CPU core at the end of a
    run; the final evaluation and summary.json report the chosen alpha. False: the default alpha is 1
    (`spar drift --alphas ... --save` or `spar tune-alpha --save` can set it later)."""
    drift_threshold: float = 2.0
    """[spar] auto_alpha's tolerance: percentage points of model states off the data above the anchor's (the
    hopper runs that drifted in the env stood at +7.4 and +7.8, the others at +1.1 or less)."""
    drift_model_steps: int = 20_000
    """[spar] auto_alpha's gradient steps fitting the 5-member dynamics ensemble."""
    alpha_model_margin: float = 0.0
    """[spar] auto_alpha's allowance for the dynamics model's own uncertainty, in its standard errors. The alpha
    check also rolls every alpha through each of the model's five members alone (from a fifth of the start
    states each: one more check in all) and records the per-member excesses in summary.json; u, their standard
    deviation over the square root of five, is how far another fit of the model could move an excess (hopper
    medium-expert, in_sample_weight 1, seed 0: +3.74 at alpha 1, members +1.0 to +9.9, so about 1.6; that
    refusal cost 35 points in the env for 1.4 points of states). An alpha counts as not drifting when its excess
    is at most drift_threshold + alpha_model_margin * u. 0 (the default): the threshold alone, as before the
    members were measured; positive refuses only drift the model is sure of; negative keeps only an alpha the
    model is sure stays within the threshold."""
    reach_weak_anchor_only: bool = True
    """[spar] With lsi_reach_penalty and auto_alpha: deploy the reach policy only where the critic rates the
    anchor below the data's own value, i.e. the anchor's mean advantage `min Q(s, a_b) - V(s)` over the
    data's states (scaled-reward units, V the in-sample expectile value) is negative; else the penalised
    policy at its offline alpha, as when the reach policy drifts. The penalty is trust in the anchor, which
    a weak anchor has not earned (BC on hopper medium-replay: -0.4 to -1.2, where kappa 0 scored 97.4 against
    kappa 0.25's 50.5 on seed 1) and a sound one has (the SB3 medium policy there: +1.6, where kappa 0
    scored below the raw policy in session 9; benchmarks/README.md). The advantage is recorded in
    summary.json's penalty_choice either way. True (the default since session 21); False: the drift check
    alone decides."""
    reach_rule: Literal["alpha_one", "larger_gain"] = "alpha_one"
    """[spar] With lsi_reach_penalty and auto_alpha: when the reach policy replaces the penalised one. "alpha_one"
    (the default): only where its whole residual passes the drift check (offline alpha 1) and the conditions above
    hold. "larger_gain": also where the drift check kept it out but it passes an offline alpha above 0 and the
    critic rates its deployed actions above the penalised policy's by more than two standard errors of their
    paired difference over 4,096 dataset states (`drift.reach_gains`, `critic_gain.compare_deployed`, the check
    `in_sample_rule="larger_gain"` makes for the candidate), whatever the critic says of the anchor. The case
    for it (benchmarks/README.md, session 37; `benchmarks/reach_gain.py`): on hopper medium-replay around the SB3
    policy (bound 2, seed 0) the reach policy kept out at its alpha 0.75 scored 94.3 against the deployed 63.3,
    and the critic prefers it by +0.210 +- 0.013; around BC on hopper medium (seed 2) 70.0 against 61.7, +0.017
    +- 0.0003. Against it: on HalfCheetah medium-expert around the SB3 policy (bound_lift 2, seed 0) the critic
    prefers a reach policy that turns the cheetah onto its back (+0.284 +- 0.013; 52.4 against the penalised
    policy's 86.8; `benchmarks/state_event.py`), so it stays off by default (session 39: around the SB3 policy on
    hopper medium, seed 1, the sixth kept-out case where the critic's clear preference matched the env, 64.9 against
    59.8). With env episodes, `spar tune-alpha` on the run folder compares the two directly. A deployment setting: a
    finished run re-deploys under either value without retraining."""
    reach_check_horizon: int = 300
    """[spar] With lsi_reach_penalty and auto_alpha: model steps of a last check before the reach policy is
    deployed (`drift.compare_reach`): rolled beside the penalised policy it would replace (at that one's
    offline alpha), from the same states through the same model draws, it must not leave the data's states
    more often by more than drift_threshold points. The alpha check measures drift against the anchor, and
    a weak anchor (the only kind with reach_weak_anchor_only) drifts far in the model itself, so that bar is
    lenient exactly there: on hopper medium-replay (BC anchor, 200k, seed 0) the reach policy stood -2.0
    against the anchor over 100 steps but +8.6 against the penalised policy over 300, and left the data's
    states on 27% of its env steps against 0.2% (benchmarks/README.md, "The reach policy against the policy it
    replaces"). 0: off (the rule of session 21's first change)."""
    reach_model_margin: float = 2.0
    """[spar] With reach_check_horizon: the reach check's allowance for the dynamics model's own uncertainty, in
    its standard errors. The check also runs through each of the model's members alone; u, the standard
    deviation of those per-member excesses over the square root of the members, is how far another fit of the
    model could move the excess (hopper medium-replay seed 3: members +5.0, -0.9, +1.8, +9.3, -4.7, so u 2.4
    against a 2-point threshold). The reach policy is refused when its excess exceeds drift_threshold +
    reach_model_margin * u: only an excess the model resolves above the threshold refuses it. 2 (the default
    since session 25): on the five runs measured with members and both policies in the env, the one refusal
    at 0 (hopper medium-replay seed 1, +2.99 with u 0.60) kept a policy that scored 50.5 at 1.2% violations /
    3.7% of states off the data over one that scored 98.1 at 0.0% / 3.2%; at 2 all five deploy the reach
    policy (`benchmarks/reach_margin.py`, benchmarks/README.md). 0: the threshold alone (before session 25);
    negative: deployed only when the model is sure it stays within the threshold."""
    gate_check: bool = False
    """[spar] With auto_alpha: also check the deployed rectifier ungated (the whole scaled residual on every step,
    no critic gate) and deploy it ungated, at its own offline alpha, where that is larger than the gated policy's
    (the gate kept on ties and at alpha 1). The gate executes the base action wherever the critic rates the
    residual worse; where the residual changes the gait, that per-step switching can itself lead off the data
    (hopper medium-expert, in-sample seed 2: alpha 1 +3.35 gated, +0.92 ungated in the model; in the env 10.2%
    against 4.4% of states off the data at the same return; benchmarks/README.md, session 26). The choice is
    stored in the rectifier (`RectifierCheckpoint.gate`) and recorded in summary.json (`gate_choice`). With the reach
    policy, which latent policy is deployed is decided gated as before; only the deployed one is checked ungated.
    One more alpha check's time where the gated alpha is below 1. False (the default): the gate as deployed,
    unchecked."""


@dataclass(frozen=True)
class Bookkeeping:
    """Settings that do not change what is trained (a resumed run may use other values)."""

    eval_every: int = 50_000
    """Evaluate in the env every this many steps during training (0: never during training; the final
    evaluation after the last step still runs whenever an env is known)."""
    eval_episodes: int = 10
    """Seeded episodes per evaluation."""
    checkpoint_every: int = 50_000
    """Write a resumable training checkpoint every this many steps (0: only at the end)."""
    log_every: int = 1_000
    """Average metrics over this many steps per log row."""


# One flat config (`TrainConfig(algo="spar", kl_weight=0.02)`, `--config.kl-weight 0.02`, one flat
# JSON dict on disk) defined in sections: each algorithm declares the sections it reads
# (`settings` in `algos/`), which decides what a resumed run and a benchmark record compare
# (`algos.training_fields`).
@dataclass(frozen=True)
class TrainConfig(Bookkeeping, SPARSettings, TD3BCSettings, IQLSettings, CommonSettings):
    """What to train and how: the settings every method reads, then IQL's (also SPAR's critic),
    TD3+BC's, SPAR's, and bookkeeping. Fields tagged [spar], [iql] or [td3bc] apply to that method
    only; untagged fields to every method."""

    def __post_init__(self):
        def need(ok: bool, name: str, rule: str):
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        if isinstance(self.hidden, list):  # from JSON or a --set value: stored as the tuple it is declared as
            object.__setattr__(self, "hidden", tuple(self.hidden))
        for f in dataclasses.fields(self):  # types first: a string "False" is truthy, 1e5 is no step count
            value = getattr(self, f.name)
            if isinstance(value, numbers.Number) and type(value) not in (bool, int, float) and hasattr(value, "item"):
                object.__setattr__(self, f.name, value.item())  # numpy scalars: plain numbers (JSON, equality)
            kind = _HINTS[f.name]
            need(_has_type(getattr(self, f.name), kind), f.name, _type_words(kind))
        for name in (
            "steps",
            "batch_size",
            "num_candidates",
            "lsi_states",
            "lsi_every",
            "policy_freq",
            "eval_episodes",
            "log_every",
        ):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        need(self.drift_model_steps >= 1, "drift_model_steps", "an integer >= 1")
        need(math.isfinite(self.drift_threshold) and self.drift_threshold >= 0, "drift_threshold", "a number >= 0")
        for name in ("eval_every", "checkpoint_every", "num_prior"):
            need(getattr(self, name) >= 0, name, "an integer >= 0")
        need(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden", "non-empty positive widths")
        for name in (
            "lr",
            "latent_box",
            "candidate_sigma",
            "lsi_temperature",
            "awr_temperature",
            "awr_max_weight",
            "td3bc_alpha",
            "bound_min",
            "bound_max",
            "search_width",
        ):
            need(getattr(self, name) > 0, name, "> 0")
        for name in ("gamma", "tau", "expectile", "bound_quantile"):
            need(0 < getattr(self, name) <= 1, name, "in (0, 1]")
        need(self.kl_weight >= 0, "kl_weight", ">= 0")
        need(self.lsi_prior_weight >= 0, "lsi_prior_weight", ">= 0")
        need(self.lsi_anchor_penalty >= 0, "lsi_anchor_penalty", ">= 0")
        need(self.in_sample_weight >= 0, "in_sample_weight", ">= 0")
        need(self.in_sample_candidate >= 0, "in_sample_candidate", ">= 0 (0: no in-sample candidate)")
        if self.in_sample_candidate == 0:  # no candidate: its recipe means nothing (saved as runs before it saved it)
            object.__setattr__(self, "in_sample_candidate_lsi", True)
        need(self.drift_penalty >= 0, "drift_penalty", ">= 0 (0: off)")
        need(0 <= self.drift_discount < 1, "drift_discount", "in [0, 1)")
        need(self.drift_branches >= 0, "drift_branches", "an integer >= 0 (0: no branches)")
        need(self.reach_check_horizon >= 0, "reach_check_horizon", "an integer >= 0 (0: off)")
        need(math.isfinite(self.reach_model_margin), "reach_model_margin", "a finite number (0: the threshold alone)")
        need(math.isfinite(self.alpha_model_margin), "alpha_model_margin", "a finite number (0: the threshold alone)")
        if not self.auto_alpha:  # no alpha check, no allowance in it, no ungated check beside it
            object.__setattr__(self, "alpha_model_margin", 0.0)
            object.__setattr__(self, "gate_check", False)
        need(self.lsi_reach_penalty is None or self.lsi_reach_penalty >= 0, "lsi_reach_penalty", "None or >= 0")
        if self.lsi_reach_penalty == self.lsi_anchor_penalty or not self.self_imitation:
            object.__setattr__(self, "lsi_reach_penalty", None)  # nothing to choose between: one policy
        if self.lsi_reach_penalty is None:  # a rule for choosing the reach policy means nothing without one
            object.__setattr__(self, "reach_weak_anchor_only", False)
            object.__setattr__(self, "reach_rule", "alpha_one")
            object.__setattr__(self, "reach_check_horizon", 0)
        if not self.reach_check_horizon:  # no reach check, no allowance in it
            object.__setattr__(self, "reach_model_margin", 0.0)
        need(self.bound_min <= self.bound_max, "bound_min", f"<= bound_max ({self.bound_max})")
        if not self.use_latent:  # the conditional prior is over the CVAE's latent: without one, the box
            object.__setattr__(self, "latent_search", "box")
        need(self.residual_bound is None or 0 < self.residual_bound <= 2, "residual_bound", "None or in (0, 2]")
        need(self.bound_max <= 2, "bound_max", "<= 2 (a residual of 2 spans the whole normalised action range)")
        need(
            self.bound_lift is None or self.bound_max <= self.bound_lift <= 2,
            "bound_lift",
            f"None or in [bound_max ({self.bound_max:g}), 2]",
        )
        need(self.latent_dim is None or self.latent_dim >= 1, "latent_dim", "None or >= 1")
        need(0 <= self.manifold_fraction < 1, "manifold_fraction", "in [0, 1)")
        need(
            0 <= self.fit_fraction < 1 and self.manifold_fraction + self.fit_fraction < 1,
            "fit_fraction",
            "in [0, 1) with manifold_fraction + fit_fraction < 1",
        )
        need(self.policy_noise >= 0 and self.noise_clip >= 0, "policy_noise", ">= 0 (and noise_clip >= 0)")

    @property
    def manifold_steps(self) -> int:
        """Steps of stage (i) (CVAE training), at the start of a SPAR run."""
        return int(self.steps * self.manifold_fraction) if self.algo == "spar" and self.use_latent else 0

    @property
    def fit_steps(self) -> int:
        """Steps of mu's fitting initialisation, right after stage (i)."""
        return int(self.steps * self.fit_fraction) if self.algo == "spar" else 0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def parse_value(cls, name: str, text: str):
        """A command-line value for field `name`, read as its type: `true`/`false` (any case) for a
        switch, JSON for numbers and `null`, else the text itself; `TrainConfig(...)` checks the rest.

        Raises:
            ValueError: `name` is not a field (the message lists them).
        """
        if name not in _HINTS:
            raise ValueError(f"unknown TrainConfig keys {[name]}; known keys: {sorted(_HINTS)}")
        if _HINTS[name] is bool and text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from a dict; unknown keys are an error (they usually are typos).

        A switch stored as the text "True"/"False" (what `--set name=True` wrote into configs and
        checkpoints before values were read as their field's type) is read as the boolean, so those
        runs still resume.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known keys: {sorted(known)}")
        legacy = {k: v == "True" for k, v in data.items() if _HINTS[k] is bool and v in ("True", "False")}
        return cls(**{**data, **legacy})

    @classmethod
    def from_saved(cls, data: dict) -> "TrainConfig":
        """A config a run, checkpoint or record wrote (perhaps by an earlier version): a field it lacks
        takes the value that reproduces what that version trained (`SAVED_BEFORE_FIELD`), else today's
        default. `from_dict` instead fills every missing field with today's default (what a user's
        partial settings mean)."""
        return cls.from_dict(saved_settings(data))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config not found at {path}")
        return cls.from_saved(json.loads(path.read_text()))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


#: Fields whose default changed after they were added, and the value a config written before the field
#: existed trained with (what `from_saved` fills in): without it a checkpoint written before one of them
#: existed would resume, and a benchmark record count as current, at today's defaults for these fields.
SAVED_BEFORE_FIELD: dict = {
    "num_prior": 2,
    "lsi_improvements_only": False,
    "latent_search": "box",
    "search_keeps_anchor": False,
    "lsi_anchor_penalty": 0.0,
    "lsi_penalty_origin": "anchor",
    "auto_alpha": False,
    "lsi_reach_penalty": None,
    "reach_weak_anchor_only": False,
    "reach_check_horizon": 0,
    "reach_model_margin": 0.0,
    "in_sample_candidate": 0.0,
    "in_sample_candidate_lsi": True,
    "in_sample_rule": "lsi_at_zero",
    "in_sample_lr_schedule": "constant",
    "in_sample_target": "latent",
    "bound_lift": None,
    "reach_rule": "alpha_one",
}

#: SPAR settings that choose how the trained weights are deployed, not what is trained: a run resumes
#: whatever their values (a benchmark record still counts as stale when they changed).
DEPLOYMENT_FIELDS: tuple[str, ...] = (
    "auto_alpha",
    "drift_threshold",
    "drift_model_steps",
    "alpha_model_margin",
    "gate_check",
    "reach_weak_anchor_only",
    "reach_rule",
    "reach_check_horizon",
    "reach_model_margin",
    "in_sample_rule",
)


def saved_settings(data: dict) -> dict:
    """`data` (a saved config's dict) with the fields it lacks filled from `SAVED_BEFORE_FIELD`."""
    return {**{k: v for k, v in SAVED_BEFORE_FIELD.items() if k not in data}, **data}


#: Settings that do not change what is trained: a resumed run may use other values.
BOOKKEEPING: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Bookkeeping))


def section_fields(*sections: type) -> tuple[str, ...]:
    """Names of the fields of these settings sections, e.g. `section_fields(CommonSettings, IQLSettings)`."""
    return tuple(f.name for section in sections for f in dataclasses.fields(section))


#: Field name -> its type, resolved once (the module uses postponed annotations).
_HINTS: dict = get_type_hints(TrainConfig)


def _has_type(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:  # numbers.Integral: numpy integers too
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return value in args
    if origin is tuple:  # tuple[int, ...]
        return isinstance(value, tuple) and all(_has_type(v, args[0]) for v in value)
    return any(_has_type(value, a) for a in args if a is not type(None)) or (value is None and type(None) in args)


def _type_words(kind) -> str:
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if kind in words:
        return words[kind]
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return "a list of integers, e.g. [256, 256]"
    return " or ".join("None" if a is type(None) else _type_words(a) for a in args)
