"""Time grids for two-time DMFT kernels, their trapezoid weights, and the memory budget.

A :class:`TimeGrid` holds the T = steps + 1 points ``t[0] = 0 < t[1] < ... < t[steps] = t_max``
(in the model's time unit, tau).  Two-time kernels K(t_i, t_j) live on the T x T grid.

Quadrature: :meth:`TimeGrid.weights` returns the lower-triangular matrix ``Wt`` of the composite
trapezoid rule on the (possibly non-uniform) grid,

    int_0^{t_i} f(s) ds  ~=  sum_j Wt[i, j] f(t_j),
    Wt[i, 0] = h_0 / 2,  Wt[i, j] = (h_{j-1} + h_j) / 2  (0 < j < i),  Wt[i, i] = h_{i-1} / 2,

with ``h_j = t[j+1] - t[j]`` and ``Wt[0, :] = 0``.  Integrals over a sub-interval follow from
additivity: ``int_{t_j}^{t_i} f ~= sum_{k=j..i} (Wt[i, k] - Wt[j, k]) f(t_k)`` (the Numba kernels of
:mod:`dmft.solvers.volterra` use exactly this), which is again the trapezoid rule on [t_j, t_i].

Memory: every T x T float64 kernel costs ``8 T^2`` bytes (T = 1001: 8 MB, T = 2001: 32 MB,
T = 10001: 800 MB).  :func:`require_memory` refuses, before any compute, a request that does not fit
in the memory available on this machine.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from scipy.optimize import brentq

from .validation import ParameterError, check_int, check_positive

__all__ = ["TimeGrid", "available_memory", "require_memory", "kernel_bytes"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class TimeGrid:
    """Points ``t`` (T = steps + 1, t[0] = 0, t[-1] = t_max) of a uniform or geometric grid.

    Build with :meth:`uniform` or :meth:`geometric`; ``t`` is read-only.  ``dt`` is the array of
    the ``steps`` interval lengths ``t[j+1] - t[j]`` (all equal on a uniform grid).
    """

    t: np.ndarray
    kind: str = "custom"
    t_first: float | None = None

    def __post_init__(self):
        t = np.asarray(self.t, dtype=np.float64)
        if t.ndim != 1 or t.size < 2:
            raise ParameterError(f"invalid grid with {t.size} point(s): allowed is a 1-D grid of at least 2 points (steps >= 1)")
        if t[0] != 0.0 or not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
            raise ParameterError("invalid grid: allowed is t[0] = 0 and strictly increasing finite points")
        object.__setattr__(self, "t", _readonly(t))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def uniform(cls, t_max: float, steps: int) -> "TimeGrid":
        """``steps`` equal intervals on [0, t_max]."""
        t_max = check_positive("t_max", t_max)
        steps = check_int("steps", steps, low=1)
        t = np.linspace(0.0, t_max, steps + 1)
        return cls(t, "uniform", None)

    @classmethod
    def graded(cls, t_max: float, first: float, growth: float, largest: float) -> "TimeGrid":
        """Steps starting at ``first`` and growing by the factor ``growth`` per step up to ``largest``
        (then constant), ending at ``t_max`` (a last step shorter than 0.3 of its predecessor is merged
        into it).  ``growth`` in [1, 2], ``first <= largest <= t_max``."""
        t_max = check_positive("t_max", t_max)
        first = check_positive("first", first, high=t_max)
        largest = check_positive("largest", largest, high=t_max)
        if not 1.0 <= growth <= 2.0 or largest < first:
            raise ParameterError(f"invalid graded grid (growth {growth!r}, first {first!r}, largest {largest!r}): "
                                 "allowed is 1 <= growth <= 2 and first <= largest")
        t, h = [0.0], first
        while t[-1] < t_max:
            if t_max - (t[-1] + h) < 0.3 * h:
                t.append(t_max)
            else:
                t.append(t[-1] + h)
                h = min(largest, h * growth)
        return cls(np.array(t), "graded", first)

    @classmethod
    def geometric(cls, t_max: float, steps: int, t_first: float | None = None) -> "TimeGrid":
        """Intervals growing geometrically, ``h_j = t_first * r**j``, so that sum h_j = t_max.

        Dense early (where DMFT kernels vary fastest), sparse late.  ``t_first`` is the first
        interval, in (0, t_max/steps]; default ``t_max / (2 steps)``, half the uniform step (the
        last interval is then about 1.75 uniform steps, 3.5 first intervals).  ``t_first = t_max/steps``
        gives the uniform grid.
        """
        t_max = check_positive("t_max", t_max)
        steps = check_int("steps", steps, low=1)
        h_uniform = t_max / steps
        if t_first is None:
            t_first = h_uniform / 2.0 if steps > 1 else h_uniform
        t_first = check_positive("t_first", t_first)
        if t_first > h_uniform * (1 + 1e-12):
            raise ParameterError(
                f"invalid t_first={t_first!r}: allowed range is (0, t_max/steps] = (0, {h_uniform!r}]"
            )
        if steps == 1 or t_first >= h_uniform * (1 - 1e-12):
            r = 1.0
        else:
            # sum_{j<steps} t_first r^j = t_max  <=>  g(r) = 0, solved in x = log r
            log_target = math.log(t_max / t_first)

            def g(x):  # log((r^steps - 1)/(r - 1)) - log(t_max/t_first), overflow-free
                return steps * x + math.log(-math.expm1(-steps * x)) - x - math.log(-math.expm1(-x)) - log_target

            x_hi = 1.0
            while g(x_hi) < 0:
                x_hi *= 2.0
            x = brentq(g, 1e-14, x_hi, xtol=1e-15, rtol=1e-15, maxiter=500)
            r = math.exp(x)
        h = t_first * r ** np.arange(steps)
        t = np.concatenate([[0.0], np.cumsum(h)])
        t[-1] = t_max
        return cls(t, "geometric", float(t_first))

    # ------------------------------------------------------------------ properties
    @property
    def T(self) -> int:
        """Number of points (steps + 1)."""
        return int(self.t.size)

    @property
    def steps(self) -> int:
        return int(self.t.size - 1)

    @property
    def t_max(self) -> float:
        return float(self.t[-1])

    @property
    def dt(self) -> np.ndarray:
        """Interval lengths ``t[j+1] - t[j]`` (length ``steps``)."""
        return _readonly(np.diff(self.t))

    def weights(self) -> np.ndarray:
        """Lower-triangular trapezoid matrix: ``int_0^{t_i} f ~= sum_j Wt[i, j] f(t_j)`` (read-only)."""
        cached = self.__dict__.get("_weights")
        if cached is not None:
            return cached
        h = np.diff(self.t)
        T = self.T
        W = np.zeros((T, T))
        for i in range(1, T):
            W[i, 0] = 0.5 * h[0]
            W[i, 1:i] = 0.5 * (h[: i - 1] + h[1:i])
            W[i, i] += 0.5 * h[i - 1]
        W = _readonly(W)
        object.__setattr__(self, "_weights", W)
        return W

    def parameters(self) -> dict:
        """Flat dict that defines the grid (for result files and resume checks)."""
        return {
            "grid": self.kind,
            "t_max": self.t_max,
            "steps": self.steps,
            "t_first": self.t_first if self.kind in ("geometric", "graded") else None,
        }

    def __eq__(self, other):
        return isinstance(other, TimeGrid) and self.kind == other.kind and np.array_equal(self.t, other.t)

    __hash__ = None

    def __repr__(self):
        return f"TimeGrid({self.kind}, T={self.T}, t_max={self.t_max:g})"


# ---------------------------------------------------------------------- memory budget
def kernel_bytes(T: int) -> int:
    """Bytes of one T x T float64 kernel: 8 T^2."""
    return 8 * int(T) * int(T)


def available_memory() -> int:
    """Bytes of memory available to this process now (MemAvailable on Linux, else physical RAM)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 62


def require_memory(T: int, n_kernels: float, what: str = "the solver") -> int:
    """Refuse (ParameterError) if ``n_kernels`` T x T float64 arrays do not fit in available memory.

    Returns the estimated number of bytes.  The message names the limit: the largest T that fits.
    """
    need = int(n_kernels * kernel_bytes(T))
    avail = available_memory()
    if need > avail:
        t_fit = int(math.isqrt(int(avail / (8.0 * n_kernels))))
        raise ParameterError(
            f"invalid grid with T={T} points: {what} holds about {n_kernels:g} T x T float64 kernels "
            f"(8 T^2 bytes each) = {need / 2**30:.1f} GiB, but only {avail / 2**30:.1f} GiB of memory is "
            f"available; allowed is T <= {t_fit} on this machine"
        )
    return need
