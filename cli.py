"""The ``dmft`` command.

    dmft solve --alpha 0.05 --ratio 2.0          DMFT of the two-layer network
    dmft solve --model linear --ratio 2 ...      DMFT of linear regression (validation model)
    dmft simulate --alpha 1 --ratio 5.5 ...      train real networks (ground truth)
    dmft info FILE                               what a result file holds

Time is tau = eta * t / D throughout (t = gradient steps, lr = eta * N / alpha^2).
Invalid parameters are usage errors (exit status 2) with the allowed range in the message.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys

import click

from dmft.params import ParameterError, require
from dmft.solvers.locking import TargetBusyError


class _Width(click.ParamType):
    name = "WIDTH"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return value
        text = str(value).strip().lower()
        if text in ("inf", "infinity", "infinite"):
            return math.inf
        try:
            return int(text)
        except ValueError:
            self.fail(f"{value!r} is not an integer >= 1 or 'inf'", param, ctx)


def _usage_errors(func):
    """Turn ParameterError / FileFormatError into clean CLI errors (no traceback)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from dmft.io import FileFormatError

        from dmft.solvers.checkpoint import ResumeMismatchError

        try:
            return func(*args, **kwargs)
        except ResumeMismatchError as exc:  # about the file, not the command line: one line, exit 1
            raise click.ClickException(str(exc)) from None
        except ParameterError as exc:
            raise click.UsageError(str(exc)) from None
        except FileFormatError as exc:
            raise click.ClickException(str(exc)) from None
        except TargetBusyError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _owning(out, wait):
    """Hold the lock of the output file ``out`` for the whole command (a no-op without ``out``):
    another run on it is refused at once, or awaited with --wait (dmft.solvers.locking)."""
    from dmft.solvers.locking import hold

    if out is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def owning():
        try:
            lock = hold(out, wait=wait)
            lock.__enter__()
        except TargetBusyError as exc:
            raise TargetBusyError(f"{exc}; pass --wait to wait for it") from None
        try:
            yield
        finally:
            lock.__exit__(None, None, None)

    return owning()


def _check_out(out, resume=False, overwrite=False):
    """Refuse, before any compute, an --out that cannot be written or would silently replace a file."""
    import tempfile
    from pathlib import Path

    if out is None:
        return
    if not str(out).strip() or not Path(out).name:
        raise ParameterError(f"invalid --out {out!r}: allowed is a file path with a file name, e.g. run.h5")
    path = Path(out)
    if path.is_dir():
        raise ParameterError(f"invalid --out {out!r}: it is a directory; allowed is a file path")
    parent = path.resolve().parent
    while not parent.exists():  # the writer creates missing directories: the nearest existing one must allow it
        parent = parent.parent
    try:  # the only reliable test of writability (permissions, read-only mounts, pseudo file systems)
        if not parent.is_dir():
            raise OSError
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError:
        raise ParameterError(f"invalid --out {out!r}: {parent} is not a writable directory") from None
    if path.exists() and not resume and not overwrite:
        raise ParameterError(f"invalid --out {out!r}: the file exists; allowed is --resume to continue it or "
                             "--overwrite to replace it")


def _check_figure(out, dpi):
    """A figure path (.png or .pdf, writable) and its resolution, before any plotting."""
    from pathlib import Path

    from dmft.params import check_int

    check_int("dpi", dpi, 10, 2400)
    _check_out(out, overwrite=True)
    if Path(out).suffix.lower() not in (".png", ".pdf"):
        raise ParameterError(f"invalid output file {str(out)!r}: allowed are names ending in .png or .pdf")


_OVERWRITE_HELP = "Replace an existing --out file (without it an existing file is refused)."
_WAIT_HELP = ("If another run is writing --out (it holds the lock .FILE.lock), wait for it to finish instead of "
              "stopping at once with an error.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dmft")
def main():
    """dmft: high-dimensional dynamics (DMFT) of two-layer network training, and the
    simulator that checks it.  Time unit everywhere: tau = eta * t / D."""


