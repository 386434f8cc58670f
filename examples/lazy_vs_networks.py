"""The gradient-flow DMFT on the adaptive grid against networks in the lazy regime, at D = 200, 400, 800.

The case: alpha 8, eps 0.05, ratio 5.5, tau <= 800.  Networks fit their training set by tau ~ 100 and
then lower the test loss slowly (the rich phase that grokking ends in).  For each D this compares

* exact infinite-width networks (``dmft.simulate``, width = inf) trained by gradient descent at step
  h = 0.2 (``SEEDS[D]`` seeds from 1000), plus ``STEP_CHECK`` seeds at h = 0.1 at D = 200 to show the
  networks' own step error, with
* the gradient-flow DMFT (``grid="adaptive"``, rtol ``RTOL``, D entering through the spike seed
  s(0) = 1/D), its default sampling (replicas until the Monte-Carlo error is <= mc_tol),

and tabulates for the train and test loss the largest deviation of the DMFT from the networks' m4
control-variate mean (``SimulationResult.seed_mean``) in each window, the networks' SE and the DMFT's SE at
that time, and the final values.  The DMFT curve is interpolated to the networks' record times with a
monotone cubic in log tau; ``tolerance`` reports how far the default rtol (1e-3) moves the curves from
the rtol = RTOL solution used here.  The deviations are given in two windows (``WINDOWS``): the fit of the
training set (tau <= 100), where the networks' own step error is largest (``step_check``: h = 0.2 against
0.1 on the same training sets, and the DMFT against the seeds' h -> 0 extrapolation 2 L(0.1) - L(0.2)), and
the slow phase after it.

Writes ``lazy_vs_networks.json`` and ``lazy_vs_networks.png`` to ``out/figures/`` (``--figures``: the
committed ``data/`` and ``examples/figures/``).  Each network is cached as its own HDF5 file under
``--sim-cache``; missing ones run in ``--jobs`` processes.

    python examples/lazy_vs_networks.py --jobs 2   # networks about 2 CPU-hours (11 min each at D = 800), then ~3 min
"""
import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import PchipInterpolator  # noqa: E402

import dmft  # noqa: E402
from dmft.simulator import SimulationResult, control_variate_mean  # noqa: E402

from _output import DPI, add_output_options, figure_path, table_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASE = dict(alpha=8.0, ratio=5.5, eps=0.05)
T_MAX = 800.0
STEP = 0.2
SEEDS = {200: 16, 400: 8, 800: 8}
STEP_CHECK = (200, 0.1, 8)  # D, h, seeds
FIRST_SEED = 1000
RTOL = 1e-4  # the default 1e-3 moves the curves by ``tolerance`` (reported)
#: the fit of the training set, and the slow phase after it in which the test loss keeps falling
WINDOWS = {"fit": (0.0, 100.0), "slow": (100.0, T_MAX)}
LOSSES = ("train_loss", "test_loss")
#: the networks' record times: 160 log-spaced multiples of 0.2 (a multiple of both steps) and tau = 0
RECORD_TAU = np.concatenate([[0.0], np.unique(np.round(np.geomspace(0.2, T_MAX, 160) / 0.2) * 0.2)])


def _one_network(args):
    dim, h, seed, path = args
    t0 = time.perf_counter()
    r = dmft.simulate(**CASE, dim=dim, dt=h, t_max=T_MAX, seeds=1, seed=seed, record_tau=RECORD_TAU)
    tmp = Path(str(path) + ".tmp")
    r.save(tmp)
    os.replace(tmp, path)
    return dim, h, seed, time.perf_counter() - t0


