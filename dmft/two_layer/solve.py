"""``solve``: the two-layer DMFT from the paper's parameters to a :class:`dmft.solvers.result.SolverResult`."""
from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from dmft.solvers import causal
from dmft.solvers.checkpoint import (ResumeMismatchError, is_final, read_checkpoint, read_state, refuse_differences,
                                    write_result)
from dmft.solvers.fixed_point import FixedPointOptions, iterate
from dmft.solvers.locking import hold

from ..params import ParameterError, TwoLayerModel
from ..target import tail_moment
from ..solvers.settings import options_doc, signature, split
from . import readouts
from .ensembles import dataset_ensemble, sampling_ensemble
from .problem import TwoLayerProblem
from .readouts import RISE_STEPS
from .settings import MIN_REPLICAS, SOLVE_SETTINGS, TwoLayerDMFT, TwoLayerSolve
from .validity import finite_size_caution


SETTINGS = SOLVE_SETTINGS
#: the options of :func:`solve` that are not settings: where the result goes and how it is shown
RUN_OPTIONS = {"out": None, "resume": False, "progress": False, "confirm": True}


def solve(alpha, ratio, **options):
    """Solve the DMFT of the two-layer network.  Returns a :class:`dmft.solvers.result.SolverResult`.

    Parameters carry their paper names (alpha, ratio = P/D, eps, noise = label-noise std);
    ``dim`` is D, which only seeds the teacher spike s(0) = 1/D; time is tau = eta t / D on a
    uniform grid of step ``dt`` up to ``t_max`` (gradient descent with eta = dt D).  ``grid="adaptive"``
    solves gradient flow instead, on a grid whose steps follow ``rtol`` (:mod:`dmft.two_layer.flow`;
    the first sampling replica chooses the grid; D -> inf only, no ``datasets``, ``method="iterate"``,
    checkpoints or resume).  ``samples`` antithetic readout-mean noise paths per teacher-field node
    (``nodes`` Gauss-Legendre nodes of |u| <= ``u_max``).

    method="sweep" (default): one causal pass (exact given the samples), followed by one
    application of the fixed-point map to its kernels (``confirm``), whose residual is
    reported as ``confirmation_residual`` (round-off level for a true solution).
    method="iterate": damped / Anderson-accelerated fixed-point iteration from the frozen
    network's kernels, on the same samples.

    ``out``: the result file, which is also the checkpoint: written at the end, and every
    ``checkpoint_every`` iterations (iterate; default 5) or time rows of the causal pass (sweep;
    default none: a sweep's checkpoint holds the pass's whole per-site state, the memory of
    :meth:`TwoLayerDMFT.memory_bytes`, and at the default sites writing it every 5 rows makes a
    run ~8x slower, so it is written only when ``checkpoint_every`` is given).  The run holds
    the file's lock throughout (:mod:`dmft.solvers.locking`).  ``resume=True`` continues the run
    in ``out`` (a sweep from its last checkpointed row, bit-identical to an uninterrupted run; the
    confirmation pass, replicas and data sets are then computed again) or returns it as stored when
    it is complete.  A resume is refused when any parameter that shapes the answer differs,
    ``replicas``, ``datasets`` and ``method`` included, naming each with both values.

    Observables (``result.observables``): tau, train_loss, test_loss, spike s(t) = C_par(t,t)/D,
    bulk C_z(t,t), mean_norm C_b(t,t) (curves only).  Sampling: the curves are the mean over sampling
    replicas, independent sweeps of ``nodes`` x ``samples`` sites with seeds seed, seed+1, ..., and
    ``result.errors["mc"][name]`` is the standard error of that mean.  By default (``replicas=None``)
    replicas are added until the largest standard error over tau of the train and test loss is at most
    ``mc_tol`` (at least 4 replicas, at most 100); ``result.diagnostics["mc_error"]`` is the error
    reached and the message says it.  ``replicas=R`` runs exactly R (1: one sweep, errors NaN).
    ``result.sampling_runs`` holds the kept runs of train_loss and test_loss; the kernels are those of
    ``seed``.  A seed that diverges, or with finite_size whose train loss runs away
    (``train_loss_rise``), is left out:
    ``result.diagnostics["sampling_seeds"]`` and ``["excluded_sampling_seeds"]`` list them, and the
    message names them.  ``result.errors["batch"]["train_loss"]`` is the cheaper within-run error of the
    train loss at fixed kernels; :func:`dmft.solvers.result.curve_error` picks a curve's error bar.
    ``result.diagnostics["dropped_u_mass"]`` is the Gaussian mass of |u| beyond ``u_max``, and
    ``dropped_target_moment`` the part E[g(u)^2; |u| > u_max] of the target's second moment that the quadrature
    leaves out (the train loss is low by about that much at tau = 0; raise u_max for targets of degree >= 3).

    finite_size=True adds the finite-D terms of ``docs/finite-size.md`` (spike-bulk cross
    covariance, the teacher coordinate's own memory); the observables then include
    ``spike_bulk_cross`` = |P_perp A A^T bhat|^2 / D^2.  Off: the D -> inf DMFT, unchanged.
    datasets=R > 0 also solves R "data-set replicas": the same sites reweighted by
    Multinomial(P, w)/P with P = round(ratio * dim) (a training set of P points drawn from the
    sites' population; control variate off so that the whole finite-P fluctuation is kept).
    Their spread is the data-set-to-data-set spread of networks trained at this D:
    ``result.dataset_bands[stat][name]`` with stat "mean", "sd", "q16", "q84" for train_loss,
    test_loss, spike and log_spike, and in ``result.diagnostics`` the per-replica crossing times
    ``t_train_datasets``, ``t_test_datasets`` (loss below half its initial value; NaN if not within
    t_max) and ``datasets_failed``.
    """
    model_kw, numerics_kw, solve_kw, fp_kw, run_kw = split(options, *SETTINGS, extra=RUN_OPTIONS)
    model = TwoLayerModel(alpha=alpha, ratio=ratio, **model_kw)
    opts = TwoLayerDMFT(**numerics_kw)
    how = TwoLayerSolve(**solve_kw)
    fp_options = FixedPointOptions(**{"accel": how.accel, **fp_kw,
                                      "checkpoint_every": 5 if how.checkpoint_every is None else how.checkpoint_every})
    run = {**RUN_OPTIONS, **run_kw}
    if run["out"] is None:
        return _solve(model, opts, how, fp_options, **run)
    with hold(run["out"]):  # the run owns its result/checkpoint file (dmft.solvers.locking)
        return _solve(model, opts, how, fp_options, **run)


