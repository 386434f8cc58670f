"""Benchmark of the model family's cost in ``dmft.solve`` (not a test).

The grokking case c1 (alpha 1, eps 0.02, ratio 5.5, h 0.4, tau <= 120: T = 300 steps) at the default sampling, one
sampling replica each (so that the numbers compare the per-replica cost), side by side in one run, each in its own
process (so that each peak RSS is its own):

* ``quadratic``: the default target (1/2, 0, 1/2);
* ``even, degree 4``: (1/2, 0, 1/2, 0, 0.05): the |u| quadrature as for the default;
* ``odd, degree 3``: (1/2, 0.3, 1/2, 0.1): an odd target takes each |u| node at +u and -u (twice the sites);
* ``weight decay``: the default target with omega = 0.01.

Prints wall time (after a warm-up solve that compiles or loads the Numba kernels), peak RSS and the final losses.

    python benchmarks/bench_targets.py          # about 1 minute on 2 cores
"""
from _children import run_children

CASE = dict(alpha=1.0, ratio=5.5, eps=0.02, dt=0.4, t_max=120.0, replicas=1)
CONFIGS = {"quadratic": {}, "even, degree 4": dict(target=[0.5, 0, 0.5, 0, 0.05]),
           "odd, degree 3": dict(target=[0.5, 0.3, 0.5, 0.1]), "weight decay": dict(weight_decay=0.01)}

_CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import dmft
case, config = json.loads(sys.argv[1]), json.loads(sys.argv[2])
dmft.solve(case["alpha"], case["ratio"], eps=case["eps"], dt=case["dt"], t_max=2.0, nodes=2, samples=2, replicas=1,
           **config)
t0 = time.perf_counter()
res = dmft.solve(**case, **config)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "final": {k: float(res.observables[k][-1]) for k in ("train_loss", "test_loss")}}))
"""


def main():
    rows = run_children(_CHILD, CASE, CONFIGS)
    print("c1 (alpha 1, eps 0.02, ratio 5.5, h 0.4, tau <= 120, T = 300), one replica of 12 x 16 sites")
    print(f"  {'model':16s} {'wall s':>8s} {'peak GiB':>9s} {'train(120)':>11s} {'test(120)':>10s}")
    for name, r in rows.items():
        print(f"  {name:16s} {r['wall_s']:8.1f} {r['peak_gib']:9.2f} {r['final']['train_loss']:11.5f}"
              f" {r['final']['test_loss']:10.5f}")
    base = rows["quadratic"]["wall_s"]
    print("  time relative to the quadratic target: " + ", ".join(
        f"{name} {r['wall_s'] / base:.2f}x" for name, r in rows.items() if name != "quadratic"))


if __name__ == "__main__":
    main()