def networks(dim, h, seeds, cache: Path, jobs: int):
    """The networks at (dim, h): one cached file per seed, the missing ones simulated in ``jobs`` processes.
    Returns the per-seed curves, the control-variate moments and the seconds per fresh network."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = [cache / f"lazy_D{dim}_h{h:g}_seed{FIRST_SEED + k}.h5" for k in range(seeds)]
    todo = [(dim, h, FIRST_SEED + k, p) for k, p in enumerate(paths) if not p.exists()]
    seconds = []
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for d, hh, seed, s in pool.map(_one_network, todo):
                print(f"  network D={d} h={hh:g} seed {seed}: {s:.0f} s", flush=True)
                seconds.append(s)
    runs = [SimulationResult.load(p) for p in paths]
    tau = runs[0].tau
    per_seed = {n: np.concatenate([r.per_seed[n] for r in runs]) for n in LOSSES}
    moments = {k: np.concatenate([r.data_moments[k] for r in runs]) for k in runs[0].data_moments}
    first = runs[0]
    sim = SimulationResult(parameters=first.parameters, tau=tau,
                           observables={n: per_seed[n].mean(axis=0) for n in LOSSES},
                           std={n: per_seed[n].std(axis=0, ddof=1) for n in LOSSES}, per_seed=per_seed,
                           info=dict(first.info, seeds=seeds), data_moments=moments)
    return sim, (float(np.mean(seconds)) if seconds else None)


def _interpolant(tau, y):
    """Monotone cubic in log tau through the adaptive grid's points (tau = 0 kept as the first value)."""
    live = tau > 0
    f = PchipInterpolator(np.log(tau[live]), y[live])
    return lambda t: np.where(t > 0, f(np.log(np.maximum(t, tau[live][0]))), y[0])


def theory(dim, rtol):
    t0 = time.perf_counter()
    res = dmft.solve(**CASE, dim=dim, grid="adaptive", rtol=rtol, t_max=T_MAX)
    if not res.success:
        raise SystemExit(f"D={dim}: {res.message}")
    return res, time.perf_counter() - t0


