"""The finite-size extension of the data side (docs/finite-size.md): the bump field of the other memorised
points, the spike-bulk cross direction's weights and sandwich rows, and the teacher coordinate's tilt.

Builds on the D -> inf row steps of :mod:`dmft.two_layer.core` and :mod:`dmft.two_layer.data_side`, which
never import this module.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .core import _resolvent_row
from .data_side import _memory_response, _readout_mean, _readout_tangent, _residual, _tangent_memory, _write_site_rows


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


class FiniteSizeKernels(NamedTuple):
    """Kernels the finite-size row reads: phi = sqrt(s(t,t)) (causal), C_q, R_par."""
    phi_hat: np.ndarray
    C_q: np.ndarray
    R_par: np.ndarray


class FiniteSizeSites(NamedTuple):
    """Fixed draws of the finite-size terms: normals of the cross field chi, each site's bulk norm n."""
    gauss_q: np.ndarray
    norm: np.ndarray


class FiniteSizeState(NamedTuple):
    """Per-site finite-size state: Cholesky factor of C_q, chi, p = Gc phi, c = Gc chi, the
    spike-cavity resolvent Gc, the v-source tangent pair, the full V, the bulk covariance C_z + zeta,
    and the other points' reaction residual."""
    chol_q: np.ndarray
    chi: np.ndarray
    p_spk: np.ndarray
    c_spk: np.ndarray
    Gamc: np.ndarray
    dDv: np.ndarray
    dEv: np.ndarray
    Vfull: np.ndarray
    Czs: np.ndarray
    react: np.ndarray


class FiniteSizeRows(NamedTuple):
    """Per-site rows of Rhat_q and Rhat_par (spike-cavity resolvent), and the coherent pull."""
    Rq: np.ndarray
    pull: np.ndarray
    Rpar: np.ndarray


