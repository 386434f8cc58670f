"""The finite-size extension of the data side (docs/finite-size.md): the bump field of the other memorised
points, the spike-bulk cross direction's weights and sandwich rows, and the teacher coordinate's tilt.

Builds on the D -> inf row steps of :mod:`dmft.two_layer.core`, which never import this module.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _own_bump(nu, s_, q, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm):
    """b_nu(s_, q) = V_nu - (cavity covariance): the site's field covariance beyond the bulk n (C_z + zeta)
    and the spike-mode part u^2 s + u (phi chi + chi phi) + chi chi - n C_q it would have without
    its own memory (q <= s_; n = |x_perp|^2 the site's bulk norm, chi already carries sqrt(n))."""
    u1 = math.sqrt(u2[nu])
    n = norm[nu]
    cav = (n * C_z[s_, q] + u2[nu] * S[s_, q] + u1 * (phi_hat[s_] * chi[nu, q] + chi[nu, s_] * phi_hat[q])
           + chi[nu, s_] * chi[nu, q] - n * C_q[s_, q])
    return Vfull[nu, s_, q] - cav - n * (Czs[nu, s_, q] - C_z[s_, q])


@njit(parallel=True, cache=True)
def _own_bump_diag(t, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm, out):
    """out[nu] = b_nu(t, t) for every site (bump_test_correction needs E[b(t,t)^2])."""
    for nu in prange(u2.shape[0]):
        out[nu] = _own_bump(nu, t, t, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm)


@njit(parallel=True, cache=True)
def _bump_field_row(t, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm, partners, omegas, bump):
    """Row t of every site's bulk covariance C_z + zeta (finite_size; docs/finite-size.md, section 3b).

    A point memorised by the network leaves a rank-one bump b_nu x_nu x_nu^T / |x_nu|^2 in A A^T, with
    b_nu = V_nu - (its cavity covariance), the excess of its own field's covariance.  Another point
    sees it through (x_mu.x_nu)^2 = (1 + (e^2 - 1)) / D, e ~ N(0, 1): the mean is in C_z, the rest is
    zeta_mu = sum_nu b_nu (e_nu^2 - 1) / D, zero mean, covariance 2 ratio E[b b'] / D, independent of
    the site.  It is sampled as a Gaussian sum over _BUMP_PARTNERS sites drawn uniformly from the
    sampled sites (weights omega ~ N(0, 2 P w_nu N / K) / D, antithetic; a site's own draw and its
    antithetic mirror get weight zero, since zeta sums the *other* points' bumps) and lags one step
    (b at row t-1: the bumps change slowly on the scale h)."""
    B = u2.shape[0]
    K = partners.shape[1]
    if t >= 1:
        s_ = t - 1
        for nu in prange(B):
            for tp in range(t + 1):
                bump[nu, tp] = _own_bump(nu, s_, min(tp, s_), C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm)
    for mu in prange(B):
        # partner-major order: each partner's bump row is read contiguously once; every z[tp] still
        # sums its partners in the order k = 0..K-1, so the result is the same to the last bit
        z = np.zeros(t + 1)
        if t >= 1:
            for k in range(K):
                w = omegas[mu, k]
                row = partners[mu, k]
                for tp in range(t + 1):
                    z[tp] += w * bump[row, tp]
        for tp in range(t + 1):
            Czs[mu, t, tp] = C_z[t, tp] + z[tp]
            Czs[mu, tp, t] = C_z[t, tp] + z[tp]


@njit(cache=True)
def _mode_tilt(phi_hat, C_q, n):
    """cos^2 of the tilt of the growing mode away from bhat at times 0..n-1, s / (s + C_q) with
    s = phi^2 (1 where both vanish).  An effective factor on the teacher memory and on the spike-noise
    leg of C_q: it is the share of a kick to the teacher coordinate that comes back to it, whereas
    the networks' bhat^T A(t,t') bhat is R_par itself; the factor stands in for the missing
    reaction of the other points to a large-|u| point's bump (docs/finite-size.md, sections 3, 3d)."""
    tilt = np.ones(n)
    for tp in range(n):
        s2 = phi_hat[tp] * phi_hat[tp]
        if s2 + C_q[tp, tp] > 0.0:
            tilt[tp] = s2 / (s2 + C_q[tp, tp])
    return tilt


@njit(parallel=True, cache=True)
def _cross_weights_row(t, h, lam, kappa, inv_dim, u2, Gam, C_z, R_z, R_q, R_par, Delta, p_spk, c_spk, phi_hat,
                       Vfull, Wq, C_q):
    """Per-site weights W(t) of the cross direction q(t) = E_a[z_perp(t) Z^a] = kappa lambda sum_mu x_mu W_mu(t).

    Two legs, both sums over the data of the site's own quantities (so C_q = kappa^2 lambda E[W W']):
    the bulk driven by the spike, sum_s h R_q(t,s) Delta(s) sigma(s) with sigma = u p + c the site's
    spike-mode field; and the spike's noise, a projection of the bulk fields, which is correlated
    with the bulk coordinate through E[z_i(t) r_mu(s)] / X_mu,i = (Gamma C_z)(s,t) + h lambda kappa
    sum_s'' R_z(t,s'') Delta(s'') V(s'',s) (the coordinate's covariance with the site's field, and
    its response to the site's kicks): sum_s h R_par(t,s) cos^2(s) u Delta(s) f(t,s) / (D phi(t)).
    The noise enters the teacher row, so it reaches z_par(t) through the teacher coordinate's own
    response R_par, here times the effective factor cos^2 = s / (s + C_q) of _mode_tilt (as in the
    teacher memory of _data_side_row; docs/finite-size.md, sections 2 and 3).
    Needs rows < t only."""
    B = u2.shape[0]
    ph = phi_hat[t]
    tilt = _mode_tilt(phi_hat, C_q, t + 1)
    for b in prange(B):
        G = Gam[b]
        u1 = math.sqrt(u2[b])
        x = 0.0
        y = 0.0
        VF = Vfull[b]
        resp = np.zeros(t + 1)
        if ph > 0.0:
            for k in range(t):  # row-wise: resp(s) = h lambda kappa sum_k R_z(t,k) Delta(k) V(k,s)
                rk = h * lam * kappa * R_z[t, k] * Delta[b, k]
                if rk != 0.0:
                    for s in range(t):
                        resp[s] += rk * VF[k, s]
        for s in range(t):
            d = Delta[b, s]
            x += h * R_q[t, s] * d * (u1 * p_spk[b, s] + c_spk[b, s])
            if ph > 0.0:
                gc = resp[s]
                for k in range(s + 1):
                    gc += G[s, k] * C_z[k, t]
                y += h * R_par[t, s] * tilt[s] * u1 * d * gc
        if ph > 0.0:
            y *= inv_dim / ph
        Wq[b, t] = x + y


@njit(cache=True)
def _cross_sandwich_rows(G, Gc, Cb, Cq, S, t, vbulk, gqg, vs, vz, gqgc):
    """The five sandwich rows of a finite-size site: with Gamma, vbulk = row t of Gamma Cb Gamma^T and
    gqg = of Gamma Cq Gamma^T; with Gc, vs (S), vz (Cb) and gqgc (Cq) (each as _sandwich_row)."""
    yb = np.zeros(t + 1)
    yq = np.zeros(t + 1)
    zs = np.zeros(t + 1)
    zb = np.zeros(t + 1)
    zq = np.zeros(t + 1)
    for k in range(t + 1):
        gk = G[t, k]
        ck = Gc[t, k]
        if gk != 0.0:
            for j in range(t + 1):
                yb[j] += gk * Cb[k, j]
                yq[j] += gk * Cq[k, j]
        if ck != 0.0:
            for j in range(t + 1):
                zs[j] += ck * S[k, j]
                zb[j] += ck * Cb[k, j]
                zq[j] += ck * Cq[k, j]
    for t2 in range(t + 1):
        a1 = 0.0
        a2 = 0.0
        for t1 in range(t2 + 1):
            g = G[t2, t1]
            a1 += g * yb[t1]
            a2 += g * yq[t1]
        vbulk[t2] = a1
        gqg[t2] = a2
        c1 = 0.0
        c2 = 0.0
        c3 = 0.0
        for t1 in range(t2 + 1):
            g = Gc[t2, t1]
            c1 += g * zs[t1]
            c2 += g * zb[t1]
            c3 += g * zq[t1]
        vs[t2] = c1
        vz[t2] = c2
        gqgc[t2] = c3