# ----------------------------------------------------------------------------- solve
# Every option below is a field of a settings class (default, range and help defined there once):
# the model (dmft.params), the numerics (dmft.two_layer.TwoLayerDMFT, dmft.linear.LinearGrid) and
# the solver (TwoLayerSolve, dmft.solvers.state.FixedPointOptions).
from dmft.params import LinearGrid, SimulationSettings, TwoLayerModel  # noqa: E402
from dmft.solvers.settings import click_options, defaults, fields, help_text  # noqa: E402
from dmft.solvers.state import FixedPointOptions  # noqa: E402
from dmft.two_layer.settings import TwoLayerDMFT, TwoLayerSolve  # noqa: E402
from dmft.target import DEFAULT_TARGET, check_target, format_target  # noqa: E402



def _help(cls, name):
    return help_text(name, fields(cls)[name][1])


_T_MAX = {"two-layer": defaults(TwoLayerDMFT)["t_max"], "linear": defaults(LinearGrid)["t_max"]}
_ACCEL = {"two-layer": defaults(TwoLayerSolve)["accel"], "linear": defaults(FixedPointOptions)["accel"]}
# --grid names the time grid of either model: its allowed values are each settings class's own
_GRIDS = {"two-layer": fields(TwoLayerDMFT)["grid"][1].choices, "linear": fields(LinearGrid)["grid"][1].choices}


@main.command()
@click.option("--model", type=click.Choice(["two-layer", "linear"]), default="two-layer", show_default=True,
              help="Which DMFT: the two-layer network, or linear regression (the engine's validation model).")
@click_options(TwoLayerModel, override={"alpha": {"required": False, "default": None, "help": (
    _help(TwoLayerModel, "alpha") + " Required for the two-layer model.")}})
@click_options(TwoLayerDMFT, override={"t_max": {"default": None, "show_default": False, "help": (
    _help(TwoLayerDMFT, "t_max") + f" Default: {_T_MAX['two-layer']:g} (two-layer), {_T_MAX['linear']:g} (linear).")},
    "grid": {"type": click.Choice(list(dict.fromkeys(_GRIDS["two-layer"] + _GRIDS["linear"]))), "default": "uniform",
             "help": "Two-layer model: " + _help(TwoLayerDMFT, "grid") + " Linear model: "
                     + _help(LinearGrid, "grid")}})
@click_options(LinearGrid, only=("steps",))
@click_options(TwoLayerSolve, FixedPointOptions, override={"accel": {"default": None, "show_default": False, "help": (
    f"Fixed-point acceleration. Default: {_ACCEL['two-layer']} (two-layer: the map is causal, so plain iteration "
    f"converges front-like), {_ACCEL['linear']} (linear).")}})
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HDF5 result and checkpoint file (/observables, /kernels, /solver).")
@click.option("--resume", is_flag=True, help="Continue the run stored in --out (same parameters required).")
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_usage_errors
def solve(model, out, resume, overwrite, wait, quiet, **options):
    """Solve a DMFT and print its losses (and write --out)."""
    if resume and out is None:
        raise ParameterError("invalid --resume without --out: allowed is --resume together with --out FILE")
    _check_out(out, resume, overwrite)
    options = {k: v for k, v in options.items() if v is not None}
    options.setdefault("t_max", _T_MAX[model])
    options.setdefault("accel", _ACCEL[model])
    run = dict(out=out, resume=resume, progress=not quiet)
    with _owning(out, wait):
        before = _file_identity(out)
        staging = _staging(out) if out is not None and not resume and before is not None else None
        if staging is not None:  # --overwrite: the old file stays intact until the new run is complete
            run["out"] = staging
        if options["grid"] not in _GRIDS[model]:
            raise ParameterError(f"invalid --grid {options['grid']} with --model {model}: allowed are "
                                 f"{', '.join(_GRIDS[model])}")
        if model == "linear":
            from dmft.linear import SETTINGS as LINEAR_SETTINGS
            from dmft.linear import solve_linear

            linear = {name for cls in LINEAR_SETTINGS for name in fields(cls)}
            two_layer_only = sorted(k for k, v in options.items()
                                    if k not in linear and v != _cli_default(k))
            if two_layer_only:
                raise ParameterError(f"invalid {', '.join('--' + k.replace('_', '-') for k in two_layer_only)} "
                                     "with --model linear: allowed only for the two-layer model")
            result = solve_linear(**{k: v for k, v in options.items() if k in linear}, **run)
        else:
            if options.get("alpha") is None:
                raise ParameterError("invalid alpha=None: --alpha is required for the two-layer model "
                                     "(0 < alpha <= 1e4)")
            from dmft.two_layer import solve as solve_two_layer

            if options.pop("steps") != _cli_default("steps"):
                raise ParameterError("invalid --steps with the two-layer model: allowed only with --model linear "
                                     "(the two-layer grid is uniform with step --dt, or --grid adaptive)")
            result = solve_two_layer(**options, **run)
        if staging is not None and os.path.exists(staging):
            from dmft.solvers.locking import lock_path

            os.replace(staging, out)
            # only a run that holds the lock of `out` ever locks its staging file: nobody else can hold it
            with contextlib.suppress(OSError):
                os.unlink(lock_path(staging))
        click.echo(result.summary())
        click.echo(_curve_table(result))
        if out:
            # a resume of a finished run returns the stored result and writes nothing
            click.echo(f"wrote {out}" if _file_identity(out) != before else f"{out} is complete; nothing to do")
    if not result.success:
        sys.exit(1)


