"""Parameter sweeps of the two-layer DMFT on Dask distributed: one task per grid point, one HDF5
file per point, a JSON index, resumable.

    from dmft.sweep import sweep
    res = sweep({"alpha": [0.05, 0.1, 0.5, 1], "ratio": [1, 2, 4]}, "runs/phase",
                eps=0.02, t_max=60, dt=0.4, nodes=16, samples=32)
    res.index["points"][0]      # parameters, file, status, error, derived times

Layout of ``outdir``:

* ``<name>.h5`` per grid point, the :func:`dmft.solve` result (kind "dmft-two-layer"); ``<name>``
  is built from the swept parameters plus a short hash of *all* parameters of the point
  (``alpha0.05_ratio1-3f9c0a1b.h5``), so points that differ only in fixed parameters never share a
  file;
* ``<name>.sim.h5`` when ``simulate`` is given: :func:`dmft.simulate` of the same model, dt and
  t_max (kind "simulation");
* ``index.json``: ``{"format": "dmft-sweep", "version", "grid", "explicit_points", "fixed",
  "simulate", "fraction", "package_version", "points": [...]}`` with one entry per grid point,
  in grid order: ``name``, ``parameters`` (everything passed to :func:`dmft.solve`), ``file``,
  ``status`` ("pending", "done", "unsuccessful" = the solve returned ``success=False``, whose message
  is in ``error``, or "failed" = the task raised, with ``error`` the exception), ``error``,
  ``derived`` (:meth:`dmft.derived.GrokkingTimes.as_dict` of the DMFT: ``t_train``, ``t_test``,
  ``delay``, ...; JSON null stands for NaN), ``wall_time_s``, ``skipped`` (true when the file
  was already there or another sweep computed it), and ``sim_file`` / ``sim_derived`` with
  simulations.  The index is updated after every completed point under its lock
  (``.index.json.lock``, :mod:`dmft.solvers.locking`) and written atomically (unique temporary
  file, fsync, rename), so a killed sweep leaves a valid index.  Updates merge by point name:
  the points of earlier sweeps of the directory (another grid, other fixed parameters) stay in
  the index, and a point that another sweep has settled is never set back to "pending".  The
  top-level fields (``grid``, ``fixed``, ...) are those of the sweep that wrote last.

Resuming: a point whose file(s) exist and are readable result files of the right kind is
skipped (not recomputed); "failed" points have no file and are retried.  A point that raises
(invalid parameters, a killed worker) is recorded as failed and does not stop the others.

Concurrent sweeps of one directory: a worker holds the lock of a point's file while it computes
it.  A worker of another sweep that reaches the same point waits for that lock, then finds the
file and records the point as skipped: every point is computed once.

Scheduling: by default an embedded ``LocalCluster(n_workers, threads_per_worker=1,
processes=True)`` whose workers run single-threaded BLAS and Numba (``NUMBA_NUM_THREADS`` =
cores / workers), started only if some point needs computing and closed at the end; or an
existing cluster: ``scheduler="tcp://host:port"`` (its workers must have ``dmft`` installed) or
a :class:`distributed.Client`, which is used and left open.  The embedded cluster starts worker
processes by spawning: a script that calls :func:`sweep` must do so under
``if __name__ == "__main__":``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

from .params import ParameterError, SimulationSettings, TwoLayerModel
from .target import DEFAULT_TARGET
from .solvers import settings
from .two_layer.settings import SOLVE_SETTINGS

__all__ = ["sweep", "SweepResult", "load_index", "point_name", "run_point", "SOLVE_KEYS", "INDEX_NAME"]

INDEX_NAME = "index.json"
INDEX_FORMAT = "dmft-sweep"
INDEX_VERSION = 1
#: keyword arguments of :func:`dmft.solve` that a sweep may set (swept or fixed): every setting
SOLVE_KEYS = tuple(dict.fromkeys(name for cls in SOLVE_SETTINGS for name in settings.fields(cls)))
#: keyword arguments of :func:`dmft.simulate` that ``simulate=`` may set (the model, dt and t_max
#: are the point's)
SIMULATE_KEYS = tuple(k for k in settings.fields(SimulationSettings) if k not in ("dt", "eta", "t_max"))
#: the model parameters a point passes to :func:`dmft.simulate`
MODEL_KEYS = tuple(settings.fields(TwoLayerModel))


@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` did: the index (as written: this sweep's points merged with those of
    earlier and concurrent sweeps of the directory), and the names of this sweep's points it
    computed, skipped (file already there, or computed by another sweep meanwhile) and that failed."""

    outdir: Path
    index: dict
    computed: list
    skipped: list
    failed: list
    entries: list = dataclasses.field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.outdir / INDEX_NAME

    @property
    def points(self) -> list:
        """This sweep's points, in grid order (``index["points"]`` also holds other sweeps')."""
        return self.entries


