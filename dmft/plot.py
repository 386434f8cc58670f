"""Figures: DMFT against simulated networks (:func:`compare`) and the grokking-delay phase map of a
sweep (:func:`phase`).  Both return a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes
it as PNG or PDF (by the file's extension).  ``dmft compare`` and ``dmft phase`` are the commands.

How :func:`compare` draws (time is tau = eta t / D on a log axis, so records at tau = 0 are not
drawn; everything else is plotted exactly as stored):

* left panel, train loss (blue) and test loss (red):
  DMFT files as lines, with a band of ±1 Monte-Carlo standard error where the file stores one
  (:func:`dmft.solvers.result.curve_error`: ``/errors/mc``, the spread over sampling replicas, else
  ``/errors/batch``), and the training sets' 16-84% band (``/dataset_bands``) where it has one;
  simulation files as markers with error bars of the seed standard error ``std / sqrt(seeds)``
  (all records are in the line; markers and bars are drawn at about 40 log-spaced records);
  the lazy (NTK kernel-flow) reference of simulation files (``/lazy_reference``) dashed;
* middle panel, on a log axis: the teacher spike s = C_par/D (green; DMFT line, simulation markers);
* right panel, on a log axis: for simulations, the NTK-label alignment y^T K y / (|K|_F |y|^2) (purple).

Each panel has one quantity on its y-axis and its legend below the axes, clear of the data.

Every artist carries a ``gid`` ``"<role>:<i>:<observable>"`` (role ``dmft``, ``sim``, ``lazy``,
``band``; i the index of the file in its role) so that tests and scripts can find it.

Files whose model parameters (alpha, ratio, eps, noise, target, weight decay, batch fraction) or time step dt
differ are refused with
:class:`ParameterMismatchError` naming each differing parameter and its values, unless
``force=True``.  The input dimension D is not checked (a DMFT at one D against simulations at
another is a legitimate finite-size comparison); it appears in every label.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .params import ParameterError
from .target import DEFAULT_TARGET, format_target

__all__ = ["compare", "phase", "phase_grid", "PhaseGrid", "save_figure", "ParameterMismatchError", "CHECKED_PARAMETERS",
           "load_curves", "Curves", "check_compatible"]

#: parameters that must agree between the files of one comparison (unless force=True)
CHECKED_PARAMETERS = ("alpha", "ratio", "eps", "noise", "target", "weight_decay", "batch_fraction", "dt")
#: the value a file without the parameter was computed with
_IMPLIED = {"target": DEFAULT_TARGET, "weight_decay": 0.0, "batch_fraction": 1.0}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINESTYLES = ("-", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
_N_MARKERS = 40


class ParameterMismatchError(ParameterError):
    """Files of one comparison were computed with different model parameters."""


@dataclasses.dataclass
class Curves:
    """One result, normalised for plotting.  ``errors`` name -> standard error of the plotted
    curve (Monte-Carlo for DMFT, seed standard error for simulations); ``lazy`` name -> the lazy
    reference's mean curve (simulations)."""

    role: str  # "dmft" or "sim"
    name: str  # file name or a short description, for messages and labels
    kind: str
    parameters: dict
    tau: np.ndarray
    observables: dict
    errors: dict
    lazy: dict | None = None
    #: simulations: name -> seed-to-seed standard deviation (the spread, not the error of the mean)
    spread: dict = dataclasses.field(default_factory=dict)
    #: simulations: how ``observables`` estimate the mean over training sets: "seed mean" or
    #: "m4 control variate" (:meth:`dmft.simulator.SimulationResult.seed_mean`)
    estimator: str = ""
    #: DMFT (finite-size, replicas >= 2): name -> the kept sampling runs whose mean is the curve (runs x time)
    sampling_runs: dict = dataclasses.field(default_factory=dict)
    #: DMFT with training-set replicas: stat ("mean", "sd", "q16", "q84") -> name -> curve
    dataset_bands: dict = dataclasses.field(default_factory=dict)

    @property
    def seeds(self) -> int | None:
        s = self.parameters.get("seeds")
        return int(s) if s is not None else None