def _staging(out):
    """Where a run that replaces ``out`` writes (and checkpoints) until it is complete: .NAME.new.h5."""
    from pathlib import Path

    path = Path(out)
    return str(path.with_name(f".{path.name}.new.h5"))


def _cli_default(name):
    """The default of a `dmft solve` option (None where the command leaves it to the model)."""
    for param in solve.params:
        if param.name == name:
            # a sequence option's default is its text: the value it stands for is what the type makes of it
            return param.type.convert(param.default, param, None) if isinstance(param.default, str) else param.default
    raise KeyError(name)


def _file_identity(path):
    """(inode, mtime) of ``path``, None if absent: every atomic write replaces the inode."""
    import os

    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _curve_table(result, rows=10):
    """A few log-spaced times of the loss curves (and order parameters where present), with the
    result's Monte-Carlo errors, training-set spread and diagnostics where it has them."""
    import numpy as np

    from dmft.solvers.result import curve_error

    obs, diag = result.observables, result.diagnostics
    tau = np.asarray(obs["tau"])
    names = [n for n in ("train_loss", "test_loss", "spike", "bulk", "mean_norm", "spike_bulk_cross") if n in obs]
    if "mean_overlap" in obs and np.any(np.asarray(obs["mean_overlap"]) != 0):  # an odd target's mu_b
        names.append("mean_overlap")
    idx = np.unique(np.concatenate([[0], np.searchsorted(tau, np.geomspace(max(tau[1], 1e-12), tau[-1], rows - 1))]))
    idx = idx[idx < len(tau)]
    head = f"  {'tau':>9}" + "".join(f"{n:>12}" for n in names)
    lines = [head] + [f"  {tau[i]:9.4g}" + "".join(f"{np.asarray(obs[n])[i]:12.5g}" for n in names) for i in idx]
    for name in ("train_loss", "test_loss"):
        err = curve_error(result.errors, name, kinds=("mc",))
        if err is not None and np.all(np.isfinite(err)):
            lines.append(f"  Monte-Carlo standard error of {name} (sampling seeds): max over time {np.max(err):.2g}")
    sd = result.dataset_bands.get("sd", {}).get("test_loss")
    if sd is not None:
        t_test = np.asarray(diag["t_test_datasets"])
        done = t_test[np.isfinite(t_test)]
        lines.append(f"  spread over {len(t_test)} training sets: max sd of the test loss "
                     f"{np.nanmax(sd):.3g}; test loss below half its start in "
                     f"{len(done)} of {len(t_test)}"
                     + (f", at τ = {np.mean(done):.4g} ± {np.std(done, ddof=1) if len(done) > 1 else 0:.2g} (sd)"
                        if len(done) else ""))
    if "dropped_u_mass" in diag:
        lines.append(f"  teacher-field quadrature covers |u| <= u_max; Gaussian mass beyond: "
                     f"{float(np.asarray(diag['dropped_u_mass'])):.2g}"
                     + (f", target moment E[g²] beyond: {float(np.asarray(diag['dropped_target_moment'])):.2g}"
                        if "dropped_target_moment" in diag else ""))
    return "\n".join(lines)


