"""The networks the simulator trains (:mod:`dmft.simulator`), their data, and the seeding of a run.

Model (conventions of :mod:`dmft.params`)
-----------------------------------------
* inputs x ~ N(0, I_D / D); P = round(ratio * D) training points;
* teacher beta ~ N(0, I_D) rescaled to |beta|^2 = D exactly (this removes a trivial O(D^-1/2)
  fluctuation of the target scale, and makes u = beta.x exactly N(0, 1)), labels y = g(u) + noise * xi,
  xi ~ N(0, 1), g = sum_k c_k He_k the model's ``target`` (:mod:`dmft.target`; default u^2/2);
* student f(x) = alpha (1/N) sum_i [phi(w_i.x) - phi(w_i(0).x)], phi(h) = h + (eps/2) h^2,
  w_i(0) ~ N(0, I_D) (centered: f = 0 at t = 0);
* loss L = (1/P) sum_mu Delta_mu^2, Delta = y - f; gradient descent with lr = eta N / alpha^2:

      w_i <- w_i + (2 eta / (alpha P)) sum_mu Delta_mu (1 + eps w_i.x_mu) x_mu,

  time tau = eta t / D; a step of h = ``dt`` in tau is eta = h D.  Weight decay omega multiplies the
  weights by (1 - h omega) at each step besides the gradient step (dW/dtau = -omega W - ...), with the
  gradient taken at the weights before the step.

Two engines
-----------
* **explicit** (finite ``width`` N): the N x D weight matrix W is trained as written above.
* **reduced** (``width=inf``, exact infinite-width network): phi' is affine, so every neuron obeys
  the same linear update and w_i(t) = A(t) w_i(0) + b(t) with A(0) = I, b(0) = 0,

      A <- (1 - h omega) A + (2 eta eps / (alpha P)) X^T diag(Delta) X A,
      b <- (1 - h omega) b + (2 eta / (alpha P)) X^T (Delta + eps Delta * (X b)),

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

Minibatch SGD with Bernoulli batches (``batch_fraction=b``) and its time convention
-------------------------------------------------------------------------------------
At every step each training point is in the batch independently with probability b (a fresh draw per
step), and the step is

      w_i <- w_i + (2 eta / (alpha P b)) sum_{mu in batch} Delta_mu (1 + eps w_i.x_mu) x_mu,

the gradient of (1/(bP)) sum_{mu in batch} Delta_mu^2 with the learning rate of full-batch descent; tau
advances by h = eta / D per step, as in full-batch descent, so one unit of tau is 1/h steps whatever b,
and the expected step is the full-batch step.  b = 1 is full-batch gradient descent, with no draws
(bit for bit).  The DMFT of this scheme is ``dmft solve --batch-fraction b``.  The two conventions compare
as follows: a fixed-size batch of B points advances tau by h B/P per step (tau counts epochs), a
Bernoulli batch of fraction b = B/P by h per step with a gradient 1/b times larger; over one unit of
tau both give each point the same expected weight.

Observables (recorded at every record time; the DMFT uses the same names)
--------------------------------------------------------------------------
With bhat = beta / |beta| and, for every width, the decomposition w_i = A w_i(0) + b (the explicit
engine carries b(t) along: its recursion above is closed given the residuals Delta, O(P D) per
step, so A w_i(0) = w_i - b exactly without ever forming A):

* ``train_loss``     (1/P) sum_mu (f(x_mu) - y_mu)^2 with the noisy labels;
* ``test_loss``      exact population loss E_x[(f(x) - g(beta.x))^2] against the *clean* target: f is
                     quadratic in x, so it is the loss against the target's degree <= 2 part
                     (:func:`dmft.lazy.quadratic_population_loss`) plus sum_{k>=3} k! c_k^2;
* ``spike``          (1/D) E_i[(bhat.(w_i - b))^2] = (1/D) bhat^T A M0 A^T bhat   (~ 1/D at t = 0);
* ``bulk``           (1/D) E_i[|w_i - b|^2 - (bhat.(w_i - b))^2] = (Tr A M0 A^T - bhat^T A M0 A^T bhat) / D;
* ``mean_norm``      |b|^2 / D;
* ``mean_overlap``   b.beta / D = b.bhat / sqrt(D): the readout mean's component along the teacher, O(1) when
                     the target has an odd part (the DMFT's mu_b), O(D^-1/2) otherwise;
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

Seeding: run seed s uses ``np.random.SeedSequence(s)`` spawned into three streams (:func:`seed_streams`):
data (beta, then X, then the label noise xi), initial weights W0, minibatch draws.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .lazy import quadratic_population_loss
from .params import diverged
from .target import DEFAULT_TARGET, evaluate, irreducible_loss, low_degree

__all__ = ["Problem", "make_problem", "ExplicitNetwork", "ReducedNetwork", "OBSERVABLES", "NTK_POINTS",
           "MOMENT_ORDERS", "SEEDING", "seed_streams", "training_set_moments"]

MOMENT_ORDERS = (2, 4, 6)  # recorded empirical moments of the teacher field u = beta.x over the training set
SEEDING = "SeedSequence(seed+k).spawn(3): data, weights, batches"  # stored in every result's parameters

OBSERVABLES = ("train_loss", "test_loss", "spike", "bulk", "mean_norm", "mean_overlap", "teacher_moment",
               "ntk_alignment", "spike_bulk_cross")
NTK_POINTS = 1000  #: the NTK alignment uses the first min(P, NTK_POINTS) training points


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class Problem:
    """One training set and its teacher."""

    X: np.ndarray  # (P, D), rows ~ N(0, I/D)
    y: np.ndarray  # (P,) labels incl. noise
    y_clean: np.ndarray  # (P,) g(beta.x)
    beta: np.ndarray  # (D,), |beta|^2 = D
    target: tuple = DEFAULT_TARGET  # Hermite coefficients of g

    @property
    def P(self) -> int:
        return self.X.shape[0]

    @property
    def D(self) -> int:
        return self.X.shape[1]

    @property
    def bhat(self) -> np.ndarray:
        return self.beta / np.linalg.norm(self.beta)

    def clean_target(self, x) -> np.ndarray:
        """Clean target g(beta.x) for inputs x (M, D)."""
        return evaluate(self.target, np.atleast_2d(x) @ self.beta)

    def test_loss(self, S, g, alpha, eps) -> float:
        """Exact E_x[(f(x) - g(beta.x))^2] of f(x) = alpha [g.x + (eps/2) x^T S x] (:meth:`_Network.quadratic_form`).

        With u = beta.x ~ N(0, 1), the target's degree <= 2 part is c_2 x^T beta beta^T x + c_1 beta.x + c_0 - c_2
        (He_2 = u^2 - 1); the rest is orthogonal to every quadratic, so it adds sum_{k>=3} k! c_k^2."""
        c0, c1, c2 = low_degree(self.target)
        beta = self.beta
        B = c2 * np.outer(beta, beta) - 0.5 * alpha * eps * S
        return quadratic_population_loss(B, alpha * g - c1 * beta, c0 - c2) + irreducible_loss(self.target)


def make_problem(dim: int, n_points: int, noise: float, rng: np.random.Generator,
                 target: tuple = DEFAULT_TARGET) -> Problem:
    """Draw beta (rescaled to |beta|^2 = D), then X (P x D, entries N(0, 1/D)), then xi; y = g(beta.x) + noise xi."""
    beta = rng.standard_normal(dim)
    beta *= math.sqrt(dim) / np.linalg.norm(beta)
    X = rng.standard_normal((n_points, dim)) / math.sqrt(dim)
    xi = rng.standard_normal(n_points)
    y_clean = evaluate(target, X @ beta)
    return Problem(X=X, y=y_clean + noise * xi, y_clean=y_clean, beta=beta, target=tuple(target))


# ------------------------------------------------------------------------- networks
class _Network:
    """Common interface: ``step(rows)``, ``train_loss()``, ``predict(x)``, ``test_loss()``, ``observables()``."""

    def __init__(self, problem: Problem, alpha: float, eps: float, eta: float, ntk_points: int = NTK_POINTS,
                 weight_decay: float = 0.0):
        self.problem = problem
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.eta = float(eta)
        self.weight_decay = float(weight_decay)
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

    def step(self, rows=None, tau_step=None, gain=1.0) -> bool:
        """One (S)GD step on the rows ``rows`` (None: all, full batch), advancing tau by ``tau_step``
        (default eta / D; weight decay multiplies the weights by 1 - tau_step * omega), with the gradient
        sum times ``gain`` (1/b for Bernoulli batches of fraction b).  Returns False, without stepping, if a
        residual on the rows is non-finite or at least :data:`dmft.params.DIVERGENCE_BOUND`."""
        X, y = self._rows(rows)
        f, aux = self._full_fields() if rows is None else self._fields(rows)
        delta = y - f
        if diverged(delta):  # the bound of the DMFT sweep's residuals (dmft.params.DIVERGENCE_BOUND)
            return False
        m = X @ self.b
        decay = 1.0
        if self.weight_decay > 0.0:
            decay = 1.0 - (self.eta / self.problem.D if tau_step is None else tau_step) * self.weight_decay
        lr = self.lr_factor * gain
        self._update(X, delta, aux, decay, lr)
        if decay != 1.0:
            self.b *= decay
        self.b += lr * (X.T @ (delta * (1.0 + self.eps * m)))
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
        return self.problem.test_loss(S, g, self.alpha, self.eps)

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

    def __init__(self, problem: Problem, alpha: float, eps: float, eta: float, W0=None, ntk_points: int = NTK_POINTS,
                 weight_decay: float = 0.0):
        super().__init__(problem, alpha, eps, eta, ntk_points, weight_decay)
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

    def _update(self, X, delta, XA, decay, lr):
        if decay != 1.0:
            self.A *= decay
        self.A += (lr * self.eps) * (X.T @ (delta[:, None] * XA))

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
        test = self.problem.test_loss(S, g, self.alpha, self.eps)
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
            "mean_overlap": bb / math.sqrt(D),
            "teacher_moment": teacher,
            "ntk_alignment": self._alignment(kog),
            "spike_bulk_cross": float(cross @ cross) / D**2,
        }


class ExplicitNetwork(_Network):
    """The finite-width network with explicit weights W (N x D), initial W0 (N x D).

    Also carries b(t) (closed recursion driven by the residuals, see the module docstring), so that
    w_i - b = A w_i(0) and the order parameters are defined exactly as for the reduced engine.
    Cost per full-batch step: two GEMMs of P N D (pre-activations, weight update) plus O(P D + N D)."""

    def __init__(self, problem: Problem, alpha: float, eps: float, eta: float, W0, ntk_points: int = NTK_POINTS,
                 weight_decay: float = 0.0):
        super().__init__(problem, alpha, eps, eta, ntk_points, weight_decay)
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

    def _update(self, X, delta, H, decay, lr):
        # sum_mu delta_mu (1 + eps h_i,mu) x_mu = X^T delta + eps (H^T (delta * X))_i
        dX = delta[:, None] * X
        G = (self.eps * lr) * (H.T @ dX)
        G += lr * (X.T @ delta)
        if decay != 1.0:
            self.W *= decay
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
            "test_loss": self.problem.test_loss(S, g, self.alpha, self.eps),
            "spike": spike_raw / D,
            "bulk": (float(np.sum(Z * Z)) / N - spike_raw) / D,
            "mean_norm": float(b @ b) / D,
            "mean_overlap": float(b @ bhat) / math.sqrt(D),
            "teacher_moment": float(wb @ wb) / N,
            "ntk_alignment": self._alignment(kog),
            "spike_bulk_cross": float(cross @ cross) / D**2,
        }



# ------------------------------------------------------------------------- seeding
def seed_streams(seed: int):
    """(data, weights, batches) generators of run ``seed``: ``SeedSequence(seed).spawn(3)`` (:data:`SEEDING`)."""
    data_ss, weight_ss, batch_ss = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(data_ss), np.random.default_rng(weight_ss), np.random.default_rng(batch_ss)


def training_set_moments(problem: Problem) -> dict:
    """Empirical moments (1/P) sum_mu u_mu^k, k in MOMENT_ORDERS, of the teacher field u = beta.x, and ``y2`` =
    (1/P) sum_mu y_mu^2 of the labels (noise included; its mean is E[g^2] + noise^2)."""
    u = problem.X @ problem.beta
    return {**{f"u{k}": float(np.mean(u**k)) for k in MOMENT_ORDERS}, "y2": float(np.mean(problem.y**2))}
