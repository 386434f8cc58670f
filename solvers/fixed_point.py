"""Damped / Anderson-accelerated fixed-point iteration of DMFT kernels, with checkpoint-restart.

A model is a *problem* object (duck-typed, see :class:`Problem`): it maps a dict of kernels K to
F(K) (one pass of the DMFT self-consistency, deterministic), and computes observables.  The solver
machinery lives here, written once for every model:

    options (frozen, validated)  ->  state (kernels, history, damping, Anderson memory)
    loop:  F(K_k) -> residual -> stop? -> mix (damped or Anderson) -> K_{k+1} -> checkpoint, callback
    after convergence: one undamped confirmation step.

Conventions
-----------
* Damping ``d`` in [0, 1) is the weight kept on the previous iterate:
  ``K_{k+1} = (1 - d) F(K_k) + d K_k``  (d = 0: plain Picard iteration).
* Residual of iterate k: ``r_k = max over kernels of ||F(K_k) - K_k||_inf / max(||F(K_k)||_inf, tiny)``,
  the relative sup-norm change of an UNDAMPED step (independent of d).  Converged when r_k <= tol.
* Confirmation: after r_k <= tol the solver takes the undamped step K* = F(K_k), evaluates F(K*)
  and reports ``confirmation_residual = r(K*)``; the solution is K*.  If that residual exceeds
  ``confirm_factor * tol`` the status is NOT_CONFIRMED (success False).
* Anderson (type II / DIIS) on the flattened kernels x with residual g = F(x) - x, memory m:
  ``x_{k+1} = x_k + b g_k - (dX + b dG) gamma``, gamma = argmin ||g_k - dG gamma||_2, b = 1 - d,
  dX, dG the last m differences of iterates and of residuals (map differences dF = dG + dX).
  Columns are dropped (oldest first) while the normalized Gram matrix has condition number > ``anderson_cond_max``; with none left
  the step is the plain damped one.  With an empty memory it IS the damped step.
* Adaptive damping: when r_k > r_{k-1} the damping moves half-way to ``max_damping`` (0.9);
  when r_k < r_{k-1} it moves half-way back to the ``damping`` option.
* Non-finite F(K_k) (NaN/inf): status NON_FINITE, solution K_k (the last finite iterate).
  Divergence: r_k > divergence_factor * min_j r_j, or the absolute change max ||F(K_k) - K_k||_inf
  above divergence_factor x its minimum, in ``divergence_patience`` of the last
  2 * divergence_patience iterations after that minimum: status DIVERGED, solution = the iterate
  of smallest residual.
* ``max_iter`` bounds the number of evaluations of F before the confirmation step.

Determinism: given the problem's parameters and the options that shape the iterates, the sequence of
iterates is a deterministic function of the state; the state is checkpointed in full, so a resumed
run is bitwise identical to an uninterrupted one (same machine and library versions).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import checkpoint, locking
from .anderson import Anderson
from .result import SolverResult, Status
from .state import FixedPointOptions, IterationInfo, Problem, SolverState, validated_kernels
from .validation import ParameterError

__all__ = ["FixedPointOptions", "IterationInfo", "Problem", "Anderson", "SolverState", "iterate", "residual"]

_TINY = np.finfo(np.float64).tiny


def residual(fk: Mapping, k: Mapping, absolute: bool = False) -> float | tuple[float, float]:
    """max_K ||F_K - K||_inf / max(||F_K||_inf, tiny); with ``absolute``, also max_K ||F_K - K||_inf."""
    r = a = 0.0
    for key, f in fk.items():
        num = float(np.max(np.abs(f - k[key]))) if f.size else 0.0
        den = max(float(np.max(np.abs(f))) if f.size else 0.0, _TINY)
        r, a = max(r, num / den), max(a, num)
    return (r, a) if absolute else r


def _all_finite(kernels: Mapping) -> bool:
    return all(bool(np.isfinite(a).all()) for a in kernels.values())


def _pack(kernels: Mapping, keys: list) -> np.ndarray:
    return np.concatenate([kernels[k].ravel() for k in keys])


def _unpack(vec: np.ndarray, template: Mapping) -> dict:
    out, pos = {}, 0
    for key, arr in template.items():
        out[key] = vec[pos : pos + arr.size].reshape(arr.shape)
        pos += arr.size
    return out


def _mix(state: SolverState, k: dict, fk: dict) -> dict:
    """Next iterate from K_k and F(K_k) with the damping in force."""
    d = state.damping
    if state.anderson is None:
        if d == 0.0:
            return fk
        return {key: (1.0 - d) * fk[key] + d * k[key] for key in state.keys}
    x_new = state.anderson.step(_pack(k, state.keys), _pack(fk, state.keys), 1.0 - d)
    return _unpack(x_new, k)


class _Mark:
    """The state at the start of an iteration (shallow: iterates are never modified in place)."""

    def __init__(self, state: SolverState):
        self.kernels = state.kernels
        self.n = state.iteration
        self.damping = state.damping
        self.best = (state.best_residual, state.best_iteration, state.best_kernels)
        self.anderson = state.anderson.snapshot() if state.anderson is not None else None

    def restore_if_unfinished(self, state: SolverState) -> None:
        if state.kernels is not self.kernels or state.status is not Status.RUNNING:
            return  # the iteration completed: the state is consistent
        del state.residuals[self.n:], state.changes[self.n:]
        state.damping = self.damping
        state.best_residual, state.best_iteration, state.best_kernels = self.best
        if self.anderson is not None:
            state.anderson.restore(self.anderson)


def _n_diverging(state: SolverState, options: FixedPointOptions) -> int:
    """How many of the last 2*patience iterations, after the one of minimal value, had a relative
    residual, or an absolute change, above divergence_factor x that minimum.  A window, not a run,
    so that an oscillating blow-up is caught too; the absolute change, because the relative
    residual of a geometric run-away K -> c K stays bounded (it tends to |c - 1|/|c|)."""
    start = max(0, len(state.residuals) - 2 * options.divergence_patience)
    count = 0
    for hist in (state.residuals, state.changes):
        i_min = int(np.argmin(hist))
        threshold = options.divergence_factor * hist[i_min]
        count = max(count, sum(x > threshold for x in hist[max(start, i_min + 1):]))
    return count


def _adapt_damping(state: SolverState, options: FixedPointOptions) -> None:
    if not options.adaptive_damping or len(state.residuals) < 2:
        return
    r_prev, r = state.residuals[-2], state.residuals[-1]
    if r > r_prev:
        state.damping = state.damping + 0.5 * (options.max_damping - state.damping)
    elif r < r_prev:
        state.damping = options.damping + 0.5 * (state.damping - options.damping)


# ----------------------------------------------------------------------------- driver
def iterate(
    problem,
    options: FixedPointOptions | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[IterationInfo], Any] | None = None,
    progress: bool = False,
) -> SolverResult:
    """Solve K = F(K) for ``problem`` (see :class:`Problem`) and return a :class:`SolverResult`.

    ``out``: HDF5 file that is both the result and the checkpoint, written atomically every
    ``options.checkpoint_every`` iterations, at the end, and when an exception interrupts the loop.
    ``resume=True`` continues the run stored in ``out`` (same parameters and iterate-defining
    options required, else ParameterError naming the differences; unreadable or foreign files
    raise FileFormatError); a finished converged run is returned as stored.
    ``callback(info: IterationInfo)`` is called after each iteration that takes a step (not after
    the final, converged evaluation); raising StopIteration in it stops the run with status
    STOPPED (the state is saved and can be resumed).  Any other exception propagates, after the
    last consistent state has been written to ``out``.
    ``progress=True`` shows a tqdm bar over iterations.  With ``out`` the run holds the file's
    lock (:func:`dmft.solvers.locking.hold`) throughout: a run of another process on the same file
    raises :class:`~dmft.solvers.locking.TargetBusyError` at once.
    """
    options = FixedPointOptions() if options is None else options
    if not isinstance(options, FixedPointOptions):
        raise TypeError(f"options must be a FixedPointOptions, got {type(options).__name__}")
    if resume and out is None:
        raise ParameterError("invalid resume=True without out: allowed is resume together with out=FILE")
    if out is None:
        return _iterate(problem, options, None, False, callback, progress)
    with locking.hold(out):  # the run owns its checkpoint file (dmft.solvers.locking)
        return _iterate(problem, options, out, resume, callback, progress)


def _iterate(problem, options, out, resume, callback, progress) -> SolverResult:
    t_start = time.perf_counter()
    nfev = 0

    if resume:
        loaded = checkpoint.read_state(out, problem, options)
        state = loaded.state
        if loaded.finished is not None:
            return loaded.finished
    else:
        state = SolverState.initial(problem.initial_kernels(), options)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=options.max_iter, initial=min(state.iteration, options.max_iter), desc=problem.kind,
                   unit="it", leave=False)

    def evaluate(kernels: dict) -> dict:
        nonlocal nfev
        nfev += 1
        return validated_kernels(problem.update(kernels), state.kernels, "update()")

    result_kernels = state.kernels
    mark = None
    try:
        while True:
            mark = _Mark(state)
            if state.iteration >= options.max_iter:
                state.status = Status.MAX_ITER
                state.message = (f"{Status.MAX_ITER.value} (max_iter={options.max_iter}, last residual "
                                 f"{state.residuals[-1]:.3e}, tol={options.tol:g})" if state.residuals else
                                 Status.MAX_ITER.value)
                result_kernels = state.kernels
                break
            k = state.kernels
            fk = evaluate(k)
            if not _all_finite(fk):
                state.status = Status.NON_FINITE
                state.message = (f"{Status.NON_FINITE.value}: F(K) at iteration {state.iteration} has "
                                 f"non-finite entries in {[key for key in fk if not np.isfinite(fk[key]).all()]}")
                result_kernels = k
                break
            r, change = residual(fk, k, absolute=True)
            state.residuals.append(r)
            state.changes.append(change)
            if r < state.best_residual:
                state.best_residual, state.best_iteration, state.best_kernels = r, state.iteration - 1, k
            if bar is not None:
                bar.update(1)
                bar.set_postfix(residual=f"{r:.2e}", damping=f"{state.damping:.2f}")

            if r <= options.tol:  # converged: one undamped confirmation step
                k_star = fk
                fk_star = evaluate(k_star)
                conf = residual(fk_star, k_star) if _all_finite(fk_star) else math.inf
                state.confirmation_residual = conf
                state.kernels = result_kernels = k_star
                if conf <= options.confirm_factor * options.tol:
                    state.status = Status.CONVERGED
                    state.message = (f"converged: residual {r:.3e} <= tol={options.tol:g} after {state.iteration} "
                                     f"iterations; undamped confirmation step residual {conf:.3e}")
                else:
                    state.status = Status.NOT_CONFIRMED
                    state.message = (f"{Status.NOT_CONFIRMED.value}: residual {r:.3e} <= tol={options.tol:g}, "
                                     f"confirmation residual {conf:.3e} > {options.confirm_factor:g} * tol")
                break

            n_bad = _n_diverging(state, options)
            if n_bad >= options.divergence_patience:
                state.status = Status.DIVERGED
                state.message = (f"{Status.DIVERGED.value}: residual or change above {options.divergence_factor:g} x "
                                 f"its minimum in {n_bad} of the last {2 * options.divergence_patience} iterations "
                                 f"(residual now {r:.3e}, change {change:.3e} vs minimum {min(state.changes):.3e}); "
                                 f"returning iterate {state.best_iteration} (residual {state.best_residual:.3e}). "
                                 "Try a larger damping or adaptive_damping=True.")
                result_kernels = state.best_kernels
                break

            _adapt_damping(state, options)
            used_damping = state.damping
            k_new = _mix(state, k, fk)
            if not _all_finite(k_new):
                state.status = Status.NON_FINITE
                state.message = f"{Status.NON_FINITE.value}: the mixing step at iteration {state.iteration} overflowed"
                result_kernels = k
                break
            state.kernels = result_kernels = k_new  # iterates are never modified in place: no copies

            if out is not None and state.iteration % options.checkpoint_every == 0:
                checkpoint.write_checkpoint(out, problem, options, state)
            if callback is not None:
                try:
                    callback(IterationInfo(state.iteration, r, used_damping, time.perf_counter() - t_start))
                except StopIteration:
                    state.status = Status.STOPPED
                    state.message = f"{Status.STOPPED.value} at iteration {state.iteration} (residual {r:.3e})"
                    break
    except BaseException:
        # leave a usable checkpoint of the last consistent state (undo a half-done iteration, e.g.
        # Ctrl-C inside the confirmation step or the Anderson update), then re-raise
        if mark is not None:
            mark.restore_if_unfinished(state)
        if out is not None and state.status is Status.RUNNING:
            try:
                checkpoint.write_checkpoint(out, problem, options, state)
            except Exception:  # pragma: no cover - the original error matters more
                pass
        raise
    finally:
        if bar is not None:
            bar.close()

    result = checkpoint.make_result(problem, options, state, result_kernels, nfev=nfev,
                                    wall_time=time.perf_counter() - t_start)
    if out is not None:
        checkpoint.write_result(out, result)
    return result
