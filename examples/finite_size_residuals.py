"""Where the finite-size DMFT and the networks part: residual and field conditional on the teacher field u.

For case c1 (alpha 1, eps 0.02, P/D = 5.5, h = 0.4) this trains ``--networks`` exact infinite-width
networks (``ReducedNetwork``, seeds 9000, 9001, ...) at one D, records every training point's
teacher field u = sqrt(D) bhat.x, residual Delta = y - f and quadratic form V = |A^T x|^2 at
tau = 80 and 100, and estimates E[Delta | |u|] and E[V | |u|] at the DMFT's quadrature nodes by a
local linear fit in a window |u| ± 0.12 (standard errors by jackknife over networks).  The DMFT
gives the same conditionals directly: every sampled site sits at a node u_k.  Compared: the
finite-size DMFT (``finite_size=True``) and the D → ∞ DMFT, each averaged over ``--dmft-seeds``
sampling seeds.  docs/finite-size.md, section 5b, discusses the result: the finite-size DMFT
over-memorises the points with |u| >= 2.5.

    python examples/finite_size_residuals.py                 # D = 400, 32 networks: ~5 min on 2 cores
    python examples/finite_size_residuals.py --dim 200 --networks 48

Writes ``data/finite_size_residuals_D<D>.json``.
"""
import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from dmft.params import TwoLayerModel  # noqa: E402
from dmft.simulator import ReducedNetwork, make_problem  # noqa: E402
from dmft.two_layer import TwoLayerDMFT, TwoLayerProblem  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALPHA, EPS, RATIO, H, T_MAX = 1.0, 0.02, 5.5, 0.4, 120.0
TAUS = (80.0, 100.0)
WINDOW = 0.12


def networks(dim, count):
    """u, Delta(tau), V(tau) of every training point of `count` networks, shape (count, P)."""
    P = int(RATIO * dim)
    steps = [int(round(t / H)) for t in TAUS]
    u = np.zeros((count, P))
    delta = {t: np.zeros((count, P)) for t in TAUS}
    V = {t: np.zeros((count, P)) for t in TAUS}
    for k in range(count):
        pb = make_problem(dim, P, 0.0, np.random.default_rng(9000 + k))
        net = ReducedNetwork(pb, ALPHA, EPS, eta=H * dim)
        u[k] = pb.X @ pb.bhat * np.sqrt(dim)
        for n in range(steps[-1] + 1):
            if n in steps:
                t = TAUS[steps.index(n)]
                delta[t][k] = net.residual()
                Z = pb.X @ net.A
                V[t][k] = np.sum(Z * Z, axis=1)
            net.step()
    return np.abs(u), delta, V


def local_mean(u, y, x):
    m = np.abs(u - x) < WINDOW
    A = np.vstack([np.ones(m.sum()), u[m] - x]).T
    return float(np.linalg.lstsq(A, y[m], rcond=None)[0][0])


def conditional(u, y, x):
    """Local-linear estimate of E[y | |u| = x] pooled over networks, with its jackknife SE over networks."""
    n = u.shape[0]
    est = local_mean(u.ravel(), y.ravel(), x)
    jk = np.array([local_mean(np.delete(u, k, 0).ravel(), np.delete(y, k, 0).ravel(), x) for k in range(n)])
    return est, float(np.sqrt((n - 1) / n * np.sum((jk - jk.mean()) ** 2)))


def dmft_conditionals(dim, finite_size, seeds):
    """Per-node E[Delta | u_k] (and E[V | u_k] with finite_size) at TAUS, averaged over sampling seeds."""
    out = []
    for seed in range(seeds):
        p = TwoLayerProblem(TwoLayerModel(ALPHA, RATIO, EPS),
                            TwoLayerDMFT(dim=dim, dt=H, t_max=T_MAX, nodes=16, samples=32, seed=seed,
                                         finite_size=finite_size))
        K, msg = p.sweep()
        if msg:
            raise RuntimeError(msg)
        st = p.last_pass
        nodes = np.unique(np.round(p.u, 9))
        row = {}
        for t in TAUS:
            j = int(round(t / H))
            at = [np.abs(p.u - x) < 1e-9 for x in nodes]
            row[t] = {"Delta": [float(np.average(st["Delta"][a, j], weights=p.weights[a])) for a in at]}
            if finite_size:
                row[t]["V"] = [float(np.average(st["Vfull"][a, j, j], weights=p.weights[a])) for a in at]
        out.append(row)
    mean = {t: {k: np.mean([o[t][k] for o in out], axis=0).tolist() for k in out[0][t]} for t in TAUS}
    return nodes, mean


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=400)
    ap.add_argument("--networks", type=int, default=32)
    ap.add_argument("--dmft-seeds", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    u, delta, V = networks(args.dim, args.networks)
    print(f"networks: {time.perf_counter() - t0:.0f} s", flush=True)
    nodes, fs = dmft_conditionals(args.dim, True, args.dmft_seeds)
    _, inf = dmft_conditionals(args.dim, False, args.dmft_seeds)
    show = [k for k, x in enumerate(nodes) if 0.2 < x < 3.8]
    result = {"dim": args.dim, "networks": args.networks, "dmft_seeds": args.dmft_seeds, "u": nodes[show].tolist()}
    for t in TAUS:
        rows = {}
        for name, y in (("Delta", delta[t]), ("V", V[t])):
            est = [conditional(u, y, nodes[k]) for k in show]
            rows[name] = {"networks": [e[0] for e in est], "networks_se": [e[1] for e in est],
                          "finite_size": [fs[t][name][k] for k in show]}
            if name in inf[t]:
                rows[name]["d_inf"] = [inf[t][name][k] for k in show]
        result[f"tau_{t:g}"] = rows
        print(f"tau = {t:g}, D = {args.dim}, {args.networks} networks")
        print("  |u|          " + " ".join(f"{nodes[k]:8.2f}" for k in show))
        for name, r in rows.items():
            for src in ("networks", "networks_se", "finite_size", "d_inf"):
                if src in r:
                    print(f"  {name:5s} {src:11s}" + " ".join(f"{v:8.3f}" for v in r[src]))
    path = ROOT / "data" / f"finite_size_residuals_D{args.dim}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
