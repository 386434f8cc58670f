r"""DMFT of the two-layer network  f(x) = alpha (1/N) sum_i [phi(w_i.x) - phi(w_i(0).x)].

Exact large-N, large-(D, P) limit (P/D = ratio fixed) of full-batch gradient descent with
learning rate eta N / alpha^2 and eta = h D, i.e. of Euler steps of size h in the time
tau = eta t / D.  The DMFT is written in the same discrete time t = 0..T (tau = t h), so the
theory and ``dmft simulate --dt h`` have no discretisation mismatch; h -> 0 is gradient flow.

Derivation (re-derived from ``shared/design/two-layer-dmft.md``; full text in
``docs/two-layer-dmft.md``).  Constants lambda = 1/ratio, gamma = 2/alpha,
kappa = 2 eps/alpha, a = alpha eps / 2.  Because phi' is affine, w_i(t) = A(t) w_i(0) + b(t).

Weight side (one input coordinate; Gaussian, propagated exactly by :mod:`dmft.solvers.gaussian`),
three families theta(t+1) = theta(t) + h xi(t) + h sum_{t''<=t} Rhat(t,t'') theta(t''):

    bulk neuron z = (A w0)_i :   Rhat_z   = kappa E[Delta(t) Gamma(t,t'')]
                                 N_z      = lambda kappa^2 E[Delta(s) Delta(s') V(s,s')]
    teacher spike z_par       :  Rhat_par = kappa E[u^2 Delta(t) Gamma(t,t'')]
                                 N_par    = lambda kappa^2 E[u^2 Delta(s) Delta(s') V_perp(s,s')]
                                 seed Var z_par(0) = 1, and s = C_par / D (so s(0,0) = 1/D)
    readout mean b            :  Rhat_b   = E[d ell_b(t) / d xi_b(t'')]   (tangent system)
                                 N_b      = lambda E[ell_b(s) ell_b(s')],  b(0) = 0

Data side (one training point; u = teacher field ~ N(0,1), xi_b ~ GP(0, C_b)):

    m(t)     = xi_b(t) + h lambda sum_{t'<t} R_b(t,t') ell_b(t'),   ell_b = Delta (gamma + kappa m)
    r(t)     = xi_r(t) + sum_{t'<t} K(t,t') r(t'),  K = h lambda kappa R_z(t,t') Delta(t'),
               Cov xi_r = C_z + u^2 s,   Gamma = (I - K)^{-1},   V = Gamma (C_z + u^2 s) Gamma^T
    Delta(t) = u^2/2 + sigma n - alpha (m + eps m^2/2) - a (V(t,t) - 1 - u^2/D).

Each neuron's field r is linear in its own Gaussian noise given the path Delta(.), so the
neuron sector is Gaussian and propagated exactly (V, no sampling over neurons); only u
(Gauss-Legendre quadrature) and the path xi_b (antithetic Monte Carlo) are sampled.

One difference from the reference note: the noise of the spike coordinate is the cavity
field of the *bulk* coordinates, so N_par uses V_perp = Gamma C_z Gamma^T (the spike part of a
neuron's field enters the spike's own equation as the deterministic response term, not as
noise).  Using V instead double counts the spike.

Readouts: train loss E[Delta(t)^2]; test loss (fresh x, exact for the quadratic predictor)
with c1 = 1/2 - a (s - 1/D), c0 = -a (C_z - 1), sigma_b^2 = C_b (all at (t, t)):
    L_test = (c1 + c0 - a sigma_b^2)^2 + 2 c1^2 + alpha^2 sigma_b^2 + 2 a^2 sigma_b^4.

finite_size=True (docs/finite-size.md) adds the finite-D terms: the spike-bulk cross direction q
(kernels R_q, C_q; the learned direction is bhat plus an O(1) bulk part), its cavity field chi in V,
its coherent pull on the spike and its test-loss term a^2 (4 s C_q + 2 C_q^2); the teacher
coordinate's own memory (u^2/D) R_par cos^2(tilt) in the resolvent of the bulk part of the field
(cos^2 an effective factor, docs/finite-size.md section 3); the other memorised points' bumps, a
per-site random field zeta in the bulk covariance (Cov = 2 ratio E[b b'] / D, b = V - cavity
covariance) with its test-loss term a^2 (2/D) [(C_z - 1)^2 + ratio E[b^2]]; and each site's bulk
norm n = |x_perp|^2 (sd sqrt(2/D)), which scales its quadratic-sector memory and covariances; with
these per-site fields the bulk variance grows by each site's own covariance, kappa E[Delta Gamma
n (C_z + zeta)], a rate on Rhat_z(t,t) (the networks' trace sum rule, :meth:`TwoLayerProblem.trace_sum_rule`);
and the other points' reaction to a site's own bump b, an extra residual -2 a ratio b / D in the
kicks that build the site's memory (:func:`reaction_residual`).
:func:`dataset_ensemble` gives the spread over training sets of P = ratio D points.

Both solution methods are here: the causal sweep (row t+1 of the kernels needs data-side
averages up to t only: one pass, no iteration) and the damped / accelerated fixed-point
iteration of :mod:`dmft.solvers.fixed_point` on the same samples, which must reach the same kernels.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings

import numpy as np
from numba import njit, prange

from dmft.solvers.gaussian import propagate_all, propagate_row
from dmft.solvers.grid import available_memory
from dmft.solvers.volterra import cholesky_extend

from .params import (
    ParameterError,
    TwoLayerModel,
    as_dict,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    require,
)

__all__ = ["TwoLayerDMFT", "TwoLayerProblem", "solve", "dataset_ensemble", "population_test_loss",
           "cross_test_correction", "bump_test_correction", "reaction_residual",
           "KERNEL_NAMES", "CROSS_KERNEL_NAMES", "train_loss_rise"]

KERNEL_NAMES = ("R_z", "C_z", "R_par", "C_par", "R_b", "C_b")

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


# response and covariance of the spike-bulk cross direction (finite_size=True only)
CROSS_KERNEL_NAMES = ("R_q", "C_q")

# A residual this large means the site (and the map) has left any meaningful range: stop there.
_DIVERGED = 1e10

# Bytes of per-sample state in the causal sweep: Gamma, d Delta/d xi_b and d ell_b/d xi_b,
# each a (T+1) x (T+1) float64 matrix per sample.
_STATE_MATRICES = 3
# finite_size adds: the spike-cavity resolvent, the v-source tangent pair, the full V, and the
# site's bulk covariance C_z + zeta (zeta: the other points' memorised bumps, docs/finite-size.md)
_CROSS_MATRICES = 5
# other training points drawn per site to sample its bump field zeta
_BUMP_PARTNERS = 512
# E[(e^2 - 1) e^2] for e ~ N(0, 1): the anisotropic part of the other points' reaction to a bump
# (reaction_residual, docs/finite-size.md section 3d)
_REACTION = 2.0
# The data-side kernels are compiled without fastmath: with reassociation, a kernel compiled in the
# running process and the same kernel loaded from Numba's cache round differently, and the
# finite-size sampling (the bump field) amplifies that to ~1e-5 relative in the kernels, so a
# resumed run would not reproduce a fresh one.  Cost: ~20% of a sweep (c1, D = 400: 3.9 s against 3.2 s).
_FASTMATH = False


@dataclasses.dataclass(frozen=True)
class TwoLayerDMFT:
    """Numerical settings of a two-layer DMFT solve (the model is :class:`TwoLayerModel`).

    dim       D, enters only through the teacher-spike seed s(0) = 1/D and the u^2/D centring
    dt        Euler step h in tau (the DMFT is the exact D -> inf limit of GD with eta = h D)
    t_max     final time (tau); T = round(t_max / dt) steps
    nodes     Gauss-Legendre nodes of the teacher field |u| on [0, u_max]
    samples   antithetic Monte-Carlo paths of xi_b per node (even)
    u_max     quadrature cut-off of |u|; the Gaussian mass beyond it, 2 (1 - Phi(u_max)), is
              reported in every result (a training set of P points rarely has
              max |u| > sqrt(2 log P) ~ 4, and sites far beyond are unstable under Euler
              steps in the rich regime)
    seed      seed of the Monte-Carlo paths (the answer is deterministic given it)
    finite_size  add the finite-D terms of docs/finite-size.md: the spike-bulk cross covariance
              (the learned direction is bhat plus an O(1) random bulk component, which the D -> inf
              equations drop), the teacher coordinate's own memory (u^2/D) R_par, and the other
              memorised points' bumps seen by each point (a per-site random field, and its
              test-loss term) and their reaction to each point's own bump.  At fixed tau they vanish
              as D -> inf (about like 1/D: s(tau) ~ 1/D;
              the bump field's sampling noise like D^-1/2), but not at fixed s, so they matter at
              the D of simulations.  Off: the D -> inf DMFT, unchanged (to round-off).
    """

    dim: int = 200
    dt: float = 0.2
    t_max: float = 12.0
    nodes: int = 24
    samples: int = 64
    u_max: float = 4.5
    seed: int = 0
    cholesky_cut: float = 1e-10
    control_variate: bool = True
    finite_size: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dim", check_int("dim", self.dim, 1))
        object.__setattr__(self, "dt", check_positive("dt", self.dt))
        object.__setattr__(self, "t_max", check_positive("t_max", self.t_max))
        object.__setattr__(self, "nodes", check_int("nodes", self.nodes, 1, 1000))
        object.__setattr__(self, "samples", check_int("samples", self.samples, 2))
        require(self.samples % 2 == 0, "samples", self.samples, "an even integer >= 2 (antithetic pairs)")
        object.__setattr__(self, "u_max", check_positive("u_max", self.u_max))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        object.__setattr__(self, "cholesky_cut", check_positive("cholesky_cut", self.cholesky_cut))
        for flag in ("control_variate", "finite_size"):
            require(isinstance(getattr(self, flag), (bool, np.bool_)), flag, getattr(self, flag), "True or False")
        require(self.steps >= 1, "t_max", self.t_max, f"at least one step: t_max >= dt = {self.dt}")
        require(self.steps <= 20000, "t_max/dt", self.steps, "at most 20000 time steps")

    @property
    def steps(self) -> int:
        return int(round(self.t_max / self.dt))

    @property
    def n_samples(self) -> int:
        """Number of data-side sites: nodes x (samples + 1 noise-free twin)."""
        return self.nodes * (self.samples + 1)

    @property
    def matrices_per_site(self) -> int:
        """(T+1)^2 state matrices kept per sampled site."""
        return _STATE_MATRICES + (_CROSS_MATRICES if self.finite_size else 0)

    def memory_bytes(self) -> int:
        """Peak memory of a sweep: per-sample state plus ~40 (T+1)^2 kernel/accumulator arrays."""
        t1 = self.steps + 1
        return (8 * t1 * t1 * (self.matrices_per_site * self.n_samples + 3 * self.nodes + 40)
                + 8 * t1 * self.n_samples * 20)


def population_test_loss(alpha, eps, dim, C_z_diag, s_diag, C_b_diag):
    """Exact population test loss of the limiting quadratic predictor at each time."""
    a = alpha * eps / 2.0
    c1 = 0.5 - a * (np.asarray(s_diag) - 1.0 / dim)
    c0 = -a * (np.asarray(C_z_diag) - 1.0)
    sb2 = np.asarray(C_b_diag)
    return (c1 + c0 - a * sb2) ** 2 + 2 * c1**2 + alpha**2 * sb2 + 2 * a**2 * sb2**2


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


@njit(cache=True, fastmath=_FASTMATH)
def _own_bump(nu, s_, q, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm):
    """b_nu(s_, q) = V_nu - (cavity covariance): the site's field covariance beyond the bulk n (C_z + zeta)
    and the spike-mode part u^2 s + u (phi chi + chi phi) + chi chi - n C_q it would have without
    its own memory (q <= s_; n = |x_perp|^2 the site's bulk norm, chi already carries sqrt(n))."""
    u1 = math.sqrt(u2[nu])
    n = norm[nu]
    cav = (n * C_z[s_, q] + u2[nu] * S[s_, q] + u1 * (phi_hat[s_] * chi[nu, q] + chi[nu, s_] * phi_hat[q])
           + chi[nu, s_] * chi[nu, q] - n * C_q[s_, q])
    return Vfull[nu, s_, q] - cav - n * (Czs[nu, s_, q] - C_z[s_, q])


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _own_bump_diag(t, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm, out):
    """out[nu] = b_nu(t, t) for every site (bump_test_correction needs E[b(t,t)^2])."""
    for nu in prange(u2.shape[0]):
        out[nu] = _own_bump(nu, t, t, C_z, S, C_q, u2, chi, phi_hat, Vfull, Czs, norm)


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
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


@njit(cache=True, fastmath=_FASTMATH)
def _mode_tilt(phi_hat, C_q, n):
    """cos^2 of the tilt of the growing mode away from bhat at times 0..n-1, s / (s + C_q) with
    s = phi^2 (1 where both vanish).  An effective factor on the teacher memory and on the spike-noise
    leg of C_q: it was derived as the share of a kick to the teacher coordinate that comes back to it,
    but the networks' bhat^T A(t,t') bhat is R_par itself; the factor stands in for the missing
    reaction of the other points to a large-|u| point's bump (docs/finite-size.md, sections 3, 3d)."""
    tilt = np.ones(n)
    for tp in range(n):
        s2 = phi_hat[tp] * phi_hat[tp]
        if s2 + C_q[tp, tp] > 0.0:
            tilt[tp] = s2 / (s2 + C_q[tp, tp])
    return tilt


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
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


# ----------------------------------------------------------------------------- data side
@njit(cache=True, fastmath=_FASTMATH)
def _resolvent_row(G, t, coeff):
    """Row t of Gamma = (I - K)^{-1} with K(t, tp) = coeff[tp]: Gamma(t,:) = e_t + sum_tp K(t,tp) Gamma(tp,:)."""
    for k in range(t):
        G[t, k] = 0.0
    G[t, t] = 1.0
    for tp in range(t):
        kt = coeff[tp]
        if kt != 0.0:
            for k in range(tp + 1):
                G[t, k] += kt * G[tp, k]


@njit(cache=True, fastmath=_FASTMATH)
def _sandwich_row(G, C, t, out):
    """out[t2] = (Gamma C Gamma^T)(t, t2) for t2 <= t (Gamma lower triangular).  The reference form of
    the fused rows below, which the sweep calls and tests check against it bit for bit."""
    y = np.zeros(t + 1)
    for k in range(t + 1):
        gk = G[t, k]
        if gk != 0.0:
            for j in range(t + 1):
                y[j] += gk * C[k, j]
    for t2 in range(t + 1):
        acc = 0.0
        for t1 in range(t2 + 1):
            acc += G[t2, t1] * y[t1]
        out[t2] = acc


# The sandwich rows below are the data side's memory-bound inner loops.  They fuse what separate
# _sandwich_row calls would do, so that each per-site matrix is read once per row t, and the
# strictly ordered (no fastmath) reductions run as independent chains.  Every output accumulates
# its terms in the same order as _sandwich_row: the results are the same to the last bit.
@njit(cache=True, fastmath=_FASTMATH)
def _sandwich_row_pair(G, C1, C2, t, out1, out2):
    """out1 = row t of Gamma C1 Gamma^T and out2 = row t of Gamma C2 Gamma^T (as _sandwich_row)."""
    y1 = np.zeros(t + 1)
    y2 = np.zeros(t + 1)
    for k in range(t + 1):
        gk = G[t, k]
        if gk != 0.0:
            for j in range(t + 1):
                y1[j] += gk * C1[k, j]
                y2[j] += gk * C2[k, j]
    for t2 in range(t + 1):
        a1 = 0.0
        a2 = 0.0
        for t1 in range(t2 + 1):
            g = G[t2, t1]
            a1 += g * y1[t1]
            a2 += g * y2[t1]
        out1[t2] = a1
        out2[t2] = a2


@njit(cache=True, fastmath=_FASTMATH)
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


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
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


# ------------------------------------------------------------------------------ problem
class TwoLayerProblem:
    """The two-layer DMFT as a problem for the solvers: fixed samples, the map F, readouts.

    Sampling.  The teacher field |u| is integrated by Gauss-Legendre quadrature on
    [0, u_max] with the half-normal density; at each node ``samples`` sites carry antithetic
    (g, -g) normal vectors that drive the readout-mean noise xi_b = L g, with L the causal
    Cholesky factor of C_b (residual variances below ``cholesky_cut`` times the largest
    variance are cut).  An alternative that
    draws xi_b as random combinations of the other sites' ell_b paths (no Cholesky) was tried
    and rejected: its feedback through the shared paths made the run-to-run spread ~10x
    larger (train loss +-0.07 at eps = 0 against a 0.004 simulation standard error).

    Variance reduction: each node also carries a weight-zero twin site with xi_b = 0 whose
    tangents define an exactly averageable linearised site (second-moment control variate,
    :meth:`_control_variate_row`); it makes the eps = 0 (linear) case exact and cuts the
    run-to-run spread ~10x in the lazy case and ~2x in the rich case.

    Everything random is drawn once from ``options.seed``: the map :meth:`update` is
    deterministic, so the sweep and the fixed-point iteration act on the same samples and a
    checkpoint can be resumed.
    """

    kind = "dmft-two-layer"

    def __init__(self, model: TwoLayerModel, options: TwoLayerDMFT):
        self.model = model
        self.options = options
        self.T1 = options.steps + 1
        need = options.memory_bytes()
        avail = available_memory()
        if need > 0.8 * avail:
            raise ParameterError(
                f"invalid memory request: T = {options.steps} steps with {options.n_samples} samples needs "
                f"~{need / 2**30:.1f} GiB (8 (T+1)^2 ({options.matrices_per_site} "
                f"samples + 40) bytes), {avail / 2**30:.1f} GiB available; "
                f"allowed range is at most 80% of available memory: lower --samples/--nodes or t_max/dt")
        # Euler steps of the linear fit modes (rates up to 2 (1 + sqrt(lambda))^2, the Marchenko-Pastur edge)
        # are stable only for h < 1 / (1 + sqrt(lambda))^2; gradient descent with eta = h D diverges beyond.
        h_max = 1.0 / (1.0 + math.sqrt(model.lam)) ** 2
        require(options.dt < h_max, "dt", options.dt,
                f"0 < dt < 1/(1 + sqrt(1/ratio))^2 = {h_max:.4g} (Euler stability of the linear fit modes at "
                f"ratio = {model.ratio:g}; gradient descent with eta = dt*D diverges beyond it)")
        self.tau = np.arange(self.T1) * options.dt
        self.kernel_names = KERNEL_NAMES + (CROSS_KERNEL_NAMES if options.finite_size else ())
        self._draw_samples()
        self.dropped_mass = math.erfc(options.u_max / math.sqrt(2.0))
        self.last_pass = None
        # finite_size: keep the bulk variance consistent with the sites' own covariances (section 3e);
        # switched off only to measure what it does
        self.site_covariance_rate = True
        # finite_size: the other points' reaction to each site's own bump (section 3d);
        # switched off only to measure what it does
        self.bump_reaction = True
        # training-set replicas (dataset_ensemble): W - w, the replica's empirical measure minus the
        # population's, per site; None for the central solve
        self.dataset_deviation = None

    # samples -------------------------------------------------------------------------
    def _draw_samples(self):
        o, T1 = self.options, self.T1
        x, wq = np.polynomial.legendre.leggauss(o.nodes)
        u = 0.5 * o.u_max * (x + 1.0)
        wq = wq * np.exp(-0.5 * u**2)
        wq = wq / wq.sum()  # conditional on |u| <= u_max (the cut mass is reported)
        half, S = o.samples // 2, o.samples
        per = S + 1  # sampled sites of a node, then its noise-free twin (control variate)
        rng = np.random.default_rng(o.seed)
        g = rng.standard_normal((o.nodes, half, T1))
        n = rng.standard_normal((o.nodes, half))
        gauss = np.zeros((o.nodes, per, T1))
        gauss[:, :half], gauss[:, half:S] = g, -g
        label = np.zeros((o.nodes, per))
        label[:, :half], label[:, half:S] = n, -n
        weights = np.zeros((o.nodes, per))
        weights[:, :S] = (wq / S)[:, None]
        self.gauss = np.ascontiguousarray(gauss.reshape(-1, T1))
        if o.finite_size:  # drawn after the D -> inf samples, which stay the same
            gq = rng.standard_normal((o.nodes, half, T1))
            gauss_q = np.zeros((o.nodes, per, T1))
            gauss_q[:, :half], gauss_q[:, half:S] = gq, -gq
            self.gauss_q = np.ascontiguousarray(gauss_q.reshape(-1, T1))
            # bump field: each sampled site sees K other training points drawn from the sites, with
            # Gaussian weights of the variance of (x_mu.x_nu)^2 - 1/D, 2/D^2, scaled so that K of the
            # P points stand for all of them; antithetic like xi_b (the pair's linear parts cancel)
            # Partners are drawn uniformly over the sampled sites and weighted by sqrt(w N): the
            # large-|u| sites, whose bumps dominate, are then as well sampled as the others.
            w_all = weights.reshape(-1)
            K = _BUMP_PARTNERS
            live = np.flatnonzero(w_all > 0)
            pick = live[rng.integers(0, live.size, size=(o.nodes, half, K))]
            e = (rng.standard_normal((o.nodes, half, K)) * np.sqrt(w_all[pick] / w_all.sum() * live.size)
                 * math.sqrt(2.0 * self.model.ratio * o.dim / K) / o.dim)
            partners = np.zeros((o.nodes, per, K), dtype=np.int64)
            omegas = np.zeros((o.nodes, per, K))  # zero for the noise-free twins of the control variate
            partners[:, :half], partners[:, half:S] = pick, pick
            omegas[:, :half], omegas[:, half:S] = e, -e
            partners, omegas = partners.reshape(-1, K), omegas.reshape(-1, K)
            # zeta_mu sums the bumps of the *other* points: a site drawn as its own partner, or its
            # antithetic mirror (same u, mirrored paths, a nearly equal bump), would feed its own bump
            # back into its covariance, a self-feedback the networks do not have (it did not remove the
            # rare runaways, docs/finite-size.md section 5c).  Those partners get zero weight, and the site's
            # remaining weights are rescaled to keep the variance of zeta.
            site = np.arange(partners.shape[0])
            within = site % per
            mirror = np.where(within < half, site + half, np.where(within < S, site - half, -1))
            own = (partners == site[:, None]) | (partners == mirror[:, None])
            omegas[own] = 0.0
            omegas *= np.sqrt(K / np.maximum(K - own.sum(axis=1), 1))[:, None]
            self.partners, self.omegas = partners, omegas
            # bulk norm n = |x_perp|^2 of each sampled site: chi^2_{D-1}/D, here 1 + sqrt(2/D) g (antithetic
            # with the site's other draws; 1 for the noise-free twins), floored at 1/D (a norm is
            # positive; the floor is reached with probability < 1e-6 for D >= 50)
            gn = rng.standard_normal((o.nodes, half))
            norm = np.ones((o.nodes, per))
            norm[:, :half], norm[:, half:S] = 1.0 + math.sqrt(2.0 / o.dim) * gn, 1.0 - math.sqrt(2.0 / o.dim) * gn
            self.bulk_norm = np.ascontiguousarray(np.maximum(norm.reshape(-1), 1.0 / o.dim))
        else:
            self.gauss_q = np.zeros((1, 1))
            self.partners, self.omegas = np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1))
            self.bulk_norm = np.ones(o.nodes * (S + 1))
        self.label_noise = label.reshape(-1)
        self.weights = weights.reshape(-1)
        self.u = np.repeat(u, per)
        self.u2 = self.u**2
        self.node_weight = wq
        self.twins = np.arange(o.nodes) * per + S
        if o.control_variate:
            # I - G_hat: excess of the identity over each node's empirical second moment of g
            self.excess = np.eye(T1)[None] - np.einsum("nst,nsu->ntu", gauss[:, :S], gauss[:, :S]) / S
        self.control_variate = o.control_variate
        # batches of whole antithetic pairs, across every node, for within-run error bars
        self.n_batches = min(16, half)
        k = np.arange(per)
        batch = np.where(k < S, (k % half) % self.n_batches, -1)
        self.batch_of = np.tile(batch, o.nodes)

    def parameters(self) -> dict:
        return {"model": "two-layer", **as_dict(self.model), **as_dict(self.options)}

    # kernels -------------------------------------------------------------------------
    def initial_kernels(self) -> dict:
        """Frozen network: R = 1 below the diagonal, C_z = 1, C_par = 1 (s = 1/D), C_b = 0."""
        T1 = self.T1
        R = np.tril(np.ones((T1, T1)), -1)
        K = {"R_z": R.copy(), "C_z": np.ones((T1, T1)), "R_par": R.copy(), "C_par": np.ones((T1, T1)),
             "R_b": R.copy(), "C_b": np.zeros((T1, T1))}
        if self.options.finite_size:
            K.update({"R_q": R.copy(), "C_q": np.zeros((T1, T1))})
        return K

    def _run(self, K, sweep, progress=None):
        """One pass over t = 0..T.  sweep=True fills row t of K (weight side) before the data
        side of row t uses it: the causal solution.  sweep=False keeps K fixed (map F).
        Returns (state, last_good_step, message)."""
        T1, o, mdl = self.T1, self.options, self.model
        B = self.u2.shape[0]
        st = {"Gam": np.zeros((B, T1, T1)), "dDelta": np.zeros((B, T1, T1)), "dEll": np.zeros((B, T1, T1)),
              "m": np.zeros((B, T1)), "Delta": np.full((B, T1), np.nan), "ell": np.zeros((B, T1)),
              "chol": np.zeros((T1, T1)), "phi": [np.zeros(T1) for _ in range(3)], "trace_drive": np.zeros(T1),
              "avg": {k: np.zeros((T1, T1)) for k in ("Rhat_z", "Rhat_par", "N_z", "N_par", "N_b", "Rhat_b")}}
        rows = [np.zeros((B, T1)) for _ in range(7)]
        out_Rz, out_Nz, out_Npar, out_Nb, out_Rb, out_V, out_Vperp = rows
        cross = o.finite_size
        if cross:
            st.update({"chi": np.zeros((B, T1)), "p_spk": np.zeros((B, T1)), "c_spk": np.zeros((B, T1)),
                       "chol_q": np.zeros((T1, T1)), "R_q": np.zeros((T1, T1)), "Phi_q": np.zeros(T1),
                       "Wq": np.zeros((B, T1)), "zero": np.zeros((T1, T1)),
                       "C_scratch": np.zeros((T1, T1))})
            st["avg"]["Rhat_q"] = np.zeros((T1, T1))
            st["avg"]["C_q"] = np.zeros((T1, T1))
            out_Rq, out_pull = np.zeros((B, T1)), np.zeros(B)
            st["Gamc"], out_Rpar = np.zeros((B, T1, T1)), np.zeros((B, T1))
            st["dDv"], st["dEv"], st["Vfull"] = (np.zeros((B, T1, T1)) for _ in range(3))
            st["Czs"], st["bump"], st["bump2"] = np.zeros((B, T1, T1)), np.zeros((B, T1)), np.zeros(T1)
            # the spike path is rank one to ~1e-3 (z_par(t) = phi(t) Z): phi = sqrt(s(t,t)), causal
            phi_hat = np.zeros(T1) if sweep else np.sqrt(np.maximum(np.diag(K["C_par"]), 0.0) / o.dim)
            C_q = K["C_q"]
        else:
            st.update({k: np.zeros((1, 1)) for k in ("chi", "p_spk", "c_spk", "chol_q")})
            out_Rq, out_pull = np.zeros((1, 1)), np.zeros(1)
            st["Gamc"], out_Rpar = np.zeros((1, 1, 1)), np.zeros((1, 1))
            st["dDv"], st["dEv"], st["Vfull"] = (np.zeros((1, 1, 1)) for _ in range(3))
            st["Czs"] = np.zeros((1, 1, 1))
            phi_hat = np.zeros(1)
            C_q = np.zeros((1, 1))
        cv = self._control_variate_state() if self.control_variate else None
        st["train_cv"] = np.zeros(T1)
        st["react"] = np.zeros((B, T1))
        avg = st["avg"]
        S = np.zeros((T1, T1)) if sweep else np.ascontiguousarray(K["C_par"] / o.dim)
        w, wu = self.weights, self.weights * self.u2
        for t in range(T1):
            if sweep:
                self._weight_side_row(t, avg, K, st["phi"])
                S[t, : t + 1] = K["C_par"][t, : t + 1] / o.dim
                S[: t + 1, t] = S[t, : t + 1]
                if cross:
                    phi_hat[t] = math.sqrt(max(K["C_par"][t, t], 0.0) / o.dim)
                    # only the response R_q is used: the covariance of q comes from the sites (C_q below)
                    propagate_row(t, avg["Rhat_q"], st["zero"], o.dt, 0.0, st["Phi_q"], K["R_q"], st["C_scratch"])
            if cross:
                # the cross direction's weights at row t need the sites' rows < t only
                _cross_weights_row(t, o.dt, mdl.lam, mdl.kappa, 1.0 / o.dim, self.u2, st["Gam"], K["C_z"], K["R_z"],
                                   K["R_q"], K["R_par"], st["Delta"], st["p_spk"], st["c_spk"], phi_hat, st["Vfull"],
                                   st["Wq"], C_q)
                Wq = st["Wq"]
                row = mdl.kappa ** 2 * mdl.lam * ((w * Wq[:, t]) @ Wq[:, : t + 1])
                avg["C_q"][t, : t + 1] = row
                avg["C_q"][: t + 1, t] = row
                if sweep:
                    C_q[t, : t + 1] = row
                    C_q[: t + 1, t] = row
            n = t + 1
            if cross:
                cholesky_extend(st["chol_q"][:n, :n], C_q[:n, :n], t,
                                o.cholesky_cut * max(float(np.max(np.diag(C_q)[:n])), 0.0))
            # causal Cholesky row t of C_b; a residual variance below cholesky_cut * max variance is cut
            cholesky_extend(st["chol"][:n, :n], K["C_b"][:n, :n], t,
                            o.cholesky_cut * max(float(np.max(np.diag(K["C_b"])[:n])), 0.0))
            if cross:
                _bump_field_row(t, K["C_z"], S, C_q, self.u2, st["chi"], phi_hat, st["Vfull"], st["Czs"],
                                self.bulk_norm, self.partners, self.omegas, st["bump"])
            _data_side_row(t, o.dt, mdl.lam, mdl.alpha, mdl.eps, 1.0 / o.dim, mdl.noise, self.u2,
                           self.label_noise, self.gauss, st["chol"], K["R_z"], K["C_z"], S, K["R_b"], st["Gam"], st["dDelta"],
                           st["dEll"], st["m"], st["Delta"], st["ell"], out_Rz, out_Nz, out_Npar, out_Nb, out_Rb,
                           out_V, out_Vperp, cross, phi_hat, C_q, st["chol_q"], self.gauss_q, st["chi"],
                           st["p_spk"], st["c_spk"], out_Rq, out_pull, K["R_par"], st["Gamc"], out_Rpar,
                           st["dDv"], st["dEv"], st["Vfull"], st["Czs"], self.bulk_norm, st["react"])
            if cross:  # E[b(t,t)^2] over the sites, for the test loss (bump_test_correction)
                b_tt = np.empty(B)
                _own_bump_diag(t, K["C_z"], S, C_q, self.u2, st["chi"], phi_hat, st["Vfull"], st["Czs"], self.bulk_norm, b_tt)
                with np.errstate(all="ignore"):
                    st["bump2"][t] = w @ b_tt**2
                    if self.bump_reaction:
                        st["react"][:, t] = reaction_residual(mdl.alpha, mdl.eps, mdl.ratio, o.dim, b_tt)
            with np.errstate(all="ignore"):  # a diverging site is detected just below, not warned about
                st["trace_drive"][t] = w @ (st["Delta"][:, t] * out_V[:, t])  # E[Delta V(t,t)], trace_sum_rule
                avg["Rhat_z"][t, :n] = w @ out_Rz[:, :n]
                if cross and self.site_covariance_rate:
                    avg["Rhat_z"][t, t] += self._site_covariance_rate(t, st, K["C_z"])
                avg["Rhat_par"][t, :n] = wu @ (out_Rpar if cross else out_Rz)[:, :n]
                avg["Rhat_b"][t, :n] = w @ out_Rb[:, :n]
                if cross:
                    avg["Rhat_q"][t, :n] = w @ out_Rq[:, :n]
                    if phi_hat[t] > 0.0:  # the coherent pull acts as an extra growth rate of z_par = sqrt(D) phi Z
                        pull = float(w @ out_pull)
                        if self.dataset_deviation is not None:
                            # a training set's own pull: the sum over its P points of u Delta c, whose
                            # finite-P part the exact chi-average drops (docs/finite-size.md, section 4)
                            pull += float(self.dataset_deviation
                                          @ (self.u * st["Delta"][:, t] * st["c_spk"][:, t] - out_pull))
                        avg["Rhat_par"][t, t] += mdl.kappa * pull / phi_hat[t]
                corr = self._control_variate_row(t, st, cv, out_V, out_Vperp) if cv is not None else {}
                for name, r in (("N_z", out_Nz), ("N_par", out_Npar), ("N_b", out_Nb)):
                    row = w @ r[:, :n]
                    if name in corr:
                        row = row + corr[name]
                    avg[name][t, :n] = row
                    avg[name][:n, t] = row
            with np.errstate(all="ignore"):
                exploded = not np.all(np.abs(st["Delta"][:, t]) < _DIVERGED)
            if exploded or not all(np.all(np.isfinite(a[t, :n])) for a in avg.values()):
                message = self._divergence_message(t, st)
                st["Delta"][:, t:] = np.nan
                return st, t - 1, message
            if progress is not None:
                progress(t)
        return st, T1 - 1, None

    # control variate ------------------------------------------------------------------
    def _control_variate_state(self):
        o, T1 = self.options, self.T1
        return {"P": np.zeros((o.nodes, T1, T1)), "Q": np.zeros((o.nodes, T1, T1))}

    def _control_variate_row(self, t, st, cv, out_V, out_Vperp):
        """Second-moment control variate at row t (see the class docstring).

        Each node carries a twin site driven by xi_b = 0 (weight 0).  Its tangents
        D = d Delta / d xi_b and E = d ell_b / d xi_b give the linearised sites
        Delta_lin = Delta_0 + D xi,  ell_lin = ell_0 + E xi, whose Gaussian averages are exact:
        E[ell_lin ell_lin^T] = ell_0 ell_0^T + E C_b E^T.  With antithetic pairs the sampled
        mean of the linear parts is exact, so the correction is E (C_b - C_hat) E^T with
        C_hat = L G_hat L^T the node's empirical covariance of its paths: the sampling error
        of the second moments of xi_b is removed to first order in the site's nonlinearity.
        Returns corrections to the rows t of N_b, N_z, N_par (and accumulates the train loss one).
        """
        o, mdl = self.options, self.model
        n = t + 1
        L = st["chol"][:n, :n]
        kappa2 = mdl.kappa ** 2
        corr = {"N_b": np.zeros(n), "N_z": np.zeros(n), "N_par": np.zeros(n)}
        for node in range(o.nodes):
            tw = self.twins[node]
            P, Q = cv["P"][node], cv["Q"][node]
            P[t, :n] = st["dDelta"][tw, t, :n] @ L
            Q[t, :n] = st["dEll"][tw, t, :n] @ L
            excess = self.excess[node][:n, :n]  # I - G_hat on the node's normals
            p_t = P[t, :n] @ excess
            q_t = Q[t, :n] @ excess
            wn = self.node_weight[node]
            dd = P[:n, :n] @ p_t  # (D (C_b - C_hat) D^T)(t, s'), s' <= t
            st["train_cv"][t] += wn * dd[t]
            corr["N_b"] += mdl.lam * wn * (Q[:n, :n] @ q_t)
            corr["N_z"] += mdl.lam * kappa2 * wn * dd * out_V[tw, :n]
            corr["N_par"] += mdl.lam * kappa2 * wn * self.u2[tw] * dd * out_Vperp[tw, :n]
        return corr

    def _site_covariance_rate(self, t, st, C_z):
        """Equal-time rate of the bulk coordinate that keeps its variance consistent with the sites'
        own covariances (finite_size; docs/finite-size.md, section 3e).

        The bulk variance grows by the coordinate's covariance with the fields of the points that
        kick it: its first-order drift is kappa E[Delta(t) (Gamma C_site)(t,t)] + (memory term), where
        a site's own bulk covariance is C_site = n (C_z + zeta) (bulk norm n, bump field zeta).  The
        response term Rhat_z * C_z = kappa E[Delta Gamma] C_z has the common C_z instead, and the two
        differ because a site's residual is correlated with its own zeta and n (Delta contains
        -a n zeta): the excess X(t) = kappa E[Delta(t) (Gamma (n (C_z + zeta) - C_z))(t,t)] < 0 is the
        trace of the other points' reaction to the memorised bumps (section 3d).  It is added as a
        rate X / C_z(t,t) to Rhat_z(t,t): exact for the equal-time drift (this part of the networks'
        sum rule, :meth:`trace_sum_rule`); as a rate it also slows the response R_z, i.e. it shrinks
        every point's memory in proportion to the memory, the mean-field form of the reaction (the
        networks' reaction is stronger for larger bumps).  X = O(1/D)."""
        n = t + 1
        site = st["Czs"][:, :n, t] * self.bulk_norm[:, None] - C_z[None, :n, t]
        excess = np.einsum("bk,bk->b", st["Gam"][:, t, :n], site)
        X = self.model.kappa * float(self.weights @ (st["Delta"][:, t] * excess))
        return X / max(C_z[t, t], 1e-300)

    def _weight_side_row(self, t, avg, K, phis):
        h = self.options.dt
        propagate_row(t, avg["Rhat_z"], avg["N_z"], h, 1.0, phis[0], K["R_z"], K["C_z"])
        propagate_row(t, avg["Rhat_par"], avg["N_par"], h, 1.0, phis[1], K["R_par"], K["C_par"])
        propagate_row(t, avg["Rhat_b"], avg["N_b"], h, 0.0, phis[2], K["R_b"], K["C_b"])

    def _divergence_message(self, t, st):
        with np.errstate(all="ignore"):
            size = np.abs(st["Delta"][:, t])
        size[~np.isfinite(size)] = np.inf
        i = int(np.argmax(size))
        return (f"a data-side site diverged at tau = {t * self.options.dt:.4g} (step {t}; teacher field "
                f"|u| = {self.u[i]:.3g}, {int(np.sum(size >= _DIVERGED))} of {size.size} sites with |Delta| >= "
                f"{_DIVERGED:.0e} or non-finite; results are kept up to tau = {(t - 1) * self.options.dt:.4g}): "
                f"the Euler step "
                f"dt = {self.options.dt} is unstable there; lower --dt (or --u-max)"
                + ("; with --finite-size at small D the finite-size terms can grow faster than the D -> inf ones "
                   "(seen at D <= 50 with alpha eps >= 0.15): also try a larger --dim, or without --finite-size"
                   if self.options.finite_size else ""))

    # the two methods -----------------------------------------------------------------
    def sweep(self, progress=None):
        """Causal one-pass solution.  Returns (kernels, message); on divergence the message
        says where, kernel rows after the last good step are NaN, and the rows before are kept."""
        T1 = self.T1
        K = {k: np.zeros((T1, T1)) for k in self.kernel_names}
        st, last, message = self._run(K, sweep=True, progress=progress)
        if message is not None:
            for k in self.kernel_names:
                K[k][last + 1:, :] = np.nan
                K[k][:, last + 1:] = np.nan
        self.last_pass = st
        self.last_good = last
        return K, message

    def update(self, kernels: dict) -> dict:
        """The fixed-point map F: the data side on the given kernels, then the exact weight side."""
        T1, h = self.T1, self.options.dt
        K = {k: np.ascontiguousarray(kernels[k]) for k in self.kernel_names}
        st, last, message = self._run(K, sweep=False)
        self.last_pass = st
        if message is not None:
            return {k: np.full_like(K[k], np.nan) for k in self.kernel_names}
        new = {k: np.zeros_like(K[k]) for k in self.kernel_names}
        avg = st["avg"]
        propagate_all(avg["Rhat_z"], avg["N_z"], h, 1.0, np.zeros(T1), new["R_z"], new["C_z"])
        propagate_all(avg["Rhat_par"], avg["N_par"], h, 1.0, np.zeros(T1), new["R_par"], new["C_par"])
        propagate_all(avg["Rhat_b"], avg["N_b"], h, 0.0, np.zeros(T1), new["R_b"], new["C_b"])
        if self.options.finite_size:
            new["C_q"][:] = avg["C_q"]
            propagate_all(avg["Rhat_q"], np.zeros((T1, T1)), h, 0.0, np.zeros(T1), new["R_q"], np.zeros((T1, T1)))
        return new

    # readouts ------------------------------------------------------------------------
    def observables_from(self, K, Delta) -> dict:
        """Losses and order parameters from kernels and the per-site residuals of a pass."""
        mdl, o = self.model, self.options
        Cz = np.diag(K["C_z"]).copy()
        s = np.diag(K["C_par"]) / o.dim
        Cb = np.diag(K["C_b"]).copy()
        with np.errstate(all="ignore"):
            sq = Delta[self.weights > 0] ** 2
            train = self.weights[self.weights > 0] @ sq
            if self.last_pass is not None and self.control_variate:
                train = train + self.last_pass["train_cv"]
            nb = self.n_batches
            per_batch = np.zeros((nb, sq.shape[1]))
            w, batch = self.weights[self.weights > 0], self.batch_of[self.weights > 0]
            for k in range(nb):
                sel = batch == k
                per_batch[k] = (w[sel] @ sq[sel]) / w[sel].sum()
            train_err = per_batch.std(axis=0, ddof=1) / math.sqrt(nb) if nb >= 2 else np.full(sq.shape[1], np.nan)
            test = population_test_loss(mdl.alpha, mdl.eps, o.dim, Cz, s, Cb)
        out = {"tau": self.tau.copy(), "train_loss": train, "test_loss": test,
               "train_loss_batch_err": train_err, "spike": s, "bulk": Cz, "mean_norm": Cb}
        if o.finite_size:
            Cq = np.diag(K["C_q"]).copy()
            out["test_loss"] = test + cross_test_correction(mdl.alpha, mdl.eps, s, Cq)
            if self.last_pass is not None and "bump2" in self.last_pass:
                out["test_loss"] = out["test_loss"] + bump_test_correction(
                    mdl.alpha, mdl.eps, mdl.ratio, o.dim, Cz, self.last_pass["bump2"])
            out["spike_bulk_cross"] = s * Cq
        return out

    def trace_sum_rule(self, K) -> dict:
        """Both sides of the exact trace sum rule, from kernels K and the last pass over them.

        In the networks, with A(t) the common linear map of the neurons (w_i(t) = A w_i(0) + b),
        Euler steps of the loss give exactly d tr(A A^T)/D / dtau = 2 kappa E_mu[Delta_mu V_mu] + O(h),
        V_mu = x_mu^T A A^T x_mu, whatever D.  In the DMFT tr(A A^T)/D = C_z(t,t) + s(t,t) and each
        weight-side process grows by twice its first-order drift E[theta(t) (xi(t) + sum Rhat theta)]:

            weight_side(t) = sum_{t''<=t} Rhat_z(t,t'') C_z(t'',t) + h sum_{s<t} R_z(t,s) N_z(s,t)
                             + (the same for z_par) / D
            data_side(t)   = kappa E[Delta(t) V(t,t)]          (the sites' own average)

        The D -> inf DMFT satisfies it to O(h) (1.5% at c1, h = 0.4); ``finite_size`` terms that change
        a site's V must come with their weight-side counterpart, and the difference shows where they
        do not (docs/finite-size.md, section 3e).  Returns tau, weight_side, data_side (per unit tau,
        halved)."""
        if self.last_pass is None:
            self.update(K)
        st, h, D = self.last_pass, self.options.dt, self.options.dim
        avg = st["avg"]

        def drift(Rhat, N, R, C):
            out = np.zeros(self.T1)
            for t in range(self.T1):
                out[t] = Rhat[t, : t + 1] @ C[: t + 1, t] + h * (R[t, :t] @ N[:t, t])
            return out

        weight = (drift(avg["Rhat_z"], avg["N_z"], K["R_z"], K["C_z"])
                  + drift(avg["Rhat_par"], avg["N_par"], K["R_par"], K["C_par"]) / D)
        return {"tau": self.tau.copy(), "weight_side": weight,
                "data_side": self.model.kappa * st["trace_drive"].copy()}

    def observables(self, kernels) -> dict:
        if self.last_pass is None:
            self.update(kernels)
        return self.observables_from(kernels, self.last_pass["Delta"])


