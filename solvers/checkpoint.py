"""Checkpoint-restart of :func:`dmft.solvers.fixed_point.iterate`: the result file IS the checkpoint.

Layout (written by :func:`dmft.solvers.hdf5.write_h5`, atomically: a temporary file then rename,
under the target's lock, :mod:`dmft.solvers.locking`):

* root attributes: format, format_version, kind, package and library versions;
  ``/parameters``: ``problem.parameters()``;
* ``/observables``: ``problem.observables(kernels)``, curves on the time grid only ('tau',
  'train_loss', 'test_loss', ...; each of length T);
* ``/errors/<kind>/<name>``: standard errors of the curves (:attr:`SolverResult.errors`; kind "mc"
  or "batch", see :data:`~dmft.solvers.result.ERROR_KINDS`);
* ``/sampling_runs/<name>``: the sampling runs (runs x T) whose mean is a curve;
* ``/dataset_bands/<stat>/<name>``: the spread of curves over training sets (stat "mean", "sd",
  "q16", "q84");
* ``/diagnostics/<name>``: scalars and per-replica arrays that are not curves;
  (each of these four groups only when the result holds something for it)
* ``/kernels``: the solution kernels (for a checkpoint of an unfinished run: the current iterate),
  plus the problem's derived kernels;
* ``/solver``: the complete solver state -- ``status`` (a :class:`Status` name), ``message``,
  ``iteration``, ``residuals`` (relative, per iteration), ``changes`` (absolute), ``damping``
  (in force), ``confirmation_residual``, ``best_*`` (divergence detection), ``kernel_keys``
  (iterated kernels, in order), ``options/`` (all :class:`FixedPointOptions`), ``anderson/``
  (memory, last iterate and residual ``x_prev``/``g_prev``, and the stored differences of
  iterates ``dX/<i>`` and of residuals ``dG/<i>`` = dF - dX, oldest first), ``current/`` (the
  current iterate when it is not ``/kernels``), ``best/`` (the best iterate when stored nowhere
  else), ``state_version``, and ``checksum`` (BLAKE2b of every array and parameter: HDF5 keeps
  no checksums of its own, so garbage written into the data would otherwise be read back
  silently).

Resume refuses, before any compute, a file whose parameters or iterate-defining options differ from
the current ones (ParameterError naming each difference with both values), and a file that is not a
complete, intact dmft solver file of this kind and version (FileFormatError, never a traceback).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .anderson import Anderson
from .hdf5 import FileFormatError, read_h5, write_h5
from .locking import hold
from .result import SolverResult, Status
from .state import FixedPointOptions, SolverState
from .validation import ParameterError

__all__ = ["STATE_VERSION", "ResumeMismatchError", "write_checkpoint", "write_sweep_checkpoint", "write_result", "read_state", "read_result",
           "read_checkpoint", "is_final", "require_checkpoint", "refuse_differences", "make_result"]

STATE_VERSION = 2  # format 2: Anderson memory as residual differences dG, absolute-change history


class ResumeMismatchError(ParameterError):
    """A file cannot be resumed by this run: a parameter, an iterate-defining option or the method
    that shapes the answer differs (the message names each, with the file's and this run's value)."""


# ----------------------------------------------------------------------------- checksum
def _leaves(tree: Mapping, prefix: str = ""):
    for key in sorted(tree):
        value = tree[key]
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, name)
        elif value is not None:
            yield name, value


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _checksum(data: Mapping, parameters: Mapping) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(sorted((str(k), _plain(v)) for k, v in parameters.items())).encode())
    for name, value in _leaves(data):
        if name == "/solver/checksum":
            continue
        h.update(name.encode() + b"\0")
        if isinstance(value, (str, bytes)):
            h.update(b"s" + (value.encode() if isinstance(value, str) else value))
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "USO":
            h.update(b"S" + repr(arr.shape).encode() + "\0".join(map(str, arr.ravel())).encode())
            continue
        arr = np.ascontiguousarray(arr)
        h.update(arr.dtype.str.encode() + repr(arr.shape).encode())
        h.update(arr.reshape(-1).view(np.uint8))
    return h.hexdigest()


# ----------------------------------------------------------------------------- write
def _solver_tree(options, state, written: Mapping) -> dict:
    """The /solver group.  ``written``: the kernels stored under /kernels (to avoid duplicates)."""
    tree: dict[str, Any] = {
        "state_version": STATE_VERSION,
        "status": state.status.name,
        "message": state.message or state.status.value,
        "success": state.status is Status.CONVERGED,
        "iteration": state.iteration,
        "residuals": np.asarray(state.residuals, dtype=np.float64),
        "changes": np.asarray(state.changes, dtype=np.float64),
        "confirmation_residual": float(state.confirmation_residual),
        "damping": float(state.damping),
        "best_residual": float(state.best_residual),
        "best_iteration": int(state.best_iteration),
        "kernel_keys": np.array(state.keys, dtype=str),
        "method": options.describe(),
        "options": options.as_dict(),
    }
    same = lambda a, b: a is not None and b is not None and all(a[k] is b[k] for k in state.keys)  # noqa: E731
    if not same(state.kernels, written):
        tree["current"] = {k: state.kernels[k] for k in state.keys}
    if state.best_kernels is None:
        tree["best_is"] = "none"
    elif same(state.best_kernels, written):
        tree["best_is"] = "kernels"
    elif same(state.best_kernels, state.kernels):
        tree["best_is"] = "current"
    else:
        tree["best_is"] = "own"
        tree["best"] = {k: state.best_kernels[k] for k in state.keys}
    if state.anderson is not None:
        tree["anderson"] = state.anderson.state_dict()
    return tree


#: the result's fields stored as groups of the same name beside /observables (see the module docstring)
_STRUCTURED = ("errors", "sampling_runs", "dataset_bands", "diagnostics")


def _arrays(tree: Mapping) -> dict:
    return {k: _arrays(v) if isinstance(v, Mapping) else np.asarray(v) for k, v in tree.items()}


def _write(path, kind: str, parameters: Mapping, kernels: Mapping, derived: Mapping, observables: Mapping,
           solver: dict, structured: Mapping) -> Path:
    data = {
        "observables": {k: np.asarray(v) for k, v in observables.items()},
        **{name: _arrays(structured[name]) for name in _STRUCTURED if structured.get(name)},
        "kernels": {**dict(kernels), **{k: v for k, v in derived.items() if k not in kernels}},
        "solver": solver,
    }
    solver["checksum"] = _checksum(data, parameters)
    with hold(path):  # re-entrant for the run that owns ``path``; refused while another process owns it
        return write_h5(path, kind=kind, parameters=parameters, data=data)


def _derived(problem, kernels) -> dict:
    fn = getattr(problem, "derived_kernels", None)
    return dict(fn(kernels)) if fn is not None else {}


def _errors(problem, kernels) -> dict:
    """``problem.errors(kernels)`` (kind -> name -> standard error) of a problem that has it, else {}."""
    fn = getattr(problem, "errors", None)
    return {kind: {k: np.asarray(v) for k, v in errs.items()} for kind, errs in fn(kernels).items()} if fn else {}


def write_checkpoint(path, problem, options, state) -> Path:
    """Write the state of an unfinished run (the current iterate and its observables)."""
    kernels = {k: state.kernels[k] for k in state.keys}
    return _write(path, problem.kind, problem.parameters(), kernels, _derived(problem, kernels),
                  problem.observables(kernels), _solver_tree(options, state, kernels),
                  {"errors": _errors(problem, kernels)})


def write_sweep_checkpoint(path, problem, options, kernels, observables, pass_tree: Mapping, rows_done: int) -> Path:
    """Write the state of an unfinished causal sweep (:func:`dmft.solvers.causal.sweep`): the
    kernels and observables of rows 0..rows_done-1 (NaN after), status RUNNING, method "sweep",
    and the model's whole pass state in ``/solver/sweep_pass`` to continue it from."""
    kernels = {k: kernels[k] for k in kernels}
    state = SolverState.initial(kernels, options)
    state.status = Status.RUNNING
    state.message = f"causal sweep checkpoint: rows 0..{rows_done - 1} of 0..{problem.T1 - 1} done"
    solver = _solver_tree(options, state, kernels)
    solver["method"] = "sweep"
    solver["sweep_pass"] = dict(pass_tree)
    return _write(path, problem.kind, problem.parameters(), kernels, {}, observables, solver, {})


