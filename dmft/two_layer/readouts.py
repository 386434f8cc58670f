"""Readouts of the two-layer DMFT: the population test loss and its finite-D terms, and the train-loss rise check."""
from __future__ import annotations

import math

import numpy as np

from ..target import DEFAULT_TARGET, irreducible_loss, low_degree

# E[(e^2 - 1) e^2] for e ~ N(0, 1): the anisotropic part of the other points' reaction to a bump
# (reaction_residual, docs/finite-size.md section 3d)
_REACTION = 2.0

# a rise of the train loss is flagged after this many consecutive rising steps (train_loss_rise)
RISE_STEPS = 10


def train_loss_rise(tau, train_loss, tolerance=1e-3, steps=RISE_STEPS):
    """First sustained rise of a train-loss curve, or None.

    A rise is sustained at step t when the train loss went up at each of the ``steps`` steps before t
    and stands more than ``tolerance`` (relative) above its running minimum.  Gradient descent lowers
    the train loss while its step is below 2 / (largest Hessian eigenvalue); above that (edge of
    stability, strong feature learning at a large dt) networks do raise it, in period-2 oscillations or
    short catapults, so a rise is a warning, not an error.  A long monotone rise where the networks at
    the same dt keep descending is an unstable solution: with --finite-size about one sampling seed in
    50-100 runs into one (docs/finite-size.md, section 5c: a knife-edge outcome of a system that amplifies
    small differences; a relative change of 1e-9 in one coefficient removes a runaway).  Returns a dict with the
    time of the minimum before the rise (``from_tau``), the time it was detected (``tau``) and the rise
    relative to the minimum there (``relative_rise``)."""
    train_loss = np.asarray(train_loss, dtype=float)
    low, low_t, run = math.inf, 0, 0
    for t, value in enumerate(train_loss):
        if not np.isfinite(value):
            break
        run = run + 1 if t > 0 and value > train_loss[t - 1] else 0
        if run >= steps and value > low * (1.0 + tolerance):
            return {"from_tau": float(tau[low_t]), "tau": float(tau[t]), "relative_rise": float(value / low - 1.0)}
        if value < low:
            low, low_t = value, t
    return None


def population_test_loss(alpha, eps, dim, C_z_diag, s_diag, C_b_diag, mu_b=0.0, target=DEFAULT_TARGET):
    """Exact population test loss of the limiting quadratic predictor at each time.

    On a fresh input, u = beta.x ~ N(0, 1) and m_perp ~ N(0, sigma^2 = C_b) are independent, the readout mean
    is m = mu_b u + m_perp and x^T A A^T x - |x|^2 = (C_z - 1) + (s - 1/D) u^2, so with a = alpha eps / 2

        f = alpha m + a (m^2 + C_z - 1 + (s - 1/D) u^2)

    has Hermite parts F_0 = a (mu_b^2 + s' + C_z - 1 + sigma^2), F_1 = alpha mu_b, F_2 = a (mu_b^2 + s')
    (s' = s - 1/D) plus the zero-mean, mutually orthogonal alpha m_perp, 2 a mu_b u m_perp and a (m_perp^2 - sigma^2).
    Against g = sum_k c_k He_k:

        L = (c_0 - F_0)^2 + (c_1 - F_1)^2 + 2 (c_2 - F_2)^2 + alpha^2 sigma^2 + 2 a^2 sigma^4
            + 4 a^2 mu_b^2 sigma^2 + sum_{k>=3} k! c_k^2.
    """
    a = alpha * eps / 2.0
    t0, t1, t2 = low_degree(target)
    mu = np.asarray(mu_b, dtype=float)
    mu2 = mu * mu
    c2 = t2 - a * (mu2 + (np.asarray(s_diag) - 1.0 / dim))  # c_2 - F_2
    c0 = -a * (np.asarray(C_z_diag) - 1.0)
    sb2 = np.asarray(C_b_diag)
    return ((c2 + (t0 - t2) + c0 - a * sb2) ** 2 + 2 * c2**2 + alpha**2 * sb2 + 2 * a**2 * sb2**2
            + (t1 - alpha * mu) ** 2 + 4 * a**2 * mu2 * sb2 + irreducible_loss(target))


def cross_test_correction(alpha, eps, s_diag, C_q_diag):
    """Test-loss term of the spike-bulk cross covariance: a^2 (4 s C_q + 2 C_q^2) at (t, t).

    A fresh input sees x^T A A^T x = C_z + u^2 s + 2 u phi chi + (chi^2 - C_q) with
    chi ~ N(0, C_q) independent of u and of b.x, phi^2 = s; the extra part has mean zero
    and variance 4 s C_q + 2 C_q^2 and is uncorrelated with the rest of the residual."""
    a = alpha * eps / 2.0
    Cq = np.asarray(C_q_diag)
    return a**2 * (4.0 * np.asarray(s_diag) * Cq + 2.0 * Cq**2)


def bump_test_correction(alpha, eps, ratio, dim, C_z_diag, bump2):
    """Variance of a fresh input's quadratic form x^T (A A^T - I) x beyond its mean, at finite D.

    For x ~ N(0, I/D), Var = 2 tr(M^2) / D^2.  The bulk of M = A A^T - I is its mean (C_z - 1) I plus
    one rank-one bump b_nu x_nu x_nu^T / |x_nu|^2 per memorised training point (b = V - cavity
    covariance at (t, t)); with P = ratio D points and (x_nu.x_nu')^2 ~ 1/D this gives
    a^2 (2/D) [(C_z - 1)^2 + ratio E[b^2]].  The rank-one cross part is in cross_test_correction."""
    a = alpha * eps / 2.0
    return a * a * 2.0 / dim * ((np.asarray(C_z_diag) - 1.0) ** 2 + ratio * np.asarray(bump2))


def reaction_residual(alpha, eps, ratio, dim, bump):
    """Effective residual of the other points' reaction to each site's own memorised bump (finite_size).

    A memorised point mu leaves a bump b_mu along its input in A A^T.  Every other point nu sees it
    through (x_nu.xhat_mu)^2 = e^2 / D, e ~ N(0, 1), and its residual moves by -a b_mu e^2 / D.  The mean
    part, -a b_mu / D, is in the bulk variance C_z (the mean field).  The rest, -a b_mu (e^2 - 1) / D, is
    correlated with nu's kick along x_mu, c delta Delta_nu e^2 V_mu / D; with E[(e^2 - 1) e^2] = 2 and
    P = ratio D points it acts on mu's own memory as the extra residual

        Delta_react = -2 a ratio b / D,      a = alpha eps / 2

    (docs/finite-size.md, section 3d), for every site at one time (bump: b(t, t) per site).  Zero at
    eps = 0, O(1/D), large for the large-|u| points whose bump is ~u^2 / (2 a)."""
    return -_REACTION * 0.5 * alpha * eps * ratio / dim * np.asarray(bump)