def _solve(model, opts, how, fp_options, out, resume, progress, confirm):
    method, replicas, datasets, checkpoint_every = how.method, how.replicas, how.datasets, how.checkpoint_every
    first_replicas = MIN_REPLICAS if replicas is None else replicas  # the first round of sampling replicas
    if opts.grid == "adaptive":
        return _solve_flow(model, opts, how, out, resume, progress)
    problem = TwoLayerProblem(model, opts)
    # outside the region where the validity map shows the finite-size terms helping: said before the compute
    # (a RuntimeWarning) and after it (the message, hence the printed summary and the file)
    caution = finite_size_caution(model, opts.dim) if opts.finite_size else None
    if caution:
        warnings.warn(caution, RuntimeWarning, stacklevel=3)
    problem.run_parameters = {"replicas": replicas, "mc_tol": how.mc_tol, "datasets": datasets}
    # a sweep's checkpoint holds the pass's whole state (about TwoLayerDMFT.memory_bytes): written only on request
    sweep_out = out if checkpoint_every is not None else None
    sweep_start = None  # a stored, unfinished sweep to continue
    if resume:
        if out is None:
            raise ParameterError("invalid resume=True without out: allowed is resume together with out=FILE")
        stored, solver = read_checkpoint(out, problem.kind)
        refuse_differences(out, stored.parameters, problem.parameters())
        _refuse_other_method(out, stored, method)
        sweep_start = solver.get("sweep_pass") if method == "sweep" else None
        # the whole run is in the file (for an iteration: also by this run's tol and max_iter): nothing to do
        if (method == "sweep" and sweep_start is None) or (
                method == "iterate" and is_final(solver) and read_state(out, problem, fp_options).finished is not None):
            stored.wall_time, stored.nfev = 0.0, 0
            return stored
    if method == "iterate":
        # the iteration has its own bar (over iterations); the ensembles below get theirs
        result = iterate(problem, fp_options, out=out, resume=resume, progress=progress)
        passes = (first_replicas - 1) + (datasets if result.success else 0)
        bar = _Progress(passes * problem.T1, progress)
    else:
        passes = 1 + int(confirm) + (first_replicas - 1) + datasets
        bar = _Progress(passes * problem.T1, progress)
        result = causal.sweep(problem, fp_options, confirm=confirm, progress=bar.report, out=sweep_out,
                              start=sweep_start)
        # the readouts are in result.observables: keep only the pass's per-site curves, so that the
        # replicas below each run in the memory of one sweep (TwoLayerDMFT.memory_bytes), not two
        problem.last_pass = problem.readout_pass()
    after_driver = time.perf_counter()
    try:
        result.diagnostics.update(_extra(problem))
        if method == "sweep":
            _warn_on_rise(result, opts, model)
        if result.success or method == "iterate":
            sampling_ensemble(result, model, opts, replicas, how.mc_tol, progress=bar.report, extend=bar.extend)
        if datasets and result.success:
            spread = dataset_ensemble(model, opts, datasets, progress=bar.report)
            result.dataset_bands = spread.bands
            result.diagnostics.update(spread.diagnostics())
    finally:
        bar.close()
    return _finish(result, after_driver, out, caution)


