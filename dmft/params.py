"""Validated, frozen parameter objects shared by the simulator and the DMFT solvers.

Every boundary of the package (Python API and CLI) builds one of these objects first,
so that an invalid value is refused before any compute, with one message that names the
parameter and its allowed range.  On the command line a :class:`ParameterError` becomes a
usage error (exit status 2, no traceback).

Conventions (paper names):

* ``alpha``  output scale of the network, alpha > 0 (small = rich, large = lazy/NTK);
* ``ratio``  P/D, number of training points per input dimension, ratio > 0;
* ``eps``    quadratic part of the activation phi(h) = h + (eps/2) h^2, eps >= 0;
* ``noise``  standard deviation sigma of additive label noise, sigma >= 0;
* ``dim``    input dimension D (the DMFT uses it only for the teacher-spike seed 1/D);
* time       tau = eta * t / D, with t the number of full-batch gradient steps and
             learning rate lr = eta * N / alpha^2.  A step of ``dt`` in tau is eta = dt * D.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .solvers.settings import setting, validate
from .solvers.validation import (
    ParameterError,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    require,
)

__all__ = [
    "DIVERGENCE_BOUND",
    "diverged",
    "ParameterError",
    "require",
    "check_positive",
    "check_nonnegative",
    "check_int",
    "check_choice",
    "as_dict",
]

#: A residual |Delta| or a loss this large (or non-finite) means a run has left any meaningful range:
#: the DMFT sweep and the simulator both stop there, and every row they keep lies below it.
DIVERGENCE_BOUND = 1e10


def diverged(values) -> bool:
    """True if any of ``values`` is non-finite or at least :data:`DIVERGENCE_BOUND` in magnitude."""
    with np.errstate(invalid="ignore"):
        return not np.all(np.abs(values) < DIVERGENCE_BOUND)


def as_dict(obj: Any) -> dict:
    """Flat dict of a parameter dataclass (for HDF5 attributes and comparisons)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@dataclasses.dataclass(frozen=True)
class TwoLayerModel:
    """The two-layer network and its teacher (shared by simulator and DMFT).

    f(x) = alpha * (1/N) sum_i [phi(w_i.x) - phi(w_i(0).x)],  phi(h) = h + (eps/2) h^2,
    y(x) = (beta.x)^2 / 2 + noise * xi,  x ~ N(0, I/D),  beta ~ N(0, I),  P = ratio * D.
    """

    alpha: float = setting(help="Output scale α > 0 (small = rich, large = lazy/NTK).", check=check_positive)
    ratio: float = setting(help="P/D, training points per input dimension (> 0).", check=check_positive)
    eps: float = setting(0.02, "Quadratic part ε ≥ 0 of the activation φ(h) = h + ε h²/2 (the NTK–target "
                         "alignment).", check=check_nonnegative)
    noise: float = setting(0.0, "Label-noise standard deviation σ ≥ 0 (train labels y + σξ).",
                           check=check_nonnegative)

    def __post_init__(self):
        validate(self)

    @property
    def lam(self) -> float:
        """lambda = D/P = 1/ratio."""
        return 1.0 / self.ratio

    @property
    def gamma(self) -> float:
        """gamma = 2/alpha: rate of the linear (readout-mean) sector."""
        return 2.0 / self.alpha

    @property
    def kappa(self) -> float:
        """kappa = 2 eps/alpha: rate of feature (neuron) learning."""
        return 2.0 * self.eps / self.alpha


@dataclasses.dataclass(frozen=True)
class LinearModel:
    """Linear regression y = beta.x + noise*xi, x ~ N(0, I/D), beta ~ N(0, I), P = ratio*D,
    trained by gradient flow on (1/P) sum (y - w.x)^2 from w(0) = 0, time tau = t/D."""

    ratio: float = setting(help="P/D, training points per input dimension (> 0).", check=check_positive)
    noise: float = setting(0.0, "Label-noise standard deviation σ ≥ 0.", check=check_nonnegative)

    def __post_init__(self):
        validate(self)
