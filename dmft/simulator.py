"""Network simulator: the ground truth the DMFT is checked against.

Model (conventions of :mod:`dmft.params`)
-----------------------------------------
* inputs x ~ N(0, I_D / D); P = round(ratio * D) training points;
* teacher beta ~ N(0, I_D) rescaled to |beta|^2 = D exactly (this removes a trivial O(D^-1/2)
  fluctuation of the target scale), labels y = (beta.x)^2 / 2 + noise * xi, xi ~ N(0, 1);
* student f(x) = alpha (1/N) sum_i [phi(w_i.x) - phi(w_i(0).x)], phi(h) = h + (eps/2) h^2,
  w_i(0) ~ N(0, I_D) (centered: f = 0 at t = 0);
* loss L = (1/P) sum_mu Delta_mu^2, Delta = y - f; gradient descent with lr = eta N / alpha^2:

      w_i <- w_i + (2 eta / (alpha P)) sum_mu Delta_mu (1 + eps w_i.x_mu) x_mu,

  time tau = eta t / D; a step of h = ``dt`` in tau is eta = h D.

Two engines
-----------
* **explicit** (finite ``width`` N): the N x D weight matrix W is trained as written above.
* **reduced** (``width=inf``, exact infinite-width network): phi' is affine, so every neuron obeys
  the same linear update and w_i(t) = A(t) w_i(0) + b(t) with A(0) = I, b(0) = 0,

      A <- A + (2 eta eps / (alpha P)) X^T diag(Delta) X A,
      b <- b + (2 eta / (alpha P)) X^T (Delta + eps Delta * (X b)),

  and f(x) = alpha [ (A v0 + b - v0).x + (eps/2)( x^T A M0 A^T x + 2 (b.x)(x^T A v0) + (b.x)^2 - x^T M0 x ) ]
  with M0 = W0^T W0 / N, v0 = mean_i w_i(0); for N = inf, M0 = I and v0 = 0.  The same class with a
  sampled W0 (``ReducedNetwork(problem, ..., W0=W0)``) reproduces the explicit network to round-off
  (tested).  Cost per full-batch step: O(P D^2) (X A, then X^T diag(Delta) X A); x^T A A^T x on the
  training points are the row norms of X A.

Minibatch SGD (``batch=B``) and its time convention
---------------------------------------------------
Each step draws B distinct training points uniformly (without replacement within the step,
independently across steps) and takes a gradient step on the batch loss (1/B) sum_{mu in batch} Delta_mu^2
with learning rate (B/P) eta N / alpha^2, i.e.

      w_i <- w_i + (2 eta / (alpha P)) sum_{mu in batch} Delta_mu (1 + eps w_i.x_mu) x_mu,

and advances tau by eta (B/P) / D = h B / P.  So every training point enters with the same weight per
unit tau as in full-batch GD, the expected update per unit tau is the full-batch gradient flow, tau
counts epochs (one epoch = P/B steps = one full-batch step h), the Euler-stability bound on h does
not get worse as B shrinks, and B = P is exactly full-batch GD (for B = P the batch is the whole
training set in its natural order, so the arithmetic is bit-for-bit the full-batch one; tested).

Observables (recorded at every record time; the DMFT uses the same names)
--------------------------------------------------------------------------
With bhat = beta / |beta| and, for every width, the decomposition w_i = A w_i(0) + b (the explicit
engine carries b(t) along: its recursion above is closed given the residuals Delta, O(P D) per
step, so A w_i(0) = w_i - b exactly without ever forming A):

* ``train_loss``     (1/P) sum_mu (f(x_mu) - y_mu)^2 with the noisy labels;
* ``test_loss``      exact population loss E_x[(f(x) - (beta.x)^2/2)^2] against the *clean* target
                     (f is quadratic in x; see :func:`dmft.lazy.quadratic_population_loss`);
* ``spike``          (1/D) E_i[(bhat.(w_i - b))^2] = (1/D) bhat^T A M0 A^T bhat   (~ 1/D at t = 0);
* ``bulk``           (1/D) E_i[|w_i - b|^2 - (bhat.(w_i - b))^2] = (Tr A M0 A^T - bhat^T A M0 A^T bhat) / D;
* ``mean_norm``      |b|^2 / D;
* ``mean_overlap``   b.bhat;
* ``teacher_moment`` E_i[(bhat.w_i)^2] (raw second moment, not divided by D);
* ``spike_bulk_cross`` |g|^2 / D^2 with g = P_perp A M0 A^T bhat = E_i[(A w_i(0))_perp (bhat.A w_i(0))], the
                     cross covariance between the teacher spike and the bulk directions (zero at t = 0;
                     O(1) once s = O(1): the learned direction is not bhat, see docs/finite-size.md);
* ``ntk_alignment``  y^T K y / (||K||_F |y|^2) for the current NTK on the training set,
                     K(x, x') = (alpha^2 / N) sum_i phi'(w_i.x) phi'(w_i.x') x.x' (alpha^2 cancels).
                     For N = inf, E over w(0) in closed form:
                     K / alpha^2 = [(1 + eps m)(1 + eps m') + eps^2 x^T A A^T x'] (x.x'),  m = b.x;
                     (finite-N reduced: + eps[(1 + eps m)(x'^T A v0) + (1 + eps m')(x^T A v0)], M0 in the
                     last term).  Computed on the first min(P, 1000) training points (a fixed random
                     subset, the points being i.i.d.), with the noisy labels y.
E_i is the mean over the N neurons (the expectation over w(0) for N = inf).

Training-set moments and the control-variate seed mean
-----------------------------------------------------
Each run also records its training set's empirical moments m_k = (1/P) sum_mu u_mu^k, k = 2, 4, 6,
of the teacher field u = beta.x (``SimulationResult.data_moments``; u ~ N(0, 1) exactly because
|beta|^2 = D, so E[m_k] = 1, 3, 15).  The train loss at tau = 0 is m_4 / 4 exactly, and a network's
whole trajectory follows its m_4 (c1, D = 400: correlation 0.92-0.97 of log s with m_4 at
tau = 10-40).  :meth:`SimulationResult.seed_mean` uses m_4 as a control variate with known mean:
the regression estimator of E over training sets, with a standard error up to 5x smaller than
the plain seed mean's (docs/finite-size.md, section 6).

Records: tau = 0 plus at most ``n_records`` log-spaced times between one step and t_max, snapped to
whole steps; times that snap to the same step are stored once, so short runs store fewer (for
example 137 of 201 at n_records = 200, 1500 steps), and the summary says how many, or exactly the times ``record_tau`` (each snapped to the nearest whole
step; the returned ``tau`` holds the exact step times, in the given order and length).

Seeds: run k (k = 0 .. seeds-1) uses ``np.random.SeedSequence(seed + k)`` spawned into three streams:
data (beta, then X, then the label noise xi), initial weights W0, minibatch draws.  So seed k of a run
equals seed 0 of a run with ``seed=seed+k``, and the data do not depend on width, batch or noise
level (noise only scales the same xi).
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import numpy as np

from .lazy import kernel_flow, quadratic_population_loss
from .params import ParameterError, SimulationSettings, TwoLayerModel, as_dict, check_int, check_positive, require

__all__ = [
    "simulate",
    "SimulationResult",
    "Problem",
    "make_problem",
    "ExplicitNetwork",
    "ReducedNetwork",
    "OBSERVABLES",
    "NTK_POINTS",
    "MEMORY_LIMIT_BYTES",
    "build_network",
    "training_set_moments",
    "control_variate_mean",
    "MOMENT_ORDERS",
]

MOMENT_ORDERS = (2, 4, 6)  # recorded empirical moments of the teacher field u = beta.x over the training set
SEEDING = "SeedSequence(seed+k).spawn(3): data, weights, batches"  # stored in every result's parameters


OBSERVABLES = ("train_loss", "test_loss", "spike", "bulk", "mean_norm", "mean_overlap", "teacher_moment",
               "ntk_alignment", "spike_bulk_cross")
NTK_POINTS = 1000  #: the NTK alignment uses the first min(P, NTK_POINTS) training points
MEMORY_LIMIT_BYTES = 4 * 2**30  #: refuse requests whose arrays would exceed this (float64)
MAX_STEPS = 10**9

SGD_CONVENTION = ("step on batch-mean loss with lr (B/P) eta N/alpha^2; tau advances eta (B/P)/D per step "
                  "(tau counts epochs; B = P is full batch)")


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class Problem:
    """One training set and its teacher."""

    X: np.ndarray  # (P, D), rows ~ N(0, I/D)
    y: np.ndarray  # (P,) labels incl. noise
    y_clean: np.ndarray  # (P,) (beta.x)^2/2
    beta: np.ndarray  # (D,), |beta|^2 = D

    @property
    def P(self) -> int:
        return self.X.shape[0]

    @property
    def D(self) -> int:
        return self.X.shape[1]

    @property
    def bhat(self) -> np.ndarray:
        return self.beta / np.linalg.norm(self.beta)

    def target(self, x) -> np.ndarray:
        """Clean target (beta.x)^2 / 2 for inputs x (M, D)."""
        return 0.5 * (np.atleast_2d(x) @ self.beta) ** 2


def make_problem(dim: int, n_points: int, noise: float, rng: np.random.Generator) -> Problem:
    """Draw beta (rescaled to |beta|^2 = D), then X (P x D, entries N(0, 1/D)), then xi; y = (beta.x)^2/2 + noise xi."""
    beta = rng.standard_normal(dim)
    beta *= math.sqrt(dim) / np.linalg.norm(beta)
    X = rng.standard_normal((n_points, dim)) / math.sqrt(dim)
    xi = rng.standard_normal(n_points)
    y_clean = 0.5 * (X @ beta) ** 2
    return Problem(X=X, y=y_clean + noise * xi, y_clean=y_clean, beta=beta)


# ------------------------------------------------------------------------- networks
class _Network:
    """Common interface: ``step(rows)``, ``train_loss()``, ``predict(x)``, ``test_loss()``, ``observables()``."""

    def __init__(self, problem: Problem, alpha: float, eps: float, eta: float, ntk_points: int = NTK_POINTS):
        self.problem = problem
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.eta = float(eta)
        self.lr_factor = 2.0 * self.eta / (self.alpha * problem.P)  # 2 eta / (alpha P)
        self.ntk_points = min(problem.P, int(ntk_points))
        self.b = np.zeros(problem.D)
        self._full = None  # cached fields of the current state on the whole training set
        self._gram_ntk = None

    # engine-specific: _fields(rows) -> (f, aux) ; _update(rows, X_rows, delta, aux); _quadratic_form()
    def _rows(self, rows):
        return (self.problem.X, self.problem.y) if rows is None else (self.problem.X[rows], self.problem.y[rows])

    def _full_fields(self):
        if self._full is None:
            self._full = self._fields(None)
        return self._full

    def outputs(self) -> np.ndarray:
        """f on the training points."""
        return self._full_fields()[0]

    def residual(self) -> np.ndarray:
        """Delta = y - f on the training points."""
        return self.problem.y - self.outputs()

    def train_loss(self) -> float:
        d = self.residual()
        return float(d @ d) / self.problem.P

    def step(self, rows=None) -> bool:
        """One (S)GD step on the rows ``rows`` (None: all, full batch).  Returns False if it diverged."""
        X, y = self._rows(rows)
        f, aux = self._full_fields() if rows is None else self._fields(rows)
        delta = y - f
        if not np.all(np.isfinite(delta)):
            return False
        m = X @ self.b
        self._update(X, delta, aux)
        self.b += self.lr_factor * (X.T @ (delta * (1.0 + self.eps * m)))
        self._full = None
        return True

    def quadratic_form(self):
        """(S, g) with f(x) = alpha [g.x + (eps/2) x^T S x], S symmetric."""
        return self._quadratic_form()

    def predict(self, x) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        S, g = self.quadratic_form()
        return self.alpha * (x @ g + 0.5 * self.eps * np.einsum("ij,ij->i", x @ S, x))

    def test_loss(self) -> float:
        S, g = self.quadratic_form()
        beta = self.problem.beta
        B = 0.5 * np.outer(beta, beta) - 0.5 * self.alpha * self.eps * S
        return quadratic_population_loss(B, self.alpha * g)

    def _alignment(self, kernel_over_gram: np.ndarray) -> float:
        n = self.ntk_points
        if self._gram_ntk is None:
            Xs = self.problem.X[:n]
            self._gram_ntk = Xs @ Xs.T
        K = kernel_over_gram * self._gram_ntk
        ys = self.problem.y[:n]
        denom = np.linalg.norm(K) * float(ys @ ys)
        return float(ys @ K @ ys / denom) if denom > 0 else float("nan")

    def observables(self) -> dict:
        """All recorded order parameters of the current state (see module docstring)."""
        raise NotImplementedError


class ReducedNetwork(_Network):
    """w_i = A w_i(0) + b.  ``W0=None``: exact infinite-width network (M0 = I, v0 = 0); else the
    finite-N network with these initial weights (N x D), through M0 = W0^T W0/N and v0 = mean w_i(0)."""

    def __init__(self, problem: Problem, alpha: float, eps: float, eta: float, W0=None, ntk_points: int = NTK_POINTS):
        super().__init__(problem, alpha, eps, eta, ntk_points)
        D = problem.D
        self.A = np.eye(D)
        X = problem.X
        if W0 is None:
            self.M0 = None
            self.v0 = None
            self.q0 = np.einsum("ij,ij->i", X, X)  # |x_mu|^2
        else:
            W0 = np.asarray(W0, dtype=float)
            self.M0 = W0.T @ W0 / W0.shape[0]
            self.v0 = W0.mean(axis=0)
            self.q0 = np.einsum("ij,ij->i", X @ self.M0, X)  # x^T M0 x
            self.Xv0 = X @ self.v0

    @property
    def infinite(self) -> bool:
        return self.M0 is None

    def _fields(self, rows):
        X, _ = self._rows(rows)
        q0 = self.q0 if rows is None else self.q0[rows]
        XA = X @ self.A
        m = X @ self.b
        if self.infinite:
            quad = np.einsum("ij,ij->i", XA, XA)
            f = self.alpha * (m + 0.5 * self.eps * (quad + m * m - q0))
        else:
            quad = np.einsum("ij,ij->i", XA @ self.M0, XA)
            p = XA @ self.v0
            xv0 = self.Xv0 if rows is None else self.Xv0[rows]
            f = self.alpha * (p + m - xv0 + 0.5 * self.eps * (quad + 2.0 * m * p + m * m - q0))
        return f, XA

    def _update(self, X, delta, XA):
        self.A += (self.lr_factor * self.eps) * (X.T @ (delta[:, None] * XA))

    def _second_moment(self):
        """C = A M0 A^T (= A A^T for N = inf)."""
        if self.infinite:
            return self.A @ self.A.T
        return self.A @ self.M0 @ self.A.T

    def _quadratic_form(self):
        A, b = self.A, self.b
        C = self._second_moment()
        if self.infinite:
            S = C + np.outer(b, b) - np.eye(len(b))
            g = b.copy()
        else:
            Av0 = A @ self.v0
            S = C + np.outer(Av0, b) + np.outer(b, Av0) + np.outer(b, b) - self.M0
            g = Av0 + b - self.v0
        return S, g

    def observables(self) -> dict:
        P, D = self.problem.P, self.problem.D
        bhat = self.problem.bhat
        f, XA = self._full_fields()
        delta = self.problem.y - f
        C = self._second_moment()
        b = self.b
        A = self.A
        # test loss from the same C (avoid recomputing it)
        if self.infinite:
            S = C + np.outer(b, b) - np.eye(D)
            g = b
        else:
            Av0 = A @ self.v0
            S = C + np.outer(Av0, b) + np.outer(b, Av0) + np.outer(b, b) - self.M0
            g = Av0 + b - self.v0
        beta = self.problem.beta
        Bq = 0.5 * np.outer(beta, beta) - 0.5 * self.alpha * self.eps * S
        test = quadratic_population_loss(Bq, self.alpha * g)
        Cb_hat = C @ bhat
        sCs = float(bhat @ Cb_hat)
        cross = Cb_hat - sCs * bhat
        bb = float(b @ bhat)
        if self.infinite:
            teacher = sCs + bb * bb
        else:
            teacher = sCs + 2.0 * bb * float(bhat @ (A @ self.v0)) + bb * bb
        # NTK alignment on the first n training points
        n = self.ntk_points
        R = XA[:n]
        a = 1.0 + self.eps * (self.problem.X[:n] @ b)
        if self.infinite:
            kog = np.outer(a, a) + self.eps**2 * (R @ R.T)
        else:
            p = R @ self.v0
            kog = (np.outer(a, a) + self.eps * (np.outer(a, p) + np.outer(p, a))
                   + self.eps**2 * (R @ self.M0 @ R.T))
        return {
            "train_loss": float(delta @ delta) / P,
            "test_loss": test,
            "spike": sCs / D,
            "bulk": (float(np.trace(C)) - sCs) / D,
            "mean_norm": float(b @ b) / D,
            "mean_overlap": bb,
            "teacher_moment": teacher,
            "ntk_alignment": self._alignment(kog),
            "spike_bulk_cross": float(cross @ cross) / D**2,
        }


class ExplicitNetwork(_Network):
    """The finite-width network with explicit weights W (N x D), initial W0 (N x D).

    Also carries b(t) (closed recursion driven by the residuals, see the module docstring), so that
    w_i - b = A w_i(0) and the order parameters are defined exactly as for the reduced engine.
    Cost per full-batch step: two GEMMs of P N D (pre-activations, weight update) plus O(P D + N D)."""

    def __init__(self, problem: Problem, alpha: float, eps: float, eta: float, W0, ntk_points: int = NTK_POINTS):
        super().__init__(problem, alpha, eps, eta, ntk_points)
        self.W0 = np.array(W0, dtype=float)
        self.W = self.W0.copy()
        self.N = self.W0.shape[0]
        self.w0_mean = self.W0.mean(axis=0)
        H0 = problem.X @ self.W0.T  # (P, N) initial pre-activations (same BLAS call as in _fields)
        self.q0 = np.einsum("ij,ij->i", H0, H0) / self.N  # E_i (w_i(0).x_mu)^2

    def _fields(self, rows):
        # f = alpha [ (wbar - wbar0).x + (eps/2) (E_i (w_i.x)^2 - E_i (w_i(0).x)^2) ]: one GEMM and one
        # fused pass over the (rows x N) pre-activations (f = 0 exactly at t = 0).
        X, _ = self._rows(rows)
        q0 = self.q0 if rows is None else self.q0[rows]
        H = X @ self.W.T
        quad = np.einsum("ij,ij->i", H, H) / self.N
        f = self.alpha * (X @ (self.W.mean(axis=0) - self.w0_mean) + (0.5 * self.eps) * (quad - q0))
        return f, H

    def _update(self, X, delta, H):
        # sum_mu delta_mu (1 + eps h_i,mu) x_mu = X^T delta + eps (H^T (delta * X))_i
        dX = delta[:, None] * X
        G = (self.eps * self.lr_factor) * (H.T @ dX)
        G += self.lr_factor * (X.T @ delta)
        self.W += G

    def _quadratic_form(self):
        N = self.N
        S = (self.W.T @ self.W - self.W0.T @ self.W0) / N
        S = 0.5 * (S + S.T)
        g = self.W.mean(axis=0) - self.W0.mean(axis=0)
        return S, g

    def observables(self) -> dict:
        P, D, N = self.problem.P, self.problem.D, self.N
        bhat = self.problem.bhat
        f, H = self._full_fields()
        delta = self.problem.y - f
        S, g = self._quadratic_form()
        beta = self.problem.beta
        Bq = 0.5 * np.outer(beta, beta) - 0.5 * self.alpha * self.eps * S
        Z = self.W - self.b  # = A w_i(0), rows
        zb = Z @ bhat
        spike_raw = float(zb @ zb) / N
        cross = Z.T @ zb / N  # E_i[(A w_i(0)) (bhat.A w_i(0))]
        cross -= float(cross @ bhat) * bhat
        b = self.b
        wb = self.W @ bhat
        n = self.ntk_points
        Phi = 1.0 + self.eps * H[:n]
        kog = Phi @ Phi.T / N
        return {
            "train_loss": float(delta @ delta) / P,
            "test_loss": quadratic_population_loss(Bq, self.alpha * g),
            "spike": spike_raw / D,
            "bulk": (float(np.sum(Z * Z)) / N - spike_raw) / D,
            "mean_norm": float(b @ b) / D,
            "mean_overlap": float(b @ bhat),
            "teacher_moment": float(wb @ wb) / N,
            "ntk_alignment": self._alignment(kog),
            "spike_bulk_cross": float(cross @ cross) / D**2,
        }


# --------------------------------------------------------------------------- result
@dataclasses.dataclass
class SimulationResult:
    """Seed-averaged simulation record.

    ``parameters`` flat dict; ``tau`` (T,); ``observables`` name -> mean over seeds (T,); ``std`` name ->
    sample standard deviation over seeds (ddof = 1; zeros for one seed); ``per_seed`` name -> (seeds, T);
    ``lazy`` (optional) the NTK kernel-flow reference on the same data: ``train_loss``, ``test_loss``
    (means), ``train_loss_std``, ``test_loss_std``, ``train_loss_per_seed``, ``test_loss_per_seed``;
    ``info`` run metadata (wall time, diverged seeds), not part of the result's identity.
    """

    parameters: dict
    tau: np.ndarray
    observables: dict
    std: dict
    per_seed: dict
    lazy: dict | None = None
    info: dict = dataclasses.field(default_factory=dict)
    data_moments: dict | None = None

    # ---------------------------------------------------------------- helpers
    def seed_mean(self, name: str, control_variate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Estimate of E over training sets and initialisations of observable ``name`` and its standard error.

        Without the control variate: the seed mean ybar and s / sqrt(n).  With it (the default, when the
        training-set moments are known and there are at least 4 seeds): the regression estimator with
        the known mean E[m_4] = 3 of the training set's fourth moment of u = beta.x,

            y_k = a + c (m4_k - 3) + e_k   (least squares over seeds k, at every tau),  estimate = a,

        whose standard error is sqrt(s_e^2 [(A^T A)^-1]_00), s_e^2 the residual variance with n - 2
        degrees of freedom.  It is consistent for the same expectation as the seed mean (bias O(1/n))
        and has variance (1 - R^2) times smaller, R the correlation of y with m_4: the spread of
        grokking times over training sets is mostly the spread of m_4 (docs/finite-size.md).  At
        tau = 0 the train loss is m_4 / 4, so the estimate is 3/4 with zero error.  Seeds with a
        non-finite value at a time are left out at that time.
        """
        moments = None if (not control_variate or self.data_moments is None) else self.data_moments["u4"]
        return control_variate_mean(self.per_seed[name], moments)

    def first_below(self, name: str, fraction: float = 0.5, reference: float | None = None) -> float:
        """First recorded tau at which the seed-mean of ``name`` is below ``fraction * reference``
        (reference: its value at the first record, tau = 0).  nan if it never is."""
        curve = np.asarray(self.observables[name])
        ref = curve[0] if reference is None else reference
        idx = np.nonzero(curve < fraction * ref)[0]
        return float(self.tau[idx[0]]) if idx.size else float("nan")

    def summary(self) -> str:
        p = self.parameters
        width = p["width"]
        engine = "exact infinite-width (A, b) reduction" if width == math.inf else f"explicit network, N={width}"
        batch = "full batch" if p.get("batch") is None else f"minibatch B={p['batch']}"
        lines = [
            f"simulation: alpha={p['alpha']:g} ratio={p['ratio']:g} eps={p['eps']:g} noise={p['noise']:g} "
            f"D={p['dim']} P={p['P']}",
            f"  {engine}; {batch}; dt={p['dt']:g} (eta={p['eta']:g}), {p['n_steps']} steps to tau={self.tau[-1]:g}; "
            f"seeds {p['seed']}..{p['seed'] + p['seeds'] - 1}",
        ]
        n_seeds = int(p["seeds"])
        asked = p.get("n_records")
        records = f"  {len(self.tau)} records (tau = 0 plus log-spaced times"
        if asked is not None and p.get("record_grid", "log") == "log" and len(self.tau) < int(asked) + 1:
            records += (f"; of {int(asked) + 1} asked, {int(asked) + 1 - len(self.tau)} fell on an "
                        "already recorded whole step")
        lines.append(records + ")")
        for name in ("train_loss", "test_loss"):
            mean, sd = self.observables[name][-1], self.std[name][-1]
            t_half = self.first_below(name)
            spread = (f"seed sd {sd:.2g}, SE = sd/√{n_seeds} = {sd / math.sqrt(n_seeds):.2g}" if n_seeds > 1
                      else "1 seed, no error bar")
            lines.append(f"  final {name.replace('_', ' ')}: {mean:.6g}   ({spread}; "
                         f"initial {self.observables[name][0]:.6g}; first below half of it: "
                         + (f"τ = {t_half:g})" if math.isfinite(t_half) else f"never, up to τ = {self.tau[-1]:g})"))
        if self.data_moments is not None and next(iter(self.per_seed.values())).shape[0] >= 4:
            cv = {name: self.seed_mean(name) for name in ("train_loss", "test_loss")}
            lines.append("  final, mean over training sets with the m4 control variate (seed_mean): "
                         + ", ".join(f"{name.replace('_', ' ')} {cv[name][0][-1]:.6g} ± {cv[name][1][-1]:.2g}"
                                     for name in cv)
                         + " (± its standard error)")
        if self.lazy is not None:
            lines.append(f"  lazy (NTK) reference, final: train loss {self.lazy['train_loss'][-1]:.6g}, "
                         f"test loss {self.lazy['test_loss'][-1]:.6g}")
        if self.info.get("diverged_seeds"):
            lines.append(f"  WARNING: diverged seeds {self.info['diverged_seeds']} (Euler step too large?)")
        if "wall_time_s" in self.info:
            lines.append(f"  wall time {self.info['wall_time_s']:.1f} s")
        return "\n".join(lines)

    # -------------------------------------------------------------------- I/O
    def save(self, path):
        """Write the HDF5 file (kind "simulation"); see :mod:`dmft.io` for the contract."""
        from .io import write_h5

        obs = {"tau": np.asarray(self.tau)}
        for name, mean in self.observables.items():
            obs[name] = np.asarray(mean)
            obs[name + "_std"] = np.asarray(self.std[name])
        seeds = {}
        n_seeds = next(iter(self.per_seed.values())).shape[0]
        for k in range(n_seeds):
            seeds[str(k)] = {"observables": {name: np.asarray(v[k]) for name, v in self.per_seed.items()}}
        data: dict[str, Any] = {"observables": obs, "seeds": seeds}
        if self.lazy is not None:
            data["lazy_reference"] = {k: np.asarray(v) for k, v in self.lazy.items()}
        if self.data_moments is not None:
            data["data_moments"] = {k: np.asarray(v) for k, v in self.data_moments.items()}
        attrs = {k: (v if not isinstance(v, (list, tuple)) else str(list(v))) for k, v in self.info.items()}
        return write_h5(path, kind="simulation", parameters=self.parameters, data=data, attrs=attrs)

    @classmethod
    def load(cls, path) -> "SimulationResult":
        from .io import read_h5

        return cls.from_raw(read_h5(path, kind="simulation"))

    @classmethod
    def from_raw(cls, raw: dict) -> "SimulationResult":
        """The result held by a :func:`dmft.io.read_h5` dict of a simulation file."""
        obs = raw["observables"]
        tau = np.asarray(obs["tau"])
        names = [k for k in obs if k != "tau" and not k.endswith("_std")]
        observables = {k: np.asarray(obs[k]) for k in names}
        std = {k: np.asarray(obs[k + "_std"]) for k in names}
        seed_keys = sorted(raw.get("seeds", {}), key=int)
        # a file written without its per-seed group (e.g. by hand through dmft.io) has only the summary
        per_seed = ({k: np.stack([np.asarray(raw["seeds"][s]["observables"][k]) for s in seed_keys]) for k in names}
                    if seed_keys else {})
        lazy = None
        if "lazy_reference" in raw:
            lazy = {k: np.asarray(v) for k, v in raw["lazy_reference"].items()}
        info = {k: raw["attrs"][k] for k in ("wall_time_s", "diverged_seeds") if k in raw["attrs"]}
        parameters = dict(raw["parameters"])
        if "data_moments" in raw:
            moments = {k: np.asarray(v) for k, v in raw["data_moments"].items()}
        else:  # files written before the moments were recorded: the data are a function of the seed
            moments = _moments_from_parameters(parameters)
        return cls(parameters=parameters, tau=tau, observables=observables, std=std,
                   per_seed=per_seed, lazy=lazy, info=info, data_moments=moments)