def _finish(result, after_driver, out, caution=None):
    """The summary's time is that of every pass (the driver's, the replicas' and the data sets'); the message
    ends with ``caution`` (finite_size_caution); write ``out``."""
    result.wall_time += time.perf_counter() - after_driver
    if caution:
        result.message = f"{result.message}; {caution}"
    if out is not None:
        write_result(out, result, final=True)
    return result


solve.__signature__ = signature(*SETTINGS, leading=("alpha", "ratio"), extra=RUN_OPTIONS)
solve.__doc__ += options_doc(*SETTINGS, extra={
    "out": "HDF5 file for the result (and, with method='iterate', the checkpoint).",
    "resume": "Continue the run stored in ``out`` (the same parameters are required).",
    "progress": "Show one tqdm bar over every pass of the solve.",
    "confirm": "After a sweep, apply the fixed-point map once more and report its residual."})


def _solve_flow(model, opts, how, out, resume, progress):
    """The gradient-flow DMFT on an adaptive grid (:mod:`dmft.two_layer.flow`): the first sampling replica
    chooses the grid, the others run on it."""
    from dmft.solvers.grid import TimeGrid

    from .flow import FlowProblem

    for name, value, allowed in (("method", how.method, "sweep"), ("datasets", how.datasets, 0),
                                 ("checkpoint_every", how.checkpoint_every, None), ("resume", resume, False)):
        if value != allowed:
            raise ParameterError(f"invalid {name}={value!r} with grid='adaptive': allowed is {allowed!r} (the "
                                 "adaptive grid has no iteration, training-set replicas or mid-pass checkpoints)")
    if model.batch_fraction != 1.0:
        raise ParameterError(f"invalid batch_fraction={model.batch_fraction!r} with grid='adaptive': allowed is 1 "
                             "(minibatch SGD is discrete in time: solve it on the uniform grid of its steps)")
    problem = FlowProblem.from_settings(model, opts)
    problem.run_parameters = {"replicas": how.replicas, "mc_tol": how.mc_tol, "datasets": 0}
    first = MIN_REPLICAS if how.replicas is None else how.replicas
    bar = _Progress(first * 100, progress)  # about 100 rows per replica; extended as the replicas go
    try:
        result = causal.sweep(problem, FixedPointOptions(), confirm=False, progress=bar.report)
        after_driver = time.perf_counter()
        result.diagnostics.update(_extra(problem))
        result.diagnostics["grid_points"] = np.array(problem.T_used)
        # the convergence measure of the pass: the largest change left in a row's corrector
        result.residuals = np.array([float(np.max(problem.row_change[1:problem.T_used], initial=0.0))])
        if result.success:
            result.message = (f"gradient flow on an adaptive grid of {problem.T_used} points to tau = "
                              f"{problem.t[problem.T_used - 1]:g} (rtol {opts.rtol:g}, implicit BDF2)")
            grid = TimeGrid(problem.t[: problem.T_used], "adaptive", None)
            sampling_ensemble(result, model, opts, how.replicas, how.mc_tol, progress=bar.report, extend=bar.extend,
                              make_replica=lambda seed: FlowProblem.from_settings(
                                  model, dataclasses.replace(opts, seed=seed), grid=grid))
        _warn_on_rise(result, opts, model)
    finally:
        bar.close()
    return _finish(result, after_driver, out)


