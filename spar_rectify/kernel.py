"""The deployment fast path: a rectifier's weights folded for a compiled per-step kernel (numba),
one call per batch, no Python per layer.

Defines `FastRectifier` (folding, constants, the call), `correct_rows` (the kernel), `pack_layers`
and the `flags` values. Training never imports this module.

A rectified Hopper step must cost at most 1.3x a raw `env.step` (~100 us here). Dozens of numpy
calls per step cost more than the network itself, and a MuJoCo step evicts the caches between
two of them, so everything after the base action arrives (clip, actor, decoder, residual,
executed action, support score, finiteness checks) runs here in one compiled call. Arguments
are few, flat arrays because numba's dispatch cost grows with the number and nesting of them.

Layers are "augmented": `(in + 1, out)` float32 with the bias as the last row, applied to an
input vector that carries a trailing 1. They are packed into one flat `weights` array, described
by `dims = [n_actor_layers, n_decoder_layers, latent_dim, n_critic_layers, in_0 + 1, out_0, ...]`:
actor layers, then decoder layers, then (when the rectifier carries its critic) the layers of the
first and then the second critic head, each head `n_critic_layers` long with input `[obs, action
in env units, 1]`.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from numba import njit
from torch import nn

from spar_rectify.rectifier import Rectifier
from spar_rectify.spaces import ActionScaler

#: `flags` values written by `correct_rows` (`FLAG_EXECUTED`: the executed action came out
#: non-finite or outside the bounds, e.g. from a damaged bound or scale; the row ran the base action).
FLAG_OK, FLAG_OBS, FLAG_RESIDUAL, FLAG_BASE, FLAG_EXECUTED = 0, 1, 2, 3, 4
#: Column of `out` after the flag: 1 where the critic gate held the residual back.
#: Rows of the `consts` array.
C_LOW, C_HIGH, C_SCALE, C_TO_ENV, C_RES_MEAN, C_RES_INV_STD, C_SCORE_K, C_START = range(8)


def pack_layers(actor: list, decoder: list, latent_dim: int, critic: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """Flatten augmented layer matrices into the kernel's `(weights, dims)`; `critic`: () or the two
    heads' layer lists (equal lengths)."""
    if critic and (len(critic) != 2 or len(critic[0]) != len(critic[1])):
        raise ValueError("critic must be two heads of equally many layers")
    layers = list(actor) + list(decoder) + [w for head in critic for w in head]
    dims = [len(actor), len(decoder), latent_dim, len(critic[0]) if critic else 0]
    for w in layers:
        dims += list(w.shape)
    weights = np.concatenate([np.ascontiguousarray(w, np.float32).ravel() for w in layers])
    return weights, np.asarray(dims, np.int64)


@njit(cache=True, nogil=True, fastmath={"contract"})  # FMA only: NaN/inf keep their meaning
def _chain(x, weights, dims, first, count, offset):  # pragma: no cover - compiled
    """ReLU MLP of `count` layers starting at layer index `first` (flat offset `offset`)."""
    h = x
    for li in range(count):
        n_rows, n_out = dims[4 + 2 * (first + li)], dims[5 + 2 * (first + li)]
        n_in = n_rows - 1
        w = weights[offset : offset + n_rows * n_out].reshape(n_rows, n_out)
        offset += n_rows * n_out
        last = li == count - 1
        out = np.empty(n_out if last else n_out + 1, np.float32)
        for j in range(n_out):
            out[j] = w[n_in, j]
        for i in range(n_in):
            xi = h[i]
            if xi != 0.0:  # half of a ReLU layer's outputs are zero; NaN still propagates
                for j in range(n_out):
                    out[j] += xi * w[i, j]
        if not last:
            for j in range(n_out):
                if out[j] < 0.0:
                    out[j] = 0.0
            out[n_out] = 1.0
        h = out
    return h, offset


