"""Grokking delay against weight decay, from the DMFT and networks together.

What it computes
    The grokking point c1 (α 1, ε 0.02, P/D 5.5, no label noise, the quadratic target) trained by gradient
    descent with steps h = 0.4 and weight decay ω = 0 ... 0.04 (dW/dτ = −ω W − gradient; each step multiplies
    the weights by 1 − hω), to τ = 240.  The DMFT (uniform grid at the networks' step, D = 200 in the spike seed)
    runs as a Dask sweep with ω as its axis (``dmft.sweep.sweep``, files and ``index.json`` in
    ``out/examples/delay_vs_weight_decay/``, so a second run only redraws), each point with 8 exact
    infinite-width networks at D = 200 on the same step.  From each: t_train and t_test, the first τ at which
    the train / test loss falls below half its initial value, and the delay t_test / t_train
    (:mod:`dmft.derived`).  Figure ``out/figures/delay_vs_weight_decay.png`` (``--figures``: the committed
    ``examples/figures/delay_vs_weight_decay.png``): the DMFT's loss curves, t_train and t_test against ω from
    theory (lines) and networks (markers), and the delay; the table is printed.

How to run (from the repository root)
    python examples/delay_vs_weight_decay.py [--workers 2] [--figures | --out-dir DIR]

What it costs
    About 10 minutes on 2 cores (12 nodes x 16 paths per sampling replica, 4 replicas per point).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dmft.sweep import sweep  # noqa: E402

from _scan import plot_curves, rows_from_sweep  # noqa: E402
from _output import DPI, add_output_options, figure_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DECAYS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04)
FIXED = dict(alpha=1.0, ratio=5.5, eps=0.02, dim=200, dt=0.4, t_max=240.0, nodes=12, samples=16, seed=0, replicas=4)
SIMULATE = dict(dim=200, seeds=8, seed=100)


def _num(d, key):
    v = (d or {}).get(key)
    return float("nan") if v is None else float(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    add_output_options(ap)
    args = ap.parse_args()
    outdir = ROOT / "out" / "examples" / "delay_vs_weight_decay"
    res = sweep({"weight_decay": list(DECAYS)}, outdir, simulate=SIMULATE, n_workers=args.workers, **FIXED)
    rows = rows_from_sweep(res, "weight_decay")
    print(f"{'omega':>6} {'t_train':>8} {'t_test':>8} {'delay':>6}   networks: {'t_train':>8} {'t_test':>8} {'delay':>6}")
    table = []
    for omega, t_train, t_test, delay, _bound, p in rows:
        sd = p.get("sim_derived")
        s_train, s_test = _num(sd, "t_train"), _num(sd, "t_test")
        table.append((omega, t_train, t_test, s_train, s_test))
        print(f"{omega:6g} {t_train:8.2f} {t_test:8.2f} {delay:6.3f}   networks: {s_train:8.2f} {s_test:8.2f} "
              f"{s_test / s_train:6.3f}")
    table = np.array(table)

    fig = Figure(figsize=(12.5, 3.9), layout="constrained")
    ax_c, ax_t, ax_d = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    import matplotlib

    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(rows)))
    plot_curves(ax_c, rows, outdir, colors, lambda w: 1.0, lambda w: f"ω = {w:g}")
    ax_c.set_xlabel("τ")
    ax_c.set_ylabel("loss (test solid, train dashed)")
    ax_c.set_title("DMFT loss curves")
    ax_c.legend(fontsize=7)
    om = table[:, 0]
    for col, name, color in ((1, "t_train", "C0"), (2, "t_test", "C3")):
        ax_t.plot(om, table[:, col], "-", color=color, label=f"{name} DMFT")
        ax_t.plot(om, table[:, col + 2], "o", color=color, ms=4, label=f"{name} networks D = 200")
    ax_t.set_xlabel("weight decay ω")
    ax_t.set_ylabel("τ")
    ax_t.set_yscale("log")
    ax_t.legend(fontsize=7)
    ax_t.set_title("time to halve the train / test loss")
    ax_d.plot(om, table[:, 2] / table[:, 1], "-", color="k", label="DMFT")
    ax_d.plot(om, table[:, 4] / table[:, 3], "o", color="k", ms=4, label="networks D = 200")
    ax_d.set_xlabel("weight decay ω")
    ax_d.set_ylabel("delay t_test / t_train")
    ax_d.legend(fontsize=7)
    never = om[~np.isfinite(table[:, 2])]
    if never.size:
        ax_d.axvspan(never.min(), om.max(), color="0.9", zorder=0)
        ax_d.set_title(f"no generalisation within τ = {FIXED['t_max']:g} for ω ≥ {never.min():g}", fontsize=9)
    fig.suptitle(f"grokking with weight decay: α = {FIXED['alpha']:g}, ε = {FIXED['eps']:g}, P/D = {FIXED['ratio']:g}, "
                 f"h = {FIXED['dt']:g}, D = {FIXED['dim']}", fontsize=10)
    path = figure_path(args, "delay_vs_weight_decay.png")
    fig.savefig(path, dpi=DPI)
    print("wrote", path)


if __name__ == "__main__":
    main()
