"""The data-side row step of the D -> inf DMFT: every sampled site advanced from t-1 to t.

The kernel's arguments are bundled in named tuples (:class:`RowConstants`, :class:`Sites`,
:class:`RowKernels`, :class:`SiteState`, :class:`SiteRows`).  The pieces of a site's row (readout
mean, residual, per-site average rows, tangent) are separate compiled functions that the
finite-size row of :mod:`dmft.two_layer.finite_size` reuses; this module never imports it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .core import _resolvent_row, _sandwich_row_pair


class RowConstants(NamedTuple):
    """Scalars of a row step: Euler step h (time tau = t h), lambda = 1/ratio, alpha, eps, 1/D, label-noise std."""
    h: float
    lam: float
    alpha: float
    eps: float
    inv_dim: float
    noise: float


class Sites(NamedTuple):
    """The sampled sites' fixed draws: u^2, label-noise normal, normals g driving xi_b = chol g, the clean target
    g(u), the signed teacher field u, and the selection weights sigma(t) = s(t)/b of minibatch SGD (s ~ Bernoulli(b)
    the site's membership of the batch at step t; all 1 for full-batch descent)."""
    u2: np.ndarray
    label_noise: np.ndarray
    gauss: np.ndarray
    target: np.ndarray
    u: np.ndarray
    sel: np.ndarray


class RowKernels(NamedTuple):
    """The kernels a row step reads: R_z, C_z, S = C_par / D, R_b, and the readout mean's teacher component
    mu_b(t) (zero for an even target)."""
    R_z: np.ndarray
    C_z: np.ndarray
    S: np.ndarray
    R_b: np.ndarray
    mu_b: np.ndarray


class SiteState(NamedTuple):
    """Per-site state a row step extends: Cholesky factor of C_b, resolvent Gamma, tangents
    d Delta / d xi_b and d ell_b / d xi_b, and the paths m, Delta, ell_b."""
    chol: np.ndarray
    Gam: np.ndarray
    dDelta: np.ndarray
    dEll: np.ndarray
    m: np.ndarray
    Delta: np.ndarray
    ell: np.ndarray


class SiteRows(NamedTuple):
    """Per-site rows t whose weighted means are the averages at row t (and the covariances V, V_perp)."""
    Rz: np.ndarray
    Nz: np.ndarray
    Npar: np.ndarray
    Nb: np.ndarray
    Rb: np.ndarray
    V: np.ndarray
    Vperp: np.ndarray


@njit(cache=True)
def _readout_mean(t, hl, chol, g, R_b, ell, sel):
    """m(t) = xi_b(t) + h lambda sum_{tp<t} R_b(t,tp) sigma(tp) ell_b(tp), xi_b(t) = sum_{j<=t} chol(t,j) g_j
    (a causal draw from GP(0, C_b)); the site kicks the weights only at the steps it is selected (sigma)."""
    mm = 0.0
    for j in range(t + 1):
        mm += chol[t, j] * g[j]
    for tp in range(t):
        mm += hl * R_b[t, tp] * (ell[tp] * sel[tp])
    return mm


@njit(cache=True)
def _residual(c, y, uu, label, mm, v_tt, nb):
    """Delta(t) = g(u) + sigma n - alpha (m + eps m^2/2) - a (V(t,t) - n - u^2/D), a = alpha eps / 2,
    y = g(u) the clean target, n the site's bulk norm (1 at D -> inf)."""
    a = 0.5 * c.alpha * c.eps
    return (y + c.noise * label - c.alpha * (mm + 0.5 * c.eps * mm * mm)
            - a * (v_tt - nb - uu * c.inv_dim))


@njit(cache=True)
def _write_site_rows(b, t, lam, kappa, dl, uu, G, Delta, ell, vv, vz, rows, sel):
    """Row t of the site's Rhat_z, N_z, N_par, N_b, V and V_perp terms (its kicks weighted by sigma)."""
    dl = dl * sel[t]
    cc = lam * kappa * kappa * dl
    lb = ell[b, t] * sel[t]
    for k in range(t + 1):
        rows.Rz[b, k] = kappa * dl * G[t, k]
        dk = Delta[b, k] * sel[k]
        rows.Nz[b, k] = cc * dk * vv[k]
        rows.Npar[b, k] = cc * uu * dk * vz[k]
        rows.Nb[b, k] = lam * lb * (ell[b, k] * sel[k])
        rows.V[b, k] = vv[k]
        rows.Vperp[b, k] = vz[k]


@njit(cache=True)
def _readout_tangent(t, hl, R_b, DL, source, sel):
    """Row t of dm / d(source): source e_t + h lambda sum_{tp<t} R_b(t,tp) sigma(tp) DL(tp,:) (source 1 for a
    source in m itself, 0 for one elsewhere whose response DL carries)."""
    dm = np.zeros(t + 1)
    dm[t] = source
    for tp in range(t):
        c2 = hl * R_b[t, tp] * sel[tp]
        if c2 != 0.0:
            for k in range(tp + 1):
                dm[k] += c2 * DL[tp, k]
    return dm


@njit(cache=True)
def _tangent_memory(t, DD, lt, a):
    """DD(t,:) -= a sum_{t2<t} lt(t2) DD(t2,:), with lt(t2) = d V(t,t) / d Delta(t2): the residual's
    response through its own field's variance, which its past kicks shape."""
    for t2 in range(t):
        if lt[t2] != 0.0:
            for k in range(t2 + 1):
                DD[t, k] -= a * lt[t2] * DD[t2, k]


@njit(cache=True)
def _memory_response(t, hl, kappa, G, R, nb):
    """(Gamma R)(t, t2) = sum_{t2 < t1 <= t} Gamma(t, t1) n R(t1, t2) for t2 < t (row-wise, for locality)."""
    gr = np.zeros(t + 1)
    for t1 in range(1, t + 1):
        g1 = G[t, t1]
        if g1 != 0.0:
            for t2 in range(t1):
                gr[t2] += g1 * nb * R[t1, t2]
    return gr


@njit(cache=True)
def _data_side_site(b, t, c, sites, K, st, rows):
    """Site b of :func:`_data_side_row`."""
    u2, label_noise, gauss, target, u, selection = sites
    R_z, C_z, S, R_b, mu_b = K
    chol, Gam, dDelta, dEll, m, Delta, ell = st
    gamma = 2.0 / c.alpha
    kappa = 2.0 * c.eps / c.alpha
    a = 0.5 * c.alpha * c.eps
    hl = c.h * c.lam
    lam = c.lam
    G = Gam[b]
    DD = dDelta[b]
    DL = dEll[b]
    sel = selection[b]
    mm = _readout_mean(t, hl, chol, gauss[b], R_b, ell[b], sel)
    if mu_b[t] != 0.0:  # the readout mean's teacher component, mu_b u (odd targets)
        mm += mu_b[t] * u[b]
    m[b, t] = mm
    coeff = np.empty(t)
    for tp in range(t):
        coeff[tp] = hl * kappa * R_z[t, tp] * (Delta[b, tp] * sel[tp])
    _resolvent_row(G, t, coeff)
    vz = np.empty(t + 1)
    vs = np.empty(t + 1)
    _sandwich_row_pair(G, C_z, S, t, vz, vs)
    uu = u2[b]
    vv = vz + uu * vs
    dl = _residual(c, target[b], uu, label_noise[b], mm, vv[t], 1.0)
    Delta[b, t] = dl
    ell[b, t] = dl * (gamma + kappa * mm)
    _write_site_rows(b, t, lam, kappa, dl, uu, G, Delta, ell, vv, vz, rows, sel)
    # tangent row t: d Delta = -alpha (1 + eps m) dm - a dV(t,t), with
    # dV(t,t)/dDelta(t2) = 2 h lambda kappa (Gamma R_z)(t,t2) V(t2,t)
    dm = _readout_tangent(t, hl, R_b, DL, 1.0, sel)
    f1 = -c.alpha * (1.0 + c.eps * mm)
    for k in range(t + 1):
        DD[t, k] = f1 * dm[k]
    gr = _memory_response(t, hl, kappa, G, R_z, 1.0)
    lt = np.empty(t)
    for t2 in range(t):
        lt[t2] = 2.0 * hl * kappa * (gr[t2] * vv[t2]) * sel[t2]
    _tangent_memory(t, DD, lt, a)
    f2 = gamma + kappa * mm
    f3 = kappa * dl
    Rb = rows.Rb
    for k in range(t + 1):
        v = f2 * DD[t, k] + f3 * dm[k]
        DL[t, k] = v
        Rb[b, k] = v * sel[t]


@njit(parallel=True, cache=True)
def _data_side_row(t, c, sites, K, st, rows):
    """Advance every data-side site of the D -> inf DMFT from t-1 to t (in parallel over sites).

    Per site: m(t), row t of the neuron resolvent Gamma = (I - K)^{-1} with memory
    K(t,tp) = h lambda kappa R_z(t,tp) Delta(tp), the covariances V = Gamma (C_z + u^2 S) Gamma^T and
    V_perp = Gamma C_z Gamma^T at (t, t2 <= t), Delta(t), ell_b(t) = Delta (gamma + kappa m), and row t
    of the tangent system d(Delta, ell_b)/d xi_b.  Writes the per-site rows of ``rows`` whose weighted
    means are Rhat_z, N_z, N_par, N_b, Rhat_b at row t (Rhat_par = the u^2-weighted Rhat_z rows).
    Constants gamma = 2/alpha, kappa = 2 eps/alpha, a = alpha eps/2 (docs/theory.md).
    """
    # the per-site work is a function of its own: Numba's parfor lowering can drop writes made
    # through the named tuples' arrays in the body of a prange loop itself
    for b in prange(sites.u2.shape[0]):
        _data_side_site(b, t, c, sites, K, st, rows)
