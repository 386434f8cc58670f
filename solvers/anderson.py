"""Anderson / DIIS mixing for fixed-point iterations, with a state that round-trips through HDF5.

Type II Anderson on flattened kernels x with residual g = F(x) - x and memory m:
``x_{k+1} = x_k + b g_k - (dX + b dG) gamma``, gamma = argmin ||g_k - dG gamma||_2, b = 1 - damping.
Columns are dropped (oldest first) while the normalised Gram matrix is ill-conditioned; with none
left the step is the plain damped one.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from numba import njit

__all__ = ["Anderson"]


@njit(cache=True)
def _dot(a, b):
    """Sequential dot product: the same bits whatever the number of threads (no BLAS threads)."""
    acc = 0.0
    for i in range(a.size):
        acc += a[i] * b[i]
    return acc


@njit(cache=True)
def _axpy2(y, a, x, b, z):
    """y += a x + b z in place, in one pass."""
    for i in range(y.size):
        y[i] += a * x[i] + b * z[i]


class Anderson:
    """Anderson / DIIS mixing on flat vectors, with a restorable state.

    Memory: the last ``memory`` differences of iterates, dX_i = x_{i+1} - x_i, and of residuals,
    dG_i = g_{i+1} - g_i with g = F(x) - x (so the map differences are dF = dG + dX), and the last pair
    (x_prev, g_prev).  The Gram matrix dG^T dG is kept up to date incrementally (one new row per
    step) and rebuilt in the same order when a state is restored, so restored runs are bitwise equal.
    """

    def __init__(self, memory: int, cond_max: float = 1e10):
        self.memory = int(memory)
        self.cond_max = float(cond_max)
        self.dX: list[np.ndarray] = []
        self.dG: list[np.ndarray] = []
        self.x_prev: np.ndarray | None = None
        self.g_prev: np.ndarray | None = None
        self.n_fallback = 0  # steps with an ill-conditioned (dropped) memory
        self._gram = np.zeros((0, 0))

    def _append(self, dx: np.ndarray, dg: np.ndarray) -> None:
        if len(self.dX) == self.memory:
            self._drop(1)
        row = np.array([_dot(old, dg) for old in self.dG] + [_dot(dg, dg)])
        n = len(self.dG)
        gram = np.empty((n + 1, n + 1))
        gram[:n, :n] = self._gram
        gram[n, :] = row
        gram[:, n] = row
        self._gram = gram
        self.dX.append(dx)
        self.dG.append(dg)

    def _drop(self, count: int) -> None:
        del self.dX[:count], self.dG[:count]
        self._gram = self._gram[count:, count:].copy()

    def step(self, x: np.ndarray, fx: np.ndarray, beta: float) -> np.ndarray:
        """Next iterate from x and F(x); ``beta = 1 - damping``.  ``x`` is kept (not copied)."""
        g = fx - x
        if self.x_prev is not None:
            self._append(x - self.x_prev, g - self.g_prev)
        self.x_prev, self.g_prev = x, g
        gamma = self._coefficients(g)
        x_new = x + beta * g
        if gamma is not None:
            for c, dx, dg in zip(gamma, self.dX, self.dG):
                _axpy2(x_new, -c, dx, -c * beta, dg)
        return x_new

    def _coefficients(self, g: np.ndarray):
        """gamma minimizing ||g - dG gamma||, dropping the oldest columns while ill-conditioned."""
        n = len(self.dX)
        if n == 0:
            return None
        rhs = np.array([_dot(dg, g) for dg in self.dG])
        while n > 0:
            G = self._gram[-n:, -n:]
            d = np.sqrt(np.diag(G))
            if np.all(d > 0) and np.all(np.isfinite(G)):
                Gn = G / np.outer(d, d)
                if np.linalg.cond(Gn) <= self.cond_max:
                    gamma = np.linalg.solve(Gn, rhs[-n:] / d) / d
                    if np.all(np.isfinite(gamma)):
                        break
            n -= 1
        if n < len(self.dX):  # forget the columns that made the system ill-conditioned
            self._drop(len(self.dX) - n)
        if n == 0:
            self.n_fallback += 1
            return None
        return gamma

    def snapshot(self) -> tuple:
        """Cheap copy of the state (the stored vectors are never modified in place)."""
        return list(self.dX), list(self.dG), self.x_prev, self.g_prev, self.n_fallback, self._gram

    def restore(self, snap: tuple) -> None:
        dX, dG, self.x_prev, self.g_prev, self.n_fallback, self._gram = snap
        self.dX, self.dG = list(dX), list(dG)

    # state round trip (checkpoints)
    def state_dict(self) -> dict:
        out: dict[str, Any] = {"memory": self.memory, "n_hist": len(self.dX), "n_fallback": self.n_fallback}
        if self.x_prev is not None:
            out["x_prev"] = self.x_prev
            out["g_prev"] = self.g_prev
        out["dX"] = {str(i): a for i, a in enumerate(self.dX)}
        out["dG"] = {str(i): a for i, a in enumerate(self.dG)}
        return out

    @classmethod
    def from_state_dict(cls, d: Mapping, cond_max: float = 1e10) -> "Anderson":
        a = cls(int(d["memory"]), cond_max)
        for i in range(int(d["n_hist"])):
            a._append(np.asarray(d["dX"][str(i)], dtype=np.float64), np.asarray(d["dG"][str(i)], dtype=np.float64))
        if "x_prev" in d:
            a.x_prev = np.asarray(d["x_prev"], dtype=np.float64)
            a.g_prev = np.asarray(d["g_prev"], dtype=np.float64)
        a.n_fallback = int(d.get("n_fallback", 0))
        return a
