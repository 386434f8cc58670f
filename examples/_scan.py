"""Shared pieces of the scan examples (delay_vs_alpha, delay_vs_eps, dataset_window, delay_vs_weight_decay,
delay_vs_batch_fraction): turning a sweep's index into rows, the loss-curve panel, the times/delay panels, and a
scan of the DMFT with networks at every point."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter

from dmft.io import read_h5


def _num(v):
    return float("nan") if v is None else float(v)


def rows_from_sweep(res, key):
    """(x, t_train, t_test, delay, delay_lower_bound, point) per sweep point, x = parameters[key]."""
    rows = []
    for p in res.points:
        d = p["derived"] or {}
        rows.append((p["parameters"][key], _num(d.get("t_train")), _num(d.get("t_test")), _num(d.get("delay")),
                     _num(d.get("delay_lower_bound")), p))
    return rows


def plot_curves(ax, rows, outdir, colors, time_scale, label):
    """Test (solid) and train (dashed) loss of each finished point against time_scale(x) * tau."""
    for (x, *_rest, p), color in zip(rows, colors):
        if p["status"] == "failed":
            continue
        obs = read_h5(outdir / p["file"])["observables"]
        tau = np.asarray(obs["tau"])
        pos = tau > 0
        t = time_scale(x) * tau[pos]
        ax.plot(t, np.asarray(obs["test_loss"])[pos], color=color, lw=1.6, label=label(x))
        ax.plot(t, np.asarray(obs["train_loss"])[pos], color=color, lw=1.0, ls="--")
    ax.set_xscale("log")


def plot_times_and_delay(ax_t, ax_d, rows, xlabel, guide, guide_label):
    """Log-log t_train, t_test against x (with a power-law guide) and the delay t_test/t_train;
    where the test loss never halved, the lower bound of the delay is marked."""
    x = np.array([r[0] for r in rows])
    t_tr, t_te, delay = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    ax_t.loglog(x, t_tr, "o-", color="C0", label="t_train (train loss < ½ initial)")
    ax_t.loglog(x, t_te, "s-", color="C3", label="t_test (test loss < ½ initial)")
    ax_t.loglog(x, guide(x), ":", color="0.5", label=guide_label)
    ax_t.set_ylabel("τ")
    ax_t.set_title("time to fit and to generalise")
    ax_t.legend(fontsize=8)
    ax_d.semilogx(x, delay, "o-", color="k")
    for xv, *_rest, bound, _p in rows:
        if np.isfinite(bound):  # the test loss did not fall within t_max: the delay is at least this
            ax_d.plot([xv], [bound], "^", color="C3")
            ax_d.annotate(f"> {bound:.2f}", (xv, bound), textcoords="offset points", xytext=(0, 7), ha="center",
                          fontsize=8, color="C3")
    for xv, y in zip(x, delay):
        if np.isfinite(y):
            ax_d.annotate(f"{y:.2f}", (xv, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    for ax in (ax_t, ax_d):
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
    ax_d.set_ylabel("delay t_test / t_train")
    ax_d.set_title("grokking delay")
    ax_d.margins(y=0.2)


def _num_of(d, key):
    v = (d or {}).get(key)
    return float("nan") if v is None else float(v)


def scan_main(doc, key, values, fixed, simulate, name, symbol, xlabel, title, log_x=False):
    """The command line of a scan example (``--workers``, ``--figures`` / ``--out-dir``), then
    :func:`scan_with_networks`."""
    import argparse

    from _output import add_output_options

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    add_output_options(ap)
    scan_with_networks(ap.parse_args(), key, values, fixed, simulate, name, symbol, xlabel, title, log_x)


def scan_with_networks(args, key, values, fixed, simulate, name, symbol, xlabel, title, log_x=False):
    """A Dask sweep of the DMFT over ``key`` = ``values`` (``fixed`` the other settings) with ``simulate`` networks
    at every point (files in ``out/examples/<name>/``); prints t_train, t_test and the delay of both and draws the
    DMFT's loss curves, both times against the parameter (theory lines, networks markers) and the delay into
    ``<name>.png``."""
    from pathlib import Path

    import matplotlib
    from matplotlib.figure import Figure

    from dmft.sweep import sweep

    from _output import DPI, figure_path

    outdir = Path(__file__).resolve().parent.parent / "out" / "examples" / name
    res = sweep({key: list(values)}, outdir, simulate=simulate, n_workers=args.workers, **fixed)
    rows = rows_from_sweep(res, key)
    print(f"{symbol:>6} {'t_train':>8} {'t_test':>8} {'delay':>6}   networks: {'t_train':>8} {'t_test':>8} {'delay':>6}")
    table = []
    for x, t_train, t_test, delay, _bound, p in rows:
        sd = p.get("sim_derived")
        s_train, s_test = _num_of(sd, "t_train"), _num_of(sd, "t_test")
        table.append((x, t_train, t_test, s_train, s_test))
        print(f"{x:6g} {t_train:8.2f} {t_test:8.2f} {delay:6.3f}   networks: {s_train:8.2f} {s_test:8.2f} "
              f"{s_test / s_train:6.3f}")
    table = np.array(table)
    dim = simulate["dim"]
    fig = Figure(figsize=(12.5, 3.9), layout="constrained")
    ax_c, ax_t, ax_d = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(rows)))
    plot_curves(ax_c, rows, outdir, colors, lambda x: 1.0, lambda x: f"{symbol} = {x:g}")
    ax_c.set_xlabel("τ")
    ax_c.set_ylabel("loss (test solid, train dashed)")
    ax_c.set_title("DMFT loss curves")
    ax_c.legend(fontsize=7)
    xs = table[:, 0]
    for col, label, color in ((1, "t_train", "C0"), (2, "t_test", "C3")):
        ax_t.plot(xs, table[:, col], "-", color=color, label=f"{label} DMFT")
        ax_t.plot(xs, table[:, col + 2], "o", color=color, ms=4, label=f"{label} networks D = {dim}")
    ax_t.set_ylabel("τ")
    ax_t.set_yscale("log")
    ax_t.legend(fontsize=7)
    ax_t.set_title("time to halve the train / test loss")
    ax_d.plot(xs, table[:, 2] / table[:, 1], "-", color="k", label="DMFT")
    ax_d.plot(xs, table[:, 4] / table[:, 3], "o", color="k", ms=4, label=f"networks D = {dim}")
    ax_d.set_ylabel("delay t_test / t_train")
    ax_d.legend(fontsize=7)
    for ax in (ax_t, ax_d):
        ax.set_xlabel(xlabel)
        if log_x:
            ax.set_xscale("log", base=2)
    never = xs[~np.isfinite(table[:, 2])]
    if never.size:
        ax_d.set_title(f"no generalisation within τ = {fixed['t_max']:g} at {symbol} = "
                       + ", ".join(f"{v:g}" for v in never), fontsize=9)
    fig.suptitle(title, fontsize=10)
    path = figure_path(args, f"{name}.png")
    fig.savefig(path, dpi=DPI)
    print("wrote", path)