def write_result(path, result: SolverResult, *, final: bool = False) -> Path:
    """Write a result with its full solver state: the file is also a checkpoint to resume from.

    ``final=True`` marks the file as the last write of its run (``/solver/final``): a resume
    returns it as stored (:func:`is_final`) instead of redoing the stages that follow the driver."""
    if result.state is None or result.options is None:
        raise ValueError("this SolverResult carries no solver state (it cannot be written as a checkpoint)")
    solver = _solver_tree(result.options, result.state, result.kernels)
    if final:
        solver["final"] = True
    # the result's message carries what was added after the run (a rising train loss, the sampling seeds
    # combined and left out): a reader of the file must see it too
    solver["message"] = str(result.message)
    solver["method"] = str(result.method)  # "sweep" for the causal driver, the iteration's settings otherwise
    solver["wall_time"] = float(result.wall_time)
    solver["nfev"] = int(result.nfev)
    return _write(path, result.kind, result.parameters, result.kernels, result.derived_kernels,
                  result.observables, solver, {name: getattr(result, name) for name in _STRUCTURED})


def make_result(problem, options, state, kernels, *, nfev: int, wall_time: float) -> SolverResult:
    """Assemble the :class:`SolverResult` of a finished (or stopped) run."""
    kernels = {k: kernels[k] for k in state.keys}
    return SolverResult(
        success=state.status is Status.CONVERGED,
        status=state.status,
        message=state.message or state.status.value,
        nit=state.iteration,
        residuals=np.asarray(state.residuals, dtype=np.float64),
        confirmation_residual=float(state.confirmation_residual),
        kernels=kernels,
        observables={k: np.asarray(v) for k, v in problem.observables(kernels).items()},
        parameters=dict(problem.parameters()),
        method=options.describe(),
        wall_time=float(wall_time),
        kind=problem.kind,
        nfev=int(nfev),
        damping=float(state.damping),
        derived_kernels=_derived(problem, kernels),
        errors=_errors(problem, kernels),
        state=state,
        options=options,
    )


