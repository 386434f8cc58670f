r"""DMFT of linear regression trained by gradient flow: the validation model of the solver engine.

Model (:class:`dmft.params.LinearModel`)
-----------------------------------------
x ~ N(0, I_D/D), y = beta.x + sigma xi (xi ~ N(0,1)), beta ~ N(0, I_D), P = ratio * D data,
w(0) = 0, loss L = (1/P) sum_mu (y_mu - w.x_mu)^2, gradient flow dw/dt = -grad L = (2/P) X^T (y - X w)
in the time unit tau = t/D:

    dw/dtau = 2 lambda X^T (y - X w),      lambda = D/P = 1/ratio,

(every rate is O(1): lambda X^T X has the Marchenko–Pastur spectrum of mean 1).
Train loss (1/P)|y - Xw|^2; test loss E_{x,xi}(y - w.x)^2 = |w - beta|^2/D + sigma^2 (it INCLUDES
the label noise of the test point; same convention in :mod:`dmft.marchenko_pastur` and in
:func:`simulate_linear`).

DMFT (cavity derivation, D -> inf at fixed ratio)
-------------------------------------------------
Write X = J with J_{mu i} ~ N(0, 1/D), the weight error e = w - beta (D coordinates, e(0) = -beta)
and the residuals r = y - Xw = sigma xi - J e (P data points):

    de_i/dtau = 2 lambda sum_mu J_{mu i} r_mu + j_i(tau),    r_mu = sigma xi_mu - h_mu + eps_mu,
    h_mu = sum_i J_{mu i} e_i,

with probe fields j (weight side) and eps (data side) defining the responses.

*Data side.*  Remove data point mu: e_i = e_i^{\mu} + 2 lambda int R_i(tau, s) J_{mu i} r_mu(s) ds,
so h_mu = u_mu + 2 lambda int_0^tau R_w(tau, s) r_mu(s) ds (sum_i J_{mu i}^2 -> 1), where
u = sum_i J_{mu i} e_i^{\mu} is Gaussian with covariance C_w.  The single data point is

    r(tau) = sigma xi - u(tau) - 2 lambda int_0^tau R_w(tau, s) r(s) ds,    u ~ GP(0, C_w),
    =>  r = (I - Gamma)(sigma xi - u),   Gamma = K - K Gamma,  K = 2 lambda R_w,

(Gamma = K (I + K)^{-1}, a Volterra resolvent), so its response to eps is
R_r(tau, s) = dr(tau)/deps(s) = delta(tau - s) - Gamma(tau, s) and its correlation

    C_r = (I - Gamma) (sigma^2 1 1^T + C_w) (I - Gamma)^T.

*Weight side.*  Remove coordinate i: r_mu = r_mu^{\i} - int R_r(tau, s) J_{mu i} e_i(s) ds, so the
field 2 lambda sum_mu J_{mu i} r_mu = 2 lambda zeta(tau) - 2 e_i(tau) + 2 int_0^tau Gamma(tau, s) e_i(s) ds
(sum_mu J_{mu i}^2 -> P/D = 1/lambda), with zeta Gaussian of covariance C_r / lambda:

    de/dtau = -2 e(tau) + 2 int_0^tau Gamma(tau, s) e(s) ds + 2 lambda zeta(tau) + j(tau),   e(0) ~ N(0, 1),
    d_tau R_w(tau, tau') = -2 R_w(tau, tau') + 2 int_{tau'}^tau Gamma(tau, s) R_w(s, tau') ds,  R_w(tau', tau') = 1,
    C_w = R_w(., 0) R_w(., 0)^T + 4 lambda R_w C_r R_w^T.

All single-site processes are Gaussian, so the closure is exact (no sampling).  Observables:

    train(tau) = C_r(tau, tau),      test(tau) = C_w(tau, tau) + sigma^2.

Checks: tau = 0 gives 1 + sigma^2 for both; ratio -> inf gives Gamma -> 0, R_w = e^{-2(tau - s)},
test = e^{-4 tau} + sigma^2 (the MP law collapses to s = 1); the stationary response
int R_w = 1/(2(1 - lambda)) = E[1/(2s)] over MP.

Numerics.  Kernels live on a :class:`dmft.solvers.grid.TimeGrid` (uniform or geometric) as T x T
arrays; integrals use the trapezoid weights W (products "A o W" below), so the scheme is second
order in the step.  One application of the map F (:meth:`LinearDMFT.update`) is, from (R_w, C_w):
Gamma = resolvent of 2 lambda R_w; C_r = M (sigma^2 + C_w) M^T with M = I - Gamma o W; new R_w from
its integro-differential equation (:func:`dmft.solvers.volterra.response_function`); new
C_w = R_w(.,0) R_w(.,0)^T + (R_w o W)(4 lambda C_r)(R_w o W)^T.  The iterated kernels are R_w
(lower-triangular) and C_w (symmetric); Gamma and C_r are derived.  At low frequency the
linearized map has gain lambda, so plain iteration contracts by about 1/ratio per step for
ratio > 1; for ratio <= 1 it still converges on a finite window (Volterra structure) and Anderson
mixing is much faster.

Memory: each T x T float64 kernel costs 8 T^2 bytes; the solver holds about 16 of them, plus
4 m + 10 with Anderson memory m (46 at m = 5): T = 1001 -> 0.4 GB, T = 2001 -> 1.5 GB,
T = 5001 -> 9 GB.  Larger requests than the available memory are refused before any compute.
"""
from __future__ import annotations