@njit(cache=True, nogil=True, fastmath={"contract"})
def _chain2(xa, xb, weights, dims, first, count, offset):  # pragma: no cover - compiled
    """`_chain` on two inputs at once: each weight row is read once for both (the per-step cost
    is reading the weights from memory after a MuJoCo step has evicted them from the caches)."""
    ha, hb = xa, xb
    for li in range(count):
        n_rows, n_out = dims[4 + 2 * (first + li)], dims[5 + 2 * (first + li)]
        n_in = n_rows - 1
        w = weights[offset : offset + n_rows * n_out].reshape(n_rows, n_out)
        offset += n_rows * n_out
        last = li == count - 1
        oa = np.empty(n_out if last else n_out + 1, np.float32)
        ob = np.empty(n_out if last else n_out + 1, np.float32)
        for j in range(n_out):
            oa[j] = w[n_in, j]
            ob[j] = w[n_in, j]
        for i in range(n_in):
            va, vb = ha[i], hb[i]
            if va != 0.0 or vb != 0.0:
                for j in range(n_out):
                    wij = w[i, j]
                    oa[j] += va * wij
                    ob[j] += vb * wij
        if not last:
            for j in range(n_out):
                if oa[j] < 0.0:
                    oa[j] = 0.0
                if ob[j] < 0.0:
                    ob[j] = 0.0
            oa[n_out] = 1.0
            ob[n_out] = 1.0
        ha, hb = oa, ob
    return ha, hb, offset


@njit(cache=True, nogil=True)
def _q_min2(xa, xb, weights, dims, first, n_q, offset):  # pragma: no cover - compiled
    """min over the two critic heads of Q(xa) and of Q(xb), inputs `[obs, action env units, 1]`."""
    a0, b0, offset = _chain2(xa, xb, weights, dims, first, n_q, offset)
    a1, b1, _ = _chain2(xa, xb, weights, dims, first + n_q, n_q, offset)
    return min(a0[0], a1[0]), min(b0[0], b1[0])


