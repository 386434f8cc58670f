"""The model family (general target, label noise, weight decay): the DMFT against networks at D = 200, 400, 800.

Two points, each solved by the D → ∞ DMFT at the networks' D (which enters through the spike seed 1/D) and
simulated with exact infinite-width networks (``dmft.simulate``, width = inf) at the same Euler step h:

* ``mixed``: a target with linear and cubic parts, label noise and weight decay together
  (α 1, ε 0.1, P/D 2, g = 0.2 + 0.7 He₁ + 0.5 He₂ + 0.15 He₃, σ 0.2, ω 0.05, h 0.2, τ ≤ 12);
* ``grokking``: the grokking point g2 with weight decay (α 2, ε 0.05, P/D 5.5, ω 0.01, h 0.4, τ ≤ 120), by the
  D → ∞ DMFT and by the finite-size DMFT (``--finite-size``, 16 × 32 sites, 4 replicas) against the same networks.

For each point and D it tabulates the largest deviation over τ of the train and test loss between the DMFT and
the networks' mean (over training sets, with the label moment (1/P) Σ y² as control variate,
``SimulationResult.seed_mean``), the networks' standard error and the DMFT's Monte-Carlo standard error there,
writes ``model_family.json`` and the overlay figure ``model_family.png`` (``--out-dir DIR``: to DIR;
``--figures``: the committed ``data/`` and ``examples/figures/``).  Each (point, D) is cached in the table
file, so an interrupted run continues.

    python examples/model_family.py            # about 2 hours on 2 cores (the networks at D = 800: 53 minutes)
    python examples/model_family.py --figures  # refresh the committed table and figure
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _output import add_output_options  # noqa: E402
from _versus import plot_table, run_table  # noqa: E402

POINTS = {
    "mixed": dict(model=dict(alpha=1.0, eps=0.1, ratio=2.0, target=(0.2, 0.7, 0.5, 0.15), noise=0.2,
                             weight_decay=0.05), dt=0.2, t_max=12.0),
    "grokking": dict(model=dict(alpha=2.0, eps=0.05, ratio=5.5, weight_decay=0.01), dt=0.4, t_max=120.0),
    "grokking, finite-size": dict(model=dict(alpha=2.0, eps=0.05, ratio=5.5, weight_decay=0.01), dt=0.4, t_max=120.0,
                                  options=dict(finite_size=True, nodes=16, samples=32, replicas=4)),
}
DIMS = (200, 400, 800)
SIM_SEEDS = {"mixed": 32, "grokking": 16, "grokking, finite-size": 16}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(ap)
    args = ap.parse_args()
    table = run_table(args, "model_family.json", POINTS, DIMS, lambda point, dim: SIM_SEEDS[point])
    plot_table(args, "model_family.png", table, POINTS, DIMS)


if __name__ == "__main__":
    main()