@njit(cache=True)
def _finite_size_site(b, t, tilt, c, sites, K, st, rows, fk, fsites, fst, frows):
    """Site b of :func:`_finite_size_row`; ``tilt`` = :func:`_mode_tilt` at row t."""
    u2, label_noise, gauss, target, u, selection = sites
    sel = selection[b]  # all 1: the finite-size terms are derived for full-batch descent
    R_z, C_z, S, R_b, mu_b = K
    chol, Gam, dDelta, dEll, m, Delta, ell = st
    phi_hat, C_q, R_par = fk
    gauss_q, norm = fsites
    chol_q, chi, p_spk, c_spk, Gamc, dDv, dEv, Vfull, Czs, react = fst
    Rq, pull_out, Rpar = frows
    Rb = rows.Rb
    lam, inv_dim = c.lam, c.inv_dim
    gamma = 2.0 / c.alpha
    kappa = 2.0 * c.eps / c.alpha
    a = 0.5 * c.alpha * c.eps
    hl = c.h * c.lam
    G = Gam[b]
    Gc = Gamc[b]
    DD = dDelta[b]
    DL = dEll[b]
    uu = u2[b]
    # the site's bulk norm n = |x_perp|^2 (docs/finite-size.md, section 3c): the quadratic sector's
    # memory and covariances scale with n, the cross field with sqrt(n); the readout mean keeps n = 1
    nb = norm[b]
    mm = _readout_mean(t, hl, chol, gauss[b], R_b, ell[b], sel)
    m[b, t] = mm
    # Gamma: bulk memory plus the teacher coordinate's own memory; Gc: bulk memory only
    coeff = np.empty(t)
    coeff_c = np.empty(t)
    for tp in range(t):
        kb = hl * kappa * nb * R_z[t, tp] * (Delta[b, tp] + react[b, tp])
        coeff_c[tp] = kb
        coeff[tp] = kb + hl * kappa * uu * inv_dim * R_par[t, tp] * tilt[tp] * Delta[b, tp]
    _resolvent_row(G, t, coeff)
    _resolvent_row(Gc, t, coeff_c)
    # V = Gamma (n (C_z + zeta) - C_q) Gamma^T + spike-mode part; vz = V_perp (spike-cavity resolvent),
    # gqg = (Gamma C_q Gamma^T)(t, .), gqgc = (Gc C_q Gc^T)(t, .): the covariance of c, for the pull
    vbulk = np.empty(t + 1)
    vs = np.empty(t + 1)
    vz = np.empty(t + 1)
    gqg = np.empty(t + 1)
    gqgc = np.empty(t + 1)
    _cross_sandwich_rows(G, Gc, Czs[b], C_q, S, t, vbulk, gqg, vs, vz, gqgc)
    for t2 in range(t + 1):
        vbulk[t2] *= nb
        vz[t2] *= nb
        gqg[t2] *= nb
        gqgc[t2] *= nb
    vv = vbulk + uu * vs
    # cavity field of the cross direction, then p = Gc phi, c = Gc chi at row t
    xc = 0.0
    for j in range(t + 1):
        xc += chol_q[t, j] * gauss_q[b, j]
    chi[b, t] = math.sqrt(nb) * xc
    pt = 0.0
    ct = 0.0
    for k in range(t + 1):
        pt += Gc[t, k] * phi_hat[k]
        ct += Gc[t, k] * chi[b, k]
    p_spk[b, t] = pt
    c_spk[b, t] = ct
    u1 = math.sqrt(uu)
    for t2 in range(t + 1):
        vv[t2] += u1 * (pt * c_spk[b, t2] + ct * p_spk[b, t2]) + ct * c_spk[b, t2] - gqg[t2]
        vbulk[t2] -= gqg[t2]
    dl = _residual(c, target[b], uu, label_noise[b], mm, vv[t], nb)
    Delta[b, t] = dl
    ell[b, t] = dl * (gamma + kappa * mm)
    _write_site_rows(b, t, lam, kappa, dl, uu, G, Delta, ell, vv, vz, rows, sel)
    for k in range(t + 1):
        Rq[b, k] = kappa * dl * G[t, k]
        Rpar[b, k] = kappa * dl * Gc[t, k]
    VF = Vfull[b]
    for k in range(t + 1):
        VF[t, k] = vv[k]
        VF[k, t] = vv[k]
    # tangent row t (as the D -> inf row), the memory of Gamma now also the teacher coordinate's
    dm = _readout_tangent(t, hl, R_b, DL, 1.0, sel)
    f1 = -c.alpha * (1.0 + c.eps * mm)
    for k in range(t + 1):
        DD[t, k] = f1 * dm[k]
    gr = _memory_response(t, hl, kappa, G, R_z, nb)
    grp = np.zeros(t + 1)
    for t1 in range(1, t + 1):
        g1 = G[t, t1]
        if g1 != 0.0:
            g1 *= uu * inv_dim
            for t2 in range(t1):
                grp[t2] += g1 * R_par[t1, t2] * tilt[t2]
    lt = np.empty(t)
    for t2 in range(t):
        lt[t2] = 2.0 * hl * kappa * (gr[t2] * vv[t2] + grp[t2] * vbulk[t2])
    _tangent_memory(t, DD, lt, a)
    f2 = gamma + kappa * mm
    f3 = kappa * dl
    for k in range(t + 1):
        v = f2 * DD[t, k] + f3 * dm[k]
        DL[t, k] = v
        Rb[b, k] = v
    # response of (Delta, ell_b) to a unit source added to v(k): the same loop as the xi_b
    # tangent (memorisation through m, and v through Gamma), injected at v instead of m
    XV = dDv[b]
    XL = dEv[b]
    dmv = _readout_tangent(t, hl, R_b, XL, 0.0, sel)
    for k in range(t + 1):
        XV[t, k] = f1 * dmv[k]
    XV[t, t] -= a
    _tangent_memory(t, XV, lt, a)
    for k in range(t + 1):
        XL[t, k] = f2 * XV[t, k] + f3 * dmv[k]
    # Rhat_q(t, s) += kappa sigma(t) sum_{t'} XV(t, t') 2 sigma(t') Gamma(t', s): the shared
    # cross field moves v, hence Delta, of every neuron at once
    sg = u1 * p_spk[b, t] + c_spk[b, t]
    wv = np.empty(t + 1)
    for t1 in range(t + 1):
        wv[t1] = XV[t, t1] * 2.0 * (u1 * p_spk[b, t1] + c_spk[b, t1])
    for t1 in range(t + 1):
        w1 = wv[t1]
        if w1 != 0.0:
            for k in range(t1 + 1):
                Rq[b, k] += kappa * sg * w1 * G[t1, k]
    # coherent pull on the spike, E_chi[u Delta(t) c(t)] to linear order in the cross field:
    # 2 u^2 sum_t' XV(t,t') p(t') (Gamma C_q Gamma^T)(t',t), averaged over chi exactly (a sampled
    # u Delta c keeps the part of Delta odd in the xi_b draw, noise of the order of phi)
    pull = 0.0
    for t1 in range(t + 1):
        pull += XV[t, t1] * p_spk[b, t1] * gqgc[t1]
    pull_out[b] = 2.0 * uu * pull