# ----------------------------------------------------------------------------- read
@dataclasses.dataclass
class Loaded:
    state: Any  # SolverState to continue from
    finished: SolverResult | None  # the stored result when there is nothing left to do


def _read_tree(path, kind) -> dict:
    """read_h5 + structure and checksum checks; every failure is a FileFormatError."""
    try:
        tree = read_h5(path, kind=kind)
    except FileFormatError:
        raise
    except Exception as exc:  # h5py can raise many things on a damaged file
        raise FileFormatError(f"{path}: unreadable (truncated or corrupted?): {type(exc).__name__}: {exc}") from None
    try:
        solver = tree["solver"]
        version = int(solver["state_version"])
        stored = str(solver["checksum"])
    except Exception:
        raise FileFormatError(f"{path}: not a dmft solver file (no complete /solver state group)") from None
    if version != STATE_VERSION:
        raise FileFormatError(f"{path}: solver state version {version} is not supported "
                              f"(this dmft reads version {STATE_VERSION})")
    data = {k: v for k, v in tree.items() if k not in ("attrs", "parameters")}
    if _checksum(data, tree["parameters"]) != stored:
        raise FileFormatError(f"{path}: checksum mismatch: the file is corrupted (its content differs from what "
                              "was written)")
    return tree


def _state_from_tree(tree: Mapping):
    s = tree["solver"]
    keys = [str(k) for k in np.atleast_1d(s["kernel_keys"])]
    kernels_grp = tree["kernels"]
    written = {k: np.asarray(kernels_grp[k], dtype=np.float64) for k in keys}
    current = {k: np.asarray(s["current"][k], dtype=np.float64) for k in keys} if "current" in s else written
    best_is = str(s["best_is"])
    best = {"none": None, "kernels": written, "current": current}.get(best_is)
    if best_is == "own":
        best = {k: np.asarray(s["best"][k], dtype=np.float64) for k in keys}
    opts = s["options"]
    anderson = None
    if "anderson" in s:
        anderson = Anderson.from_state_dict(s["anderson"], float(opts["anderson_cond_max"]))
    state = SolverState(
        keys=keys,
        kernels=current,
        residuals=[float(x) for x in np.atleast_1d(s["residuals"])],
        changes=[float(x) for x in np.atleast_1d(s["changes"])],
        damping=float(s["damping"]),
        anderson=anderson,
        best_residual=float(s["best_residual"]),
        best_iteration=int(s["best_iteration"]),
        best_kernels=best,
        status=Status[str(s["status"])],
        confirmation_residual=float(s["confirmation_residual"]),
        message=str(s["message"]),
    )
    return state, written


def _options_from_tree(opts: Mapping):
    kw = {f.name: _plain(opts[f.name]) for f in dataclasses.fields(FixedPointOptions) if f.name in opts}
    return FixedPointOptions(**kw)


