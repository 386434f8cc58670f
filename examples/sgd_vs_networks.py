"""Minibatch SGD with Bernoulli batches: the SGD DMFT against networks at D = 200, 400, 800.

Two points, each at batch fractions b = 0.25 and 0.5, solved by the D → ∞ DMFT of SGD at the networks' D (which
enters through the spike seed 1/D) and simulated with exact infinite-width networks trained by the same Bernoulli
batches at the same step h (``dmft.simulate(batch_fraction=b)``):

* ``rich``: α 0.5, ε 0.1, P/D 2, h 0.1, τ ≤ 6;
* ``grokking``: α 1, ε 0.1, P/D 5.5, h 0.2, τ ≤ 48 (full batch at h 0.4: train loss halved at τ ≈ 7, test loss
  at 24).

For each (point, b, D) it tabulates the largest deviation over τ of the train and test loss between the DMFT and
the networks' mean (over training sets, with the m₄ control variate), the networks' standard error and the DMFT's
Monte-Carlo standard error there, writes ``sgd_vs_networks.json`` and the overlay figure ``sgd_vs_networks.png``
(``--out-dir DIR``: to DIR; ``--figures``: the committed ``data/`` and ``examples/figures/``).  Each row is cached
in the table file, so an interrupted run continues.

    python examples/sgd_vs_networks.py            # about 40 minutes on 2 cores
    python examples/sgd_vs_networks.py --figures  # refresh the committed table and figure
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _output import add_output_options  # noqa: E402
from _versus import plot_table, run_table  # noqa: E402

# steps below the stability bound of SGD's batches, h < 1/(1 + sqrt(1/(ratio b)))^2 (0.29 and 0.17 at b = 0.25)
BASE = {"rich": dict(model=dict(alpha=0.5, eps=0.1, ratio=2.0), dt=0.1, t_max=6.0),
        "grokking": dict(model=dict(alpha=1.0, eps=0.1, ratio=5.5), dt=0.2, t_max=48.0)}
POINTS = {f"{name} b={b:g}": {**p, "model": {**p["model"], "batch_fraction": b}}
          for name, p in BASE.items() for b in (0.5, 0.25)}
DIMS = (200, 400, 800)
SIM_SEEDS = 16


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(ap)
    args = ap.parse_args()
    table = run_table(args, "sgd_vs_networks.json", POINTS, DIMS, lambda point, dim: SIM_SEEDS)
    plot_table(args, "sgd_vs_networks.png", table, POINTS, DIMS)


if __name__ == "__main__":
    main()