def _from_simulation(result, name: str, control_variate: bool = True) -> Curves:
    params = dict(result.parameters)
    seeds = max(int(params.get("seeds") or 1), 1)
    spread = {k: np.asarray(v, float) for k, v in result.std.items()}
    errors = {k: v / math.sqrt(seeds) for k, v in spread.items()}
    means = {k: np.asarray(v, float) for k, v in result.observables.items()}
    estimator = "seed mean"
    if control_variate and result.per_seed and seeds >= 4 and result.data_moments is not None:
        # the regression on the training sets' m4 (known mean 3): the same expectation as the seed
        # mean with a 1.5-5x smaller error in the grokking regime (docs/finite-size.md, section 6)
        for k in means:
            if k in result.per_seed:
                means[k], errors[k] = result.seed_mean(k)
        estimator = ("m4 control variate" if tuple(result.parameters.get("target", DEFAULT_TARGET)) == DEFAULT_TARGET
                     else "label-moment control variate")  # SimulationResult.control_moment
    lazy = result.lazy
    lazy = {k: np.asarray(v, float) for k, v in lazy["observables"].items()} if lazy else None
    return Curves("sim", name, "simulation", params, np.asarray(result.tau, float), means, errors, lazy, spread,
                  estimator)


def _from_raw(raw: Mapping, name: str, control_variate: bool = True) -> Curves:
    kind = str(raw.get("attrs", {}).get("kind", ""))
    obs = raw.get("observables")
    if obs is None or "tau" not in obs:
        raise ParameterError(f"invalid file {name}: it has no /observables/tau (kind {kind!r})")
    if kind == "simulation":
        from .simulator import SimulationResult

        return _from_simulation(SimulationResult.from_raw(raw), name, control_variate)
    from .solvers.result import curve_error

    tau = np.asarray(obs["tau"], dtype=float)
    curves = {k: np.asarray(v, float) for k, v in obs.items() if k != "tau"}
    errors = {k: err for k in curves if (err := curve_error(raw.get("errors"), k)) is not None}
    runs = {k: np.asarray(v, float) for k, v in raw.get("sampling_runs", {}).items()}
    bands = {stat: {k: np.asarray(v, float) for k, v in by_name.items()}
             for stat, by_name in raw.get("dataset_bands", {}).items()}
    return Curves("dmft", name, kind, dict(raw.get("parameters", {})), tau, curves, errors, sampling_runs=runs,
                  dataset_bands=bands)


def load_curves(source: Any, control_variate: bool = True) -> Curves:
    """A result file path, a :class:`SolverResult`, a :class:`SimulationResult` or a
    :func:`dmft.io.read_h5` dict, as :class:`Curves`.

    A simulation of 4 or more seeds whose training-set moments are known is summarised by the
    control-variate estimate of the mean over training sets and its standard error
    (:meth:`dmft.simulator.SimulationResult.seed_mean`); ``control_variate=False`` (or fewer seeds)
    gives the plain seed mean and sd / sqrt(seeds).  ``spread`` is the seed sd either way."""
    if isinstance(source, Curves):
        return source
    if isinstance(source, (str, os.PathLike)):
        from .io import read_h5

        return _from_raw(read_h5(source), Path(source).name, control_variate)
    if isinstance(source, Mapping):
        return _from_raw(source, "<dict>", control_variate)
    from .simulator import SimulationResult

    if isinstance(source, SimulationResult):
        return _from_simulation(source, "simulation", control_variate)
    if hasattr(source, "observables") and hasattr(source, "parameters"):  # SolverResult
        kind = getattr(source, "kind", "") or "dmft"
        return _from_raw({"attrs": {"kind": kind}, "parameters": source.parameters,
                          "observables": source.observables, "errors": getattr(source, "errors", {}),
                          "sampling_runs": getattr(source, "sampling_runs", {}),
                          "dataset_bands": getattr(source, "dataset_bands", {})}, kind)
    raise TypeError(f"cannot plot a {type(source).__name__}: give a result file path or a result object")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def _differing(records: Sequence[Curves], keys: Iterable[str] = CHECKED_PARAMETERS) -> dict[str, list]:
    """parameter -> [value in each record] for the checked parameters that are not all equal."""
    out = {}
    for key in keys:
        values = [r.parameters.get(key, _IMPLIED.get(key)) for r in records]
        if all(v is None for v in values):
            continue
        if any(v is None for v in values) or not all(_same(values[0], v) for v in values[1:]):
            out[key] = values
    return out


def check_compatible(records: Sequence[Curves]) -> None:
    """Raise :class:`ParameterMismatchError` if the records' checked parameters differ."""
    diff = _differing(records)
    if diff:
        parts = []
        for key, values in diff.items():
            per_file = ", ".join(f"{r.name}: {'absent' if v is None else _fmt(v)}" for r, v in zip(records, values))
            parts.append(f"{key} ({per_file})")
        raise ParameterMismatchError(
            "the files were computed with different parameters: " + "; ".join(parts)
            + ". Comparing them would be misleading; pass force=True (--force) to plot them together anyway")


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return format_target(v)
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:g}"
    return str(v)


