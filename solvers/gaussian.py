"""Exact propagation of linear Gaussian single-site processes in discrete time (Numba).

Every "D-side" (weight-coordinate) process of a bilinear DMFT has the form, in discrete time
t = 0, 1, ..., T with step h,

    theta(t+1) = theta(t) + h * xi(t) + h * sum_{t'' <= t} Rhat(t, t'') theta(t''),

with theta(0) of variance c0, and Gaussian noise xi of covariance N(s, s') independent of
theta(0).  It is linear with deterministic kernels, hence Gaussian, and solved exactly by

    Phi(t+1)  = Phi(t) + h sum_{t''<=t} Rhat(t,t'') Phi(t''),             Phi(0) = 1
    R(t+1, s) = R(t, s) + h sum_{s<t''<=t} Rhat(t,t'') R(t'', s),           R(s+1, s) = 1
    C(t, t')  = c0 Phi(t) Phi(t') + h^2 sum_{s<t, s'<t'} R(t,s) N(s,s') R(t',s').

R(t, s) is the response of theta(t) to a unit kick added to theta(s+1) at step s (lower
triangular, R(t, s) = 0 for t <= s).  Row t of (Phi, R, C) needs Rhat and N only up to
row t-1: the recursion is causal, which is what makes a one-pass (sweep) solution possible.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["propagate_row", "propagate_all"]


@njit(cache=True)
def propagate_row(t, Rhat, N, h, c0, Phi, R, C):
    """Fill Phi[t], R[t, :t] and C[t, :t+1] (and C[:t, t] by symmetry) in place.

    Needs Rhat[:t, :t] and N[:t, :t] (rows t-1 and earlier), and Phi, R, C rows < t.
    Cost O(t^2).
    """
    if t == 0:
        Phi[0] = 1.0
        C[0, 0] = c0
        return
    tp = t - 1
    acc = 0.0
    for k in range(t):
        acc += Rhat[tp, k] * Phi[k]
    Phi[t] = Phi[tp] + h * acc
    R[t, tp] = 1.0
    for s in range(tp):
        acc = 0.0
        for k in range(s + 1, t):
            acc += Rhat[tp, k] * R[k, s]
        R[t, s] = R[tp, s] + h * acc
    # G[s'] = sum_s R[t, s] N[s, s']  (s, s' < t)
    G = np.zeros(t)
    for s in range(t):
        r = R[t, s]
        if r != 0.0:
            for sp in range(t):
                G[sp] += r * N[s, sp]
    h2 = h * h
    for tq in range(t + 1):
        acc = 0.0
        for sp in range(tq):
            acc += G[sp] * R[tq, sp]
        val = c0 * Phi[t] * Phi[tq] + h2 * acc
        C[t, tq] = val
        C[tq, t] = val


@njit(cache=True)
def propagate_all(Rhat, N, h, c0, Phi, R, C):
    """All rows 0..T of (Phi, R, C) from complete Rhat and N (the fixed-point map's D-side)."""
    for t in range(Phi.shape[0]):
        propagate_row(t, Rhat, N, h, c0, Phi, R, C)
