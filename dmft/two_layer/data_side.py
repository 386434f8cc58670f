"""The data-side row step: every sampled site advanced from t-1 to t, with the finite-size terms when ``cross``."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .core import _resolvent_row, _sandwich_row_pair
from .finite_size import _cross_sandwich_rows, _mode_tilt

@njit(parallel=True, cache=True)
def _data_side_row(t, h, lam, alpha, eps, inv_dim, noise, u2, label_noise, gauss, chol,
                   R_z, C_z, S, R_b, Gam, dDelta, dEll, m, Delta, ell,
                   out_Rz, out_Nz, out_Npar, out_Nb, out_Rb, out_V, out_Vperp,
                   cross, phi_hat, C_q, chol_q, gauss_q, chi, p_spk, c_spk, out_Rq, out_pull,
                   R_par, Gamc, out_Rpar, dDv, dEv, Vfull, Czs, norm, react):
    """Advance every data-side site from t-1 to t (in parallel over sites).

    Per site: m(t), the row t of the neuron resolvent Gamma, the covariances V(t, t2) and
    V_perp(t, t2) for t2 <= t, Delta(t), ell_b(t), and row t of the tangent system
    d(Delta, ell_b)/d xi_b.  Writes per-site rows whose weighted means are the averages
    Rhat_z, N_z, N_par, N_b, Rhat_b at row t (Rhat_par = u^2-weighted Rhat_z rows).

    cross=True adds the finite-size terms (docs/finite-size.md), with phi = sqrt(s(t,t)):
    * the cavity field of the spike-bulk cross direction, chi(t) = sum_j chol_q(t,j) gauss_q_j
      ~ GP(0, C_q), enters the neurons' cavity covariance as u (phi chi^T + chi phi^T) + chi chi^T - C_q,
      i.e. V = Gamma (C_z - C_q) Gamma^T + Gc (u^2 s + u (phi chi^T + chi phi^T) + chi chi^T) Gc^T
      with p = Gc phi, c = Gc chi (stored per site in p_spk, c_spk; sigma = u p + c is the site's
      spike-mode field);
    * the teacher coordinate's own memory, K += h lambda kappa (u^2/D) R_par cos^2 Delta
      (cos^2 = s / (s + C_q), an effective factor, see _mode_tilt), in the resolvent Gamma of the bulk part
      of the field (C_z - C_q) and in the tangent.  The spike-mode part uses
      the resolvent without it, Gc (the site's kicks along Z are already the spike's growth and
      pull), and so do the spike's own kernels (Rhat_par rows in out_Rpar, V_perp: the cavity of the
      spike coordinate);
    * the other memorised points' bumps: the bulk covariance of site b is Czs[b] = C_z + zeta_b
      (filled by _bump_field_row before this call);
    * the site's bulk norm n = norm[b]: memory n R_z, bulk covariance n (C_z + zeta), cross field
      sqrt(n) chi, initial form n + u^2/D;
    * the other points' reaction to the site's own bump: its past kicks in the memory (Gamma and Gc)
      carry Delta + react, react = -2 a ratio b / D (:func:`reaction_residual`, b the site's bump,
      filled after each row; zero without finite_size);
    * out_Rq: rows of Rhat_q = kappa E[Delta(t) Gamma(t, .)] + kappa E[sigma(t) sum_t' XV(t,t')
      2 sigma(t') Gamma(t', .)], the response of the cross direction, which all neurons share, so
      that Delta responds to it (XV = response of Delta to a source in v, through memorisation and
      Gamma: the tangent dDv/dEv, the xi_b tangent injected at v instead of m);
    * out_pull[b] = E_chi[u Delta(t) c(t)] to linear order in chi (exact Gaussian average over chi):
      the cross direction's coherent pull on the spike.
    """
    B = u2.shape[0]
    gamma = 2.0 / alpha
    kappa = 2.0 * eps / alpha
    a = 0.5 * alpha * eps
    hl = h * lam
    # cos^2 of the tilt of the growing mode away from bhat, s / (s + C_q): an effective factor on the
    # teacher memory (the networks' bhat^T A bhat is R_par; docs/finite-size.md, sections 3 and 3d)
    tilt = _mode_tilt(phi_hat, C_q, t + 1) if cross else np.ones(t + 1)
    for b in prange(B):
        G = Gam[b]
        DD = dDelta[b]
        DL = dEll[b]
        # the site's bulk norm n = |x_perp|^2 (1 at D -> inf, docs/finite-size.md, section 3c): the
        # quadratic sector's memory and covariances scale with n, the cross field with sqrt(n).  The
        # readout-mean field keeps n = 1: without feature learning (eps = 0) the finite-size terms vanish.
        nb = norm[b]
        # readout-mean field; xi_b(t) = sum_{j<=t} chol(t,j) g_j is a causal draw from GP(0, C_b)
        mm = 0.0
        for j in range(t + 1):
            mm += chol[t, j] * gauss[b, j]
        for tp in range(t):
            mm += hl * R_b[t, tp] * ell[b, tp]
        m[b, t] = mm
        # neuron resolvent row: Gamma(t,:) = e_t + sum_{tp<t} K(t,tp) Gamma(tp,:)
        for k in range(t):
            G[t, k] = 0.0
        G[t, t] = 1.0
        for tp in range(t):
            kt = hl * kappa * nb * R_z[t, tp] * (Delta[b, tp] + react[b, tp])
            if cross:
                kt += hl * kappa * u2[b] * inv_dim * R_par[t, tp] * tilt[tp] * Delta[b, tp]
            if kt != 0.0:
                for k in range(tp + 1):
                    G[t, k] += kt * G[tp, k]
        # The spike-mode part (u phi + chi) Z of the field is propagated without the teacher
        # coordinate's memory: the site's kicks along Z are already in the spike's growth and in the
        # pull; only its kicks along its own bulk field are missing from the spike (docs/finite-size.md,
        # section 3).  Gc = that resolvent (bulk memory R_z only), also the spike coordinate's cavity.
        Gc = G
        if cross:
            Gc = Gamc[b]
            coeff = np.empty(t)
            for tp in range(t):
                coeff[tp] = hl * kappa * nb * R_z[t, tp] * (Delta[b, tp] + react[b, tp])
            _resolvent_row(Gc, t, coeff)
        # V = Gamma C Gamma^T (bulk: C_z, plus the bump field zeta with finite_size) + u^2 Gc S Gc^T (spike)
        Cbulk = Czs[b] if cross else C_z
        vbulk = np.empty(t + 1)  # Gamma (C_z - C_q) Gamma^T: the part the teacher memory acts on
        vs = np.empty(t + 1)
        # cross: vz = V_perp of the spike's noise (with the spike-cavity resolvent), gqg = (Gamma C_q
        # Gamma^T)(t, t2), the cross part of the bulk covariance, gqgc = (Gc C_q Gc^T)(t, t2), the
        # covariance of c, for the pull
        nc = t + 1 if cross else 0
        vz_c = np.empty(nc)
        gqg = np.empty(nc)
        gqgc = np.empty(nc)
        if cross:
            _cross_sandwich_rows(G, Gc, Cbulk, C_q, S, t, vbulk, gqg, vs, vz_c, gqgc)
        else:
            _sandwich_row_pair(G, Cbulk, S, t, vbulk, vs)
        for t2 in range(t + 1):
            vbulk[t2] *= nb
        uu = u2[b]
        vz = vbulk.copy()
        vv = vbulk + uu * vs
        if cross:
            for t2 in range(t + 1):
                vz[t2] = vz_c[t2] * nb
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
                gqg[t2] *= nb
                gqgc[t2] *= nb
            for t2 in range(t + 1):
                vv[t2] += u1 * (pt * c_spk[b, t2] + ct * p_spk[b, t2]) + ct * c_spk[b, t2] - gqg[t2]
                vbulk[t2] -= gqg[t2]
        dl = (0.5 * uu + noise * label_noise[b] - alpha * (mm + 0.5 * eps * mm * mm)
              - a * (vv[t] - nb - uu * inv_dim))
        Delta[b, t] = dl
        lb = dl * (gamma + kappa * mm)
        ell[b, t] = lb
        # per-site rows of the averages
        c = lam * kappa * kappa * dl
        for k in range(t + 1):
            out_Rz[b, k] = kappa * dl * G[t, k]
            dk = Delta[b, k]
            out_Nz[b, k] = c * dk * vv[k]
            out_Npar[b, k] = c * uu * dk * vz[k]
            out_Nb[b, k] = lam * lb * ell[b, k]
            out_V[b, k] = vv[k]
            out_Vperp[b, k] = vz[k]
        if cross:
            sg = math.sqrt(uu) * p_spk[b, t] + c_spk[b, t]
            rq = kappa * dl
            for k in range(t + 1):
                out_Rq[b, k] = rq * G[t, k]
                out_Rpar[b, k] = kappa * dl * Gc[t, k]
            VF = Vfull[b]
            for k in range(t + 1):
                VF[t, k] = vv[k]
                VF[k, t] = vv[k]
        # tangent row t:  Dm = e_t + h lam sum_{tp<t} R_b(t,tp) DL(tp,:)
        dm = np.zeros(t + 1)
        dm[t] = 1.0
        for tp in range(t):
            c2 = hl * R_b[t, tp]
            if c2 != 0.0:
                for k in range(tp + 1):
                    dm[k] += c2 * DL[tp, k]
        # L(t,t2) = 2 h lam kappa (Gamma R)(t,t2) V(t2,t), t2 < t, R = R_z (+ (u^2/D) R_par on the bulk part)
        f1 = -alpha * (1.0 + eps * mm)
        for k in range(t + 1):
            DD[t, k] = f1 * dm[k]
        # (Gamma R_z)(t, t2) = sum_{t2 < t1 <= t} Gamma(t, t1) R_z(t1, t2), row-wise for locality
        gr = np.zeros(t + 1)
        grp = np.zeros(t + 1)
        for t1 in range(1, t + 1):
            g1 = G[t, t1]
            if g1 != 0.0:
                for t2 in range(t1):
                    gr[t2] += g1 * nb * R_z[t1, t2]
                if cross:
                    g1 *= uu * inv_dim
                    for t2 in range(t1):
                        grp[t2] += g1 * R_par[t1, t2] * tilt[t2]
        for t2 in range(t):  # gr <- d V(t,t) / d Delta(t2) / (2 h lam kappa)
            gr[t2] = gr[t2] * vv[t2] + grp[t2] * vbulk[t2]
        for t2 in range(t):
            lt = 2.0 * hl * kappa * gr[t2]
            if lt != 0.0:
                for k in range(t2 + 1):
                    DD[t, k] -= a * lt * DD[t2, k]
        f2 = gamma + kappa * mm
        f3 = kappa * dl
        for k in range(t + 1):
            v = f2 * DD[t, k] + f3 * dm[k]
            DL[t, k] = v
            out_Rb[b, k] = v
        if cross:
            # response of (Delta, ell_b) to a unit source added to v(k): the same loop as the xi_b
            # tangent (memorisation through m, and v through Gamma), injected at v instead of m
            XV = dDv[b]
            XL = dEv[b]
            dmv = np.zeros(t + 1)
            for tp in range(t):
                c2 = hl * R_b[t, tp]
                if c2 != 0.0:
                    for k in range(tp + 1):
                        dmv[k] += c2 * XL[tp, k]
            for k in range(t + 1):
                XV[t, k] = f1 * dmv[k]
            XV[t, t] -= a
            for t2 in range(t):
                lt = 2.0 * hl * kappa * gr[t2]
                if lt != 0.0:
                    for k in range(t2 + 1):
                        XV[t, k] -= a * lt * XV[t2, k]
            for k in range(t + 1):
                XL[t, k] = f2 * XV[t, k] + f3 * dmv[k]
            # Rhat_q(t, s) += kappa sigma(t) sum_{t'} XV(t, t') 2 sigma(t') Gamma(t', s): the shared
            # cross field moves v, hence Delta, of every neuron at once
            u1 = math.sqrt(uu)
            sg = u1 * p_spk[b, t] + c_spk[b, t]
            wv = np.empty(t + 1)
            for t1 in range(t + 1):
                wv[t1] = XV[t, t1] * 2.0 * (u1 * p_spk[b, t1] + c_spk[b, t1])
            for t1 in range(t + 1):
                w1 = wv[t1]
                if w1 != 0.0:
                    for k in range(t1 + 1):
                        out_Rq[b, k] += kappa * sg * w1 * G[t1, k]
            # coherent pull on the spike, E_chi[u Delta(t) c(t)] to linear order in the cross field:
            # 2 u^2 sum_t' XV(t,t') p(t') (Gamma C_q Gamma^T)(t',t), averaged over chi exactly (a sampled
            # u Delta c keeps the part of Delta odd in the xi_b draw, noise of the order of phi)
            pull = 0.0
            for t1 in range(t + 1):
                pull += XV[t, t1] * p_spk[b, t1] * gqgc[t1]
            out_pull[b] = 2.0 * uu * pull
