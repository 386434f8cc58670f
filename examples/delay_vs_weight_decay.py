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
    55 minutes on 2 cores shared with other runs (12 nodes x 16 paths per sampling replica, 4 replicas per point,
    T = 600 steps; 8 networks per point).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _scan import scan_main  # noqa: E402

DECAYS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04)
FIXED = dict(alpha=1.0, ratio=5.5, eps=0.02, dim=200, dt=0.4, t_max=240.0, nodes=12, samples=16, seed=0, replicas=4)
SIMULATE = dict(dim=200, seeds=8, seed=100)


if __name__ == "__main__":
    scan_main(__doc__, "weight_decay", DECAYS, FIXED, SIMULATE, "delay_vs_weight_decay", "ω", "weight decay ω",
              f"grokking with weight decay: α = {FIXED['alpha']:g}, ε = {FIXED['eps']:g}, P/D = {FIXED['ratio']:g}, "
              f"h = {FIXED['dt']:g}, D = {FIXED['dim']}", log_x=False)
