"""Benchmark of the gradient-flow DMFT on an adaptive grid (``dmft solve --grid adaptive``; not a test).

Each solve runs in its own process (after a warm-up solve that compiles or loads the Numba kernels),
with the default sampling (replicas of 12 x 16 sites until the Monte-Carlo error of the train and test
loss is <= 0.003) and rtol 1e-3.  Prints wall time, peak RSS, grid points, replicas and the MC error:

* c1 (alpha 1, eps 0.02, ratio 5.5) to tau = 120, beside the gradient-descent DMFT at h = 0.4 (uniform);
* the lazy case alpha 8, eps 0.05, ratio 5.5 to tau = 120, 1200 and 12000, and time(12000) / time(1200).

    python benchmarks/bench_flow.py            # about 10 minutes on 2 cores
    python benchmarks/bench_flow.py --quick    # c1 and tau <= 1200 only, about 2 minutes
"""
import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import dmft
kw = json.loads(sys.argv[1])
warm = dict(kw, t_max=2.0, replicas=2)
warm.pop("nodes", None)
dmft.solve(**warm)
t0 = time.perf_counter()
res = dmft.solve(**kw)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "points": len(res.observables["tau"]), "replicas": int(len(res.diagnostics["sampling_seeds"])),
                  "mc_error": float(res.diagnostics["mc_error"]), "success": bool(res.success),
                  "final": [float(res.observables[k][-1]) for k in ("train_loss", "test_loss")]}))
"""


def run(**kw):
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(kw)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(label, r):
    print(f"  {label:34s} {r['wall_s']:8.1f} {r['peak_gib']:9.2f} {r['points']:7d} {r['replicas']:9d} "
          f"{r['mc_error']:9.4f}   train {r['final'][0]:.4f}  test {r['final'][1]:.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(f"  {'solve':34s} {'wall s':>8s} {'peak GiB':>9s} {'points':>7s} {'replicas':>9s} {'MC error':>9s}")
    c1 = dict(alpha=1.0, ratio=5.5, eps=0.02, t_max=120.0)
    show("c1, tau <= 120, adaptive", run(**c1, grid="adaptive"))
    show("c1, tau <= 120, uniform h = 0.4", run(**c1, dt=0.4))
    lazy = dict(alpha=8.0, ratio=5.5, eps=0.05, grid="adaptive")
    times = {}
    for t_max in (120.0, 1200.0) if args.quick else (120.0, 1200.0, 12000.0):
        r = run(**lazy, t_max=t_max)
        times[t_max] = r["wall_s"]
        show(f"alpha 8, tau <= {t_max:g}, adaptive", r)
    if 12000.0 in times:
        print(f"  time(12000) / time(1200) = {times[12000.0] / times[1200.0]:.2f}")


if __name__ == "__main__":
    main()