# ----------------------------------------------------------------------- validation
def _memory_bytes(D: int, P: int, N, batch: int, lazy: bool, n_rec: int) -> float:
    S = min(P, NTK_POINTS)
    R = P if batch is None else batch
    if N == math.inf:
        words = 3 * P * D + 2 * R * D + 6 * D * D + 3 * S * S + 2 * S * D
    else:
        words = 2 * P * D + 3 * N * D + 2 * P * N + 3 * R * N + 4 * D * D + 3 * S * S + 2 * S * N
    if lazy:
        words += 5 * P * P + 3 * n_rec * P
    return 8.0 * words


def _record_steps(n_steps: int, n_records: int) -> np.ndarray:
    if n_records == 1:
        grid = np.array([n_steps], dtype=float)
    else:
        grid = np.geomspace(1.0, n_steps, n_records)
    steps = np.unique(np.concatenate([[0], np.rint(grid).astype(np.int64)]))
    return steps


@dataclasses.dataclass(frozen=True)
class _Setup:
    model: TwoLayerModel
    D: int
    P: int
    N: Any  # int or math.inf
    h: float  # tau per full-batch step (epoch)
    eta: float
    batch: int | None
    tau_step: float  # tau per (S)GD step
    n_steps: int
    record_steps: np.ndarray  # (T,), in order (may repeat for record_tau)
    seeds: int
    seed: int