def compare(res, sim):
    """Per window of ``WINDOWS``: the largest deviation of the DMFT from the networks' control-variate mean
    (``SimulationResult.seed_mean``), the time of it, both SEs there, and the largest deviation in units
    of the combined SE; and the final values."""
    tau = sim.tau
    obs = {n: _interpolant(res.observables["tau"], res.observables[n])(tau) for n in LOSSES}
    runs = {n: np.array([_interpolant(res.observables["tau"], row)(tau) for row in res.sampling_runs[n]])
            for n in LOSSES}
    out = {}
    for n in LOSSES:
        mean, se = sim.seed_mean(n)
        dmft_se = runs[n].std(axis=0, ddof=1) / np.sqrt(len(runs[n]))
        dev = np.abs(obs[n] - mean)
        comb = np.hypot(se, dmft_se)
        out[n] = {"final": {"networks": float(mean[-1]), "networks_se": float(se[-1]), "dmft": float(obs[n][-1])}}
        for window, (lo, hi) in WINDOWS.items():
            w = np.flatnonzero((tau > lo) & (tau <= hi))
            j = w[int(np.argmax(dev[w]))]
            out[n][window] = {"max_dev": float(dev[j]), "tau_of_max": float(tau[j]), "sim_se_at_max": float(se[j]),
                              "dmft_se_at_max": float(dmft_se[j]),
                              "max_dev_over_combined_se": float(np.max(dev[w] / comb[w]))}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default=",".join(map(str, SEEDS)))
    ap.add_argument("--jobs", type=int, default=1, help="processes for the networks not yet cached")
    ap.add_argument("--sim-cache", default=str(ROOT / "out" / "sims"))
    ap.add_argument("--networks-only", action="store_true", help="simulate and cache the networks, nothing else")
    add_output_options(ap)
    args = ap.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    cache = Path(args.sim_cache)
    sims = {}
    for dim in dims:
        sims[dim] = networks(dim, STEP, SEEDS[dim], cache, args.jobs)
    d_chk, h_chk, n_chk = STEP_CHECK
    if d_chk in dims:
        sims["step_check"] = networks(d_chk, h_chk, n_chk, cache, args.jobs)
    if args.networks_only:
        return
    table = {"case": dict(CASE, t_max=T_MAX, network_step=STEP), "rtol": RTOL, "dims": {}}
    solved = {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for k, dim in enumerate(dims):
        sim, sec = sims[dim]
        res, wall = solved[dim] = theory(dim, RTOL)
        default, _ = theory(dim, 1e-3)
        dev = compare(res, sim)
        tolerance = {n: float(np.max(abs(_interpolant(default.observables["tau"], default.observables[n])(sim.tau)
                                         - _interpolant(res.observables["tau"], res.observables[n])(sim.tau))))
                     for n in LOSSES}
        table["dims"][str(dim)] = dict(dev, networks=SEEDS[dim], network_seconds=sec, dmft_seconds=wall,
                                       dmft_points=len(res.observables["tau"]),
                                       dmft_replicas=int(len(res.diagnostics["sampling_seeds"])),
                                       tolerance=tolerance)
        print(f"D={dim} ({SEEDS[dim]} networks, DMFT {wall:.0f} s): " + "; ".join(
            f"{n} {w} {dev[n][w]['max_dev']:.4f} at tau {dev[n][w]['tau_of_max']:g} (SE networks "
            f"{dev[n][w]['sim_se_at_max']:.4f}, DMFT {dev[n][w]['dmft_se_at_max']:.4f})"
            for n in LOSSES for w in WINDOWS), flush=True)
        for ax, n in zip(axes, LOSSES):
            mean, se = sim.seed_mean(n)
            ax.errorbar(sim.tau[1:], mean[1:], se[1:], fmt=".", ms=2, color=f"C{k}", alpha=0.5,
                        label=f"networks, D={dim} ({SEEDS[dim]})")
            ax.plot(res.observables["tau"][1:], res.observables[n][1:], color=f"C{k}", label=f"DMFT, D={dim}")
    if "step_check" in sims:
        sim_h, _ = sims["step_check"]
        sim_0, _ = sims[d_chk]
        n_min = min(n_chk, SEEDS[d_chk])
        diff = {n: (sim_h.per_seed[n][:n_min] - sim_0.per_seed[n][:n_min]).mean(axis=0) for n in LOSSES}
        table["step_check"] = {"dim": d_chk, "steps": [STEP, h_chk], "seeds": n_min, **{
            n: {w: float(np.max(abs(diff[n][(sim_0.tau > lo) & (sim_0.tau <= hi)]))) for w, (lo, hi) in WINDOWS.items()}
            for n in LOSSES}}
        # the DMFT against the networks extrapolated to h -> 0 (2 L(h/2) - L(h) per seed, the same training sets)
        res, _ = solved[d_chk]
        extrapolated = {}
        for n in LOSSES:
            mean, se = control_variate_mean(2 * sim_h.per_seed[n][:n_min] - sim_0.per_seed[n][:n_min],
                                            sim_0.data_moments["u4"][:n_min])
            dev = np.abs(_interpolant(res.observables["tau"], res.observables[n])(sim_0.tau) - mean)
            extrapolated[n] = {}
            for w, (lo, hi) in WINDOWS.items():
                j = np.flatnonzero((sim_0.tau > lo) & (sim_0.tau <= hi))
                j = j[int(np.argmax(dev[j]))]
                extrapolated[n][w] = {"max_dev": float(dev[j]), "tau_of_max": float(sim_0.tau[j]),
                                      "sim_se_at_max": float(se[j])}
        table["step_check"]["dmft_against_extrapolated"] = extrapolated
        print(f"networks' step check at D={d_chk}, same {n_min} seeds, h {STEP} vs {h_chk}: "
              + ", ".join(f"{n} {w} {table['step_check'][n][w]:.4f}" for n in LOSSES for w in WINDOWS)
              + "; DMFT against their h -> 0 extrapolation: " + ", ".join(
                  f"{n} {w} {extrapolated[n][w]['max_dev']:.4f} (SE {extrapolated[n][w]['sim_se_at_max']:.4f})"
                  for n in LOSSES for w in WINDOWS))
    for ax, n in zip(axes, LOSSES):
        ax.set(xscale="log", xlabel="τ", ylabel=n.replace("_", " "),
               title=f"α {CASE['alpha']:g}, ε {CASE['eps']:g}, P/D {CASE['ratio']:g}: {n.replace('_', ' ')}")
        ax.legend(fontsize=8)
    out = table_path(args, "lazy_vs_networks.json")
    out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    fig.savefig(figure_path(args, "lazy_vs_networks.png"), dpi=DPI)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
