"""Numba kernels for causal (Volterra) integrals, two-time response functions, exact Gaussian
covariance propagation and Monte-Carlo sampling of Gaussian paths on a time grid.

Every integral uses the lower-triangular trapezoid matrix ``W = TimeGrid.weights()``, so that
``int_0^{t_i} f ~= sum_j W[i, j] f(t_j)`` and, by additivity,
``int_{t_j}^{t_i} f ~= sum_{k=j..i} (W[i, k] - W[j, k]) f(t_k)`` (trapezoid on [t_j, t_i]).
Two-time kernels are C-contiguous float64 (T, T) arrays indexed ``[i, j] = K(t_i, t_j)``;
causal ones (responses, memory kernels) are lower-triangular and only their lower triangle is read.
All schemes are the trapezoid rule, implicit in the diagonal: second order in the step for
smooth kernels, on uniform and non-uniform grids.

Functions (see each docstring):

* :func:`volterra_integral`     y(t_i) = int_0^{t_i} K(t_i, s) x(s) ds;
* :func:`volterra_solve`        x(t) = g(t) + int_0^t K(t, s) x(s) ds (2nd kind, one or many g);
* :func:`resolvent`             X(t, t') = G(t, t') + int_{t'}^t K(t, s) X(s, t') ds (two-time);
* :func:`response_function`     d_t R(t,t') = -a(t) R(t,t') + int_{t'}^t S(t,s) R(s,t') ds, R(t',t') = 1;
* :func:`propagate_covariance`  C = c0 r0 r0^T + (R o W) N (R o W)^T, the covariance of
                                x(t) = r0(t) x0 + int_0^t R(t,s) eta(s) ds with Cov(eta) = N;
* :func:`lower_matmul`          L @ B for lower-triangular L (BLAS trmm);
* :func:`causal_cholesky`       lower L with L L^T = C, row by row (row i uses C[:i+1, :i+1] only),
                                relative pivot cut-off for semi-definite C;
* :func:`cholesky_extend`       the same, filling rows start..T-1 (for forward sweeps);
* :func:`gaussian_paths`        n paths with covariance C from pre-drawn normals (seeded).

The parallel Numba kernels split their work over independent columns / samples, so their results
do not depend on the number of threads (bitwise); BLAS products depend only on BLAS's own setup.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy.linalg import blas as _blas

__all__ = [
    "volterra_integral",
    "volterra_solve",
    "resolvent",
    "response_function",
    "propagate_covariance",
    "lower_matmul",
    "causal_cholesky",
    "cholesky_extend",
    "sample_paths",
    "gaussian_paths",
]


def _as2d(a, name):
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (T, T) array, got shape {a.shape}")
    return a


def _check_grid(W, *arrays):
    T = W.shape[0]
    for name, a in arrays:
        if a.shape[-1] != T:
            raise ValueError(f"{name} has last dimension {a.shape[-1]}, the grid has T={T} points")


# ------------------------------------------------------------------------ integrals
@njit(cache=True, parallel=True)
def _volterra_integral(K, x, W):
    n, T = x.shape
    y = np.zeros((n, T))
    for s in prange(n):
        for i in range(1, T):
            acc = 0.0
            for j in range(i + 1):
                acc += W[i, j] * K[i, j] * x[s, j]
            y[s, i] = acc
    return y


def volterra_integral(K, x, W):
    """y(t_i) = int_0^{t_i} K(t_i, s) x(s) ds (trapezoid).  ``x``: shape (T,) or (n, T)."""
    K, W = _as2d(K, "K"), _as2d(W, "W")
    x = np.ascontiguousarray(x, dtype=np.float64)
    _check_grid(W, ("K", K), ("x", x))
    y = _volterra_integral(K, np.atleast_2d(x), W)
    return y[0] if x.ndim == 1 else y


@njit(cache=True, parallel=True)
def _volterra_solve(g, K, W):
    n, T = g.shape
    x = np.empty((n, T))
    for s in prange(n):
        x[s, 0] = g[s, 0]
        for i in range(1, T):
            acc = g[s, i]
            for j in range(i):
                acc += W[i, j] * K[i, j] * x[s, j]
            x[s, i] = acc / (1.0 - W[i, i] * K[i, i])
    return x


def volterra_solve(g, K, W):
    """Solve x(t) = g(t) + int_0^t K(t, s) x(s) ds (trapezoid, implicit in the diagonal).

    ``g``: shape (T,) or (n, T) (n right-hand sides with the same kernel, solved in parallel).
    """
    K, W = _as2d(K, "K"), _as2d(W, "W")
    g = np.ascontiguousarray(g, dtype=np.float64)
    _check_grid(W, ("K", K), ("g", g))
    x = _volterra_solve(np.atleast_2d(g), K, W)
    return x[0] if g.ndim == 1 else x


# ------------------------------------------------------------------------ two-time kernels
@njit(cache=True)
def _resolvent_block(G, K, KW, W, X, j0, j1):
    """Columns j0 <= j < j1 (j1 - j0 <= 8) of
    X(i, j) = G(i, j) + sum_{k=j..i} (W[i,k] - W[j,k]) K(i,k) X(k,j).

    The block's columns are built together in a buffer (zero above their diagonals), so the inner
    loop over k reads each element of KW = K o W once for 8 columns (8 explicit accumulators let
    the compiler keep them in registers).
    """
    T = G.shape[0]
    buf = np.zeros((T, 8))
    for i in range(j0, T):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        for k in range(j0, i):
            a = KW[i, k]
            a0 += a * buf[k, 0]
            a1 += a * buf[k, 1]
            a2 += a * buf[k, 2]
            a3 += a * buf[k, 3]
            a4 += a * buf[k, 4]
            a5 += a * buf[k, 5]
            a6 += a * buf[k, 6]
            a7 += a * buf[k, 7]
        acc = (a0, a1, a2, a3, a4, a5, a6, a7)
        for c in range(j1 - j0):
            j = j0 + c
            if i == j:
                buf[i, c] = G[i, j]
            elif i > j:
                # sub-interval weights: W[i,j] - W[j,j] at k = j, W[i,k] inside, W[i,i] implicit
                s = G[i, j] + acc[c] - W[j, j] * K[i, j] * buf[j, c]
                buf[i, c] = s / (1.0 - KW[i, i])
    for c in range(j1 - j0):
        j = j0 + c
        for i in range(j, T):
            X[i, j] = buf[i, c]


@njit(cache=True, parallel=True)
def _resolvent(G, K, W):
    T = G.shape[0]
    KW = np.empty((T, T))
    for i in prange(T):
        for k in range(T):
            KW[i, k] = K[i, k] * W[i, k] if k <= i else 0.0
    X = np.zeros((T, T))
    nb = (T + 7) // 8  # blocks of 8 columns (see _resolvent_block)
    # block q costs ~ (T - 8q)^2: pair block p with block nb-1-p so that the threads share evenly
    for p in prange((nb + 1) // 2):
        q = nb - 1 - p
        _resolvent_block(G, K, KW, W, X, 8 * p, min(T, 8 * (p + 1)))
        if q != p:
            _resolvent_block(G, K, KW, W, X, 8 * q, min(T, 8 * (q + 1)))
    return X


def resolvent(G, K, W):
    """Solve the two-time Volterra equation of the 2nd kind, for t >= t',

        X(t, t') = G(t, t') + int_{t'}^{t} K(t, s) X(s, t') ds,

    by the trapezoid rule on [t', t] (implicit in the diagonal).  Returns lower-triangular X with
    X(t, t) = G(t, t).  Example: the resolvent Gamma of a memory kernel K, Gamma = K - K * Gamma,
    is ``resolvent(K, -K, W)``.  Cost ~ T^3/6 multiply-adds, parallel over columns t'.
    """
    G, K, W = _as2d(G, "G"), _as2d(K, "K"), _as2d(W, "W")
    _check_grid(W, ("G", G), ("K", K))
    return _resolvent(G, K, W)


@njit(cache=True, parallel=True)
def _response_kernel(S, a, W):
    """K(t_i, t_j) = -a(t_j) + int_{t_j}^{t_i} S(u, t_j) du (cumulative trapezoid in u)."""
    T = S.shape[0]
    Kt = np.zeros((T, T))
    for j in prange(T):
        q = 0.0
        Kt[j, j] = -a[j]
        for i in range(j + 1, T):
            h = 2.0 * W[i, i]  # W[i, i] = h_{i-1} / 2
            q += 0.5 * h * (S[i - 1, j] + S[i, j])
            Kt[i, j] = -a[j] + q
    return Kt


def response_function(S, W, a=0.0):
    """Two-time response R(t, t') (lower-triangular) of

        d_t R(t, t') = -a(t) R(t, t') + int_{t'}^{t} S(t, s) R(s, t') ds,   R(t', t') = 1,

    i.e. the Green's function of d_t x = -a x + int_0^t S(t, s) x(s) ds + f(t):
    x(t) = R(t, 0) x(0) + int_0^t R(t, s) f(s) ds.  ``a`` is a scalar or an array of length T.

    Integrating in t and exchanging the order of integration gives the 2nd-kind equation
    R(t, t') = 1 + int_{t'}^t Kt(t, s) R(s, t') ds with Kt(t, s) = -a(s) + int_s^t S(u, s) du,
    solved by :func:`resolvent` (second order; requires trapezoid weights W).
    """
    S, W = _as2d(S, "S"), _as2d(W, "W")
    _check_grid(W, ("S", S))
    T = W.shape[0]
    a = np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), (T,)))
    Kt = _response_kernel(S, a, W)
    return _resolvent(np.tril(np.ones((T, T))), Kt, W)


def lower_matmul(L, B):
    """L @ B for a lower-triangular L (only its lower triangle is read), by BLAS trmm: half the
    flops of a general product.  L, B: C-contiguous float64."""
    L = np.ascontiguousarray(L, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    # a C-ordered array is the Fortran-ordered transpose: L B = (B^T L^T)^T, L^T upper-triangular
    return _blas.dtrmm(1.0, L.T, B.T, side=1, lower=0).T


def propagate_covariance(R, N, W, r0=None, c0=0.0):
    """Exact covariance of x(t) = r0(t) x0 + int_0^t R(t, s) eta(s) ds on the grid:

        C = c0 r0 r0^T + (R o W) N (R o W)^T,

    with x0 of variance ``c0`` independent of the Gaussian noise eta of covariance ``N`` (T, T);
    ``R o W`` is the elementwise product with the trapezoid weights (two-dimensional trapezoid rule).
    The matrix products run in BLAS (triangular products); N must be symmetric; the result is
    symmetrized exactly.
    """
    R, N, W = _as2d(R, "R"), _as2d(N, "N"), _as2d(W, "W")
    _check_grid(W, ("R", R), ("N", N))
    RW = np.multiply(R, W)  # W is lower-triangular: only the causal part of R enters
    C = lower_matmul(RW, np.ascontiguousarray(lower_matmul(RW, N).T))  # RW (RW N)^T = RW N^T RW^T
    if r0 is not None and c0:
        r0 = np.asarray(r0, dtype=np.float64)
        C += c0 * np.outer(r0, r0)
    return 0.5 * (C + C.T)


# ------------------------------------------------------------------------ sampling
@njit(cache=True)
def cholesky_extend(L, C, start, cutoff):
    """Fill rows ``start..T-1`` of the lower Cholesky factor L of C, rows < start being done.

    Row i uses only C[i, :i+1] and the rows before it (causal), so a forward sweep may call this
    as C grows.  A residual variance <= ``cutoff`` (an absolute variance; see
    :func:`causal_cholesky` for the relative rule) marks a direction already determined by the
    past: its diagonal and the column below are 0.  Returns the number of such rows.
    """
    T = C.shape[0]
    n_cut = 0
    for i in range(start, T):
        for j in range(i):
            if L[j, j] > 0.0:
                acc = C[i, j]
                for k in range(j):
                    acc -= L[i, k] * L[j, k]
                L[i, j] = acc / L[j, j]
            else:
                L[i, j] = 0.0
        d = C[i, i]
        for k in range(i):
            d -= L[i, k] * L[i, k]
        if d > cutoff:
            L[i, i] = np.sqrt(d)
        else:
            L[i, i] = 0.0
            n_cut += 1
        for k in range(i + 1, T):
            L[i, k] = 0.0
    return n_cut


def causal_cholesky(C, rel_cutoff=1e-10):
    """Lower-triangular L with L L^T = C for a symmetric positive semi-definite C.

    Pivots are cut RELATIVE to the largest variance: a residual variance <= rel_cutoff * max diag(C)
    is treated as 0 (the point is then a deterministic function of the past), which keeps nearly
    dependent rows from blowing up by round-off.  Returns (L, n_cut).
    """
    C = _as2d(C, "C")
    scale = float(np.max(np.diag(C))) if C.size else 0.0
    L = np.zeros_like(C)
    n_cut = cholesky_extend(L, C, 0, rel_cutoff * max(scale, 0.0))
    return L, int(n_cut)


@njit(cache=True, parallel=True)
def sample_paths(L, z):
    """x[s] = L z[s] for pre-drawn normals z (n, T); parallel over samples, thread-independent."""
    n, T = z.shape
    x = np.empty((n, T))
    for s in prange(n):
        for i in range(T):
            acc = 0.0
            for j in range(i + 1):
                acc += L[i, j] * z[s, j]
            x[s, i] = acc
    return x


def gaussian_paths(C, n_samples=None, seed=0, *, z=None, rel_cutoff=1e-10, antithetic=False):
    """Paths (n_samples, T) of the centred Gaussian process with covariance C on the grid.

    Normals are pre-drawn with ``np.random.default_rng(seed)`` (or passed as ``z``), so the result
    depends only on (C, seed, n_samples), not on the number of threads.  ``antithetic=True`` uses
    the pairs (z, -z) (n_samples must be even).
    """
    C = _as2d(C, "C")
    T = C.shape[0]
    if z is None:
        if n_samples is None or int(n_samples) < 1:
            raise ValueError("n_samples must be an integer >= 1")
        n_samples = int(n_samples)
        rng = np.random.default_rng(seed)
        if antithetic:
            if n_samples % 2:
                raise ValueError("antithetic sampling needs an even n_samples")
            half = rng.standard_normal((n_samples // 2, T))
            z = np.concatenate([half, -half])
        else:
            z = rng.standard_normal((n_samples, T))
    z = np.ascontiguousarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != T:
        raise ValueError(f"z must have shape (n, {T}), got {z.shape}")
    L, _ = causal_cholesky(C, rel_cutoff)
    return sample_paths(L, z)
