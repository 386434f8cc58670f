"""Benchmark of the two-layer DMFT sweep (not a test).

Prints: time per sweep vs number of time steps T (100, 300, 1000) and vs sampled sites,
the grokking case c1 (alpha 1, eps 0.02, ratio 5.5, h 0.4, T = 300) with the run-to-run
spread of its losses over independent sampling seeds, the same solve with ``finite_size=True``
(docs/finite-size.md) at D = 200, and peak memory (ru_maxrss).

    python benchmarks/bench_two_layer.py            # about 5 CPU-minutes on 2 cores
    python benchmarks/bench_two_layer.py --quick    # T <= 300 only, ~1 minute
"""
import argparse
import resource
import time

import numpy as np

from dmft.params import TwoLayerModel
from dmft.two_layer import TwoLayerDMFT, TwoLayerProblem


def run(alpha, ratio, eps, dt, t_max, nodes, samples, seed=0, finite_size=False):
    p = TwoLayerProblem(TwoLayerModel(alpha, ratio, eps), TwoLayerDMFT(dim=200, dt=dt, t_max=t_max, nodes=nodes,
                                                                      samples=samples, seed=seed,
                                                                      finite_size=finite_size))
    start = time.perf_counter()
    K, msg = p.sweep()
    elapsed = time.perf_counter() - start
    return elapsed, p.observables_from(K, p.last_pass["Delta"]), msg


def peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    run(1.0, 5.5, 0.02, 0.4, 4.0, 2, 2)  # compile
    print("time per sweep vs T (c1 parameters, 16 nodes x 32 paths = 528 sites)")
    for T in (100, 300) if args.quick else (100, 300, 1000):
        nodes, samples = (16, 32) if T <= 300 else (4, 8)
        el, _, msg = run(1.0, 5.5, 0.02, 0.4, 0.4 * T, nodes, samples)
        sites = nodes * (samples + 1)
        print(f"  T = {T:5d}: {el:7.2f} s  ({el / sites * 1e3:.2f} ms per site)  sites = {sites}  "
              f"peak RSS {peak_gib():.2f} GiB  {msg or ''}")
    print("time per sweep vs samples (c1, T = 300, 16 nodes)")
    for samples in (8, 32) if args.quick else (8, 32, 128):
        el, _, _ = run(1.0, 5.5, 0.02, 0.4, 120.0, 16, samples)
        print(f"  samples = {samples:4d} ({16 * (samples + 1)} sites): {el:7.2f} s")
    print("c1 grokking solve (T = 300, 16 x 32 sites): spread over 4 sampling seeds")
    outs, times = [], []
    for seed in range(4):
        el, obs, _ = run(1.0, 5.5, 0.02, 0.4, 120.0, 16, 32, seed=seed)
        outs.append(obs)
        times.append(el)
    for name in ("train_loss", "test_loss"):
        sd = np.std([o[name] for o in outs], axis=0, ddof=1)
        print(f"  {name}: max-over-time run-to-run sd {sd.max():.4f}; final {np.mean([o[name][-1] for o in outs]):.4f}")
    print(f"  time per solve {np.mean(times):.1f} s; peak RSS {peak_gib():.2f} GiB")
    print("c1 with finite_size=True (D = 200, T = 300, 16 x 32 sites): spread over 2 sampling seeds")
    run(1.0, 5.5, 0.02, 0.4, 4.0, 2, 4, finite_size=True)  # compile
    outs, times = [], []
    for seed in range(2):
        el, obs, _ = run(1.0, 5.5, 0.02, 0.4, 120.0, 16, 32, seed=seed, finite_size=True)
        outs.append(obs)
        times.append(el)
    for name in ("train_loss", "test_loss"):
        sd = np.std([o[name] for o in outs], axis=0, ddof=1)
        print(f"  {name}: max-over-time run-to-run sd {sd.max():.4f}; final {np.mean([o[name][-1] for o in outs]):.4f}")
    print(f"  time per solve {np.mean(times):.1f} s (one training-set replica costs the same); "
          f"peak RSS {peak_gib():.2f} GiB")


if __name__ == "__main__":
    main()
