"""Single-index targets g(u) = sum_k c_k He_k(u), u = beta.x ~ N(0, 1), shared by the simulator and the DMFT.

He_k are the probabilists' Hermite polynomials (He_0 = 1, He_1 = u, He_2 = u^2 - 1, He_3 = u^3 - 3u, ...),
orthogonal under the standard normal with E[He_j He_k] = k! delta_jk.  A target is the tuple of its
coefficients (c_0, ..., c_K), K <= :data:`MAX_DEGREE`; :data:`DEFAULT_TARGET` = (1/2, 0, 1/2) is (beta.x)^2/2.

The student f(x) = alpha [m + (eps/2)(m^2 + x^T A A^T x - |x|^2)] is a quadratic polynomial of x, so the
components of degree >= 3 are orthogonal to every function it can represent: they add
:func:`irreducible_loss` = sum_{k>=3} k! c_k^2 to the population test loss at all times, and on the training
set they act as structured label noise.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .solvers.validation import ParameterError

__all__ = ["DEFAULT_TARGET", "MAX_DEGREE", "COEFFICIENT_MAX", "check_target", "parse_target", "format_target",
           "monomial_coefficients", "evaluate", "irreducible_loss", "is_even", "norm2", "low_degree", "tail_moment"]

#: (c_0, c_1, c_2): g(u) = 1/2 + (u^2 - 1)/2 = u^2/2
DEFAULT_TARGET = (0.5, 0.0, 0.5)
#: highest Hermite degree K of a target
MAX_DEGREE = 6
#: largest |c_k| accepted
COEFFICIENT_MAX = 100.0


def parse_target(text: str) -> tuple:
    """``"c0,c1,c2,..."`` (the command line's ``--target``) as a tuple of floats; refused with the allowed form."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        raise ParameterError(f"invalid target={text!r}: allowed is a comma-separated list c0,c1,...,cK of at most "
                             f"{MAX_DEGREE + 1} numbers (Hermite coefficients, |c_k| <= {COEFFICIENT_MAX:g})") from None
    return check_target("target", values)


def check_target(name: str, value: Any) -> tuple:
    """A target (c_0, ..., c_K): 1 to MAX_DEGREE + 1 finite numbers with |c_k| <= COEFFICIENT_MAX.  A string is
    parsed as ``"c0,c1,..."``.  Returned as a tuple of floats without trailing zeros (at least (c_0,)), so that
    equal functions have equal tuples."""
    if isinstance(value, str):
        return parse_target(value)
    allowed = (f"a sequence c0,c1,...,cK of 1 to {MAX_DEGREE + 1} Hermite coefficients (K <= {MAX_DEGREE}), each "
               f"finite with |c_k| <= {COEFFICIENT_MAX:g}")
    try:
        values = [float(v) for v in np.asarray(value, dtype=float).reshape(-1)]
        shape_ok = np.ndim(value) == 1
    except (TypeError, ValueError):
        raise ParameterError(f"invalid {name}={value!r}: allowed is {allowed}") from None
    ok = shape_ok and 1 <= len(values) and all(math.isfinite(v) and abs(v) <= COEFFICIENT_MAX for v in values)
    while ok and len(values) > 1 and values[-1] == 0.0:
        values.pop()
    if not ok or len(values) > MAX_DEGREE + 1:
        raise ParameterError(f"invalid {name}={value!r}: allowed is {allowed}")
    return tuple(values)


def format_target(target) -> str:
    """The command-line form ``c0,c1,...`` of a target."""
    return ",".join(f"{c:g}" for c in target)


def monomial_coefficients(target) -> np.ndarray:
    """(a_0, ..., a_K) with g(u) = sum_j a_j u^j (exact for these integer-coefficient polynomials)."""
    return np.polynomial.hermite_e.herme2poly(np.asarray(target, dtype=float))


def evaluate(target, u) -> np.ndarray:
    """g(u) = sum_j a_j u^j, summing only the nonzero monomials, each as a_j * u**j (so the default target is
    0.5 * u**2 exactly, the same floating-point number as the quadratic teacher)."""
    u = np.asarray(u, dtype=float)
    out = None
    for j, a in enumerate(monomial_coefficients(target)):
        if a == 0.0:
            continue
        term = a * (u**j if j > 0 else np.ones_like(u))
        out = term if out is None else out + term
    return np.zeros_like(u) if out is None else out


def norm2(target) -> float:
    """E[g(u)^2] = sum_k k! c_k^2."""
    return float(sum(math.factorial(k) * c * c for k, c in enumerate(target)))


def irreducible_loss(target) -> float:
    """sum_{k>=3} k! c_k^2: the part of E[g^2] that no quadratic predictor reaches (the test-loss floor)."""
    return float(sum(math.factorial(k) * c * c for k, c in enumerate(target) if k >= 3))


def low_degree(target) -> tuple:
    """(c_0, c_1, c_2) of the target (zeros where absent): the part a quadratic predictor can learn."""
    c = tuple(target) + (0.0, 0.0, 0.0)
    return c[:3]


def is_even(target) -> bool:
    """True when every odd coefficient is zero: g(-u) = g(u), the readout mean has no component along beta."""
    return all(c == 0.0 for k, c in enumerate(target) if k % 2 == 1)


def tail_moment(target, u_max: float) -> float:
    """E[g(u)^2; |u| > u_max] for u ~ N(0, 1): the part of the train loss at tau = 0 that a teacher-field
    quadrature on |u| <= u_max leaves out (it grows like u_max^(2K-1) e^(-u_max^2/2) for degree K)."""
    from scipy.integrate import quad

    def integrand(u):
        return float(evaluate(target, np.array([u, -u])) @ evaluate(target, np.array([u, -u]))) * math.exp(
            -0.5 * u * u) / math.sqrt(2.0 * math.pi)

    return float(quad(integrand, u_max, np.inf, epsabs=1e-14)[0])
