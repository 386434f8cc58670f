"""Row steps shared by the data side of the D -> inf DMFT: the neuron resolvent and the sandwich rows.

Compiled without fastmath: with reassociation, a kernel compiled in the running process and the same
kernel loaded from Numba's cache round differently, and the finite-size sampling (the bump field)
amplifies that to ~1e-5 relative in the kernels, so a resumed run would not reproduce a fresh one.
"""
from __future__ import annotations

import numpy as np
from numba import njit

@njit(cache=True)
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


@njit(cache=True)
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
@njit(cache=True)
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
