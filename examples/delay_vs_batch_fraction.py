"""Grokking delay against the batch fraction of minibatch SGD, from the DMFT and networks together.

What it computes
    A grokking point (α 1, ε 0.1, P/D 5.5, the quadratic target) trained by minibatch SGD with Bernoulli batches of
    fraction b = 1, 1/2, 1/4, 1/8, 1/16 (each point in the batch with probability b at every step, gradient
    (1/(bP)) Σ over the batch) with steps h = 0.1 (below the stability bound 1/(1 + sqrt(1/(ratio b)))² = 0.137 of
    b = 1/16), to τ = 40.  The SGD DMFT (D = 200 in the spike seed) runs as a Dask sweep with b as its axis
    (``dmft.sweep.sweep``, files and ``index.json`` in ``out/examples/delay_vs_batch_fraction/``, so a second run
    only redraws), each point with 8 exact infinite-width networks at D = 200 trained by the same batches.  From
    each: t_train and t_test, the first τ at which the train / test loss falls below half its initial value, and the
    delay t_test / t_train (:mod:`dmft.derived`).  Figure ``out/figures/delay_vs_batch_fraction.png``
    (``--figures``: the committed ``examples/figures/delay_vs_batch_fraction.png``): the DMFT's loss curves,
    t_train and t_test against b from theory (lines) and networks (markers), and the delay; the table is printed.

How to run (from the repository root)
    python examples/delay_vs_batch_fraction.py [--workers 2] [--figures | --out-dir DIR]

What it costs
    13 minutes on 2 cores shared with other runs (12 nodes x 8 antithetic pairs per sampling replica, 4 replicas
    per point, T = 400 steps; 8 networks per point).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _scan import scan_main  # noqa: E402

FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625)
FIXED = dict(alpha=1.0, ratio=5.5, eps=0.1, dim=200, dt=0.1, t_max=40.0, nodes=12, samples=16, seed=0, replicas=4)
SIMULATE = dict(dim=200, seeds=8, seed=100)


if __name__ == "__main__":
    scan_main(__doc__, "batch_fraction", FRACTIONS, FIXED, SIMULATE, "delay_vs_batch_fraction", "b", "batch fraction b",
              f"grokking under minibatch SGD: α = {FIXED['alpha']:g}, ε = {FIXED['eps']:g}, P/D = {FIXED['ratio']:g}, "
              f"h = {FIXED['dt']:g}, D = {FIXED['dim']}", log_x=True)
