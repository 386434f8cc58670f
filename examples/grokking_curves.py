"""Grokking: the DMFT loss curves over simulated infinite-width networks, and the delay.

What it computes
    The grokking case alpha = 1, eps = 0.02 (phi(h) = h + 0.01 h^2), P/D = 5.5, no label noise:
    the D → ∞ DMFT (causal sweep, time step dt = 0.4 in tau = eta t / D, to tau = 150,
    16 teacher-field nodes x 32 Monte-Carlo paths, two sampling replicas for the Monte-Carlo
    error, spike seed s(0) = 1/D) and three exact infinite-width networks
    (``dmft.simulate(width=inf)``, seeds 0-2, each with its own teacher and training set) at the
    same D and the same Euler step, with their lazy (NTK kernel-flow) reference on the same data.  It draws them with :func:`dmft.plot.compare` (train/test loss
    with the DMFT Monte-Carlo band and the seed standard errors; spike and NTK alignment) to
    ``out/figures/grokking_curves.png`` (``--figures``: the committed ``examples/figures/grokking_curves.png``), writes the result files to ``out/examples/`` and
    prints the times at which train and test loss first fall below half their initial value and
    the grokking delay t_test / t_train (:mod:`dmft.derived`), for the DMFT, the seed mean and
    each seed.

How to run (from the repository root)
    python examples/grokking_curves.py                 # D = 200
    python examples/grokking_curves.py --dim 100       # cheaper simulations
    python examples/grokking_curves.py --reuse         # redraw from the files in out/examples/
    python examples/grokking_curves.py --figures       # refresh the committed figure

What it costs
    DMFT: ~45 s measured on a shared 2-core machine (T = 375 steps, two sampling replicas for the
    Monte-Carlo band; the cost grows like T^2).  Simulations: ~7 s for three seeds at D = 200
    (~1.5 s at D = 100).  About 1 minute in all.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import dmft  # noqa: E402
from dmft.derived import grokking_times  # noqa: E402
from dmft.plot import compare, save_figure  # noqa: E402
from dmft.simulator import SimulationResult  # noqa: E402
from _output import DPI, add_output_options, figure_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASE = dict(alpha=1.0, ratio=5.5, eps=0.02, noise=0.0)


def _row(name, g):
    fmt = lambda v: "   nan" if not np.isfinite(v) else f"{v:6.1f}"  # noqa: E731
    return f"  {name:22s} t_train {fmt(g.t_train)}   t_test {fmt(g.t_test)}   delay {g.delay:5.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=200, help="input dimension D of DMFT and simulations (default 200)")
    ap.add_argument("--t-max", type=float, default=150.0, help="final time in tau (default 150)")
    ap.add_argument("--dt", type=float, default=0.4, help="Euler step in tau (default 0.4)")
    ap.add_argument("--seeds", type=int, default=3, help="simulated networks (default 3)")
    ap.add_argument("--reuse", action="store_true", help="reuse the result files of an earlier run")
    add_output_options(ap)
    args = ap.parse_args()

    outdir = ROOT / "out" / "examples"
    outdir.mkdir(parents=True, exist_ok=True)
    theory = outdir / f"grokking_dmft_D{args.dim}.h5"
    sims = outdir / f"grokking_sim_D{args.dim}.h5"
    if not (args.reuse and theory.exists()):
        t0 = time.perf_counter()
        res = dmft.solve(**CASE, dim=args.dim, dt=args.dt, t_max=args.t_max, nodes=16, samples=32, seed=0,
                         out=theory)
        print(f"DMFT: {res.message.split(';')[0]} ({time.perf_counter() - t0:.1f} s) -> {theory}")
    if not (args.reuse and sims.exists()):
        t0 = time.perf_counter()
        sim = dmft.simulate(**CASE, dim=args.dim, width=float("inf"), dt=args.dt, t_max=args.t_max,
                            seeds=args.seeds, lazy_reference=True)
        sim.save(sims)
        print(f"simulation: {args.seeds} seeds at D = {args.dim} ({time.perf_counter() - t0:.1f} s) -> {sims}")
    sim = SimulationResult.load(sims)

    print("first tau with loss < 1/2 of its initial value, and the delay t_test / t_train:")
    print(_row(f"DMFT (D = {args.dim})", grokking_times(theory)))
    print(_row("simulation, seed mean", grokking_times(sim)))
    for k in range(sim.per_seed["train_loss"].shape[0]):
        curves = {"tau": sim.tau, "train_loss": sim.per_seed["train_loss"][k],
                  "test_loss": sim.per_seed["test_loss"][k]}
        print(_row(f"  seed {sim.parameters['seed'] + k}", grokking_times(curves)))
    lazy = {"tau": sim.tau, **sim.lazy["observables"]}
    print(_row("lazy (NTK) reference", grokking_times(lazy)))
    print(f"  lazy reference at tau = {sim.tau[-1]:g}: test loss {lazy['test_loss'][-1]:.3f} "
          f"(network: {sim.observables['test_loss'][-1]:.3f})")

    fig = compare(theory, sims, fraction_marks=True)
    path = save_figure(fig, figure_path(args, "grokking_curves.png"), dpi=DPI)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
