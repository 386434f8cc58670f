"""Steps per second of the simulator engines (not a test).

    python benchmarks/bench_simulator.py [--steps 20]

Times full-batch gradient steps (records excluded) of the explicit network (N = 500) and of the
exact infinite-width reduction (w = A w(0) + b) at D = 200, 400, 800, ratio P/D = 2, and one record
(all observables incl. the exact test loss and the NTK alignment) of each.  Cost model: explicit
2 x (P N D) multiply-adds per step, reduced 2 x (P D^2).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

try:
    import dmft  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dmft.simulator import _validate, build_network  # noqa: E402


def bench(D: int, width, steps: int) -> tuple[float, float]:
    setup = _validate(1.0, 2.0, 0.02, 0.0, D, width, 0.2, None, 1.0, None, 1, 0, 10, None, False)
    _, net, _ = build_network(setup, 0)
    net.step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        net.step()
    per_step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    net.observables()
    return 1.0 / per_step, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dims", type=int, nargs="+", default=[200, 400, 800])
    args = parser.parse_args()
    print(f"{'engine':<22}{'D':>6}{'P':>7}{'steps/s':>12}{'GFlop/s':>10}{'record [s]':>12}")
    for width, label in ((500, "explicit N=500"), (math.inf, "reduced N=inf")):
        for D in args.dims:
            P = 2 * D
            rate, rec = bench(D, width, args.steps)
            flops = 4.0 * P * D * (D if width == math.inf else width)
            print(f"{label:<22}{D:>6}{P:>7}{rate:>12.1f}{rate * flops / 1e9:>10.1f}{rec:>12.3f}")


if __name__ == "__main__":
    main()