def _result_from_tree(tree: Mapping, path) -> SolverResult:
    try:
        state, written = _state_from_tree(tree)
        options = _options_from_tree(tree["solver"]["options"])
        s = tree["solver"]
        derived = {k: v for k, v in tree["kernels"].items() if k not in state.keys}
        return SolverResult(
            success=state.status is Status.CONVERGED,
            status=state.status,
            message=state.message,
            nit=state.iteration,
            residuals=np.asarray(state.residuals, dtype=np.float64),
            confirmation_residual=state.confirmation_residual,
            kernels=written,
            observables=dict(tree["observables"]),
            parameters=dict(tree["parameters"]),
            method=str(s["method"]),
            wall_time=float(s.get("wall_time", 0.0)),
            kind=str(tree["attrs"].get("kind", "")),
            nfev=int(s.get("nfev", 0)),
            damping=state.damping,
            derived_kernels=derived,
            **{name: dict(tree.get(name, {})) for name in _STRUCTURED},
            state=state,
            options=options,
        )
    except Exception as exc:
        raise FileFormatError(f"{path}: incomplete solver state: {type(exc).__name__}: {exc}") from None


def read_result(path, kind: str | tuple | None = None) -> SolverResult:
    """Load a result file (or checkpoint) written by this module, with its full solver state."""
    return _result_from_tree(_read_tree(path, kind), path)


def read_checkpoint(path, kind: str | tuple | None = None) -> tuple[SolverResult, dict]:
    """A result file or checkpoint to resume from: (the stored result, its raw ``/solver`` group).

    A missing file raises :class:`FileFormatError` saying there is no checkpoint to resume."""
    require_checkpoint(path)
    tree = _read_tree(path, kind)
    return _result_from_tree(tree, path), tree["solver"]


def is_final(solver_tree: Mapping) -> bool:
    """Whether a ``/solver`` group was written by a run's last write (``write_result(final=True)``)."""
    return bool(solver_tree.get("final", False))


def require_checkpoint(path) -> None:
    """Refuse to resume from a path that holds no file (one line saying so)."""
    if not Path(path).exists():
        raise FileFormatError(f"cannot resume: no checkpoint at {path} (no such file); run without resume "
                              "(--resume) to start a new run")


def refuse_differences(path, stored: Mapping, current: Mapping) -> None:
    """Raise ParameterError naming every parameter whose value in the file ``path`` (``stored``)
    differs from this run's (``current``), with both values."""
    diffs = _differences(stored, current)
    if diffs:
        raise ResumeMismatchError(f"cannot resume from {path}: its parameters differ from this run's: " + "; ".join(diffs))


def _differences(stored: Mapping, current: Mapping) -> list[str]:
    diffs = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, "<absent>"), current.get(key, "<absent>")
        a = a.item() if isinstance(a, np.generic) else a
        b = b.item() if isinstance(b, np.generic) else b
        equal = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        if not equal:
            diffs.append(f"{key}: file {a!r}, now {b!r}")
    return diffs


def read_state(path, problem, options) -> Loaded:
    """Read the checkpoint ``path`` to continue ``problem`` with ``options`` (see module docstring)."""
    path = Path(path)
    require_checkpoint(path)
    tree = _read_tree(path, problem.kind)
    refuse_differences(path, tree["parameters"], dict(problem.parameters()))
    try:
        stored_opts = tree["solver"]["options"]
        keys = options.ITERATE_DEFINING
        odiffs = _differences({k: stored_opts.get(k, "<absent>") for k in keys},
                              {k: getattr(options, k) for k in keys})
    except Exception as exc:
        raise FileFormatError(f"{path}: incomplete solver state: {type(exc).__name__}: {exc}") from None
    if odiffs:
        raise ResumeMismatchError(f"cannot resume from {path}: solver options that shape the iterates differ: "
                             + "; ".join(odiffs) + " (only tol, max_iter, checkpoint_every, confirm_factor and the "
                             "divergence settings may change on resume)")
    stored = _result_from_tree(tree, path)
    state = stored.state
    done = state.status in (Status.NON_FINITE, Status.DIVERGED) or (
        state.status is Status.CONVERGED and state.residuals and state.residuals[-1] <= options.tol
        and state.confirmation_residual <= options.confirm_factor * options.tol)
    if done:
        stored.wall_time, stored.nfev = 0.0, 0
        return Loaded(state, stored)
    # continue from the current iterate (after MAX_ITER, STOPPED, RUNNING, NOT_CONFIRMED, or a
    # converged run resumed with a tighter tol)
    state.status = Status.RUNNING
    state.message = ""
    state.confirmation_residual = math.nan
    return Loaded(state, None)
