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
    (:mod:`dmft.derived`).  Figure ``examples/figures/delay_vs_eps.png``: loss curves against
    eps tau, the two times against eps, and the delay; the table is printed.

How to run (from the repository root)
    python examples/delay_vs_eps.py [--workers 2]

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
from matplotlib.ticker import NullFormatter  # noqa: E402

from dmft.io import read_h5  # noqa: E402
from dmft.sweep import sweep  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EPSILONS = (0.01, 0.02, 0.05, 0.1, 0.2)
FIXED = dict(alpha=1.0, ratio=5.5, noise=0.0, dim=200, nodes=12, samples=16, seed=0,
             replicas=1)  # one sampling replica: no Monte-Carlo error curves, half the cost


def points():
    return [{"eps": e, "dt": round(min(0.4, 0.008 / e), 6), "t_max": round(2.4 / e, 6)} for e in EPSILONS]


def _num(v):
    return float("nan") if v is None else float(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    args = ap.parse_args()
    outdir = ROOT / "out" / "examples" / "delay_vs_eps"
    res = sweep(points(), outdir, n_workers=args.workers, **FIXED)
    rows = []
    print(f"{'eps':>6} {'dt':>6} {'t_max':>6} {'status':>12} {'t_train':>8} {'t_test':>8} {'delay':>6}")
    for p in res.points:
        d = p["derived"] or {}
        q = p["parameters"]
        rows.append((q["eps"], _num(d.get("t_train")), _num(d.get("t_test")), _num(d.get("delay")),
                     _num(d.get("delay_lower_bound")), p))
        print(f"{q['eps']:6g} {q['dt']:6g} {q['t_max']:6g} {p['status']:>12} {rows[-1][1]:8.2f} "
              f"{rows[-1][2]:8.2f} {rows[-1][3]:6.3f}" + (f"  ({p['error'][:60]})" if p.get("error") else ""))

    fig = Figure(figsize=(12.5, 3.9), layout="constrained")
    ax_c, ax_t, ax_d = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    colors = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.85, len(rows)))
    for (eps, *_rest, p), color in zip(rows, colors):
        if p["status"] == "failed":
            continue
        obs = read_h5(outdir / p["file"])["observables"]
        tau = np.asarray(obs["tau"])
        pos = tau > 0
        ax_c.plot(eps * tau[pos], np.asarray(obs["test_loss"])[pos], color=color, lw=1.6, label=f"ε = {eps:g}")
        ax_c.plot(eps * tau[pos], np.asarray(obs["train_loss"])[pos], color=color, lw=1.0, ls="--")
    ax_c.set_xscale("log")
    ax_c.set_xlabel("ε τ")
    ax_c.set_ylabel("loss (test solid, train dashed)")
    ax_c.set_title("DMFT loss curves, time in units of 1/ε")
    ax_c.legend(fontsize=8)
    e = np.array([r[0] for r in rows])
    t_tr, t_te, delay = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    ax_t.loglog(e, t_tr, "o-", color="C0", label="t_train (train loss < ½ initial)")
    ax_t.loglog(e, t_te, "s-", color="C3", label="t_test (test loss < ½ initial)")
    ax_t.loglog(e, 0.9 / e, ":", color="0.5", label="∝ 1/ε")
    ax_t.set_xticks(e, [f"{v:g}" for v in e])
    ax_t.xaxis.set_minor_formatter(NullFormatter())
    ax_t.set_xlabel("ε")
    ax_t.set_ylabel("τ")
    ax_t.set_title("time to fit and to generalise")
    ax_t.legend(fontsize=8)
    ax_d.semilogx(e, delay, "o-", color="k")
    for eps, *_x, bound, p in rows:
        if np.isfinite(bound):
            ax_d.plot([eps], [bound], "^", color="C3")
            ax_d.annotate(f"> {bound:.2f}", (eps, bound), textcoords="offset points", xytext=(0, 7), ha="center",
                          fontsize=8, color="C3")
    for x, y in zip(e, delay):
        if np.isfinite(y):
            ax_d.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax_d.set_xticks(e, [f"{v:g}" for v in e])
    ax_d.xaxis.set_minor_formatter(NullFormatter())
    ax_d.set_xlabel("ε")
    ax_d.set_ylabel("delay t_test / t_train")
    ax_d.set_title("grokking delay")
    ax_d.margins(y=0.2)
    fig.suptitle(f"two-layer DMFT: α = {FIXED['alpha']:g}, P/D = {FIXED['ratio']:g}, D = {FIXED['dim']}, "
                 "t_max = 2.4/ε, dt = min(0.4, 0.008/ε)", fontsize=10)
    path = ROOT / "examples" / "figures" / "delay_vs_eps.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
