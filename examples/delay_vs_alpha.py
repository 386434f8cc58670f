"""Grokking delay against the output scale alpha (rich ↔ lazy), from DMFT solves only.

What it computes
    The two-layer DMFT of gradient flow (``grid="adaptive"``: an implicit scheme on a grid whose
    steps follow a local error estimate, docs/theory.md section 7) at P/D = 5.5, eps = 0.02,
    D = 200 (spike seed 1/D), no label noise, for alpha = 0.125 ... 16 (rich to lazy, factors of 2).
    All time scales of the network grow about like alpha (learning rate eta N / alpha^2, output
    alpha f), so each point runs to t_max = 150 alpha (tau = 2400 at alpha = 16).
    The solves run as a Dask sweep (:func:`dmft.sweep.sweep`, two worker processes; files and
    ``index.json`` in ``out/examples/delay_vs_alpha/``, so a second run only redraws).  From each
    solve: t_train and t_test, the first tau at which the train / test loss falls below half its
    initial value, and the delay t_test / t_train (:mod:`dmft.derived`).  Figure
    ``out/figures/delay_vs_alpha.png`` (``--figures``: the committed ``examples/figures/delay_vs_alpha.png``): loss curves against tau / alpha, the two times
    against alpha, and the delay; the table is printed.

How to run (from the repository root)
    python examples/delay_vs_alpha.py [--workers 2] [--figures | --out-dir DIR]

What it costs
    12 nodes x 16 paths per sampling replica, 4 replicas per point (their mean and its standard
    error): 1 minute 46 seconds on 2 cores (two workers; the alpha = 16 point runs to tau = 2400).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dmft.sweep import sweep  # noqa: E402

from _scan import plot_curves, plot_times_and_delay, rows_from_sweep  # noqa: E402
from _output import DPI, add_output_options, figure_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
FIXED = dict(ratio=5.5, eps=0.02, noise=0.0, dim=200, grid="adaptive", nodes=12, samples=16, seed=0, replicas=4)


def points():
    return [{"alpha": a, "t_max": 150.0 * a} for a in ALPHAS]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    add_output_options(ap)
    args = ap.parse_args()
    outdir = ROOT / "out" / "examples" / "delay_vs_alpha"
    res = sweep(points(), outdir, n_workers=args.workers, **FIXED)
    rows = rows_from_sweep(res, "alpha")
    print(f"{'alpha':>6} {'t_max':>6} {'status':>12} {'t_train':>8} {'t_test':>8} {'delay':>6}")
    for alpha, t_train, t_test, delay, _bound, p in rows:
        q = p["parameters"]
        never = "not within t_max"
        print(f"{q['alpha']:6g} {q['t_max']:6g} {p['status']:>12} "
              + (f"{t_train:8.2f}" if np.isfinite(t_train) else f"{never:>8}") + " "
              + (f"{t_test:8.2f} {delay:6.3f}" if np.isfinite(t_test) else f"{never}")
              + (f"  ({p['error'][:60]})" if p.get("error") else ""))

    fig = Figure(figsize=(12.5, 3.9), layout="constrained")
    ax_c, ax_t, ax_d = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    import matplotlib

    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(rows)))
    plot_curves(ax_c, rows, outdir, colors, lambda a: 1.0 / a, lambda a: f"α = {a:g}")
    ax_c.set_xlabel("τ / α")
    ax_c.set_ylabel("loss (test solid, train dashed)")
    ax_c.set_title("DMFT loss curves, time in units of α")
    ax_c.legend(fontsize=8)
    plot_times_and_delay(ax_t, ax_d, rows, "α (output scale)", lambda a: 40 * a, "∝ α")
    fig.suptitle(f"two-layer DMFT of gradient flow: P/D = {FIXED['ratio']:g}, ε = {FIXED['eps']:g}, "
                 f"D = {FIXED['dim']}, t_max = 150 α, adaptive grid", fontsize=10)
    path = figure_path(args, "delay_vs_alpha.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