import numpy as np

from dmft.solvers.fixed_point import FixedPointOptions, iterate
from dmft.solvers.grid import TimeGrid, require_memory
from dmft.solvers.result import SolverResult
from dmft.solvers.volterra import lower_matmul, propagate_covariance, resolvent, response_function

from .params import LinearGrid, LinearModel, ParameterError, check_int
from .solvers.settings import options_doc, signature, split

__all__ = ["LinearDMFT", "LinearGrid", "solve_linear", "simulate_linear", "memory_kernels"]


class LinearDMFT:
    """The DMFT of :mod:`dmft.linear` as a fixed-point problem for :func:`dmft.solvers.fixed_point.iterate`."""

    kind = "dmft-linear"

    def __init__(self, model: LinearModel, grid: TimeGrid):
        self.model = model
        self.grid = grid
        self.lam = 1.0 / model.ratio
        self._W = np.ascontiguousarray(grid.weights())
        self._cache: tuple | None = None

    def parameters(self) -> dict:
        return {"model": "linear", "ratio": self.model.ratio, "noise": self.model.noise, **self.grid.parameters()}

    def initial_kernels(self) -> dict:
        """The ratio -> inf solution: R_w = e^{-2(t - s)} (t >= s), C_w = e^{-2(t + s)}."""
        t = self.grid.t
        lag = t[:, None] - t[None, :]
        R = np.where(lag >= 0, np.exp(-2.0 * np.maximum(lag, 0.0)), 0.0)
        C = np.exp(-2.0 * (t[:, None] + t[None, :]))
        return {"R_w": R, "C_w": C}

    # -- data side: Gamma and C_r from (R_w, C_w)
    def data_side(self, R_w: np.ndarray, C_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Gamma, C_r): memory kernel and residual correlation of the single data point."""
        if self._cache is not None and self._cache[0] is R_w and self._cache[1] is C_w:
            return self._cache[2], self._cache[3]
        K = 2.0 * self.lam * R_w
        gamma = resolvent(K, -K, self._W)
        M = -(gamma * self._W)
        M[np.diag_indices_from(M)] += 1.0
        A = C_w + self.model.noise**2
        MA = lower_matmul(M, A)
        C_r = lower_matmul(M, np.ascontiguousarray(MA.T))  # M A M^T (A symmetric)
        C_r = 0.5 * (C_r + C_r.T)
        self._cache = (R_w, C_w, gamma, C_r)
        return gamma, C_r

    def update(self, kernels) -> dict:
        """One pass of the self-consistency: (R_w, C_w) -> data side -> weight side."""
        gamma, C_r = self.data_side(kernels["R_w"], kernels["C_w"])
        R = response_function(2.0 * gamma, self._W, a=2.0)
        C = propagate_covariance(R, 4.0 * self.lam * C_r, self._W, r0=R[:, 0], c0=1.0)
        return {"R_w": R, "C_w": C}

    def derived_kernels(self, kernels) -> dict:
        gamma, C_r = self.data_side(kernels["R_w"], kernels["C_w"])
        return {"Gamma": gamma, "C_r": C_r}

    def observables(self, kernels) -> dict:
        _, C_r = self.data_side(kernels["R_w"], kernels["C_w"])
        weight_error = np.diag(kernels["C_w"]).copy()
        return {
            "tau": np.asarray(self.grid.t).copy(),
            "train_loss": np.diag(C_r).copy(),
            "test_loss": weight_error + self.model.noise**2,
            "weight_error": weight_error,
        }


def memory_kernels(accel: str = "anderson", anderson_memory: int = 5) -> int:
    """Number of T x T kernels the linear solve holds at its peak (estimate, see module docstring)."""
    return 16 + (4 * anderson_memory + 10 if accel == "anderson" else 0)


#: the settings classes whose fields are the keyword options of :func:`solve_linear`
SETTINGS = (LinearModel, LinearGrid, FixedPointOptions)
RUN_OPTIONS = {"out": None, "resume": False, "progress": False, "callback": None}


def solve_linear(ratio, noise=0.0, **options) -> SolverResult:
    """Solve the DMFT of gradient-flow linear regression (see the module docstring).

    Returns a :class:`dmft.solvers.result.SolverResult` whose observables are 'tau', 'train_loss',
    'test_loss' (including the label noise) and 'weight_error' = |w - beta|^2/D, and whose kernels are
    R_w, C_w (iterated) and Gamma, C_r (derived).  ``out``: HDF5 result/checkpoint file;
    ``resume``: continue it.  Invalid inputs raise ParameterError before any compute, including a
    grid whose T x T kernels (8 T^2 bytes each, ~46 of them with Anderson) exceed the available memory.
    """
    model_kw, grid_kw, fp_kw, run_kw = split(options, *SETTINGS, extra=RUN_OPTIONS)
    model = LinearModel(ratio=ratio, noise=noise, **model_kw)
    tgrid = LinearGrid(**grid_kw).time_grid()
    options = FixedPointOptions(**fp_kw)
    run = {**RUN_OPTIONS, **run_kw}
    require_memory(tgrid.T, memory_kernels(options.accel, options.anderson_memory), "the linear DMFT solver")
    problem = LinearDMFT(model, tgrid)
    return iterate(problem, options, out=run["out"], resume=run["resume"], callback=run["callback"],
                   progress=run["progress"])


solve_linear.__signature__ = signature(*SETTINGS, leading=("ratio", "noise"), extra=RUN_OPTIONS)
solve_linear.__doc__ += options_doc(*SETTINGS, extra={
    "out": "HDF5 result and checkpoint file.", "resume": "Continue the run stored in ``out``.",
    "progress": "Show a tqdm bar over iterations.", "callback": "Called with each IterationInfo; True stops."})


def simulate_linear(ratio, noise, dim, tau, seeds=(0,)) -> dict:
    """Exact gradient flow of linear regression at finite D, one data set per seed.

    Solves de/dtau = -2 S e + 2 lambda sigma X^T xi (S = lambda X^T X, e = w - beta) exactly in the
    eigenbasis of S.  Returns {'tau', 'train_loss', 'test_loss'} with arrays of shape (n_seeds, len(tau));
    test loss includes the label noise, as in the DMFT.
    """
    model = LinearModel(ratio=ratio, noise=noise)
    D = check_int("dim", dim, low=1)
    P = int(round(model.ratio * D))
    if P < 1:
        raise ParameterError(f"invalid ratio={ratio!r} for dim={D}: allowed is ratio*dim >= 1")
    tau = np.asarray(tau, dtype=np.float64)
    lam = D / P
    train = np.empty((len(seeds), tau.size))
    test = np.empty((len(seeds), tau.size))
    for n, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((P, D)) / np.sqrt(D)
        beta = rng.standard_normal(D)
        xi = rng.standard_normal(P)
        s, V = np.linalg.eigh(lam * (X.T @ X))
        s = np.maximum(s, 0.0)
        b = V.T @ beta
        c = lam * (V.T @ (X.T @ xi))  # lambda X^T xi in the eigenbasis (zero on the null space)
        for m, tt in enumerate(tau):
            decay = np.exp(-2.0 * s * tt)
            # (1 - e^{-2 s tau}) / s, with its limit 2 tau at s = 0
            phi = np.where(s > 1e-12, -np.expm1(-2.0 * s * tt) / np.where(s > 1e-12, s, 1.0), 2.0 * tt)
            e = -decay * b + model.noise * phi * c
            test[n, m] = e @ e / D + model.noise**2
            # |sigma xi - X e|^2 = sigma^2 |xi|^2 - 2 sigma (X^T xi).e + e^T X^T X e, with X^T X = S / lambda
            train[n, m] = (model.noise**2 * (xi @ xi) - 2.0 * model.noise * (c / lam) @ e + (s / lam) @ (e * e)) / P
    return {"tau": tau, "train_loss": train, "test_loss": test}