# -------------------------------------------------------------------------- simulate
@main.command()
@click_options(TwoLayerModel)
@click_options(SimulationSettings, override={"width": {"type": _Width(), "default": "inf"}})
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="HDF5 output file.")
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@click.option("--wait", is_flag=True, help=_WAIT_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_usage_errors
def simulate(out, overwrite, wait, quiet, **options):
    """Train two-layer networks by gradient descent and record losses and order parameters."""
    from dmft.simulator import simulate as run_simulation

    _check_out(out, overwrite=overwrite)

    with _owning(out, wait):
        result = run_simulation(**options, progress=not quiet)
        click.echo(result.summary())
        if out:
            result.save(out)
            click.echo(f"wrote {out}")
    if result.diverged_seeds:
        click.echo(f"Error: diverged: {result.divergence()} (lower --dt)", err=True)
        sys.exit(1)


# ------------------------------------------------------------------------------ info
@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_usage_errors
def info(file):
    """Print what a dmft HDF5 file holds: kind, versions, parameters, datasets."""
    from dmft.io import describe

    click.echo(describe(file))


# --------------------------------------------------------------------------- compare
@main.command()
@click.argument("theory", type=click.Path(dir_okay=False))
@click.argument("sims", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True,
              help="Figure file; the format follows the extension: .png or .pdf.")
@click.option("--force", is_flag=True,
              help="Plot files whose alpha, ratio, eps, noise or dt differ (otherwise refused, naming them).")
@click.option("--marks", is_flag=True, help="Mark where each loss first falls below half its initial value.")
@click.option("--title", default=None, help="Figure title (default: the shared parameters).")
@click.option("--dpi", type=int, default=150, show_default=True, help="Resolution of a PNG, dots per inch (10 to 2400).")
@click.option("--plain-mean", is_flag=True,
              help="Draw simulations as the plain seed mean +- sd/sqrt(seeds) instead of the mean over training "
                   "sets with the m4 control variate (the default for 4 or more seeds; label 'm4 CV').")
@_usage_errors
def compare(theory, sims, out, force, marks, title, dpi, plain_mean):
    """Plot a DMFT result (THEORY, an .h5 file of `dmft solve`) against simulations (SIMS, .h5
    files of `dmft simulate`).  Time unit: tau = eta t / D.

    Left: train/test loss vs tau on a log axis; DMFT lines with a Monte-Carlo band, simulations as
    markers with standard errors (4 or more seeds: the mean over training sets with the training
    sets' m4 as control variate, see --plain-mean), the lazy/NTK reference dashed.  Right: order
    parameters (spike s = C_par/D, NTK alignment).  Any file may also be another DMFT result."""
    from dmft.plot import compare as compare_figure
    from dmft.plot import save_figure

    _check_figure(out, dpi)
    for path in (theory, *sims):
        _warn_unsuccessful(path)
    fig = compare_figure(theory, list(sims), force=force, fraction_marks=marks, title=title,
                         control_variate=not plain_mean)
    click.echo(f"wrote {save_figure(fig, out, dpi=dpi)}")
    _print_agreement(theory, sims, not plain_mean)


def _warn_unsuccessful(path):
    """One line on stderr when ``path`` holds a DMFT result that is not successful (it is still plotted)."""
    from dmft.io import _decode_attr, _open

    with _open(path) as f:
        if "solver" not in f or "status" not in f["solver"]:
            return
        solver = f["solver"]
        success = bool(solver["success"][()]) if "success" in solver else True
        if success:
            return
        status = _decode_attr(solver["status"][()])
        message = _decode_attr(solver["message"][()]) if "message" in solver else ""
    click.echo(f"warning: {path}: status {status}: {' '.join(str(message).split())}", err=True)


def _print_agreement(theory, sims, control_variate):
    """For a DMFT file against each simulation file with per-seed curves: the largest deviation in
    the networks' SE, and what an exact theory would score (dmft.agreement)."""
    from pathlib import Path

    from dmft.agreement import against_simulation, describe
    from dmft.io import FileFormatError
    from dmft.plot import load_curves
    from dmft.simulator import SimulationResult

    rec = load_curves(theory, control_variate)
    if rec.role != "dmft":
        return
    for path in sims:
        try:
            sim = SimulationResult.load(path)
        except FileFormatError:  # another DMFT file given as a simulation: nothing to test
            continue
        try:
            results = against_simulation(rec.tau, rec.observables, sim, control_variate=control_variate,
                                         theory_runs=rec.sampling_runs)
        except ValueError as err:
            click.echo(f"{Path(path).name}: no agreement figure ({err})")
            continue
        for line in describe(results):
            click.echo(f"{rec.name} vs {Path(path).name}: {line}")


# ----------------------------------------------------------------------------- sweep
_SIM_SEEDS_MAX = 10_000


def _float_list(ctx, param, value):
    if value is None:
        return None
    try:
        values = [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not values:
        raise click.BadParameter("an empty list; give e.g. 0.05,0.1,0.5")
    check = fields(TwoLayerModel)[param.name][1].check
    try:
        return [check(param.name, v) for v in values]
    except ParameterError as err:
        raise click.BadParameter(str(err)) from None


def _list_option(name, **kw):
    """A comma-separated list of values of the model field ``name`` (each checked like the field)."""
    spec = fields(TwoLayerModel)[name][1]
    default = defaults(TwoLayerModel).get(name)
    return click.option("--" + name.replace("_", "-"), name, callback=_float_list, metavar="LIST",
                        show_default=default is not None, default=None if default is None else f"{default:g}",
                        help=help_text(name, spec) + " Comma-separated; several values make it a swept axis.", **kw)


def _text(value) -> str:
    """A swept value as the command line writes it (a target as c0,c1,...)."""
    return format_target(value) if isinstance(value, (list, tuple)) else f"{value:g}"


def _target_list(ctx, param, value):
    parts = [part for part in str(value).split(";") if part.strip()]
    if not parts:
        raise click.BadParameter("an empty list; give e.g. 0.5,0,0.5 or 0.5,0,0.5;0.5,0.3,0.5")
    try:
        return [check_target("target", part) for part in parts]
    except ParameterError as err:
        raise click.BadParameter(str(err)) from None


@main.command()
@_list_option("alpha", required=True)
@_list_option("ratio", required=True)
@_list_option("eps")
@_list_option("noise")
@_list_option("weight_decay")
@_list_option("batch_fraction")
@click.option("--target", callback=_target_list, metavar="C0,C1,...[;...]", default=format_target(DEFAULT_TARGET),
              show_default=True, help=help_text("target", fields(TwoLayerModel)["target"][1])
              + " Several targets separated by ';' make it a swept axis.")
@click_options(TwoLayerDMFT, TwoLayerSolve, only=("dim", "t_max", "dt", "grid", "rtol", "nodes", "samples", "seed",
                                                  "replicas", "mc_tol"))
@click.option("--sim-seeds", type=int, default=0, show_default=True,
              help="Also simulate each point with this many networks (0: DMFT only); same model, dt and t-max. "
                   f"Range: integer 0 <= sim_seeds <= {_SIM_SEEDS_MAX}.")
@click.option("--sim-dim", type=int, default=defaults(SimulationSettings)["dim"], show_default=True,
              help="Input dimension D of the simulations (simulate's --dim).")
@click.option("--sim-width", type=_Width(), default="inf", show_default=True,
              help="Hidden units N of the simulations (integer), or 'inf' (exact infinite width).")
@click.option("--fraction", type=float, default=0.5, show_default=True,
              help="Derived times: first tau at which a loss falls below this fraction (0 < f < 1) of its "
                   "initial value.")
@click.option("--outdir", type=click.Path(file_okay=False), required=True,
              help="Directory for one .h5 file per point and index.json (re-running resumes).")
@click.option("--scheduler", default=None,
              help="Address tcp://HOST:PORT of a running Dask scheduler (default: an embedded local cluster).")
@click.option("--workers", type=int, default=2, show_default=True,
              help="Worker processes of the embedded local cluster (one thread each; ignored with --scheduler). "
                   "Range: integer 1 <= workers <= 256.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_usage_errors
def sweep(alpha, ratio, eps, noise, weight_decay, batch_fraction, target, dim, t_max, dt, grid, rtol, nodes, samples, seed, replicas, mc_tol, sim_seeds,
          sim_dim, sim_width, fraction, outdir, scheduler, workers, quiet):
    """Solve the DMFT on the grid alpha x ratio (x eps x noise x weight decay x batch fraction x target) in parallel
    on Dask: one task and
    one HDF5 file per point, plus OUTDIR/index.json (parameters, file, status, error, derived
    times t_train, t_test and the grokking delay t_test/t_train per point).  Points already in
    OUTDIR are skipped; the index keeps the points of earlier sweeps of OUTDIR; a point that a
    concurrent sweep is computing is waited for, not computed twice.  A failing point is
    recorded and the others go on; exit status 1 if any point failed, naming them on stderr."""
    from dmft.params import check_int
    from dmft.sweep import sweep as run_sweep

    check_int("sim_seeds", sim_seeds, 0, _SIM_SEEDS_MAX)
    if scheduler is not None:
        from dmft.sweep import check_scheduler_address

        check_scheduler_address(scheduler)
    check_int("workers", workers, 1, 256)
    SimulationSettings(dim=sim_dim, width=sim_width)
    require(0 < fraction < 1, "fraction", fraction, "0 < fraction < 1")
    space = {"alpha": alpha, "ratio": ratio}
    fixed = dict(dim=dim, t_max=t_max, dt=dt, grid=grid, rtol=rtol, nodes=nodes, samples=samples, seed=seed,
                 replicas=replicas, mc_tol=mc_tol)
    for name, values in (("eps", eps), ("noise", noise), ("weight_decay", weight_decay),
                         ("batch_fraction", batch_fraction), ("target", target)):
        if len(values) > 1:
            space[name] = values
        else:
            fixed[name] = values[0]
    # the lazy reference is kernel gradient flow without weight decay
    simulate_opts = (dict(dim=sim_dim, width=sim_width, seeds=sim_seeds,
                          lazy_reference=max(weight_decay) == 0.0) if sim_seeds else None)
    result = run_sweep(space, outdir, simulate=simulate_opts, scheduler=scheduler, n_workers=workers,
                       progress=not quiet, fraction=fraction, **fixed)
    click.echo(f"{len(result.points)} points: {len(result.computed)} computed, {len(result.skipped)} already done, "
               f"{len(result.failed)} failed; index {result.index_path}")
    for p in result.points:
        d = p.get("derived") or {}
        fmt = lambda v, none="never": none if v is None or v != v else f"{v:.4g}"  # noqa: E731 (None, NaN: never)
        params = " ".join(f"{k}={_text(p['parameters'][k])}" for k in result.index["grid"])
        line = f"  {params:32s} {p['status']:12s}"
        line += (f" t_train={fmt(d.get('t_train'))} t_test={fmt(d.get('t_test'))} delay={fmt(d.get('delay'), 'none')}"
                 if d else f" {p.get('error')}")
        click.echo(line)
    if result.failed:
        click.echo(f"error: {len(result.failed)} of {len(result.points)} points failed: {', '.join(result.failed)}",
                   err=True)
        sys.exit(1)


# ----------------------------------------------------------------------------- phase
@main.command()
@click.argument("sweepdir", type=click.Path(file_okay=True))
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True,
              help="Figure file; the format follows the extension: .png or .pdf.")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Fix a further swept parameter (e.g. eps=0.02); repeatable.")
@click.option("--x", "x_axis", default="alpha", show_default=True, help="Swept parameter on the horizontal axis.")
@click.option("--y", "y_axis", default="ratio", show_default=True, help="Swept parameter on the vertical axis.")
@click.option("--dpi", type=int, default=150, show_default=True, help="Resolution of a PNG, dots per inch (10 to 2400).")
@_usage_errors
def phase(sweepdir, out, where, x_axis, y_axis, dpi):
    """Heat map of the grokking delay t_test / t_train (dimensionless; times in tau = eta t / D)
    over (alpha, ratio) from a sweep's index (SWEEPDIR or SWEEPDIR/index.json), log colour
    scale; cells without a delay are hatched and say why (failed, '> b' = the test loss did not
    fall within t-max, no fit)."""
    from dmft.plot import phase as phase_figure
    from dmft.plot import save_figure

    _check_figure(out, dpi)
    select = {}
    for item in where:
        key, sep, value = item.partition("=")
        try:
            select[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ParameterError(f"invalid --where {item!r}: allowed is KEY=NUMBER, e.g. eps=0.02")
    fig = phase_figure(sweepdir, select=select, x=x_axis, y=y_axis)
    click.echo(f"wrote {save_figure(fig, out, dpi=dpi)}")


if __name__ == "__main__":  # pragma: no cover
    main()