_SYMBOL = {"alpha": "α", "ratio": "P/D", "eps": "ε", "noise": "σ", "dt": "h", "dim": "D", "t_max": "τ_max",
           "target": "g", "weight_decay": "ω", "batch_fraction": "b"}


def _param_text(params: Mapping, keys: Iterable[str]) -> str:
    """The parameters as a label; the target and the weight decay only where they differ from the default."""
    return ", ".join(f"{_SYMBOL.get(k, k)}={_fmt(params[k])}" for k in keys if params.get(k) is not None
                     and not (k in _IMPLIED and _same(params[k], _IMPLIED[k])))


def _label(rec: Curves, extra_keys: Sequence[str]) -> str:
    p = rec.parameters
    extra = _param_text(p, extra_keys)
    if rec.role == "dmft":
        base = f"DMFT D={_fmt(p['dim'])}" if "dim" in p else "DMFT"
    else:
        width = p.get("width")
        n = "∞" if width is None or (isinstance(width, float) and math.isinf(width)) else _fmt(width)
        seeds = rec.seeds or 1
        base = f"sim D={_fmt(p.get('dim'))} N={n}, {seeds} seed{'s' if seeds != 1 else ''}"
        if rec.estimator == "m4 control variate":
            base += ", m₄ CV"
        elif rec.estimator == "label-moment control variate":
            base += ", ⟨y²⟩ CV"
    return f"{base} ({extra})" if extra else base


def _shade(cmap_name: str, i: int, n: int, single: str):
    if n <= 1:
        return single
    import matplotlib

    return matplotlib.colormaps[cmap_name](0.95 - 0.5 * i / (n - 1))


def _marker_indices(tau: np.ndarray, n: int = _N_MARKERS) -> np.ndarray:
    """About n record indices, evenly spaced in log tau (tau > 0 only)."""
    pos = np.nonzero(tau > 0)[0]
    if pos.size <= n:
        return pos
    t = tau[pos]
    targets = np.geomspace(t[0], t[-1], n)
    idx = np.unique(np.clip(np.searchsorted(t, targets), 0, t.size - 1))
    return pos[idx]


