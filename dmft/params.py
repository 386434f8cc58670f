"""Validated, frozen parameter objects shared by the simulator and the DMFT solvers.

Every boundary of the package (Python API and CLI) builds one of these objects first,
so that an invalid value is refused before any compute, with one message that names the
parameter and its allowed range.  On the command line a :class:`ParameterError` becomes a
usage error (exit status 2, no traceback).

Conventions (paper names):

* ``alpha``  output scale of the network, alpha > 0 (small = rich, large = lazy/NTK);
* ``ratio``  P/D, number of training points per input dimension, ratio > 0;
* ``eps``    quadratic part of the activation phi(h) = h + (eps/2) h^2, eps >= 0;
* ``noise``  standard deviation sigma of additive label noise on the train labels, sigma >= 0;
* ``target`` Hermite coefficients (c_0, ..., c_K) of the teacher g(u) = sum_k c_k He_k(u), u = beta.x
             (:mod:`dmft.target`; default (1/2, 0, 1/2), i.e. (beta.x)^2/2);
* ``weight_decay``  omega >= 0: dW/dtau = -omega W - (gradient term); each gradient step multiplies the
             first-layer weights by (1 - h omega) besides its gradient step;
* ``batch_fraction``  b in (0, 1]: minibatch SGD with Bernoulli batches (each point in the batch with
             probability b at each step, gradient (1/(bP)) sum over the batch, tau advances by h per step);
             b = 1 is full-batch gradient descent;
* ``dim``    input dimension D (the DMFT uses it only for the teacher-spike seed 1/D);
* time       tau = eta * t / D, with t the number of full-batch gradient steps and
             learning rate lr = eta * N / alpha^2.  A step of ``dt`` in tau is eta = dt * D.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import click
import numpy as np

from .solvers.settings import setting, validate
from .target import DEFAULT_TARGET, check_target, is_even
from .solvers.validation import (
    ParameterError,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_flag,
    integer,
    nonnegative,
    positive,
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
    "TwoLayerModel",
    "LinearModel",
    "SEED_MAX",
    "DEFAULT_DT",
    "dim_setting",
    "dt_setting",
    "t_max_setting",
    "SimulationSettings",
    "LinearGrid",
]

class SequenceParam(click.ParamType):
    """The click type of a sequence setting: its comma-separated text, converted by the setting's ``check`` (so
    the command line's default and values are the same tuples as the Python API's)."""

    name = "list"

    def __init__(self, check):
        self.check = check

    def convert(self, value, param, ctx):
        try:
            return self.check(param.name if param is not None else "value", value)
        except ParameterError as err:
            self.fail(str(err), param, ctx)


#: largest accepted seed (numpy seeds are unbounded; files store them as 64-bit integers)
SEED_MAX = 2**32 - 1


# Fields that the DMFT and the simulator share, defined once (default, range and help).
def dim_setting():
    """Input dimension D (default 200): the simulator's networks, and the D of the DMFT."""
    return setting(200, "Input dimension D. In the DMFT it seeds the teacher spike s(0) = 1/D and sizes the "
                   "--finite-size terms; networks at D = --dim are what a DMFT at that D describes.",
                   check=integer(1, 10**12))


#: the step h in tau of a solve or a simulation when none is given
DEFAULT_DT = 0.2


def dt_setting(default=DEFAULT_DT):
    """Step h in tau (default 0.2): the DMFT is the exact D -> inf limit of GD with eta = h D."""
    return setting(default, "Time step h in τ (one full-batch gradient step, eta = h D). The DMFT at step h is "
                   "the exact D → ∞ limit of gradient descent at that step; Euler stability needs "
                   "h < 1/(1 + sqrt(1/ratio))².", check=positive(10.0))