# --------------------------------------------------------------------------- names
def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "tolist"):
        return _canonical(value.tolist())
    return str(value)


def _short(value: Any) -> str:
    if isinstance(value, list):  # a sequence parameter (a target): its values joined by commas
        return ",".join(_short(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


#: model parameters hashed as absent at these values (their defaults), so that a point that spells out the default
#: (the command line always passes them) and one that leaves it out share a file
_DEFAULT_MODEL = {"target": list(DEFAULT_TARGET), "weight_decay": 0.0, "batch_fraction": 1.0}


def point_name(params: Mapping[str, Any], swept: list[str], extra: Any = None) -> str:
    """File stem of a point: the swept parameters, then an 8-hex hash of all parameters (and
    ``extra``).  Numbers are hashed as floats, so ratio=2 and ratio=2.0 name one file; the target, weight
    decay and batch fraction at their defaults are hashed as absent."""
    hashed = {k: _canonical(v) for k, v in params.items()
              if not (k in _DEFAULT_MODEL and _canonical(v) == _DEFAULT_MODEL[k])}
    blob = json.dumps({"params": hashed, "extra": _canonical(extra)}, sort_keys=True)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
    head = "_".join(f"{k}{_short(_canonical(params[k]))}" for k in swept)
    return f"{head}-{digest}" if head else digest


# ------------------------------------------------------------------------------ task
def run_point(params: dict, path: str | None, sim_kwargs: dict | None, sim_path: str | None,
              fraction: float = 0.5) -> dict:
    """One grid point (runs on a worker): the DMFT solve written to ``path`` (skipped if None) and,
    with ``sim_kwargs``, the simulation written to ``sim_path`` (skipped if None).  Returns the
    index fields of the point.  Exceptions propagate (the client records them)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .derived import grokking_times

    from .solvers.locking import hold

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    computed = False
    if path is not None:
        # a worker of another sweep on this directory may own the point: wait for it, then read its file
        with hold(path, wait=True):
            if _existing(Path(path), "dmft-two-layer"):
                out.update(_from_file(Path(path), fraction))
            else:
                from .solvers.checkpoint import write_result
                from .two_layer import solve

                result = solve(**params, out=None, progress=False)
                write_result(path, result)
                computed = True
                out["status"] = "done" if result.success else "unsuccessful"
                out["error"] = None if result.success else result.message
                out["derived"] = grokking_times(result, fraction).as_dict()
    if sim_kwargs is not None and sim_path is not None:
        with hold(sim_path, wait=True):
            if _existing(Path(sim_path), "simulation"):
                out["sim_derived"] = grokking_times(sim_path, fraction).as_dict()
            else:
                from .simulator import simulate

                model = {k: params[k] for k in MODEL_KEYS if k in params}
                sim = simulate(**model, dt=params.get("dt", 0.2), t_max=params.get("t_max", 12.0), **sim_kwargs)
                sim.save(sim_path)
                computed = True
                out["sim_derived"] = grokking_times(sim, fraction).as_dict()
    out["wall_time_s"] = time.perf_counter() - t0
    out["skipped"] = not computed  # another sweep computed it while this one waited
    return out


def _task(*args) -> dict:
    """:func:`run_point` as submitted: an exception becomes a "failed" record (so that workers do
    not log a traceback for an expected failure such as invalid parameters)."""
    try:
        return run_point(*args)
    except Exception as exc:  # noqa: BLE001 - recorded in the index
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _existing(path: Path, kind: str) -> bool:
    """A readable result file of the given kind with loss curves."""
    if not path.exists():
        return False
    try:
        from .io import read_h5

        raw = read_h5(path, kind=kind)
        obs = raw["observables"]
        return all(k in obs for k in ("tau", "train_loss", "test_loss"))
    except Exception:  # noqa: BLE001 - unreadable for any reason: recompute
        return False


def _from_file(path: Path, fraction: float) -> dict:
    """Index fields of a point computed earlier, read back from its file."""
    from .derived import grokking_times
    from .io import read_h5

    raw = read_h5(path)
    solver = raw.get("solver", {})
    success = bool(solver.get("success", True))
    return {"status": "done" if success else "unsuccessful",
            "error": None if success else str(solver.get("message", "")),
            "derived": grokking_times(raw, fraction).as_dict()}


# ----------------------------------------------------------------------------- index
def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        return _jsonable(value.item())
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def _merge_points(old: list, new: list) -> list:
    """The points of ``old`` (an index on disk) updated by this sweep's ``new`` entries, by name:
    old points keep their place, new ones are appended; a "pending" entry never replaces an entry
    that another sweep has already settled."""
    by_name = {p["name"]: p for p in old if isinstance(p, Mapping) and "name" in p}
    order = list(by_name)
    for entry in new:
        prev = by_name.get(entry["name"])
        if prev is None:
            order.append(entry["name"])
        elif entry["status"] == "pending" and prev.get("status") != "pending":
            continue
        by_name[entry["name"]] = entry
    return [by_name[name] for name in order]


def _write_index(outdir: Path, index: dict) -> dict:
    """Merge this sweep's ``index`` into ``outdir/index.json`` under the index's lock and write it
    atomically (a unique temporary file, fsync, rename).  Returns the index as written."""
    import tempfile

    from .solvers.locking import hold

    path = outdir / INDEX_NAME
    with hold(path, wait=True):
        try:
            old = load_index(path)["points"] if path.exists() else []
        except Exception:  # noqa: BLE001 - an unreadable index is rebuilt from the sweeps that write it
            old = []
        merged = {**index, "points": _merge_points(old, index["points"])}
        fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_NAME}.", suffix=".tmp", dir=outdir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(_jsonable(merged), f, indent=1, allow_nan=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return merged


def load_index(source: str | os.PathLike) -> dict:
    """The index of a sweep: a sweep directory or its ``index.json``.  JSON null = NaN."""
    path = Path(source)
    if path.is_dir():
        path = path / INDEX_NAME
    if not path.exists():
        from .io import FileFormatError

        raise FileFormatError(f"{path}: no such file (is {path.parent} a sweep directory?)")
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != INDEX_FORMAT:
        from .io import FileFormatError

        raise FileFormatError(f"{path}: not a dmft sweep index (format {index.get('format')!r})")
    return index


# ----------------------------------------------------------------------------- sweep
def _explicit_points(grid: Any) -> list[dict] | None:
    """``grid`` as a list of point dicts if it is one (explicit points), else None."""
    if isinstance(grid, (list, tuple)) and grid and all(isinstance(p, Mapping) for p in grid):
        return [dict(p) for p in grid]
    return None


def _validate(grid: Any, fixed: Mapping, simulate: Mapping | None) -> list[str]:
    points = _explicit_points(grid)
    if points is not None:
        keys = []
        for p in points:
            for key in p:
                if key not in SOLVE_KEYS:
                    raise ParameterError(f"invalid point key {key!r}: allowed keys are {', '.join(SOLVE_KEYS)}")
                if key in fixed:
                    raise ParameterError(f"invalid fixed parameter {key!r}: it is also set by the points")
                if key not in keys:
                    keys.append(key)
        grid = {k: [p.get(k) for p in points] for k in keys}
    elif not isinstance(grid, Mapping) or not grid:
        raise ParameterError(f"invalid grid={grid!r}: allowed is a non-empty dict parameter -> list of values, "
                             "or a non-empty list of dicts (explicit points)")
    for key, values in grid.items():
        if key not in SOLVE_KEYS:
            raise ParameterError(f"invalid grid key {key!r}: allowed keys are {', '.join(SOLVE_KEYS)}")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ParameterError(f"invalid grid[{key!r}]={values!r}: allowed is a non-empty list of values")
    for key in fixed:
        if key not in SOLVE_KEYS:
            raise ParameterError(f"invalid fixed parameter {key!r}: allowed keys are {', '.join(SOLVE_KEYS)}")
        if key in grid:
            raise ParameterError(f"invalid fixed parameter {key!r}: it is also swept in the grid")
    for key in ("alpha", "ratio"):
        if key not in fixed and (key not in grid or (points is not None and any(key not in p for p in points))):
            raise ParameterError(f"invalid sweep: {key} is neither swept nor fixed (it is required)")
    if simulate is not None:
        if not isinstance(simulate, Mapping):
            raise ParameterError(f"invalid simulate={simulate!r}: allowed is None or a dict of simulate() options")
        bad = [k for k in simulate if k not in SIMULATE_KEYS]
        if bad:
            raise ParameterError(f"invalid simulate option(s) {', '.join(map(repr, bad))}: allowed keys are "
                                 f"{', '.join(SIMULATE_KEYS)} (the model, dt and t_max are the point's)")
    return list(grid)


#: seconds to wait for a Dask scheduler to answer
CONNECT_TIMEOUT_S = 10
_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:(\d{1,5})$")


def check_scheduler_address(address: str) -> str:
    """``address`` must look like tcp://HOST:PORT (or tls://) with a port in 1..65535."""
    match = _ADDRESS.match(str(address).strip())
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ParameterError(f"invalid scheduler={address!r}: allowed is the address of a running Dask scheduler, "
                             "tcp://HOST:PORT with PORT in 1..65535 (e.g. tcp://127.0.0.1:8786)")
    return str(address).strip()


def connect(address: str):
    """A distributed.Client of the scheduler at ``address``, or one :class:`ParameterError` line
    naming it when nothing that speaks Dask answers within :data:`CONNECT_TIMEOUT_S` seconds."""
    from distributed import Client

    address = check_scheduler_address(address)
    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except Exception as exc:  # refused, timed out, or another protocol answering on that port
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ParameterError(f"invalid scheduler={address!r}: no Dask scheduler answered there within "
                             f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__}: {text})") from None


def _open_client(scheduler: Any, n_workers: int, stack: list):
    """A distributed.Client; things to close at the end go on ``stack``."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // max(n_workers, 1))
        env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": str(threads)}
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               env=env)
        stack.append(cluster)
        client = Client(cluster)
        stack.insert(0, client)
        return client
    if isinstance(scheduler, str):
        client = connect(scheduler)
        stack.append(client)
        return client
    if isinstance(scheduler, Client):
        return scheduler
    if isinstance(scheduler, LocalCluster) or hasattr(scheduler, "scheduler_address"):
        client = Client(scheduler)
        stack.append(client)
        return client
    raise ParameterError(f"invalid scheduler={scheduler!r}: allowed is None (embedded LocalCluster), an address "
                         "'tcp://host:port', a distributed.Client or a cluster object")


def sweep(parameter_grid: Mapping[str, list] | list[Mapping], outdir: str | os.PathLike,
          simulate: Mapping | None = None,
          scheduler: Any = None, n_workers: int = 2, progress: bool = True, fraction: float = 0.5,
          **fixed) -> SweepResult:
    """Solve the two-layer DMFT on every point of ``parameter_grid`` (a dict parameter -> list of values:
    the Cartesian product, in the dict's order; or a list of dicts: exactly these points, e.g.
    a t_max that grows with alpha), with ``fixed`` the other :func:`dmft.solve` parameters,
    each point a Dask task; optionally also simulate each point (``simulate`` = options of
    :func:`dmft.simulate`, e.g. ``{"dim": 100, "seeds": 3}``).

    Writes one file per point and ``index.json`` in ``outdir`` (see the module docstring),
    skips points already computed, records failing points without stopping, shows a tqdm bar
    over points (``progress``).  ``fraction``: the loss fraction of the derived times
    (:mod:`dmft.derived`).  ``scheduler``: None (embedded ``LocalCluster`` of ``n_workers``
    single-threaded worker processes), ``"tcp://host:port"``, or a ``distributed.Client``.
    Returns a :class:`SweepResult`.
    """
    swept = _validate(parameter_grid, fixed, simulate)
    n_workers = int(n_workers)
    if n_workers < 1:
        raise ParameterError(f"invalid n_workers={n_workers!r}: allowed range is an integer >= 1")
    if not (0.0 < fraction < 1.0):
        raise ParameterError(f"invalid fraction={fraction!r}: allowed range is 0 < fraction < 1")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sim_kwargs = dict(simulate) if simulate is not None else None

    explicit = _explicit_points(parameter_grid)
    if explicit is None:
        combos = [dict(zip(swept, combo))
                  for combo in itertools.product(*(list(parameter_grid[k]) for k in swept))]
        grid_record = {k: list(parameter_grid[k]) for k in swept}
    else:
        combos = explicit
        # the swept parameters: those that vary between the points (alpha and ratio always named)
        swept = [k for k in swept if k in ("alpha", "ratio") or len({_canonical(p.get(k)) for p in explicit}) > 1]
        grid_record = {k: [p.get(k) for p in explicit] for k in swept}
    entries = []
    for combo in combos:
        params = {**fixed, **combo}
        params = {k: params[k] for k in SOLVE_KEYS if k in params}
        name = point_name(params, swept)
        entry: dict[str, Any] = {"name": name, "parameters": params, "file": name + ".h5", "status": "pending",
                                 "error": None, "derived": None, "wall_time_s": None, "skipped": False}
        if sim_kwargs is not None:
            entry["sim_file"] = point_name(params, swept, extra=sim_kwargs) + ".sim.h5"
            entry["sim_derived"] = None
        entries.append(entry)
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ParameterError("invalid parameter_grid: it lists a point twice")
    for entry in entries:  # every point's values are in range before any compute
        for cls, kwargs in zip(SOLVE_SETTINGS, settings.split(entry["parameters"], *SOLVE_SETTINGS)):
            cls(**kwargs)
    if sim_kwargs is not None:
        SimulationSettings(**sim_kwargs)
    from . import __version__

    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "grid": grid_record,
             "explicit_points": explicit is not None, "fixed": dict(fixed), "simulate": sim_kwargs,
             "fraction": fraction, "package_version": __version__, "points": entries}

    todo, skipped = [], []
    for entry in entries:
        need_dmft = not _existing(outdir / entry["file"], "dmft-two-layer")
        need_sim = sim_kwargs is not None and not _existing(outdir / entry["sim_file"], "simulation")
        if not need_dmft:
            entry.update(_from_file(outdir / entry["file"], fraction))
        if sim_kwargs is not None and not need_sim:
            from .derived import grokking_times

            entry["sim_derived"] = grokking_times(outdir / entry["sim_file"], fraction).as_dict()
        if need_dmft or need_sim:
            todo.append((entry, need_dmft, need_sim))
        else:
            entry["skipped"] = True
            skipped.append(entry["name"])
    merged = _write_index(outdir, index)

    computed, failed = [], []
    if todo:
        from tqdm.auto import tqdm

        stack: list = []
        bar = tqdm(total=len(entries), initial=len(skipped), desc="dmft sweep", unit="point", disable=not progress)
        try:
            client = _open_client(scheduler, n_workers, stack)
            from distributed import as_completed

            futures = {}
            for entry, need_dmft, need_sim in todo:
                fut = client.submit(_task, entry["parameters"],
                                    str(outdir / entry["file"]) if need_dmft else None,
                                    sim_kwargs if need_sim else None,
                                    str(outdir / entry["sim_file"]) if need_sim else None,
                                    fraction, pure=False, key=f"dmft-point-{entry['name']}-{time.time_ns()}")
                futures[fut] = entry
            for fut in as_completed(list(futures)):
                entry = futures[fut]
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - the point's error, recorded; the sweep goes on
                    entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                    failed.append(entry["name"])
                else:
                    entry.update(out)
                    entry.setdefault("status", "done")
                    if entry["status"] == "failed":
                        failed.append(entry["name"])
                    else:
                        (skipped if entry.get("skipped") else computed).append(entry["name"])
                fut.release()
                merged = _write_index(outdir, index)
                bar.update(1)
        finally:
            bar.close()
            for obj in stack:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - best effort shutdown
                    pass
    return SweepResult(outdir=outdir, index=merged, computed=computed, skipped=skipped, failed=failed,
                       entries=entries)
