"""Derived quantities of a training curve: when the losses fall, and the grokking delay.

For a loss curve L(tau) with initial value L(0) and a fraction f (default 1/2):

* ``t_train`` = first tau at which the train loss falls below f * L_train(0),
* ``t_test``  = first tau at which the test loss falls below f * L_test(0),
* ``delay``   = t_test / t_train, the grokking delay (1: generalisation as soon as the training
  set is fitted; >> 1: grokking).

"First falls below" is located on the recorded grid and refined by linear interpolation in tau
between the last record at or above the threshold and the first record below it.  A time is
NaN when the curve never falls below the threshold within the recorded window; the delay is then
NaN too, and :attr:`GrokkingTimes.delay_lower_bound` gives tau_max / t_train when only the test
loss failed to fall (the delay is *at least* that: a censored measurement).

Works on every result of the package: a DMFT :class:`dmft.solvers.result.SolverResult`, a
:class:`dmft.simulator.SimulationResult` (seed mean), a result file path (any kind with
``/observables``), the dict of :func:`dmft.io.read_h5`, or a plain mapping with ``tau``,
``train_loss``, ``test_loss``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

import numpy as np

__all__ = ["crossing_time", "GrokkingTimes", "grokking_times", "curves_of"]


def crossing_time(tau, curve, fraction: float = 0.5, reference: float | None = None) -> float:
    """First tau at which ``curve`` falls below ``fraction * reference`` (linear interpolation).

    ``reference`` defaults to the curve's first value ``curve[0]`` (its value at tau = 0).
    Records that are NaN never count as below.  Returns NaN if the curve never falls below the
    threshold, and ``tau[0]`` if it already starts below it.
    """
    tau = np.asarray(tau, dtype=float)
    curve = np.asarray(curve, dtype=float)
    if tau.shape != curve.shape or tau.ndim != 1:
        raise ValueError(f"tau and curve must be 1-d arrays of one length, got {tau.shape} and {curve.shape}")
    if curve.size == 0:
        return float("nan")
    ref = float(curve[0]) if reference is None else float(reference)
    threshold = fraction * ref
    below = np.nonzero(curve < threshold)[0]  # NaN < x is False
    if below.size == 0 or not math.isfinite(threshold):
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(tau[0])
    c0, c1 = curve[i - 1], curve[i]
    if not math.isfinite(c0) or c0 == c1:
        return float(tau[i])
    # c0 >= threshold > c1: the interpolant crosses in [tau[i-1], tau[i])
    w = (c0 - threshold) / (c0 - c1)
    return float(tau[i - 1] + w * (tau[i] - tau[i - 1]))


@dataclasses.dataclass(frozen=True)
class GrokkingTimes:
    """When train and test loss first fall below ``fraction`` of their initial values.

    ``t_train``, ``t_test`` in tau units (NaN: not within the window ``tau_max``);
    ``delay = t_test / t_train`` (NaN if either is NaN);
    ``delay_lower_bound = tau_max / t_train`` when the train loss fell but the test loss did not
    (the delay is censored by the window), else NaN; ``tau_max`` is the last record at which
    both losses are finite (earlier than the last record for a run that diverged);
    ``train_initial``, ``test_initial`` the reference values L(0).
    """

    t_train: float
    t_test: float
    fraction: float
    tau_max: float
    train_initial: float
    test_initial: float

    @property
    def delay(self) -> float:
        if math.isfinite(self.t_train) and math.isfinite(self.t_test) and self.t_train > 0:
            return self.t_test / self.t_train
        return float("nan")

    @property
    def delay_lower_bound(self) -> float:
        if math.isfinite(self.t_train) and self.t_train > 0 and not math.isfinite(self.t_test):
            return self.tau_max / self.t_train
        return float("nan")

    def as_dict(self) -> dict:
        """Plain floats (for JSON / tables), including the two properties."""
        out = dataclasses.asdict(self)
        out["delay"] = self.delay
        out["delay_lower_bound"] = self.delay_lower_bound
        return out


def curves_of(source: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tau, train_loss, test_loss) of any result object, file path or mapping (see module doc)."""
    if isinstance(source, (str, os.PathLike)):
        from .io import read_h5

        source = read_h5(source)
    if hasattr(source, "tau") and hasattr(source, "observables") and not isinstance(source, Mapping):
        obs = dict(source.observables)  # SimulationResult: tau is an attribute
        obs.setdefault("tau", source.tau)
    elif hasattr(source, "observables") and not isinstance(source, Mapping):
        obs = source.observables  # SolverResult
    elif isinstance(source, Mapping):
        obs = source["observables"] if "observables" in source else source
    else:
        raise TypeError(f"cannot read loss curves from {type(source).__name__}: expected a result, a file path "
                        "or a mapping with tau, train_loss and test_loss")
    missing = [k for k in ("tau", "train_loss", "test_loss") if k not in obs]
    if missing:
        raise KeyError(f"no {', '.join(missing)} among the observables ({', '.join(sorted(obs))})")
    return tuple(np.asarray(obs[k], dtype=float) for k in ("tau", "train_loss", "test_loss"))  # type: ignore


def _last_finite_tau(tau, train, test) -> float:
    """The end of the window: the last record at which both losses are finite (a solve or a
    simulation that diverged keeps NaN after its last good time)."""
    ok = np.nonzero(np.isfinite(train) & np.isfinite(test))[0]
    return float(tau[ok[-1]]) if ok.size else float("nan")


def grokking_times(source: Any, fraction: float = 0.5) -> GrokkingTimes:
    """:class:`GrokkingTimes` of a result, file or mapping (see :func:`curves_of`)."""
    if not (0.0 < fraction < 1.0):
        from .params import ParameterError

        raise ParameterError(f"invalid fraction={fraction!r}: allowed range is 0 < fraction < 1")
    tau, train, test = curves_of(source)
    return GrokkingTimes(
        t_train=crossing_time(tau, train, fraction),
        t_test=crossing_time(tau, test, fraction),
        fraction=float(fraction),
        tau_max=_last_finite_tau(tau, train, test),
        train_initial=float(train[0]) if train.size else float("nan"),
        test_initial=float(test[0]) if test.size else float("nan"),
    )