def t_max_setting(default=12.0):
    """Final time tau (default 12)."""
    return setting(default, "Final time τ = η t / D. Grokking at alpha ≥ 1 takes longer, e.g. 300.",
                   check=positive(1e6))


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
    y(x) = g(beta.x) + noise * xi,  g = sum_k c_k He_k (``target``),  x ~ N(0, I/D),  beta ~ N(0, I),
    P = ratio * D; weight decay omega (``weight_decay``): dW/dtau = -omega W - (gradient term).
    """

    alpha: float = setting(help="Output scale α (small = rich, large = lazy/NTK).", check=positive(1e4))
    ratio: float = setting(help="P/D, training points per input dimension.", check=positive(1e6))
    eps: float = setting(0.02, "Quadratic part ε of the activation φ(h) = h + ε h²/2 (the NTK–target "
                         "alignment).", check=nonnegative(1e3))
    noise: float = setting(0.0, "Label-noise standard deviation σ (train labels y + σξ; the test loss is against "
                           "the clean target).", check=nonnegative(1e3))
    target: tuple = setting(DEFAULT_TARGET, "Teacher g(u) = Σ_k c_k He_k(u), u = β·x, as Hermite coefficients "
                            "c0,c1,...,cK (probabilists' He_k, K ≤ 6, |c_k| ≤ 100). Default 0.5,0,0.5 is (β·x)²/2; "
                            "degrees ≥ 3 add the floor Σ_{k≥3} k! c_k² to the test loss.", check=check_target,
                            metavar="C0,C1,...", click_type=SequenceParam(check_target))
    weight_decay: float = setting(0.0, "Weight decay ω toward zero: dW/dτ = −ω W − (gradient term); each step of h "
                                  "multiplies the first-layer weights by (1 − h ω).", check=nonnegative(100.0))
    batch_fraction: float = setting(1.0, "Minibatch SGD with Bernoulli batches: at every step each training point is in "
                                    "the batch with probability b, the gradient is (1/(bP)) Σ over the batch and τ "
                                    "advances by h as in full-batch descent. 1 is full-batch gradient descent.",
                                    check=positive(1.0))

    def __post_init__(self):
        validate(self)

    @property
    def even_target(self) -> bool:
        """True when the target is even in u (no odd Hermite coefficient)."""
        return is_even(self.target)

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

    ratio: float = setting(help="P/D, training points per input dimension.", check=positive(1e6))
    noise: float = setting(0.0, "Label-noise standard deviation σ.", check=nonnegative(1e3))

    def __post_init__(self):
        validate(self)


@dataclasses.dataclass(frozen=True)
class LinearGrid:
    """Time grid of the linear-model DMFT (gradient flow, tau = t/D)."""

    t_max: float = t_max_setting(10.0)
    steps: int = setting(500, "Number of grid intervals (linear model).", check=integer(1, 20000))
    grid: str = setting("uniform", "Time grid (linear model): uniform, or geometric (log-spaced after t_first).",
                        choices=("uniform", "geometric"))
    t_first: float | None = setting(None, "First step of the geometric grid (default: t_max / steps^2).", cli=False)

    def __post_init__(self):
        validate(self)

    def time_grid(self):
        """The :class:`dmft.solvers.grid.TimeGrid` of these settings."""
        from .solvers.grid import TimeGrid

        if self.grid == "uniform":
            if self.t_first is not None:
                raise ParameterError(f"invalid t_first={self.t_first!r}: allowed only with grid='geometric'")
            return TimeGrid.uniform(self.t_max, self.steps)
        return TimeGrid.geometric(self.t_max, self.steps, self.t_first)


def check_width(name: str, value: Any):
    """Hidden units N: an integer in [1, 10^6], or inf (the exact infinite-width network)."""
    if isinstance(value, float) and value == float("inf"):
        return value
    require(isinstance(value, (int, float)) and not isinstance(value, bool), name, value,
            "an integer in [1, 1000000], or inf")
    return check_int(name, value, 1, 10**6)


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    """How :func:`dmft.simulate` trains the networks (the model is :class:`TwoLayerModel`).  ``dim``,
    ``dt`` and ``t_max`` are the same fields as the DMFT's (:func:`dim_setting`, ...)."""

    dim: int = dim_setting()
    width: float = setting(float("inf"), "Hidden units N (integer), or inf for the exact infinite-width network "
                           "(w_i = A w_i(0) + b).", check=check_width, metavar="WIDTH")
    dt: float | None = setting(None, "Time step h in τ per full-batch step (η = h D), as in solve. Give either "
                               "--dt or --eta; default --dt 0.2, as in solve.", check=positive(10.0).or_none())
    eta: float | None = setting(None, "Learning-rate scale η (lr = η N / α²) instead of --dt; η = 1 is the paper's.",
                                check=positive(1e9).or_none())
    t_max: float = t_max_setting()
    batch: int | None = setting(None, "Minibatch size B (at most P); default full batch.",
                                check=integer(1, 10**9).or_none())
    seeds: int = setting(1, "Number of independent networks, each with its own training set.",
                         check=integer(1, 10_000))
    seed: int = setting(0, "First seed; the networks are seeds seed, seed+1, ... (each its own training set and "
                        "initial weights). In solve, --seed seeds the DMFT's Monte-Carlo sampling instead.",
                        check=integer(0, SEED_MAX))
    n_records: int = setting(200, "At most this many log-spaced record times (plus τ = 0): times that fall on the "
                             "same whole step are stored once; the summary says how many.", check=integer(1, 10**6),
                             flag="--records")
    record_tau: Any = setting(None, "Explicit record times instead of n_records log-spaced ones.", cli=False)
    lazy_reference: bool = setting(False, "Also record the lazy (NTK kernel gradient flow) reference on the same "
                                   "data.", check=check_flag)

    def __post_init__(self):
        validate(self)
        if self.dt is not None and self.eta is not None:
            raise ParameterError(f"invalid dt={self.dt!r} together with eta={self.eta!r}: allowed is exactly one "
                                 "of dt and eta")