@njit(parallel=True, cache=True)
def _finite_size_row(t, c, sites, K, st, rows, fk, fsites, fst, frows):
    """The data-side row step with the finite-size terms (docs/finite-size.md), phi = sqrt(s(t,t)).

    As :func:`dmft.two_layer.data_side._data_side_row`, plus:
    * the cavity field of the spike-bulk cross direction, chi(t) = sum_j chol_q(t,j) gauss_q_j
      ~ GP(0, C_q), enters the neurons' cavity covariance as u (phi chi^T + chi phi^T) + chi chi^T - C_q,
      i.e. V = Gamma (C_z - C_q) Gamma^T + Gc (u^2 s + u (phi chi^T + chi phi^T) + chi chi^T) Gc^T
      with p = Gc phi, c = Gc chi (sigma = u p + c is the site's spike-mode field);
    * the teacher coordinate's own memory, K += h lambda kappa (u^2/D) R_par cos^2 Delta
      (cos^2 = s / (s + C_q), an effective factor, see _mode_tilt), in the resolvent Gamma of the bulk
      part of the field (C_z - C_q) and in the tangent.  The spike-mode part uses the resolvent without
      it, Gc (the site's kicks along Z are already the spike's growth and pull), and so do the spike's
      own kernels (Rhat_par rows, V_perp: the cavity of the spike coordinate);
    * the other memorised points' bumps: the bulk covariance of site b is Czs[b] = C_z + zeta_b
      (filled by _bump_field_row before this call);
    * the site's bulk norm n: memory n R_z, bulk covariance n (C_z + zeta), cross field sqrt(n) chi,
      initial form n + u^2/D;
    * the other points' reaction to the site's own bump: its past kicks in the memory (Gamma and Gc)
      carry Delta + react, react = -2 a ratio b / D (:func:`reaction_residual`, filled after each row);
    * rows of Rhat_q = kappa E[Delta(t) Gamma(t, .)] + kappa E[sigma(t) sum_t' XV(t,t') 2 sigma(t')
      Gamma(t', .)], the response of the cross direction, which all neurons share (XV = response of
      Delta to a source in v: the xi_b tangent injected at v instead of m);
    * pull[b] = E_chi[u Delta(t) c(t)] to linear order in chi (exact Gaussian average over chi): the
      cross direction's coherent pull on the spike.
    """
    # cos^2 of the tilt of the growing mode away from bhat, s / (s + C_q): an effective factor on the
    # teacher memory (the networks' bhat^T A bhat is R_par; docs/finite-size.md, sections 3 and 3d)
    tilt = _mode_tilt(fk.phi_hat, fk.C_q, t + 1)
    # the per-site work is a function of its own (see dmft.two_layer.data_side._data_side_row)
    for b in prange(sites.u2.shape[0]):
        _finite_size_site(b, t, tilt, c, sites, K, st, rows, fk, fsites, fst, frows)