@njit(cache=True, nogil=True)
def correct_rows(obs, base, weights, dims, consts, out, gate):  # pragma: no cover - compiled
    """Rectify B rows.

    Args:
        obs: (B, obs_dim) any float dtype, env units.
        base: (B, act_dim) base actions, env units, any float dtype; clipped to [low, high] here.
        weights, dims: from `pack_layers`; the first layer's input is `[obs, base, z, 1]` with
            all normalisation folded into its weights. `n_decoder_layers == 0`: the actor gives
            the residual directly (the "no latent" variant).
        consts: (8, act_dim) float32, rows `C_*`: bounds, `alpha * rho`, `alpha * rho *
            half_range`, residual mean and 1/std, `-0.5 / act_dim` (any column), and the action
            the residual starts from when there is no anchor (NaN when anchored: start from the
            clipped base action).
        out: (B, 2 * act_dim + 3) float32, written: executed action (env units), applied residual
            (normalised units), support score, flag, gate (1 where the gate held the residual back).
        gate: apply the critic gate (needs critic layers in `dims`): the residual is executed only
            where min(Q1, Q2) of the rectified action exceeds that of the (clipped) base action.

    Returns:
        The largest flag written (0: every row rectified; otherwise the caller looks at the
        flags: `FLAG_BASE` means a base action was not finite and the batch must be refused).
    """
    n, obs_dim = obs.shape
    act_dim = base.shape[1]
    n_actor, n_dec, latent_dim, n_q = dims[0], dims[1], dims[2], dims[3]
    x = np.empty(obs_dim + act_dim + latent_dim + 1, np.float32)
    xq = np.empty(obs_dim + act_dim + 1, np.float32)
    xr = np.empty(obs_dim + act_dim + 1, np.float32)
    use_gate = gate and n_q > 0
    score_k = consts[C_SCORE_K, 0]
    worst = 0
    for r in range(n):
        finite = True
        for i in range(obs_dim):
            v = np.float32(obs[r, i])
            finite = finite and np.isfinite(v)
            x[i] = v
        base_ok = True
        for i in range(act_dim):
            b = np.float32(base[r, i])
            base_ok = base_ok and np.isfinite(b)
            x[obs_dim + i] = min(max(b, consts[C_LOW, i]), consts[C_HIGH, i])
        for i in range(latent_dim):
            x[obs_dim + act_dim + i] = 0.0
        x[obs_dim + act_dim + latent_dim] = 1.0
        h, offset = _chain(x, weights, dims, 0, n_actor, 0)
        if n_dec > 0:
            for i in range(latent_dim):
                x[obs_dim + act_dim + i] = np.tanh(h[i])
            h, offset = _chain(x, weights, dims, n_actor, n_dec, offset)
        flag = FLAG_OK if finite else FLAG_OBS
        if not base_ok:
            flag = FLAG_BASE
        if flag == FLAG_OK:
            for i in range(act_dim):
                if not np.isfinite(h[i]):
                    flag = FLAG_RESIDUAL
        if flag == FLAG_OK:
            for i in range(act_dim):
                u = np.tanh(h[i])
                start = consts[C_START, i]
                if np.isnan(start):
                    start = x[obs_dim + i]
                act = min(max(start + u * consts[C_TO_ENV, i], consts[C_LOW, i]), consts[C_HIGH, i])
                res = u * consts[C_SCALE, i]
                # The last line of defence: whatever the weights or constants, only a finite action
                # inside the Box leaves this kernel.
                if not (np.isfinite(act) and np.isfinite(res) and consts[C_LOW, i] <= act <= consts[C_HIGH, i]):
                    flag = FLAG_EXECUTED
                out[r, i] = act
                out[r, act_dim + i] = res
        held = False
        if flag == FLAG_OK and use_gate:
            # The critic gate: the residual only where the pessimistic critic prefers it to the base.
            for i in range(obs_dim):
                xq[i] = x[i]
                xr[i] = x[i]
            xq[obs_dim + act_dim] = 1.0
            xr[obs_dim + act_dim] = 1.0
            for i in range(act_dim):
                xq[obs_dim + i] = x[obs_dim + i]
                xr[obs_dim + i] = out[r, i]
            q_base, q_rect = _q_min2(xq, xr, weights, dims, n_actor + n_dec, n_q, offset)
            held = not (q_rect > q_base)
        if flag != FLAG_OK or held:
            for i in range(act_dim):
                out[r, i] = x[obs_dim + i]
                out[r, act_dim + i] = 0.0
        out[r, 2 * act_dim + 2] = 1.0 if held else 0.0
        sq = np.float32(0.0)
        for i in range(act_dim):
            d = (out[r, act_dim + i] - consts[C_RES_MEAN, i]) * consts[C_RES_INV_STD, i]
            sq += d * d
        out[r, 2 * act_dim] = np.exp(sq * score_k)
        out[r, 2 * act_dim + 1] = flag
        worst = max(worst, flag)
    return worst