def compare(theory_files_or_results: Any = (), sim_files: Any = (), force: bool = False, *,
            fraction_marks: bool = False, figsize=(13.0, 5.6), title: str | None = None,
            control_variate: bool = True):
    """DMFT against simulations: train/test loss, teacher spike and NTK alignment vs tau.

    Parameters
    ----------
    theory_files_or_results : a path or result, or a sequence of them (DMFT files/results; a
        simulation given here is drawn as a simulation).
    sim_files : a path or :class:`SimulationResult`, or a sequence of them.
    force : plot even if the files' alpha, ratio, eps, noise or dt differ (the differing
        parameters are then written in each curve's label).
    fraction_marks : mark where each loss first falls below half its initial value.
    control_variate : simulations of 4 or more seeds are drawn as the m4 control-variate estimate of
        the mean over training sets, with its standard error (see :func:`load_curves`); False: the
        plain seed mean and sd / sqrt(seeds).  The label says which.
    A DMFT result solved with ``datasets=R`` also gets its training-set band (16-84%), and the
    simulations then get their seed-to-seed spread (mean ± sd) beside it.
    Returns the :class:`matplotlib.figure.Figure` (axes: ``fig.axes[0]`` losses, ``fig.axes[1]``
    the spike s, ``fig.axes[2]`` the NTK alignment).  Raises :class:`ParameterMismatchError` for incompatible files.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    def _seq(x):
        return [x] if isinstance(x, (str, os.PathLike, Mapping)) or not isinstance(x, (list, tuple)) else list(x)

    records = ([load_curves(s, control_variate) for s in _seq(theory_files_or_results)]
               + [load_curves(s, control_variate) for s in _seq(sim_files)])
    if not records:
        raise ParameterError("invalid input: compare needs at least one theory or simulation file")
    diff = _differing(records)
    if diff and not force:
        check_compatible(records)
    common = [k for k in CHECKED_PARAMETERS if k not in diff]
    differing = list(diff)

    fig = Figure(figsize=figsize, layout="constrained")
    ax_loss, ax_ord, ax_ntk = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1.0, 1.0]})
    dmft = [r for r in records if r.role == "dmft"]
    sims = [r for r in records if r.role == "sim"]
    colors = {"train_loss": "C0", "test_loss": "C3"}
    cmaps = {"train_loss": "Blues", "test_loss": "Reds"}
    words = {"train_loss": "train", "test_loss": "test"}

    for i, rec in enumerate(dmft):
        pos = rec.tau > 0
        ls = _LINESTYLES[i % len(_LINESTYLES)]
        label = _label(rec, differing)
        for name in ("train_loss", "test_loss"):
            if name not in rec.observables:
                continue
            color = _shade(cmaps[name], i, len(dmft), colors[name])
            y = rec.observables[name]
            (line,) = ax_loss.plot(rec.tau[pos], y[pos], ls=ls, color=color, lw=1.6,
                                   label=f"{label}: {words[name]}")
            line.set_gid(f"dmft:{i}:{name}")
            if name in rec.errors:
                err = rec.errors[name]
                band = ax_loss.fill_between(rec.tau[pos], (y - err)[pos], (y + err)[pos], color=color, alpha=0.25,
                                            lw=0)
                band.set_gid(f"band:{i}:{name}")
            if fraction_marks:
                _mark_crossing(ax_loss, rec.tau, y, color)
            lo = rec.dataset_bands.get("q16", {}).get(name)
            hi = rec.dataset_bands.get("q84", {}).get(name)
            if lo is not None and hi is not None:  # spread over training sets (solve ... --datasets R)
                band = ax_loss.fill_between(rec.tau[pos], np.asarray(lo)[pos], np.asarray(hi)[pos], color=color,
                                            alpha=0.12, lw=0, hatch="//",
                                            label=f"{label}: {words[name]}, training sets 16-84%")
                band.set_gid(f"datasets:{i}:{name}")
        if "spike" in rec.observables:
            color = _shade("Greens", i, len(dmft), "C2")
            y = rec.observables["spike"]
            (line,) = ax_ord.plot(rec.tau[pos], y[pos], ls=ls, color=color, lw=1.6, label=f"{label}: spike s")
            line.set_gid(f"dmft:{i}:spike")
            if "spike" in rec.errors:
                err = rec.errors["spike"]
                band = ax_ord.fill_between(rec.tau[pos], (y - err)[pos], (y + err)[pos], color=color, alpha=0.25,
                                           lw=0)
                band.set_gid(f"band:{i}:spike")

    spread = any(name in r.dataset_bands.get("q16", {}) for r in dmft for name in ("train_loss", "test_loss"))
    for j, rec in enumerate(sims):
        marker = _MARKERS[j % len(_MARKERS)]
        idx = _marker_indices(rec.tau)
        pos = rec.tau > 0
        mask = np.zeros(int(pos.sum()), bool)
        mask[np.searchsorted(np.nonzero(pos)[0], idx)] = True
        marks = list(np.nonzero(mask)[0])
        label = _label(rec, differing)
        for ax, name, color, what in ((ax_loss, "train_loss", "C0", "train"), (ax_loss, "test_loss", "C3", "test"),
                                      (ax_ord, "spike", "C2", "spike s"),
                                      (ax_ntk, "ntk_alignment", "C4", "NTK alignment")):
            if name not in rec.observables:
                continue
            y = rec.observables[name][pos]
            err = rec.errors.get(name)
            cont = ax.errorbar(rec.tau[pos], y, yerr=None if err is None else err[pos], fmt=marker, ls="none",
                               ms=3.5, mfc="white" if j % 2 else color, mec=color, ecolor=color, elinewidth=0.8,
                               markevery=marks, errorevery=mask, capsize=0, label=f"{label}: {what}")
            cont.lines[0].set_gid(f"sim:{j}:{name}")
            if spread and name in rec.spread and name in ("train_loss", "test_loss"):
                # beside a DMFT training-set band: the networks' seed-to-seed spread, mean ± sd
                # (the error bars are the standard error of the mean)
                sd = rec.spread[name][pos]
                band = ax.fill_between(rec.tau[pos], y - sd, y + sd, color=color, alpha=0.08, lw=0,
                                       label=f"{label}: {what}, seed sd")
                band.set_gid(f"spread:{j}:{name}")
            if fraction_marks and name in ("train_loss", "test_loss"):
                _mark_crossing(ax, rec.tau, rec.observables[name], color)
        if rec.lazy:
            for name in ("train_loss", "test_loss"):
                if name in rec.lazy:
                    which = "" if len(sims) == 1 else f" ({label})"
                    (line,) = ax_loss.plot(rec.tau[pos], rec.lazy[name][pos], ls="--", lw=1.1, color=colors[name],
                                           alpha=0.7, label=f"lazy/NTK, same data{which}: {words[name]}")
                    line.set_gid(f"lazy:{j}:{name}")

    from matplotlib.ticker import NullFormatter

    below = dict(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), framealpha=0.8)  # clear of the data
    ax_loss.set_xscale("log")
    ax_loss.set_xlabel("τ = η t / D")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("train and test loss")
    ax_loss.legend(**below)
    for ax, ylabel, title_text in ((ax_ord, "spike s = C∥/D", "teacher spike"),
                                   (ax_ntk, "NTK alignment", "NTK alignment")):
        ax.set_xscale("log")
        ax.set_xlabel("τ = η t / D")
        ax.set_ylabel(ylabel)
        ax.set_title(title_text)
        if ax.lines:
            ax.set_yscale("log")
            ax.legend(**below)
        else:
            ax.text(0.5, 0.5, f"no {ylabel.split(' =')[0]} in these files", ha="center", va="center",
                    transform=ax.transAxes)
    for ax in (ax_loss, ax_ord, ax_ntk):
        ax.xaxis.set_minor_formatter(NullFormatter())  # a short tau range otherwise labels every minor tick
    head = title if title is not None else _param_text(records[0].parameters, common)
    if head:
        fig.suptitle(head + ("   (forced: parameters differ)" if differing else ""), fontsize=10)
    return fig


def _mark_crossing(ax, tau, y, color):
    from .derived import crossing_time

    t = crossing_time(tau, y)
    if math.isfinite(t) and t > 0:
        ax.axvline(t, color=color, lw=0.6, ls=":", alpha=0.8)


def save_figure(fig, path, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG or PDF, chosen by the extension of ``path``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".png", ".pdf"):
        raise ParameterError(f"invalid output file {str(path)!r}: allowed are names ending in .png or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format=ext[1:])
    return path


# ---------------------------------------------------------------------------- phase map
def _index_points(source: Any) -> tuple[list[dict], dict]:
    from .sweep import load_index

    index = source if isinstance(source, Mapping) else load_index(source)
    return list(index.get("points", [])), index


@dataclasses.dataclass
class PhaseGrid:
    """The cells of a phase map: ``delay[i, j]`` at (x = xs[j], y = ys[i]) (NaN where there is none),
    ``notes[i, j]`` the text of the cell, ``fixed`` the parameters common to all cells (others,
    such as a t_max chosen per alpha, may differ from cell to cell)."""

    x: str
    y: str
    xs: list
    ys: list
    delay: np.ndarray
    notes: np.ndarray
    fixed: dict
    fraction: float


def phase_grid(source: Any, select: Mapping[str, float] | None = None, x: str = "alpha",
               y: str = "ratio") -> PhaseGrid:
    """The grokking delays of a sweep on the (x, y) grid; see :func:`phase`."""
    points, _ = _index_points(source)
    select = dict(select or {})
    chosen = [p for p in points if all(_same(p["parameters"].get(k), v) for k, v in select.items())]
    if not chosen:
        raise ParameterError(f"invalid selection {select}: no point of the sweep matches")
    for axis in (x, y):
        if any(axis not in p["parameters"] for p in chosen):
            raise ParameterError(f"invalid axis {axis!r}: not a parameter of every point of the sweep")
    # several points in one cell: the parameters that tell them apart must be fixed by select
    cells: dict = {}
    for p in chosen:
        cells.setdefault((float(p["parameters"][x]), float(p["parameters"][y])), []).append(p)
    varying: dict = {}
    for group in (g for g in cells.values() if len(g) > 1):
        for key in sorted({k for p in group for k in p["parameters"]} - {x, y}):
            values = {_fmt(p["parameters"].get(key)) for p in group}
            if len(values) > 1:
                varying.setdefault(key, set()).update(values)
    if varying:
        desc = "; ".join(f"{k} in {{{', '.join(sorted(v))}}}" for k, v in varying.items())
        raise ParameterError(f"invalid selection: besides {x} and {y} the sweep varies {desc}; allowed is fixing "
                             "them, e.g. select={'" + next(iter(varying)) + "': ...} (--where KEY=VALUE)")
    xs = sorted({float(p["parameters"][x]) for p in chosen})
    ys = sorted({float(p["parameters"][y]) for p in chosen})
    delay = np.full((len(ys), len(xs)), np.nan)
    notes = np.full((len(ys), len(xs)), "n/a", dtype=object)
    for p in chosen:
        i, j = ys.index(float(p["parameters"][y])), xs.index(float(p["parameters"][x]))
        d = p.get("derived") or {}
        value = _num(d.get("delay"))
        if p.get("status") == "failed":
            notes[i, j] = "failed"
        elif math.isfinite(value):
            delay[i, j] = value
            notes[i, j] = f"{value:.3g}"
        elif math.isfinite(_num(d.get("delay_lower_bound"))):
            notes[i, j] = f"> {_num(d['delay_lower_bound']):.3g}"
        else:
            notes[i, j] = "no fit"
        if p.get("status") == "unsuccessful":  # stopped early (diverged): times up to its last finite record
            notes[i, j] += "*"
    fixed = {k: v for k, v in chosen[0]["parameters"].items()
             if k not in (x, y) and all(_same(p["parameters"].get(k), v) for p in chosen)}
    fraction = next((_num((p.get("derived") or {}).get("fraction")) for p in chosen if p.get("derived")), math.nan)
    return PhaseGrid(x, y, xs, ys, delay, notes, fixed, fraction)


def phase(source: Any, select: Mapping[str, float] | None = None, x: str = "alpha", y: str = "ratio",
          figsize=(6.4, 4.8)):
    """Heat map of the grokking delay t_test / t_train over (x, y) = (alpha, ratio) of a sweep.

    ``source``: a sweep directory, its ``index.json``, or the loaded index.  ``select`` fixes the
    other swept parameters (e.g. ``{"eps": 0.02}``) when they vary in the index.  Log colour
    scale; cells without a delay are grey, hatched and labelled: ``failed`` (the point raised),
    ``> b`` (the test loss did not fall within the window: the delay is at least b), ``no fit``
    (the train loss never fell), ``n/a`` (not in the sweep); a ``*`` marks a solve that
    stopped early (status "unsuccessful": diverged, values up to its last finite time).  The cell values are in
    :func:`phase_grid`.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    g = phase_grid(source, select, x, y)
    Z = g.delay
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    finite = Z[np.isfinite(Z) & (Z > 0)]
    norm = None
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if hi < 2 * lo:  # a narrow range: centre it in one factor of 2 so the colours stay readable
            mid = math.sqrt(lo * hi)
            lo, hi = mid / math.sqrt(2), mid * math.sqrt(2)
        norm = LogNorm(vmin=lo, vmax=hi)
    mesh = ax.pcolormesh(np.arange(len(g.xs) + 1), np.arange(len(g.ys) + 1), np.ma.masked_invalid(Z),
                         cmap="viridis", norm=norm, edgecolors="white", linewidth=0.5)
    mesh.set_gid("phase:delay")
    for i in range(len(g.ys)):
        for j in range(len(g.xs)):
            missing = not np.isfinite(Z[i, j])
            if missing:
                ax.add_patch(_hatched_cell(j, i))
            dark = norm is not None and not missing and norm(Z[i, j]) < 0.6
            ax.text(j + 0.5, i + 0.5, g.notes[i, j], ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xticks(np.arange(len(g.xs)) + 0.5, [_fmt(v) for v in g.xs])
    ax.set_yticks(np.arange(len(g.ys)) + 0.5, [_fmt(v) for v in g.ys])
    names = {"alpha": "α (output scale)", "ratio": "P/D (data per dimension)", "eps": "ε"}
    ax.set_xlabel(names.get(g.x, g.x))
    ax.set_ylabel(names.get(g.y, g.y))
    if finite.size:
        from matplotlib.ticker import FuncFormatter

        bar = fig.colorbar(mesh, ax=ax, label="grokking delay  t_test / t_train (log scale)")
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        bar.ax.yaxis.set_major_formatter(plain)
        bar.ax.yaxis.set_minor_formatter(plain)
    shown = [k for k in ("alpha", "ratio", "eps", "noise", "dim", "dt", "t_max") if k in g.fixed]
    frac = f";  times: loss < {g.fraction:g} × initial" if math.isfinite(g.fraction) else ""
    ax.set_title(_param_text(g.fixed, shown) + frac, fontsize=9)
    if any(str(n).endswith("*") for n in g.notes.ravel()):
        ax.set_xlabel(ax.get_xlabel() + "\n* solve stopped early (diverged): times up to its last finite record",
                      fontsize=9)
    return fig


def _hatched_cell(j, i):
    from matplotlib.patches import Rectangle

    return Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="0.6", lw=0, gid="phase:nan")


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")
