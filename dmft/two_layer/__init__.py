r"""DMFT of the two-layer network  f(x) = alpha (1/N) sum_i [phi(w_i.x) - phi(w_i(0).x)].

Exact large-N, large-(D, P) limit (P/D = ratio fixed) of full-batch gradient descent with
learning rate eta N / alpha^2 and eta = h D, i.e. of Euler steps of size h in the time
tau = eta t / D.  The DMFT is written in the same discrete time t = 0..T (tau = t h), so the
theory and ``dmft simulate --dt h`` have no discretisation mismatch; h -> 0 is gradient flow.

Derivation (re-derived from ``shared/design/two-layer-dmft.md``; full text in
``docs/theory.md``).  Constants lambda = 1/ratio, gamma = 2/alpha,
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

Modules: ``settings`` (the options), ``core`` and ``data_side`` (the D -> inf row steps, Numba),
``problem`` (:class:`TwoLayerProblem`: samples, one pass over t, the map F, readouts), ``sweep_state``,
``readouts``, ``ensembles`` (sampling replicas, training sets) and ``solve``.  ``finite_size`` (its
kernels) and ``finite_size_problem`` (a subclass registered with :func:`problem.register_variant`) add
the finite-D terms; the D -> inf modules never import them.

Both solution methods are here: the causal sweep (row t+1 of the kernels needs data-side
averages up to t only: one pass, no iteration) and the damped / accelerated fixed-point
iteration of :mod:`dmft.solvers.fixed_point` on the same samples, which must reach the same kernels.
"""
from __future__ import annotations

from .ensembles import DATASET_STATISTICS, SAMPLING_RUN_CURVES, DatasetSpread, dataset_ensemble
from .problem import TwoLayerProblem
from . import finite_size_problem  # noqa: F401  (registers the finite_size variant of TwoLayerProblem)
from .readouts import (
    RISE_STEPS,
    bump_test_correction,
    cross_test_correction,
    population_test_loss,
    reaction_residual,
    train_loss_rise,
)
from .settings import CROSS_KERNEL_NAMES, KERNEL_NAMES, TwoLayerDMFT
from .solve import solve

__all__ = ["TwoLayerDMFT", "TwoLayerProblem", "solve", "dataset_ensemble", "DatasetSpread", "DATASET_STATISTICS",
           "population_test_loss",
           "cross_test_correction", "bump_test_correction", "reaction_residual",
           "KERNEL_NAMES", "CROSS_KERNEL_NAMES", "RISE_STEPS", "SAMPLING_RUN_CURVES", "train_loss_rise"]
