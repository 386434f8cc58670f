"""Numba kernel of the data-side row of the gradient-flow DMFT (:mod:`dmft.two_layer.flow`): every site's
implicit row i, in parallel over sites.  Compiled without fastmath (see :mod:`dmft.two_layer.core`)."""
from __future__ import annotations


import numpy as np
from numba import njit, prange


@njit(cache=True)
def _flow_site_row(b, i, lam, gam, kap, al, ep, inv_dim, noise, gauss, label, u2, chol, Qb, Qz, Cz, S,
                   Gm, DD, DL, m, Dl, ell, V, Vp, target, u, mu):
    """Site b of :func:`_flow_data_row`."""
    n = i + 1
    a = 0.5 * al * ep
    G = Gm[b]
    uu = u2[b]
    # the explicit part of the readout mean: xi_b(i) + lambda sum_{j<i} Q_b(i, j) ell_j
    m0 = 0.0
    for j in range(n):
        m0 += chol[i, j] * gauss[b, j]
    for j in range(i):
        m0 += lam * Qb[i, j] * ell[b, j]
    if mu != 0.0:  # the readout mean's teacher component mu_b u (odd targets)
        m0 += mu * u[b]
    # the resolvent row before its diagonal factor: y = e_i + sum_{l<i} K(i, l) Gamma(l, :)
    y = np.zeros(n)
    for l in range(i):
        k = lam * kap * Qz[i, l] * Dl[b, l]
        if k != 0.0:
            for c in range(l + 1):
                y[c] += k * G[l, c]
    y[i] = 1.0
    v0 = 0.0
    for r in range(n):
        if y[r] != 0.0:
            acc = 0.0
            for c in range(n):
                acc += (Cz[r, c] + uu * S[r, c]) * y[c]
            v0 += y[r] * acc
    c_b = lam * Qb[i, i]
    qz = Qz[i, i]
    const = target[b] + noise * label[b] + a * (1.0 + uu * inv_dim)
    # Newton on F(D) = D - const + alpha (m + eps m^2/2) + a gg(D)^2 v0, m(D) = (m0 + c gamma D) / (1 - c kappa D)
    D = Dl[b, i - 1] if i > 0 else const - a * v0
    for _ in range(30):
        den = 1.0 - c_b * kap * D
        mm = (m0 + c_b * gam * D) / den
        dm = (c_b * gam + mm * c_b * kap) / den
        gg = 1.0 / (1.0 - lam * kap * qz * D)
        F = D - const + al * (mm + 0.5 * ep * mm * mm) + a * gg * gg * v0
        dF = 1.0 + al * (1.0 + ep * mm) * dm + 2.0 * a * gg * (lam * kap * qz * gg * gg) * v0
        step = F / dF
        D -= step
        if not abs(step) >= 1e-15 * (1.0 + abs(D)):
            break
    mm = (m0 + c_b * gam * D) / (1.0 - c_b * kap * D)
    gg = 1.0 / (1.0 - lam * kap * qz * D)
    m[b, i] = mm
    Dl[b, i] = D
    ell[b, i] = D * (gam + kap * mm)
    for c in range(n):
        G[i, c] = gg * y[c]
    for c in range(n, G.shape[1]):
        G[i, c] = 0.0
    # V(i, j), V_perp(i, j) for j <= i: z = Gamma(i, :) C, then Gamma(j, :) z
    zc = np.zeros(n)
    zs = np.zeros(n)
    gq = np.zeros(n)
    for k in range(n):
        g = G[i, k]
        if g != 0.0:
            for c in range(n):
                zc[c] += g * Cz[k, c]
                zs[c] += g * S[k, c]
                gq[c] += g * Qz[k, c]
    for j in range(n):
        vc = 0.0
        vs = 0.0
        for k in range(j + 1):
            g = G[j, k]
            vc += g * zc[k]
            vs += g * zs[k]
        Vp[b, j] = vc
        V[b, j] = vc + uu * vs
    # tangent row i with its own diagonal: p = dm(i, .), q = dDelta(i, .), a 2 x 2 solve
    p0 = np.zeros(n)
    p0[i] = 1.0
    q0 = np.zeros(n)
    for j in range(i):
        cq = lam * Qb[i, j]
        if cq != 0.0:
            for c in range(j + 1):
                p0[c] += cq * DL[b, j, c]
        lj = 2.0 * lam * kap * gq[j] * V[b, j]
        if lj != 0.0:
            for c in range(j + 1):
                q0[c] -= a * lj * DD[b, j, c]
    A = gam + kap * mm
    Bc = kap * D
    f = al * (1.0 + ep * mm)
    opl = 1.0 + a * 2.0 * lam * kap * gq[i] * V[b, i]
    den = 1.0 - c_b * Bc + c_b * A * f / opl
    for c in range(n):
        p = (p0[c] + (c_b * A / opl) * q0[c]) / den
        q = (q0[c] - f * p) / opl
        DD[b, i, c] = q
        DL[b, i, c] = A * q + Bc * p


@njit(parallel=True, cache=True)
def _flow_data_row(i, lam, gam, kap, al, ep, inv_dim, noise, gauss, label, u2, chol, Qb, Qz, Cz, S,
                   Gm, DD, DL, m, Dl, ell, V, Vp, target, u, mu):
    """Data-side row i of every site (:meth:`dmft.two_layer.flow.FlowProblem._data_row`): m_i, the resolvent
    row, Delta_i by Newton, the covariances V(i, j) and V_perp(i, j) (j <= i, into rows b of V and Vp)
    and the tangent row i; ``target`` g(u) and the signed ``u`` per site, ``mu`` = mu_b(t_i)."""
    for b in prange(u2.shape[0]):
        _flow_site_row(b, i, lam, gam, kap, al, ep, inv_dim, noise, gauss, label, u2, chol, Qb, Qz, Cz, S,
                       Gm, DD, DL, m, Dl, ell, V, Vp, target, u, mu)
