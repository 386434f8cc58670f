"""Lazy (NTK) limit of the two-layer network: kernel gradient flow on the training set, in closed form.

Derivation (conventions of :mod:`dmft.params`).  The network is
f(x) = (alpha/N) sum_i [phi(w_i.x) - phi(w_i(0).x)],  phi(h) = h + (eps/2) h^2, trained by
GD on L = (1/P) sum_mu Delta_mu^2 (Delta = y - f) with lr = eta N / alpha^2, and tau = eta t / D.
Linearising f in the weights around w(0) (exact as alpha -> inf: the weights move by O(1/alpha),
so the curvature terms of f are O(alpha * alpha^-2)), one GD step changes the function by

    f(x) <- f(x) + lr * (2/P) sum_nu Delta_nu sum_i grad_{w_i} f(x) . grad_{w_i} f(x_nu)
          = f(x) + (2 eta / P) sum_nu K(x, x_nu) Delta_nu,

    K(x, x') = (1/N) sum_i phi'(w_i(0).x) phi'(w_i(0).x') (x.x')  ->  (x.x') (1 + eps^2 x.x')   (N = inf),

because E_w[(1 + eps w.x)(1 + eps w.x')] = 1 + eps^2 x.x' for w ~ N(0, I).  (The alpha^2 of the
NTK is cancelled by lr ~ 1/alpha^2, so the lazy flow does not depend on alpha.)  With eta = h D
(a step of h in tau) and lambda = D/P this is the Euler map

    f_{n+1}(x) = f_n(x) + 2 h lambda sum_nu K(x, x_nu) Delta_nu(n),
    Delta(n+1) = (1 - 2 h lambda K) Delta(n),  Delta(0) = y         (f = 0 at tau = 0),

and, as h -> 0, the kernel gradient flow d f / d tau = 2 lambda K Delta.  With the training Gram
matrix K = U diag(k) U^T (P x P):

* train residual  Delta(tau) = U diag(d) U^T y,  d = exp(-2 lambda k tau)  or  (1 - 2 h lambda k)^n;
* predictor       f(x) = sum_nu K(x, x_nu) c_nu(tau),  c = U diag((1 - d) / k) U^T y
  (limit 2 lambda tau, resp. 2 h lambda n, for k = 0; such null directions of the Gram matrix do
  not contribute to f anywhere, since then sum_nu v_nu (x.x_nu)(1 + eps^2 x.x_nu) = 0 for all x).

The predictor is quadratic in x:  f(x) = g.x + x^T Q x  with  g = X^T c,  Q = eps^2 X^T diag(c) X,
so the population test loss against the clean target g(u) = sum_k c_k He_k(u), u = beta.x, is exact: the
target's degree <= 2 part is x^T (c_2 beta beta^T) x + c_1 beta.x + (c_0 - c_2), the rest adds
sum_{k>=3} k! c_k^2 (:mod:`dmft.target`), and with s = c_0 - c_2 the loss
(Tr B/D)^2 + 2 ||B||_F^2/D^2 + |g'|^2/D + 2 s Tr B/D + s^2 (:func:`quadratic_population_loss`) costs O(P^2)
per time through the Gram matrix G = X X^T:

    Tr B = c_2 |beta|^2 - eps^2 sum_nu c_nu |x_nu|^2,
    ||B||_F^2 = c_2^2 |beta|^4 - 2 c_2 eps^2 sum_nu c_nu (beta.x_nu)^2 + eps^4 c^T (G o G) c,
    |g'|^2 = c^T G c - 2 c_1 c^T X beta + c_1^2 |beta|^2,     (B = c_2 beta beta^T - Q, g' = X^T c - c_1 beta).

The train loss (1/P)|Delta|^2 uses the labels given (noisy ones included); the test loss is against
the clean target (no noise floor).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from .params import check_nonnegative, check_positive, require
from .target import DEFAULT_TARGET, check_target, irreducible_loss, low_degree

__all__ = ["quadratic_population_loss", "ntk_kernel", "kernel_flow", "KernelFlowResult"]


def quadratic_population_loss(B, g=None, c: float = 0.0) -> float:
    """E_x[(x^T B x - g.x + c)^2] for x ~ N(0, I_D / D), exactly.

    With Bs = (B + B^T)/2 (only the symmetric part enters a quadratic form):
        (Tr Bs / D)^2 + 2 ||Bs||_F^2 / D^2 + |g|^2 / D + 2 c Tr Bs / D + c^2.
    (Gaussian moments: E[x^T B x] = Tr B / D, Var[x^T B x] = 2 ||Bs||_F^2 / D^2, odd moments vanish.)
    """
    B = np.asarray(B, dtype=float)
    D = B.shape[0]
    Bs = 0.5 * (B + B.T)
    tr = np.trace(Bs) / D
    out = tr * tr + 2.0 * np.sum(Bs * Bs) / D**2 + 2.0 * c * tr + c * c
    if g is not None:
        g = np.asarray(g, dtype=float)
        out += float(g @ g) / D
    return float(out)


def ntk_kernel(X1, X2=None, eps: float = 0.0) -> np.ndarray:
    """Infinite-width NTK at initialisation, K(x, x') = (x.x')(1 + eps^2 x.x') (see module docstring)."""
    X1 = np.asarray(X1, dtype=float)
    X2 = X1 if X2 is None else np.asarray(X2, dtype=float)
    G = X1 @ X2.T
    return G * (1.0 + eps * eps * G)


@dataclasses.dataclass
class KernelFlowResult:
    """Lazy-limit (NTK kernel flow) trajectory on one data set.

    ``tau`` (T,), ``train_loss`` (T,), ``test_loss`` (T,) or None (needs ``beta``),
    ``coefficients`` c(tau) (T, P) of the predictor f(x) = sum_nu K(x, x_nu) c_nu,
    ``residual`` Delta(tau) = y - f on the training set (T, P).
    """

    tau: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray | None
    coefficients: np.ndarray
    residual: np.ndarray
    X: np.ndarray
    eps: float
    dt: float | None

    def predict(self, x, index: int = -1) -> np.ndarray:
        """Lazy predictor f(x) at record ``index`` for inputs ``x`` (M, D)."""
        return ntk_kernel(np.atleast_2d(x), self.X, self.eps) @ self.coefficients[index]


def _validate_tau(tau, dt):
    tau = np.atleast_1d(np.asarray(tau, dtype=float))
    require(tau.ndim == 1 and tau.size >= 1 and np.all(np.isfinite(tau)) and np.all(tau >= 0),
            "tau", tau if tau.size < 8 else f"array of shape {tau.shape}", "a 1-d array of finite times >= 0")
    steps = None
    if dt is not None:
        steps = np.rint(tau / dt)
        ok = np.all(np.abs(steps * dt - tau) <= 1e-9 * np.maximum(1.0, tau))
        require(bool(ok), "tau", "not on the step grid", f"multiples of dt={dt} (the Euler flow is defined on its grid)")
        steps = steps.astype(np.int64)
    return tau, steps


def kernel_flow(X, y, eps, tau, alpha=None, *, beta=None, dt=None, target=DEFAULT_TARGET) -> KernelFlowResult:
    """Lazy (alpha -> inf) reference: NTK kernel gradient flow d f/d tau = 2 (D/P) K Delta, f(0) = 0.

    Parameters
    ----------
    X : (P, D) training inputs (rows x_mu ~ N(0, I/D) in this package).
    y : (P,) training labels (noisy ones included).
    eps : activation parameter, K(x, x') = (x.x')(1 + eps^2 x.x').
    tau : times (tau = eta t / D) at which to evaluate.
    alpha : accepted for symmetry with :func:`dmft.simulator.simulate` and validated (> 0) if given;
        the lazy flow in these units does not depend on alpha (lr ~ 1/alpha^2 cancels the NTK's alpha^2).
    beta : (D,) teacher vector (|beta|^2 = D); if given, the exact population test loss against the clean
        target g(beta.x) is computed.
    target : Hermite coefficients (c_0, ..., c_K) of g (:mod:`dmft.target`; default u^2/2).
    dt : if given, the forward-Euler map with step h = dt in tau (eta = h D) instead of the flow:
        eigenvalue factors (1 - 2 h lambda k)^n instead of exp(-2 lambda k tau); every tau must be a
        multiple of dt.  This is what a full-batch simulation with the same step converges to as alpha -> inf.

    Cost: one P x P symmetric eigendecomposition, then O(P^2) per time.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    require(X.ndim == 2 and X.shape[0] >= 1 and X.shape[1] >= 1 and np.all(np.isfinite(X)), "X",
            f"array of shape {X.shape}", "a finite (P, D) array")
    P, D = X.shape
    require(y.shape == (P,) and np.all(np.isfinite(y)), "y", f"array of shape {y.shape}", f"a finite ({P},) array")
    eps = check_nonnegative("eps", eps)
    if alpha is not None:
        check_positive("alpha", alpha)
    if dt is not None:
        dt = check_positive("dt", dt)
    tau, steps = _validate_tau(tau, dt)
    target = check_target("target", target)
    if beta is not None:
        beta = np.asarray(beta, dtype=float)
        require(beta.shape == (D,) and np.all(np.isfinite(beta)), "beta", f"array of shape {beta.shape}",
                f"a finite ({D},) array")

    lam = D / P
    rate = 2.0 * lam
    G = X @ X.T
    K = G * (1.0 + eps * eps * G)
    k, U = scipy.linalg.eigh(K)
    yk = U.T @ y  # y in the eigenbasis

    T = tau.size
    decay = np.empty((T, P))
    coef = np.empty((T, P))  # (1 - d)/k, eigenbasis
    for j in range(T):
        if dt is None:
            z = rate * k * tau[j]
            decay[j] = np.exp(-z)
            small = np.abs(z) < 1e-300
            with np.errstate(divide="ignore", invalid="ignore"):
                coef[j] = np.where(small, rate * tau[j], -np.expm1(-z) / np.where(small, 1.0, k))
        else:
            n = int(steps[j])
            z = rate * dt * k  # per-step factor 1 - z
            stable = z < 1.0
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                logf = np.log1p(-np.where(stable, z, 0.0))
                d_stable = np.exp(n * logf)
                one_minus_d = np.where(stable, -np.expm1(n * logf), 1.0 - (1.0 - z) ** n)
                d = np.where(stable, d_stable, (1.0 - z) ** n)
                small = k == 0.0
                c = np.where(small, rate * dt * n, one_minus_d / np.where(small, 1.0, k))
            decay[j] = d
            coef[j] = c

    residual = (decay * yk) @ U.T  # (T, P)
    coefficients = (coef * yk) @ U.T  # (T, P)
    train_loss = np.sum((decay * yk) ** 2, axis=1) / P

    test_loss = None
    if beta is not None:
        u = X @ beta
        sq = np.einsum("ij,ij->i", X, X)
        GG = G * G
        bb = float(beta @ beta)
        c0, c1, c2 = low_degree(target)
        shift = c0 - c2  # the constant of c_2 He_2(u) + c_0 = c_2 u^2 + c_0 - c_2
        floor = irreducible_loss(target)
        test_loss = np.empty(T)
        for j in range(T):
            c = coefficients[j]
            trB = c2 * bb - eps**2 * float(c @ sq)
            frob = c2 * c2 * bb * bb - 2.0 * c2 * eps**2 * float(c @ (u * u)) + eps**4 * float(c @ (GG @ c))
            g2 = float(c @ (G @ c)) - 2.0 * c1 * float(c @ u) + c1 * c1 * bb
            test_loss[j] = ((trB / D) ** 2 + 2.0 * frob / D**2 + g2 / D + 2.0 * shift * trB / D + shift * shift
                            + floor)
    return KernelFlowResult(tau=tau, train_loss=train_loss, test_loss=test_loss, coefficients=coefficients,
                            residual=residual, X=X, eps=eps, dt=dt)

