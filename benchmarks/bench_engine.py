"""Benchmark of the solver engine on the linear-regression DMFT (dmft.linear).

For T = 250, 500, 1000, 2000 grid points (uniform grid, t_max = 10, ratio = 2, noise = 0.5, tol 1e-8)
prints: time per fixed-point iteration (one application of the map F), iterations to converge with
plain iteration (damping 0) and with Anderson mixing (m = 5), total wall time, peak memory (resident
set of a fresh process, and the tracemalloc peak of NumPy allocations), and the error against the
Marchenko–Pastur closed form.  Each configuration runs in its own process, so the peaks are its own.

Run:   python benchmarks/bench_engine.py                 (about 1 minute on 2 idle cores, 2-3 under load)
       python benchmarks/bench_engine.py --sizes 250 500 --blas-threads 2
BLAS runs single-threaded by default (as in the tests: on a shared 2-core machine 2-thread
OpenBLAS was measured slower); Numba kernels use all cores.  Cost per iteration is O(T^3)
(two Volterra resolvents of T^3/6 multiply-adds, four triangular matrix products of T^3/2).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(T: int, accel: str) -> dict:
    """Run one configuration in this process and return its measurements."""
    import resource
    import time
    import tracemalloc

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from dmft.linear import solve_linear
    from dmft.marchenko_pastur import losses

    solve_linear(2.0, 0.5, t_max=10.0, steps=20, accel=accel)  # compile / load the Numba cache
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    res = solve_linear(2.0, 0.5, t_max=10.0, steps=T - 1, accel=accel, max_iter=100)
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    train, test = losses(2.0, 0.5, res.observables["tau"])
    err = max(float(np.max(np.abs(res.observables["train_loss"] - train))),
              float(np.max(np.abs(res.observables["test_loss"] - test))))
    return {"T": T, "accel": accel, "status": res.status.name, "nit": res.nit, "nfev": res.nfev, "wall": wall,
            "per_iter": wall / res.nfev, "rss_mb": rss / 1024, "rss_growth_mb": (rss - rss0) / 1024,
            "tracemalloc_mb": peak / 2**20, "err_mp": err, "kernel_mb": 8 * T * T / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--blas-threads", type=int, default=1)
    ap.add_argument("--one", nargs=2, metavar=("T", "ACCEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1])))
        return
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.blas_threads), OMP_NUM_THREADS=str(args.blas_threads),
               MKL_NUM_THREADS=str(args.blas_threads))
    print(f"linear DMFT, ratio 2, noise 0.5, t_max 10, uniform grid, tol 1e-8; BLAS threads {args.blas_threads}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    head = (f"{'T':>5} {'accel':>8} {'status':>9} {'iters':>5} {'s/iter':>7} {'wall s':>7} {'peak RSS MB':>11} "
            f"{'numpy peak MB':>13} {'kernel MB':>9} {'max|err| vs MP':>14}")
    print(head)
    print("-" * len(head))
    for T in args.sizes:
        for accel in ("none", "anderson"):
            out = subprocess.run([sys.executable, __file__, "--one", str(T), accel], env=env, capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['T']:>5} {r['accel']:>8} {r['status']:>9} {r['nit']:>5} {r['per_iter']:>7.3f} "
                  f"{r['wall']:>7.1f} {r['rss_mb']:>11.0f} {r['tracemalloc_mb']:>13.0f} {r['kernel_mb']:>9.1f} "
                  f"{r['err_mp']:>14.2e}", flush=True)


if __name__ == "__main__":
    main()