def _python_scalar(value):
    """numpy integer / float scalars -> Python int / float (the params checks expect Python numbers)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _validate(alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records, record_tau,
              lazy_reference) -> _Setup:
    alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records = (
        _python_scalar(v) for v in (alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records))
    model = TwoLayerModel(alpha=alpha, ratio=ratio, eps=eps, noise=noise)
    SimulationSettings(dim=dim, width=width, dt=dt, eta=eta, t_max=t_max, batch=batch, seeds=seeds, seed=seed,
                       n_records=n_records, lazy_reference=lazy_reference)  # the ranges, before any compute
    D = check_int("dim", dim, 1)
    if isinstance(width, float) and math.isinf(width) and width > 0:
        N = math.inf
    else:
        require(not isinstance(width, bool) and isinstance(width, (int, float)), "width", width,
                "an integer >= 1 or inf")
        N = check_int("width", width, 1)
    P = int(round(model.ratio * D))
    require(P >= 1, "ratio", ratio, f"a number > 0 with round(ratio * dim) >= 1 (dim={D})")
    if dt is not None and eta is not None:
        raise ParameterError(f"invalid dt={dt!r} together with eta={eta!r}: allowed is exactly one of dt and eta")
    if eta is not None:
        eta = check_positive("eta", eta)
        h = eta / D
    else:
        h = check_positive("dt", 0.2 if dt is None else dt)
        eta = h * D
    t_max = check_positive("t_max", t_max)
    if batch is not None:
        batch = check_int("batch", batch, 1, P)
    seeds = check_int("seeds", seeds, 1)
    seed = check_int("seed", seed, 0)
    n_records = check_int("n_records", n_records, 1)
    require(isinstance(lazy_reference, (bool, np.bool_)), "lazy_reference", lazy_reference, "True or False")
    tau_step = h if batch is None or batch == P else h * batch / P
    n_steps = max(1, int(round(t_max / tau_step)))
    require(n_steps <= MAX_STEPS, "t_max", t_max,
            f"at most {MAX_STEPS} steps of tau {tau_step:g} (raise dt/eta or lower t_max)")
    if record_tau is None:
        record_steps = _record_steps(n_steps, n_records)
    else:
        rt = np.atleast_1d(np.asarray(record_tau, dtype=float))
        ok = rt.ndim == 1 and rt.size >= 1 and np.all(np.isfinite(rt)) and np.all(rt >= 0)
        ok = ok and np.all(np.diff(rt) >= 0) and rt[-1] <= n_steps * tau_step + 0.5 * tau_step
        require(bool(ok), "record_tau", rt if rt.size < 8 else f"array of shape {rt.shape}",
                f"a non-decreasing 1-d array of times in [0, t_max={t_max:g}]")
        record_steps = np.rint(rt / tau_step).astype(np.int64)
        n_steps = max(1, int(record_steps[-1]))
    need = _memory_bytes(D, P, N, batch, bool(lazy_reference), len(record_steps))
    if need > MEMORY_LIMIT_BYTES:
        raise ParameterError(
            f"invalid dim={D}, ratio={model.ratio:g} (P={P}), width={N}: the simulation needs about "
            f"{need / 2**30:.1f} GiB of arrays; allowed is at most {MEMORY_LIMIT_BYTES / 2**30:.0f} GiB "
            "(lower dim, ratio or width; width=inf needs only O(P D + D^2)"
            + ("; lazy_reference adds O(P^2))" if lazy_reference else ")"))
    return _Setup(model=model, D=D, P=P, N=N, h=h, eta=eta, batch=batch, tau_step=tau_step, n_steps=n_steps,
                  record_steps=record_steps, seeds=seeds, seed=seed)


# ------------------------------------------------------------------------- running
def _seed_streams(seed: int):
    data_ss, weight_ss, batch_ss = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(data_ss), np.random.default_rng(weight_ss), np.random.default_rng(batch_ss)


def control_variate_mean(per_seed, u4=None) -> tuple[np.ndarray, np.ndarray]:
    """(estimate, standard error) over seeds of ``per_seed`` (seeds, T), with the training sets' fourth
    moments ``u4`` (seeds,) as a control variate of known mean 3 (see :meth:`SimulationResult.seed_mean`);
    the plain seed mean and s / sqrt(n) when ``u4`` is None or fewer than 4 seeds are finite."""
    y = np.asarray(per_seed, dtype=float)
    n = y.shape[0]
    counts = np.sum(np.isfinite(y), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.nanmean(y, axis=0) if n else np.full(y.shape[1], np.nan)
        se = (np.nanstd(y, axis=0, ddof=1) / np.sqrt(np.maximum(counts, 1)) if n > 1
              else np.zeros(y.shape[1]))
    if u4 is None:
        return plain, se
    x = np.asarray(u4, dtype=float) - 3.0
    if x.shape != (n,):
        raise ValueError(f"u4 has shape {x.shape}, expected ({n},): one fourth moment per seed")
    mean, err = plain.copy(), se.copy()
    full = np.all(np.isfinite(y), axis=0)
    xm = x.mean() if n else 0.0
    sxx = float(((x - xm) ** 2).sum())
    if n >= 4 and sxx > 0 and full.any():  # complete columns at once: the intercept at x = 0 and its SE
        yf = y[:, full]
        ym = yf.mean(axis=0)
        slope = ((x - xm) @ (yf - ym)) / sxx
        mean[full] = ym - slope * xm
        resid = yf - mean[full] - np.outer(x, slope)
        err[full] = np.sqrt(np.maximum((resid**2).sum(axis=0) / (n - 2) * (1.0 / n + xm**2 / sxx), 0.0))
    for j in (np.flatnonzero(~full) if n >= 4 and sxx > 0 else range(y.shape[1])):
        ok = np.isfinite(y[:, j])
        m = int(ok.sum())
        if m < 4:
            continue
        A = np.column_stack([np.ones(m), x[ok]])
        coef, *_ = np.linalg.lstsq(A, y[ok, j], rcond=None)
        resid = y[ok, j] - A @ coef
        s2 = resid @ resid / (m - 2)
        mean[j] = coef[0]
        err[j] = math.sqrt(max(s2 * np.linalg.inv(A.T @ A)[0, 0], 0.0))
    return mean, err


def training_set_moments(problem: Problem) -> dict:
    """Empirical moments (1/P) sum_mu u_mu^k, k in MOMENT_ORDERS, of the teacher field u = beta.x."""
    u = problem.X @ problem.beta
    return {f"u{k}": float(np.mean(u**k)) for k in MOMENT_ORDERS}


def _moments_from_parameters(parameters: dict) -> dict | None:
    """Recompute every seed's training-set moments from a result's parameters (the data depend only
    on the seed, D and P); None if the file's seeding convention is not this module's."""
    if parameters.get("seeding") != SEEDING:
        return None
    try:
        D, P, seed, seeds = (int(parameters[k]) for k in ("dim", "P", "seed", "seeds"))
    except (KeyError, TypeError, ValueError):
        return None
    rows = []
    for k in range(seeds):
        rng_data, _, _ = _seed_streams(seed + k)
        rows.append(training_set_moments(make_problem(D, P, 0.0, rng_data)))
    return {key: np.array([r[key] for r in rows]) for key in rows[0]} if rows else None


def build_network(setup: _Setup, seed: int):
    """(problem, network, batch_rng) of run ``seed`` (an absolute seed, i.e. seed + k)."""
    rng_data, rng_w, rng_b = _seed_streams(seed)
    m = setup.model
    problem = make_problem(setup.D, setup.P, m.noise, rng_data)
    if setup.N == math.inf:
        net = ReducedNetwork(problem, m.alpha, m.eps, setup.eta)
    else:
        W0 = rng_w.standard_normal((setup.N, setup.D))
        net = ExplicitNetwork(problem, m.alpha, m.eps, setup.eta, W0)
    return problem, net, rng_b


def _run_one(setup: _Setup, seed: int, bar) -> tuple[dict, Problem, int | None]:
    problem, net, rng_b = build_network(setup, seed)
    rec_steps = setup.record_steps
    T = len(rec_steps)
    out = {name: np.full(T, np.nan) for name in OBSERVABLES}
    order = np.argsort(rec_steps, kind="stable")
    j = 0  # next record (in sorted order)
    diverged_at = None
    P, B = setup.P, setup.batch
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(setup.n_steps + 1):
            while j < T and rec_steps[order[j]] == n:
                obs = net.observables()
                for name in OBSERVABLES:
                    out[name][order[j]] = obs[name]
                j += 1
            if n == setup.n_steps or j == T:
                break
            if B is None or B == P:
                rows = None  # B = P: the whole training set in natural order, i.e. exactly full batch
            else:
                rows = np.sort(rng_b.choice(P, size=B, replace=False))
            if not net.step(rows):
                diverged_at = n
                break
            if bar is not None:
                bar.update(1)
    return out, problem, diverged_at


def simulate(alpha, ratio, eps=0.02, noise=0.0, dim=200, width=math.inf, dt=None, eta=None, t_max=12.0,
             batch=None, seeds=1, seed=0, n_records=200, record_tau=None, lazy_reference=False,
             progress=False) -> SimulationResult:
    """Train ``seeds`` independent networks (each on its own data set) and record the observables.

    Parameters (see the module docstring for the model and every convention)
    ----------
    alpha, ratio, eps, noise : model (:class:`dmft.params.TwoLayerModel`).
    dim : input dimension D.   width : hidden units N (int) or ``math.inf`` (exact reduction).
    dt, eta : exactly one (default dt = 0.2): tau per full-batch step h, or eta = h D.
    t_max : final tau.   batch : minibatch size B (None = full batch), tau advances h B/P per step.
    seeds, seed : runs seed, seed+1, ..., seed+seeds-1.
    n_records : at most this many log-spaced record times (plus tau = 0); times that fall on the same
        whole step are stored once.   record_tau : explicit times instead.
    lazy_reference : also compute the NTK kernel-flow reference (:func:`dmft.lazy.kernel_flow`, the
        infinite-width initial NTK, whatever ``width``) on each data set: its Euler map with the same h
        for full batch, the continuous flow for minibatches.
    progress : tqdm progress bar over steps.
    """
    setup = _validate(alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records,
                      record_tau, lazy_reference)
    tau = setup.record_steps * setup.tau_step
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    per_seed = {name: np.empty((setup.seeds, len(tau))) for name in OBSERVABLES}
    lazy_train, lazy_test = [], []
    moments = {f"u{k}": np.empty(setup.seeds) for k in MOMENT_ORDERS}
    diverged = []
    with tqdm(total=setup.seeds * setup.n_steps, disable=not progress, unit="step", desc="simulate",
              mininterval=0.5) as bar:
        for k in range(setup.seeds):
            obs, problem, div = _run_one(setup, setup.seed + k, bar if progress else None)
            for name in OBSERVABLES:
                per_seed[name][k] = obs[name]
            for key, value in training_set_moments(problem).items():
                moments[key][k] = value
            if div is not None:
                diverged.append(setup.seed + k)
                warnings.warn(f"seed {setup.seed + k} diverged at tau={div * setup.tau_step:g} "
                              f"(non-finite residual); the Euler step dt={setup.h:g} is probably too large "
                              "(stable for dt below ~0.3-0.5); its remaining records are nan", RuntimeWarning,
                              stacklevel=2)
            if lazy_reference:
                kf = kernel_flow(problem.X, problem.y, setup.model.eps, tau, beta=problem.beta,
                                 dt=setup.h if setup.batch is None else None)
                lazy_train.append(kf.train_loss)
                lazy_test.append(kf.test_loss)
    wall = time.perf_counter() - t0

    def _std(a):
        return np.std(a, axis=0, ddof=1) if a.shape[0] > 1 else np.zeros(a.shape[1])

    observables = {name: per_seed[name].mean(axis=0) for name in OBSERVABLES}
    std = {name: _std(per_seed[name]) for name in OBSERVABLES}
    lazy = None
    if lazy_reference:
        lt, le = np.array(lazy_train), np.array(lazy_test)
        lazy = {"train_loss": lt.mean(axis=0), "test_loss": le.mean(axis=0), "train_loss_std": _std(lt),
                "test_loss_std": _std(le), "train_loss_per_seed": lt, "test_loss_per_seed": le}
    m = setup.model
    parameters = {
        **as_dict(m),
        "dim": setup.D,
        "P": setup.P,
        "width": setup.N,
        "engine": "reduced" if setup.N == math.inf else "explicit",
        "dt": setup.h,
        "eta": setup.eta,
        "batch": setup.batch,
        "tau_per_step": setup.tau_step,
        "n_steps": setup.n_steps,
        "t_max": float(t_max),
        "seeds": setup.seeds,
        "seed": setup.seed,
        "n_records": n_records,
        "record_grid": "log" if record_tau is None else "given",
        "lazy_reference": bool(lazy_reference),
        "ntk_points": min(setup.P, NTK_POINTS),
        "sgd_convention": SGD_CONVENTION,
        "seeding": SEEDING,
        "test_loss_target": "clean (beta.x)^2/2, exact population average",
    }
    info = {"wall_time_s": wall}
    if diverged:
        info["diverged_seeds"] = diverged
    return SimulationResult(parameters=parameters, tau=tau, observables=observables, std=std, per_seed=per_seed,
                            lazy=lazy, info=info, data_moments=moments)
