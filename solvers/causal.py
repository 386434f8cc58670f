"""The causal sweep: a one-pass solution of DMFT kernels whose row t+1 needs only rows <= t.

When the data-side averages at time t depend on the kernels at times <= t only (a causal DMFT, as
for full-batch gradient descent in discrete time), the self-consistent kernels are built row by
row in one pass, with no iteration.  The model supplies the pass; this driver runs it, checks the
answer with one application of the fixed-point map, and builds the same
:class:`~dmft.solvers.result.SolverResult` as :func:`dmft.solvers.fixed_point.iterate`:

    K = problem.sweep(progress)                    (rows t = 0..T, causal)
    confirmation_residual = r(F(K), K)             (round-off level for a true solution)

with ``r`` the relative sup-norm residual of :func:`dmft.solvers.fixed_point.residual`.

A causal problem is a :class:`~dmft.solvers.state.Problem` with two more members:

* ``sweep(progress=None, checkpoint=None, start=None) -> (kernels, message)``: the causal pass;
  ``message`` is None on success, else it says where the pass stopped (rows after it are NaN);
  ``progress(t)`` is called after row t, and ``checkpoint(t, snapshot)`` too, where ``snapshot()``
  gives (kernels, observables, pass state: a nested dict of arrays with ``next_row``); ``start``
  is such a pass state to continue from, exactly;
* ``T1``: the number of rows;
* ``confirm(kernels, progress=None) -> dict``: F(K), leaving the readouts of ``observables`` on the
  sweep's own pass.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from .checkpoint import make_result, write_sweep_checkpoint
from .fixed_point import residual
from .result import SolverResult, Status
from .state import FixedPointOptions, SolverState

__all__ = ["sweep"]


def sweep(problem, options: FixedPointOptions | None = None, *, confirm: bool = True,
          progress: Callable[[str, int], None] | None = None, out=None, start=None) -> SolverResult:
    """Solve a causal problem in one pass and return a :class:`SolverResult` (``method="sweep"``).

    ``confirm``: apply the map once to the swept kernels and report its residual as
    ``confirmation_residual`` (NaN without it, or when the sweep stopped).  ``options`` are stored
    with the result; of them only ``checkpoint_every`` acts here.  ``progress(stage, t)`` is called
    after row t of each pass, with stage "sweep" or "confirm".  ``nfev`` counts passes: 1, plus 1
    with ``confirm``.

    ``out``: every ``options.checkpoint_every`` rows of the pass, write a checkpoint there
    (:func:`~dmft.solvers.checkpoint.write_sweep_checkpoint`: status RUNNING, the model's whole
    pass state).  ``start``: such a stored pass state (``/solver/sweep_pass``); the pass continues
    after its last row and gives kernels bit-identical to an uninterrupted pass.  The caller
    writes the result.
    """
    options = FixedPointOptions() if options is None else options
    start_time = time.perf_counter()
    every = options.checkpoint_every

    def checkpoint(t, snapshot):
        if (t + 1) % every == 0 and t + 1 < problem.T1:
            kernels, observables, tree = snapshot()
            write_sweep_checkpoint(out, problem, options, kernels, observables, tree, t + 1)

    kernels, message = problem.sweep(progress=None if progress is None else (lambda t: progress("sweep", t)),
                                     checkpoint=None if out is None else checkpoint, start=start)
    confirmation = math.nan
    if message is None and confirm:
        fk = problem.confirm(kernels, progress=None if progress is None else (lambda t: progress("confirm", t)))
        confirmation = residual(fk, kernels)
    state = SolverState.initial(kernels, options)
    state.residuals = [confirmation if confirm else 0.0]
    state.confirmation_residual = confirmation
    if message is None:
        state.status = Status.CONVERGED
        state.message = ("causal sweep: exact one-pass solution on the sampled sites; fixed-point residual of the "
                         f"returned kernels (one application of the map) {confirmation:.2e}")
    else:
        state.status = Status.NON_FINITE
        state.message = message
    result = make_result(problem, options, state, kernels, nfev=1 + int(confirm),
                         wall_time=time.perf_counter() - start_time)
    result.method = "sweep"
    return result
