"""The result of a fixed-point solve (:func:`dmft.solvers.fixed_point.iterate`), in the spirit of
:class:`scipy.optimize.OptimizeResult`, and its status table.

A :class:`SolverResult` holds the kernels and observables of the solution, the residual history and
the complete solver state, so that :func:`dmft.solvers.checkpoint.write_result` writes a file that is both the
result and a checkpoint from which ``iterate(..., resume=True)`` continues.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np

__all__ = ["Status", "SolverResult", "ERROR_KINDS", "curve_error"]

#: kinds of standard error a result may store for a curve, in order of preference for an error bar:
#: "mc" the spread over independent sampling replicas (the error of the solve), "batch" the
#: within-run spread over batches of sites (a cheaper estimate, at fixed kernels)
ERROR_KINDS = ("mc", "batch")


def curve_error(errors, name: str, kinds=ERROR_KINDS):
    """The error bar of curve ``name``: the first of ``errors[kind][name]`` over ``kinds`` (in order of
    preference) that is not all NaN, as a float array; None if there is none.  ``errors``: the ``errors``
    field of a :class:`SolverResult` (or the ``/errors`` group of its file)."""
    for kind in kinds:
        err = (errors or {}).get(kind, {}).get(name)
        if err is not None:
            err = np.asarray(err, dtype=float)
            if np.isfinite(err).any():
                return err
    return None


class Status(enum.Enum):
    """Why the iteration ended.  The values are the human-readable messages (one table)."""

    CONVERGED = "converged: relative change of the kernels below tol, confirmed by an undamped step"
    NOT_CONFIRMED = ("not confirmed: the relative change fell below tol, but one undamped step moved the kernels "
                     "by more than confirm_factor * tol (the fixed point may be an artifact of damping/acceleration)")
    MAX_ITER = "maximum number of iterations reached before convergence"
    NON_FINITE = "non-finite kernels (NaN or inf) produced by the map: stopped, keeping the last finite iterate"
    DIVERGED = "diverged: the residual grew by more than divergence_factor over its minimum; keeping the best iterate"
    STOPPED = "stopped by callback"
    RUNNING = "in progress (checkpoint of an unfinished run)"

    @property
    def success(self) -> bool:
        return self is Status.CONVERGED


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3e}"


@dataclasses.dataclass(repr=False)
class SolverResult:
    """Outcome of :func:`dmft.solvers.fixed_point.iterate`.

    Attributes
    ----------
    success : bool
        True iff ``status is Status.CONVERGED``.
    status : Status
        Why the iteration ended; ``status.value`` is the message.
    message : str
        ``status.value`` plus details (numbers).
    nit : int
        Number of evaluations of the map F in the iteration (= ``len(residuals)``).
    residuals : ndarray
        ``residuals[k] = max_K ||F(K_k) - K_k||_inf / max(||F(K_k)||_inf, tiny)`` of iterate k.
    confirmation_residual : float
        Residual of the undamped confirmation step ``K* = F(K_k)``: ``||F(K*) - K*|| / ||F(K*)||``
        (NaN unless the tolerance was reached).
    kernels : dict[str, ndarray]
        The solution (for NON_FINITE the last finite iterate, for DIVERGED the best one).
    observables : dict[str, ndarray]
        ``problem.observables(kernels)``: curves on the time grid only, 'tau', 'train_loss',
        'test_loss', ... (each 1-D, length T).
    parameters : dict
        ``problem.parameters()``: everything that defines the answer.
    method : str
        e.g. "anderson(m=5), damping=0.0".
    wall_time : float
        Seconds spent in this call (a resumed run counts only its own part).
    kind : str
        ``problem.kind``, the file kind.
    nfev : int
        Evaluations of F in this run, including the confirmation step (on resume: since resuming).
    damping : float
        Damping in force at the end (differs from the option with adaptive damping).
    derived_kernels : dict[str, ndarray]
        Extra kernels of the solution from ``problem.derived_kernels`` (not iterated).
    errors : dict[str, dict[str, ndarray]]
        Standard errors of curves: ``errors[kind][name]`` (length T), kind one of :data:`ERROR_KINDS`
        ("mc": over sampling replicas; "batch": within the run, from ``problem.errors``).
        :func:`curve_error` picks the error bar of a curve.
    sampling_runs : dict[str, ndarray]
        ``sampling_runs[name]``: the sampling runs (runs x T) whose mean is the curve ``name``, where
        the curve is such a mean.
    dataset_bands : dict[str, dict[str, ndarray]]
        The spread of curves over training sets: ``dataset_bands[stat][name]`` (length T), stat one of
        "mean", "sd", "q16", "q84".
    diagnostics : dict[str, ndarray]
        Values that are not curves on the time grid: scalars and per-replica arrays (e.g. the seeds
        combined, the quadrature's dropped mass).
    """

    success: bool
    status: Status
    message: str
    nit: int
    residuals: np.ndarray
    confirmation_residual: float
    kernels: dict
    observables: dict
    parameters: dict
    method: str
    wall_time: float
    kind: str = ""
    nfev: int = 0
    damping: float = 0.0
    derived_kernels: dict = dataclasses.field(default_factory=dict)
    errors: dict = dataclasses.field(default_factory=dict)
    sampling_runs: dict = dataclasses.field(default_factory=dict)
    dataset_bands: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)
    # the full solver state written by save() (iterate, Anderson memory, ...); None for loaded results
    state: Any = None
    options: Any = None

    @property
    def final_residual(self) -> float:
        """Residual of the returned kernels: the confirmation residual if there was one, else the last."""
        if self.confirmation_residual is not None and np.isfinite(self.confirmation_residual):
            return float(self.confirmation_residual)
        return float(self.residuals[-1]) if len(self.residuals) else float("nan")

    def summary(self) -> str:
        """A few lines: status, iterations, final residual, final train and test loss."""
        obs = self.observables or {}
        lines = [
            f"{self.kind or 'solve'}: {self.status.name.lower().replace('_', ' ')} after {self.nit} iterations "
            f"({self.method}, {self.wall_time:.2f} s)",
            f"  {self.message}",
            f"  final residual {_fmt(self.final_residual)}"
            + (f" (last iterate {_fmt(self.residuals[-1])})" if len(self.residuals) else ""),
        ]
        tau = obs.get("tau")
        if tau is not None and len(tau):
            tr, te = obs.get("train_loss"), obs.get("test_loss")
            lines.append(
                f"  at tau = {float(tau[-1]):g}: train loss {float(tr[-1]):.6g}, test loss {float(te[-1]):.6g}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SolverResult(status={self.status.name}, nit={self.nit}, final_residual={_fmt(self.final_residual)})"