# --------------------------------------------------------------------------------- solve
def solve(alpha, ratio, eps=0.02, noise=0.0, dim=200, t_max=12.0, dt=0.2, samples=None, nodes=24, u_max=4.5,
          seed=0, method="sweep", damping=0.0, accel="none", tol=1e-8, max_iter=200, checkpoint_every=5,
          replicas=2, out=None, resume=False, progress=False, confirm=True, finite_size=False, datasets=0):
    """Solve the DMFT of the two-layer network.  Returns a :class:`dmft.solvers.result.SolverResult`.

    Parameters carry their paper names (alpha, ratio = P/D, eps, noise = label-noise std);
    ``dim`` is D, which only seeds the teacher spike s(0) = 1/D; time is tau = eta t / D on a
    uniform grid of step ``dt`` up to ``t_max``.  ``samples`` antithetic readout-mean noise
    paths per teacher-field node (``nodes`` Gauss-Legendre nodes of |u| <= ``u_max``).

    method="sweep" (default): one causal pass (exact given the samples), followed by one
    application of the fixed-point map to its kernels (``confirm``), whose residual is
    reported as ``confirmation_residual`` (round-off level for a true solution).
    method="iterate": damped / Anderson-accelerated fixed-point iteration from the frozen
    network's kernels, on the same samples (``out``/``resume`` checkpoint every
    ``checkpoint_every`` iterations).

    Observables (``result.observables``): tau, train_loss, test_loss, spike s(t) = C_par(t,t)/D,
    bulk C_z(t,t), mean_norm C_b(t,t), and their Monte-Carlo standard errors ``<name>_mc_err``:
    the standard deviation of the same curve over ``replicas`` independent sampling seeds
    (seed, seed+1, ...; the extra replicas are sweeps whose results are used only for this),
    i.e. the error of *this* solve.  ``replicas=1`` skips them (errors NaN).  With finite_size the
    curves are instead the mean over the sampling seeds and ``<name>_mc_err`` its standard error
    (the bump field's sampling noise exceeds the networks' standard errors at D <= 400).  A seed that
    diverges, or with finite_size whose train loss runs away (``train_loss_rise``), is left out:
    ``sampling_seeds`` and ``excluded_sampling_seeds`` list them, and the message names them.
    ``train_loss_batch_err`` is the cheaper within-run error of the train loss at fixed kernels.

    finite_size=True adds the finite-D terms of ``docs/finite-size.md`` (spike-bulk cross
    covariance, the teacher coordinate's own memory); the observables then include
    ``spike_bulk_cross`` = |P_perp A A^T bhat|^2 / D^2.  Off: the D -> inf DMFT, unchanged.
    datasets=R > 0 also solves R "data-set replicas": the same sites reweighted by
    Multinomial(P, w)/P with P = round(ratio * dim) (a training set of P points drawn from the
    sites' population; control variate off so that the whole finite-P fluctuation is kept).
    Their spread is the data-set-to-data-set spread of networks trained at this D: observables
    ``<name>_dataset_mean``, ``_dataset_sd``, ``_dataset_q16``, ``_dataset_q84`` for train_loss,
    test_loss, spike and log_spike, and the per-replica crossing times ``t_train_datasets``,
    ``t_test_datasets`` (loss below half its initial value; NaN if not within t_max).
    """
    model = TwoLayerModel(alpha=alpha, ratio=ratio, eps=eps, noise=noise)
    check_choice("method", method, ("sweep", "iterate"))
    replicas = check_int("replicas", replicas, 1, 100)
    opts = TwoLayerDMFT(dim=dim, dt=dt, t_max=t_max, nodes=nodes, samples=64 if samples is None else samples,
                        u_max=u_max, seed=seed, finite_size=finite_size)
    datasets = check_int("datasets", datasets, 0, 1000)
    problem = TwoLayerProblem(model, opts)
    from dmft.solvers.checkpoint import make_result, write_result
    from dmft.solvers.fixed_point import FixedPointOptions, SolverState, iterate, residual
    from dmft.solvers.result import Status

    fp_options = FixedPointOptions(damping=damping, accel=accel, tol=tol, max_iter=max_iter,
                                   checkpoint_every=checkpoint_every)
    if method == "iterate":
        result = iterate(problem, fp_options, out=out, resume=resume, progress=progress)
        result.observables.update(_extra(problem))
        _replica_errors(result, model, opts, replicas)
        if datasets and result.success:
            result.observables.update(dataset_ensemble(model, opts, datasets))
        if out is not None and replicas > 1:
            write_result(out, result)
        return result
    if resume:
        from dmft.solvers.checkpoint import read_result

        stored = read_result(out, problem.kind)
        _check_same_parameters(stored.parameters, problem.parameters(), out)
        return stored

    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=problem.T1, desc="dmft sweep", unit="step", leave=False)
    kernels, message = problem.sweep(progress=(lambda t: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    # keep only the sweep's per-site curves (what the observables read: Delta, the control variate's
    # train_cv, bump2); its (sites x T x T) state is dropped, so that the confirmation pass and the
    # sampling replicas below each run in the memory of one sweep (TwoLayerDMFT.memory_bytes), not two
    sweep_pass = {k: v for k, v in problem.last_pass.items() if np.ndim(v) < 3}
    problem.last_pass = sweep_pass
    confirmation = float("nan")
    if message is None and confirm:
        confirmation = residual(problem.update(kernels), kernels)
        problem.last_pass = sweep_pass
    state = SolverState.initial(kernels, fp_options)
    state.residuals = [confirmation if confirm else 0.0]
    state.confirmation_residual = confirmation
    if message is None:
        state.status = Status.CONVERGED
        state.message = ("causal sweep: exact one-pass solution on the sampled sites; fixed-point residual of the "
                         f"returned kernels (one application of the map) {confirmation:.2e}")
    else:
        state.status = Status.NON_FINITE
        state.message = message
    result = make_result(problem, fp_options, state, kernels, nfev=1 + int(confirm),
                         wall_time=time.perf_counter() - start)
    result.method = "sweep"
    result.observables.update(_extra(problem))
    rise = train_loss_rise(result.observables["tau"], result.observables["train_loss"])
    if rise is not None:
        warning = (f"warning: the train loss rose from its minimum at tau = {rise['from_tau']:.4g} for "
                   f"{RISE_STEPS} steps in a row, by {100 * rise['relative_rise']:.2g} % at tau = {rise['tau']:.4g}; "
                   "gradient descent raises it only above the edge of stability (lower --dt to check)"
                   + ("; with --finite-size a long rise is an unstable solution of the finite-size terms "
                      "(docs/finite-size.md, section 5c): compare another --seed" if opts.finite_size else ""))
        result.message = f"{result.message}; {warning}"
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    if message is None:
        _replica_errors(result, model, opts, replicas)
        if datasets:
            result.observables.update(dataset_ensemble(model, opts, datasets))
    if out is not None:
        write_result(out, result)
    return result


def _check_same_parameters(stored: dict, wanted: dict, path) -> None:
    diff = [f"{k}: file {stored.get(k)!r}, requested {v!r}" for k, v in wanted.items() if stored.get(k) != v]
    if diff:
        raise ParameterError(f"invalid resume: {path} holds a run with other parameters ({'; '.join(diff)}); "
                             "allowed is resuming with the same parameters")


_ERROR_CURVES = ("train_loss", "test_loss", "spike", "bulk", "mean_norm")
#: curves whose kept sampling runs a finite-size solve stores as ``<name>_sampling_runs`` (runs x time)
SAMPLING_RUN_CURVES = ("train_loss", "test_loss")


def _replica_errors(result, model, opts, replicas):
    """Run the sampling seeds seed+1 .. seed+replicas-1 beside the solve's own and combine them.

    A sampling draw whose sweep diverges, or (finite_size) whose train loss :func:`train_loss_rise`
    flags, is an unstable solution of the sampled equations (with finite_size about one draw in 50-100,
    docs/finite-size.md section 5c), not a sample of the theory: it is left out, and listed in the
    observable ``excluded_sampling_seeds`` and in the message; ``sampling_seeds`` lists the kept ones.

    * D -> inf (finite_size=False): the curves stay those of ``seed``, and ``<name>_mc_err`` is the
      standard deviation over the kept seeds, the Monte-Carlo error of this one solve.
    * finite_size=True: the curves are the mean over the kept seeds and ``<name>_mc_err`` is its
      standard error (sd / sqrt(kept)).  The bump field's sampling noise (train-loss sd over seeds up to
      0.006 at D = 200) is larger than the networks' standard errors at D <= 400, and the mean of
      sampling seeds without the unstable ones is what docs/finite-size.md section 6 compares with
      networks; ``train_loss_sampling_runs`` and ``test_loss_sampling_runs`` hold the kept runs (seeds x
      time), which :func:`dmft.agreement.against_simulation` uses.  The kernels stay those of ``seed``.
    """
    names = _ERROR_CURVES + (("spike_bulk_cross",) if opts.finite_size else ())
    obs = result.observables
    runs, excluded, notes = [], [], []

    def admit(seed, curves, diverged):
        # a rise is a sign of an unstable draw only with the bump field; in the D -> inf DMFT it is the
        # edge of stability, which every seed shares (train_loss_rise)
        rise = None if diverged or not opts.finite_size else train_loss_rise(curves["tau"], curves["train_loss"])
        if diverged or rise is not None:
            excluded.append(seed)
            notes.append(f"seed {seed} " + ("diverged" if diverged else
                                            f"(train loss rose from its minimum at tau = {rise['from_tau']:.4g})"))
        else:
            runs.append((seed, curves))

    admit(opts.seed, obs, False)
    for k in range(1, replicas):
        rep = TwoLayerProblem(model, dataclasses.replace(opts, seed=opts.seed + k))
        K, message = rep.sweep()
        admit(opts.seed + k, rep.observables_from(K, rep.last_pass["Delta"]), message is not None)
    kept = [seed for seed, _ in runs]
    obs["sampling_seeds"] = np.array(kept, dtype=np.int64)
    obs["excluded_sampling_seeds"] = np.array(excluded, dtype=np.int64)
    stacked = {name: np.array([np.asarray(c[name]) for _, c in runs]) for name in names}
    for name in names:
        sd = np.std(stacked[name], axis=0, ddof=1) if len(runs) > 1 else np.full_like(obs[name], np.nan)
        if opts.finite_size and runs:
            obs[name] = stacked[name].mean(axis=0)
            sd = sd / math.sqrt(len(runs))
            if name in SAMPLING_RUN_CURVES:
                # the runs themselves (kept seeds x time): dmft.agreement resamples them to combine the
                # theory's sampling error with the networks' in the exact-theory reference
                obs[name + "_sampling_runs"] = stacked[name]
        obs[name + "_mc_err"] = sd
    if opts.finite_size and replicas > 1 and runs:
        result.message += (f"; curves: mean of {len(runs)} sampling seed(s) ({', '.join(map(str, kept))}), "
                           "errors: its standard error")
    if excluded:
        result.message += (("; unstable sampling draws, left out" if runs else
                            "; every sampling seed is an unstable draw, so the curves are those of --seed, without "
                            "error bars") + " (docs/finite-size.md, section 5c): " + "; ".join(notes))


_DATASET_CURVES = ("train_loss", "test_loss", "spike")


def dataset_ensemble(model: TwoLayerModel, options: TwoLayerDMFT, datasets: int, seed: int | None = None,
                     pull_fluctuation: bool = True) -> dict:
    """Spread over training sets of P = round(ratio * dim) points (see :func:`solve`, ``datasets``).

    Each replica reweights the sampled sites of one problem (control variate off) by
    W ~ Multinomial(P, w) / P, the empirical measure of P points drawn from the sites, and runs
    the causal sweep: the finite-P fluctuations of every data average (the spike's growth rate
    E_mu[u^2 Delta] above all) are then those of a real training set.  With ``pull_fluctuation``
    each replica also adds the finite-P part of the cross direction's pull on the spike,
    kappa sum_mu (W_mu - w_mu)(u Delta c - E_chi[u Delta c])_mu / phi, which the central solve
    averages over chi exactly (docs/finite-size.md, section 4; only with finite_size).  Replicas
    whose sweep diverges are counted in ``datasets_failed`` and left out."""
    from .derived import crossing_time

    P = int(round(model.ratio * options.dim))
    problem = TwoLayerProblem(model, dataclasses.replace(options, control_variate=False))
    w0 = problem.weights.copy()
    rng = np.random.default_rng(options.seed + 7919 if seed is None else seed)
    curves = {name: [] for name in _DATASET_CURVES}
    t_train, t_test, failed = [], [], 0
    for _ in range(datasets):
        problem.weights = rng.multinomial(P, w0 / w0.sum()) / P
        if pull_fluctuation:
            problem.dataset_deviation = problem.weights - w0
        K, message = problem.sweep()
        if message is not None:
            failed += 1
            continue
        obs = problem.observables_from(K, problem.last_pass["Delta"])
        for name in _DATASET_CURVES:
            curves[name].append(obs[name])
        t_train.append(crossing_time(obs["tau"], obs["train_loss"]))
        t_test.append(crossing_time(obs["tau"], obs["test_loss"]))
    out = {"datasets_failed": np.array(failed), "t_train_datasets": np.array(t_train),
           "t_test_datasets": np.array(t_test)}
    curves["log_spike"] = [np.log(c) for c in curves["spike"]]  # the spread of grokking is ~lognormal in s
    for name, c in curves.items():
        c = np.array(c) if c else np.full((1, problem.T1), np.nan)
        out[name + "_dataset_mean"] = c.mean(axis=0)
        out[name + "_dataset_sd"] = c.std(axis=0, ddof=1) if len(c) > 1 else np.full(problem.T1, np.nan)
        out[name + "_dataset_q16"], out[name + "_dataset_q84"] = np.percentile(c, [16, 84], axis=0)
    return out


def _extra(problem):
    """Constant diagnostics stored beside the observables."""
    return {"dropped_u_mass": np.array(problem.dropped_mass)}