def _warn_on_rise(result, opts, model):
    """Warn (and say in the message) when the train loss of a swept solution rises (train_loss_rise).  Not with
    weight decay: gradient descent then lowers the train loss plus the decay term, and the train loss alone
    may rise (the weights shrink back once the loss is small)."""
    if model.weight_decay > 0.0:
        return
    rise = readouts.train_loss_rise(result.observables["tau"], result.observables["train_loss"])
    if rise is None:
        return
    warning = (f"warning: the train loss rose from its minimum at tau = {rise['from_tau']:.4g} for "
               f"{RISE_STEPS} steps in a row, by {100 * rise['relative_rise']:.2g} % at tau = {rise['tau']:.4g}; "
               "gradient descent raises it only above the edge of stability (lower --dt to check)"
               + ("; with --finite-size a long rise is an unstable solution of the finite-size terms "
                  "(docs/finite-size.md, section 5c): compare another --seed" if opts.finite_size else ""))
    result.message = f"{result.message}; {warning}"
    warnings.warn(warning, RuntimeWarning, stacklevel=3)


class _Progress:
    """One tqdm bar over the rows of every pass of a solve, labelled with the pass it is in."""

    def __init__(self, total_rows: int, enabled: bool):
        self.stage = None
        self.bar = None
        if enabled and total_rows > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_rows, desc="dmft sweep", unit="step", leave=False)

    def report(self, stage: str, t: int) -> None:
        if self.bar is None:
            return
        if stage != self.stage:
            self.stage = stage
            self.bar.set_description(f"dmft {stage}")
        self.bar.update(1)

    def extend(self, rows: int) -> None:
        """More rows to come (a solve sized by mc_tol adds replicas as it goes)."""
        if self.bar is not None:
            self.bar.total += rows
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _refuse_other_method(path, stored, method) -> None:
    """A file is resumed only by the method that wrote it: the two give different answers (an
    unfinished iteration is no sweep's answer, and a sweep is no iteration's)."""
    was = "sweep" if stored.method == "sweep" else "iterate"
    if was == method:
        return
    what = (f"it holds an unfinished --method iterate run ({stored.status.name} after {stored.nit} iterations)"
            if was == "iterate" and not stored.success else f"it holds a --method {was} result")
    raise ResumeMismatchError(f"cannot resume from {path}: {what}; method: file {was!r}, now {method!r}: "
                         f"pass --method {was} to resume it")


def _extra(problem):
    """Constant diagnostics of the solve (``result.diagnostics``)."""
    return {"dropped_u_mass": np.array(problem.dropped_mass),
            "dropped_target_moment": np.array(tail_moment(problem.model.target, problem.options.u_max))}
