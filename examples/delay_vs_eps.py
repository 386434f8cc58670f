"""Grokking delay against eps, the alignment of the initial NTK with the quadratic target,
from DMFT solves only.

What it computes
    The two-layer DMFT at alpha = 1, P/D = 5.5, D = 200 (spike seed 1/D), no label noise, for
    eps = 0.01, 0.02, 0.05, 0.1, 0.2 (phi(h) = h + eps h^2 / 2).  Feature learning runs at the
    rate kappa = 2 eps / alpha, so each point runs to t_max = 2.4 / eps with step
    dt = min(0.4, 0.008 / eps): 300 steps for eps >= 0.02 (600 for eps = 0.01, whose step is
    capped by Euler stability).  The solves run as a Dask sweep (:func:`dmft.sweep.sweep`, two
    worker processes; files and ``index.json`` in ``out/examples/delay_vs_eps/``, so a second run
    only redraws).  From each solve: t_train and t_test, the first tau at which the train / test
    loss falls below half its initial value, and the delay t_test / t_train
    (:mod:`dmft.derived`).  Figure ``out/figures/delay_vs_eps.png`` (``--figures``: the committed ``examples/figures/delay_vs_eps.png``): loss curves against
    eps tau, the two times against eps, and the delay; the table is printed.

How to run (from the repository root)
    python examples/delay_vs_eps.py [--workers 2] [--figures | --out-dir DIR]

What it costs
    About 1 CPU-minute on a quiet machine (12 nodes x 16 paths per solve, one sampling replica;
    the eps = 0.01 solve is half of it), under a minute of wall time with two workers; up to 3x
    that when the cores are shared.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from dmft.sweep import sweep  # noqa: E402

from _scan import plot_curves, plot_times_and_delay, rows_from_sweep  # noqa: E402
from _output import DPI, add_output_options, figure_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EPSILONS = (0.01, 0.02, 0.05, 0.1, 0.2)
FIXED = dict(alpha=1.0, ratio=5.5, noise=0.0, dim=200, nodes=12, samples=16, seed=0,
             replicas=1)  # one sampling replica: no Monte-Carlo error curves, half the cost


def points():
    return [{"eps": e, "dt": round(min(0.4, 0.008 / e), 6), "t_max": round(2.4 / e, 6)} for e in EPSILONS]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    add_output_options(ap)
    args = ap.parse_args()
    outdir = ROOT / "out" / "examples" / "delay_vs_eps"
    res = sweep(points(), outdir, n_workers=args.workers, **FIXED)
    rows = rows_from_sweep(res, "eps")
    print(f"{'eps':>6} {'dt':>6} {'t_max':>6} {'status':>12} {'t_train':>8} {'t_test':>8} {'delay':>6}")
    for eps, t_train, t_test, delay, _bound, p in rows:
        q = p["parameters"]
        print(f"{q['eps']:6g} {q['dt']:6g} {q['t_max']:6g} {p['status']:>12} {t_train:8.2f} "
              f"{t_test:8.2f} {delay:6.3f}" + (f"  ({p['error'][:60]})" if p.get("error") else ""))

    fig = Figure(figsize=(12.5, 3.9), layout="constrained")
    ax_c, ax_t, ax_d = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    colors = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.85, len(rows)))
    plot_curves(ax_c, rows, outdir, colors, lambda e: e, lambda e: f"ε = {e:g}")
    ax_c.set_xlabel("ε τ")
    ax_c.set_ylabel("loss (test solid, train dashed)")
    ax_c.set_title("DMFT loss curves, time in units of 1/ε")
    ax_c.legend(fontsize=8)
    plot_times_and_delay(ax_t, ax_d, rows, "ε", lambda e: 0.9 / e, "∝ 1/ε")
    fig.suptitle(f"two-layer DMFT: α = {FIXED['alpha']:g}, P/D = {FIXED['ratio']:g}, D = {FIXED['dim']}, "
                 "t_max = 2.4/ε, dt = min(0.4, 0.008/ε)", fontsize=10)
    path = figure_path(args, "delay_vs_eps.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
