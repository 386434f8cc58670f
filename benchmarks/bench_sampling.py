"""Benchmark of the sampling defaults of ``dmft.solve`` (not a test).

The grokking case c1 (alpha 1, eps 0.02, ratio 5.5, h 0.4, tau <= 120: T = 300 steps), solved side by side
in one run, each in its own process (so that each peak RSS is its own):

* ``default``: the defaults (12 nodes x 16 paths per sampling replica, replicas added until the standard
  error of the mean train and test loss is <= mc_tol = 0.003);
* ``24x64, 2 replicas``: 24 nodes x 64 paths and 2 replicas, the sampling of dmft 0.1.0's default solve.

Prints wall time (after a warm-up solve that compiles or loads the Numba kernels), peak RSS, the number
of sampling replicas and the Monte-Carlo standard error of the mean train and test loss that each
reports (largest over tau).

    python benchmarks/bench_sampling.py          # about 2 minutes on 2 cores
"""
from _children import run_children

CASE = dict(alpha=1.0, ratio=5.5, eps=0.02, dt=0.4, t_max=120.0)
CONFIGS = {"default": {}, "24x64, 2 replicas": dict(nodes=24, samples=64, replicas=2)}

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import dmft
case, config = json.loads(sys.argv[1]), json.loads(sys.argv[2])
dmft.solve(case["alpha"], case["ratio"], eps=case["eps"], dt=case["dt"], t_max=2.0, nodes=2, samples=2, replicas=2)
t0 = time.perf_counter()
res = dmft.solve(case["alpha"], case["ratio"], eps=case["eps"], dt=case["dt"], t_max=case["t_max"], **config)
wall = time.perf_counter() - t0
err = {k: float(np.nanmax(res.errors["mc"][k])) for k in ("train_loss", "test_loss")}
print(json.dumps({"wall_s": wall, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "replicas": int(len(res.diagnostics["sampling_seeds"])), "mc_error": err,
                  "final": {k: float(res.observables[k][-1]) for k in ("train_loss", "test_loss")}}))
"""


def main():
    rows = run_children(_CHILD, CASE, CONFIGS)
    print("c1 (alpha 1, eps 0.02, ratio 5.5, h 0.4, tau <= 120, T = 300)")
    print(f"  {'sampling':20s} {'wall s':>8s} {'peak GiB':>9s} {'replicas':>9s} {'MC SE train':>12s} {'MC SE test':>11s}"
          f" {'train(120)':>11s} {'test(120)':>10s}")
    for name, r in rows.items():
        print(f"  {name:20s} {r['wall_s']:8.1f} {r['peak_gib']:9.2f} {r['replicas']:9d} {r['mc_error']['train_loss']:12.5f}"
              f" {r['mc_error']['test_loss']:11.5f} {r['final']['train_loss']:11.5f} {r['final']['test_loss']:10.5f}")
    base, new = rows["24x64, 2 replicas"], rows["default"]
    print(f"  speed-up of the default: {base['wall_s'] / new['wall_s']:.1f}x")


if __name__ == "__main__":
    main()