class FastRectifier:
    """A `Rectifier`'s weights and constants prepared for `correct_rows`, for one action space and
    alpha (a snapshot: build a new one after the weights change).

    The kernel takes the base action in *env units, already clipped to the Box*. Everything
    affine is folded into the first layers: observation standardisation, the env-to-normalised
    action map and the latent box scale; biases ride on a constant-one input (each layer is
    `(in + 1, out)` float32 with the bias as its last row). The per-dimension constants (bounds,
    `alpha * rho` in normalised and env units, the residual statistics of the support score, the
    start of an unanchored action) are one `(8, act_dim)` array.

    Args:
        rect: the trained `Rectifier`.
        action_low, action_high: `(act_dim,)` the env's action bounds.
        alpha: residual scale in [0, 1].
    """

    def __init__(self, rect: Rectifier, action_low: np.ndarray, action_high: np.ndarray, alpha: float = 1.0):
        f64 = np.float64
        self.obs_dim, self.act_dim, self.latent_dim = rect.obs_dim, rect.act_dim, rect.latent_dim
        od, ad, ld = self.obs_dim, self.act_dim, self.latent_dim
        mean = rect.obs_mean.detach().cpu().numpy().astype(f64)
        std = rect.obs_std.detach().cpu().numpy().astype(f64)
        scaler = ActionScaler(spaces.Box(np.asarray(action_low, f64), np.asarray(action_high, f64), dtype=f64))
        inv_half, mid = scaler.inv_half_range, scaler.mid
        # Input row layout: [obs (od), base action in env units (ad), z (ld), 1].
        self.in_dim = od + ad + ld + 1

        def first_layer(linear: nn.Linear, with_z: bool) -> np.ndarray:
            w = linear.weight.detach().cpu().numpy().T.astype(f64)  # (in, out)
            b = linear.bias.detach().cpu().numpy().astype(f64)
            out = np.zeros((self.in_dim, w.shape[1]), f64)
            w_obs = w[:od] / std[:, None]
            w_base = w[od : od + ad] * inv_half[:, None] if rect.anchored else np.zeros_like(w[od : od + ad])
            out[:od], out[od : od + ad] = w_obs, w_base
            if with_z:
                out[od + ad : od + ad + ld] = w[od + ad :] * rect.latent_box
            out[-1] = b - mean @ w_obs - (mid @ w_base)
            return np.ascontiguousarray(out, dtype=np.float32)

        def augment(linear: nn.Linear) -> np.ndarray:
            w = linear.weight.detach().cpu().numpy().T
            return np.ascontiguousarray(
                np.concatenate([w, linear.bias.detach().cpu().numpy()[None]], 0), dtype=np.float32
            )

        actor = [m for m in rect.actor if isinstance(m, nn.Linear)]
        self.actor = [first_layer(actor[0], False)] + [augment(m) for m in actor[1:]]
        self.decoder = None
        if rect.decoder is not None:
            dec = [m for m in rect.decoder if isinstance(m, nn.Linear)]
            self.decoder = [first_layer(dec[0], True)] + [augment(m) for m in dec[1:]]
        self.critic: tuple = ()
        if rect.critic is not None:
            heads = []
            for h in range(2):
                ws = [w[h].detach().cpu().numpy().astype(f64) for w in rect.critic.weights]  # (in, out)
                bs = [b[h, 0].detach().cpu().numpy().astype(f64) for b in rect.critic.biases]
                # First layer on [obs env units, action env units, 1]: standardisation and the
                # env-to-normalised action map folded in, as for actor and decoder.
                w0 = ws[0]
                first = np.zeros((od + ad + 1, w0.shape[1]), f64)
                first[:od] = w0[:od] / std[:, None]
                first[od : od + ad] = w0[od:] * inv_half[:, None]
                first[-1] = bs[0] - mean @ first[:od] - mid @ first[od : od + ad]
                rest = [np.concatenate([w, b[None]], 0) for w, b in zip(ws[1:], bs[1:])]
                heads.append([np.ascontiguousarray(m, dtype=np.float32) for m in [first, *rest]])
            self.critic = tuple(heads)
        self.weights, self.dims = pack_layers(
            self.actor, self.decoder or [], self.latent_dim if self.decoder else 0, self.critic
        )
        bound = rect.residual_bound.detach().cpu().numpy().astype(f64)
        self.res_mean = rect.residual_mean.detach().cpu().numpy().astype(np.float32)
        self.res_inv_std = (1.0 / np.maximum(rect.residual_std.detach().cpu().numpy(), 1e-6)).astype(np.float32)
        self.score_k = np.float32(-0.5 / ad)
        self.consts = np.zeros((8, ad), np.float32)
        for row, value in (
            (C_LOW, action_low),
            (C_HIGH, action_high),
            (C_SCALE, alpha * bound),  # tanh(.) -> applied residual, normalised units
            (C_TO_ENV, alpha * bound * scaler.half_range),  # ... -> env units
            (C_RES_MEAN, self.res_mean),
            (C_RES_INV_STD, self.res_inv_std),
            (C_SCORE_K, self.score_k),
            (C_START, np.nan if rect.anchored else mid),
        ):
            self.consts[row] = value

    def __call__(self, obs: np.ndarray, base_action: np.ndarray, gate: bool) -> tuple[np.ndarray, int]:
        """Run the kernel on `(B, obs_dim)` observations and `(B, act_dim)` env-unit base actions.

        Returns:
            `out` `(B, 2 * act_dim + 3)` float32: executed action (env units), applied residual
            (normalised), support score, flag, gate-held; and the worst flag (0: every row ran).
        """
        out = np.empty((base_action.shape[0], 2 * self.act_dim + 3), np.float32)
        worst = correct_rows(obs, base_action, self.weights, self.dims, self.consts, out, gate)
        return out, worst
