"""The data window of grokking: how the amount of data P/D decides between memorising without
generalising, grokking, and train tracking test.  From DMFT solves only.

What it computes
    The two-layer DMFT at alpha = 1, eps = 0.02, D = 200 (spike seed 1/D), no label noise, for
    P/D = 1, 2, 3, 4, 5.5, 8, 16, all in one time window tau <= 150.  The Euler step is
    dt = 0.2, 0.25, 0.3, 0.35 for P/D = 1, 2, 3, 4 and 0.4 above: Euler stability of the linear
    fit modes requires dt < 1/(1 + sqrt(D/P))^2 (0.25 at P/D = 1), which is also why P/D < 1
    is left out (dt < 0.17: several minutes per solve).  The solves run as a Dask sweep
    (:func:`dmft.sweep.sweep`, two worker processes; files and ``index.json`` in
    ``out/examples/dataset_window/``, so a second run only redraws).  From each solve: t_train
    and t_test, the first tau at which the train / test loss falls below half its initial
    value, and the delay t_test / t_train (:mod:`dmft.derived`); a test loss that never falls
    within the window gives the lower bound 150 / t_train.  Figure
    ``out/figures/dataset_window.png`` (``--figures``: the committed ``examples/figures/dataset_window.png``): the loss curves, and t_train, t_test against P/D
    with the window; the table is printed.

How to run (from the repository root)
    python examples/dataset_window.py [--workers 2] [--figures | --out-dir DIR]

What it costs
    About 3 CPU-minutes on a quiet machine (12 nodes x 16 paths per solve, one sampling replica;
    the small-P/D solves need the most steps: 750 at P/D = 1), ~1.5 minutes of wall time with
    two workers; up to 3x that when the cores are shared.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dmft.io import read_h5  # noqa: E402
from dmft.sweep import sweep  # noqa: E402

from _scan import plot_curves, rows_from_sweep  # noqa: E402
from _output import DPI, add_output_options, figure_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 150.0
STEPS = {1.0: 0.2, 2.0: 0.25, 3.0: 0.3, 4.0: 0.35, 5.5: 0.4, 8.0: 0.4, 16.0: 0.4}  # P/D -> dt
FIXED = dict(alpha=1.0, eps=0.02, noise=0.0, dim=200, nodes=12, samples=16, seed=0, t_max=WINDOW,
             replicas=1)  # one sampling replica: no Monte-Carlo error curves, half the cost


def points():
    return [{"ratio": r, "dt": dt} for r, dt in STEPS.items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    add_output_options(ap)
    args = ap.parse_args()
    outdir = ROOT / "out" / "examples" / "dataset_window"
    res = sweep(points(), outdir, n_workers=args.workers, **FIXED)
    rows = rows_from_sweep(res, "ratio")
    print(f"{'P/D':>5} {'dt':>5} {'status':>12} {'t_train':>8} {'t_test':>8} {'delay':>7} {'final test':>10}")
    for ratio, t_train, t_test, delay, bound, p in rows:
        q = p["parameters"]
        final = float("nan")
        if p["status"] != "failed":
            final = float(np.asarray(read_h5(outdir / p["file"])["observables"]["test_loss"])[-1])
        shown = f"{delay:7.3f}" if np.isfinite(delay) else f"> {bound:5.2f}"
        print(f"{q['ratio']:5g} {q['dt']:5g} {p['status']:>12} {t_train:8.2f} {t_test:8.2f} {shown:>7} "
              f"{final:10.3f}" + (f"  ({p['error'][:60]})" if p.get("error") else ""))

    fig = Figure(figsize=(11.5, 4.0), layout="constrained")
    ax_c, ax_t = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    colors = matplotlib.colormaps["cividis"](np.linspace(0.0, 0.9, len(rows)))
    plot_curves(ax_c, rows, outdir, colors, lambda r: 1.0, lambda r: f"P/D = {r:g}")
    ax_c.set_yscale("log")  # memorisation (train -> 0) and the test-loss blow-up at P/D = 1 on one scale
    ax_c.set_xlabel("τ = η t / D")
    ax_c.set_ylabel("loss (test solid, train dashed)")
    ax_c.set_title("DMFT loss curves")
    ax_c.legend(fontsize=8, ncol=2, loc="lower left")
    r = np.array([row[0] for row in rows])
    t_tr, t_te = (np.array([row[i] for row in rows]) for i in (1, 2))
    ax_t.semilogy(r, t_tr, "o-", color="C0", label="t_train (train loss < ½ initial)")
    ax_t.semilogy(r, t_te, "s-", color="C3", label="t_test (test loss < ½ initial)")
    never = ~np.isfinite(t_te) & np.isfinite(t_tr)
    if never.any():
        ax_t.plot(r[never], np.full(never.sum(), WINDOW), "^", color="C3", ms=8, mfc="white",
                  label=f"test loss not halved by τ = {WINDOW:g}")
    ax_t.axhline(WINDOW, color="0.5", ls=":", lw=1)
    ax_t.text(r.max(), WINDOW * 1.08, f"window τ ≤ {WINDOW:g}", ha="right", va="bottom", fontsize=8, color="0.4")
    for x, y1, y2 in zip(r, t_tr, t_te):
        if np.isfinite(y1) and np.isfinite(y2):
            ax_t.annotate(f"×{y2 / y1:.2f}", (x, y2), textcoords="offset points", xytext=(0, 7), ha="center",
                          fontsize=8, color="C3")
    ax_t.set_xscale("log")
    ax_t.set_xticks(r, [f"{v:g}" for v in r])
    ax_t.set_xlabel("P/D (training points per input dimension)")
    ax_t.set_ylabel("τ")
    ax_t.set_title("time to fit and to generalise (×: delay t_test/t_train)")
    ax_t.set_ylim(top=WINDOW * 2.2)
    ax_t.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"two-layer DMFT: α = {FIXED['alpha']:g}, ε = {FIXED['eps']:g}, D = {FIXED['dim']}, "
                 f"τ ≤ {WINDOW:g}", fontsize=10)
    path = figure_path(args, "dataset_window.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
