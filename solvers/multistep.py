"""Implicit linear multistep schemes on a non-uniform time grid, and the exact Gaussian propagation
of a linear single-site process advanced by them (NumPy).

A gradient-flow process d theta/dt = F(t) on the grid t_0 < t_1 < ... is advanced by

    theta_i = a1_i theta_{i-1} + a2_i theta_{i-2} + w_i F_i + v_i F_{i-1},

with, for the step h_i = t_i - t_{i-1} and omega_i = h_i / h_{i-1},

* ``"be"``   backward Euler:  a1 = 1, w = h_i (first order);
* ``"cn"``   trapezoid:       a1 = 1, w = v = h_i / 2 (second order, A-stable);
* ``"bdf2"`` variable-step BDF2: a1 = (1 + omega)^2 / (1 + 2 omega), a2 = -omega^2 / (1 + 2 omega),
  w = h_i (1 + omega) / (1 + 2 omega) (second order, L-stable for omega < 1 + sqrt 2); its first step is
  the trapezoid's.

The weight-side process of a bilinear DMFT has F_i = xi_i + sum_{k <= i} Rhat(i, k) theta_k + f_i
(the diagonal k = i included: the scheme is implicit), theta_0 of variance c0 and Gaussian noise xi of
covariance N.  It is linear, hence Gaussian, and :class:`MultistepProcess` propagates it exactly:
the weighted response Q(i, j) = d theta_i / d f_j, Phi(i) = d theta_i / d theta_0 and the covariance
C(i, i') = c0 Phi(i) Phi(i') + sum_{j, j'} Q(i, j) N(j, j') Q(i', j').  Q replaces h R(t_i, t_j) of the
explicit Euler scheme in every memory sum; it is a second-order quadrature of the response for
"cn" and "bdf2", and for a fast mode (w_i Rhat(i, i) -> -inf) Q(i, i) = w_i / (1 - w_i Rhat(i, i)) tends
to -1 / Rhat(i, i), the exact integral of its response, so the steps may be much longer than the
fastest time scale.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .validation import ParameterError

__all__ = ["SCHEMES", "MultistepCoefficients", "MultistepProcess", "coefficients", "set_step", "check_scheme", "pad"]

SCHEMES = ("be", "cn", "bdf2")


@dataclasses.dataclass
class MultistepCoefficients:
    """Per-step coefficients (a1, a2, w, v) of a scheme on a grid (entry i: the step ending at t_i; 0 unused)."""

    a1: np.ndarray
    a2: np.ndarray
    w: np.ndarray
    v: np.ndarray


def coefficients(t, scheme: str) -> MultistepCoefficients:
    """The coefficients of ``scheme`` (one of :data:`SCHEMES`) on the grid points ``t``."""
    check_scheme(scheme)
    t = np.asarray(t, dtype=float)
    co = MultistepCoefficients(*(np.zeros(t.size) for _ in range(4)))
    for i in range(1, t.size):
        set_step(co, t, i, scheme)
    return co


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ParameterError(f"invalid scheme {scheme!r}: allowed are {', '.join(SCHEMES)}")
    return scheme


def set_step(co: MultistepCoefficients, t, i: int, scheme: str) -> None:
    """Fill entry i >= 1 of ``co`` from the points t[i-2], t[i-1], t[i] (the step ending at t[i])."""
    h = t[i] - t[i - 1]
    co.a2[i] = co.v[i] = 0.0
    if scheme == "be":
        co.a1[i], co.w[i] = 1.0, h
    elif scheme == "cn" or i == 1:
        co.a1[i], co.w[i], co.v[i] = 1.0, 0.5 * h, 0.5 * h
    else:
        om = h / (t[i - 1] - t[i - 2])
        if not om < 1.0 + np.sqrt(2.0):
            raise ParameterError(f"invalid grid for bdf2: step ratio {om:.3g} at t = {t[i]:.4g}; allowed is a "
                                 "ratio of consecutive steps below 1 + sqrt(2) (zero stability)")
        co.a1[i] = (1.0 + om) ** 2 / (1.0 + 2.0 * om)
        co.a2[i] = -om * om / (1.0 + 2.0 * om)
        co.w[i] = h * (1.0 + om) / (1.0 + 2.0 * om)


class MultistepProcess:
    """Q, Phi and C of one weight-side process, row by row (:meth:`row`).

    Row i needs Rhat and N up to row i (the diagonal included) and the rows < i of Q, Phi, C."""

    def __init__(self, T1: int, c0: float):
        self.c0 = c0
        self.Q = np.zeros((T1, T1))  # Q(i, j) = d theta_i / d f_j
        self.P = np.zeros((T1, T1))  # P(i, j) = sum_k Rhat(i, k) Q(k, j)
        self.Phi = np.zeros(T1)
        self.PPhi = np.zeros(T1)  # sum_k Rhat(i, k) Phi(k)
        self.C = np.zeros((T1, T1))

    def grow(self, T1: int) -> None:
        """Room for T1 rows (the rows so far are kept)."""
        for name in ("Q", "P", "C", "Phi", "PPhi"):
            setattr(self, name, pad(getattr(self, name), T1))

    def row(self, i: int, co: MultistepCoefficients, Rhat: np.ndarray, N: np.ndarray) -> None:
        """Fill row i of Q, P, Phi and C (and C's column i) from Rhat[:i+1, :i+1] and N[:i+1, :i+1]."""
        Q, P, Phi = self.Q, self.P, self.Phi
        n = i + 1
        if i == 0:
            Phi[0] = 1.0
            self.PPhi[0] = Rhat[0, 0]
            Q[0, :] = 0.0
            P[0, :] = 0.0
            self.C[0, 0] = self.c0
            return
        a1, a2, w, v = co.a1[i], co.a2[i], co.w[i], co.v[i]
        d = 1.0 - w * Rhat[i, i]
        acc = a1 * Phi[i - 1] + (a2 * Phi[i - 2] if i >= 2 else 0.0)
        Phi[i] = (acc + w * (Rhat[i, :i] @ Phi[:i]) + v * self.PPhi[i - 1]) / d
        self.PPhi[i] = Rhat[i, :n] @ Phi[:n]
        rhs = a1 * Q[i - 1, :n] + (a2 * Q[i - 2, :n] if i >= 2 else 0.0)
        rhs = rhs + w * (Rhat[i, :i] @ Q[:i, :n]) + v * P[i - 1, :n]
        rhs[i] += w
        rhs[i - 1] += v
        Q[i, :n] = rhs / d
        P[i, :n] = Rhat[i, :n] @ Q[:n, :n]
        row = self.c0 * Phi[i] * Phi[:n] + Q[:n, :n] @ (Q[i, :n] @ N[:n, :n])
        self.C[i, :n] = row
        self.C[:n, i] = row


def pad(a: np.ndarray, size: int, axes: tuple | None = None) -> np.ndarray:
    """``a`` with its ``axes`` (default: every axis of length equal to the first one's, i.e. the time
    axes) zero-padded to ``size``."""
    axes = tuple(range(a.ndim)) if axes is None else axes
    out = np.zeros(tuple(size if k in axes else n for k, n in enumerate(a.shape)), dtype=a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out
