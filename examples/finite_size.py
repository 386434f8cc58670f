"""Finite-size DMFT against networks at D = 200, 400, 800 in two grokking cases.

For each case (c1: the reference grokking point alpha 1, eps 0.02; g2: alpha 2, eps 0.05; both
P/D = 5.5, Euler step h = 0.4) and each D, this compares the seed-mean train and test loss of the
exact infinite-width network (``dmft.simulate``, width = inf, seeds 1000, 1001, ...) with

* the D → ∞ DMFT (``finite_size=False``; D enters only through the spike seed 1/D), and
* the finite-size DMFT (``finite_size=True``, docs/finite-size.md),

both averaged over ``DMFT_SEEDS`` sampling seeds of ``DMFT_NODES`` x ``DMFT_SAMPLES`` sites, and tabulates the
largest deviation over time, also in units of the simulation's standard error.  A run that diverges or whose
train loss runs away (``train_loss_rise``, docs/finite-size.md section 5c) is left out of the mean and listed under
``excluded_seeds``; the two halves of the runs are also compared with each other (``halves``).  At D = 200 it also runs ``DATASETS`` training-set
replicas (``dmft.two_layer.dataset_ensemble``) and compares their spread with the seed-to-seed
spread of the networks.  Writes ``finite_size.json`` and ``finite_size_<case>.png`` to ``out/figures/``
(``--out-dir DIR``: to DIR; ``--figures``: the committed ``data/finite_size.json`` and ``examples/figures/``).
The figure has the training-set panels only when the replicas run (``--datasets`` > 0).

    python examples/finite_size.py              # DMFT runs ~170 min on 2 cores (16 seeds x 24 x 64 sites; fs 105 / 65 s per run for c1 / g2), plus the 64 replicas and any networks not cached
    python examples/finite_size.py --cases c1 --dims 200
    python examples/finite_size.py --figures    # refresh the committed table and figures

Simulations are cached as HDF5 under ``--sim-cache`` (default ``out/sims``): every file
``<case>_D<D>_s<seed>_n<count>.h5`` found there is used, and only missing seeds are simulated.
Each DMFT run's curves are cached under ``--dmft-cache`` (default ``out/dmft_runs``), keyed by a hash
of the solve's source files (``_DMFT_SOURCES``), so rerunning with more ``--dmft-seeds`` only adds seeds.
"""
import argparse
import hashlib
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dmft.agreement import max_deviation  # noqa: E402
from dmft.params import TwoLayerModel  # noqa: E402
from dmft.simulator import SimulationResult, control_variate_mean, simulate  # noqa: E402
from dmft.two_layer import TwoLayerDMFT, TwoLayerProblem, dataset_ensemble, train_loss_rise  # noqa: E402

from _output import DPI, add_output_options, figure_path, table_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "c1": dict(alpha=1.0, eps=0.02, ratio=5.5, dt=0.4, t_max=120.0),
    "g2": dict(alpha=2.0, eps=0.05, ratio=5.5, dt=0.4, t_max=100.0),
}
SIM_SEEDS = {200: 32, 400: 48, 800: 42}
FIRST_SEED = 1000
DMFT_SEEDS = 16  # the bump field's sampling noise (docs/finite-size.md, section 5) needs a few
# sites per quadrature node: 64 instead of 32 cuts the finite-size DMFT's run-to-run sd of the train loss
# (g2, D = 400, largest over tau: 0.0038 at 16 x 32, 0.0016 at 16 x 64), which is still larger than the
# networks' late standard error (0.0003).  The run-to-run distribution is heavy-tailed (section 5c): two
# sets of 8 runs of g2, D = 400 differed by 0.0021 (3 nominal SE) in the drop, hence 16, reported as two
# independent halves as well (``halves``)
DMFT_SAMPLES = 64
# the D -> inf DMFT has no bump field, and it misses the networks by 8-35 SE: 8 runs suffice for it
DINF_SEEDS = 8
# Gauss-Legendre nodes of |u|: the library's default, 24.  With 16 the late train loss is ~0.001 low
# (c1, D = 400, tau = 80: 0.0787 for 12 sampling seeds of 16 x 64, 0.0797 / 0.0801 for 9 / 4 seeds of
# 24 / 32 nodes x 64 paths; SE 0.0008-0.0010 each), so 24 x 64 is converged to ~0.0004
DMFT_NODES = 24
# the training-set replicas (dataset_ensemble) at the first D: 16 nodes x 32 paths each; their spread,
# not their mean, is what they are for
REPLICA_NODES, REPLICA_SAMPLES = 16, 32
DATASETS = 64  # the sd of log s from 16 replicas is uncertain by ~20 % (docs/finite-size.md, section 4)
CURVES = ("train_loss", "test_loss", "spike", "spike_bulk_cross")


def simulations(case, dim, cache: Path, params=None, seeds=None):
    """Per-seed curves of ``seeds`` (default SIM_SEEDS[dim]) networks (seeds FIRST_SEED, ...), from the cache
    or simulated; ``params``: the case's parameters (default CASES[case])."""
    c = params or CASES[case]
    n_seeds = seeds or SIM_SEEDS[dim]
    tau = np.arange(0.0, c["t_max"] + 1e-9, 2 * c["dt"])
    runs = [SimulationResult.load(p) for p in sorted(cache.glob(f"{case}_D{dim}_s*_n*.h5"))]
    have = sum(r.per_seed["train_loss"].shape[0] for r in runs)
    need = n_seeds - have
    if need > 0:
        t0 = time.perf_counter()
        r = simulate(alpha=c["alpha"], ratio=c["ratio"], eps=c["eps"], dim=dim, dt=c["dt"], t_max=c["t_max"],
                     seeds=need, seed=FIRST_SEED + have, record_tau=tau)
        cache.mkdir(parents=True, exist_ok=True)
        r.save(cache / f"{case}_D{dim}_s{FIRST_SEED + have}_n{need}.h5")
        print(f"  simulated {need} networks at D={dim} in {time.perf_counter() - t0:.0f} s", flush=True)
        runs.append(r)
    per_seed = {k: np.concatenate([r.per_seed[k] for r in runs])[:n_seeds] for k in CURVES}
    # each training set's fourth moment of u, the control variate of the seed mean (SimulationResult.seed_mean)
    per_seed["u4"] = np.concatenate([r.data_moments["u4"] for r in runs])[:n_seeds]
    return runs[0].tau, per_seed


#: the files a DMFT solve runs (the model's equations, its parameters, the numerical engines);
#: plotting, I/O and the simulator do not change its curves
_DMFT_SOURCES = ("dmft/two_layer/*.py", "dmft/params.py", "solvers/*.py")


def _source_hash():
    """Hash of the DMFT's source: cached DMFT runs of other code versions are not reused."""
    h = hashlib.sha1()
    for path in sorted(p for pattern in _DMFT_SOURCES for p in ROOT.glob(pattern)):
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def dmft_curves(case, dim, finite_size, seeds=DMFT_SEEDS, cache: Path | None = None, nodes=DMFT_NODES,
                params=None, samples=DMFT_SAMPLES):
    """The DMFT's curves for sampling seeds 0 .. seeds-1 (``nodes`` x ``samples`` sites each; ``params``: the
    case's parameters, default CASES[case]); each seed's curves are cached under ``cache``
    (keyed by the hash of the solve's source files, ``_DMFT_SOURCES``) and reused.  Returns tau, the
    kept runs (name -> array over runs x time), their seeds, the seeds left out because they diverged or
    ``train_loss_rise`` flags them, and the seconds per freshly computed run (nan if all cached)."""
    c = params or CASES[case]
    model = TwoLayerModel(c["alpha"], c["ratio"], c["eps"])
    out, seconds, fresh = [], 0.0, 0
    tag = _source_hash()
    for seed in range(seeds):
        name = f"{case}_D{dim}_{'fs' if finite_size else 'inf'}_{nodes}x{samples}_s{seed}_{tag}.npz"
        if cache is not None and (cache / name).exists():
            with np.load(cache / name) as f:
                out.append({k: f[k] for k in f.files})
            continue
        t0 = time.perf_counter()
        p = TwoLayerProblem(model, TwoLayerDMFT(dim=dim, dt=c["dt"], t_max=c["t_max"], nodes=nodes, samples=samples,
                                                seed=seed, finite_size=finite_size))
        K, msg = p.sweep()
        o = {k: np.asarray(v) for k, v in p.observables_from(K, p.last_pass["Delta"]).items() if np.ndim(v) >= 1}
        if msg:  # a diverged sampling draw (docs/finite-size.md, section 5c): its curves up to the divergence
            # (NaN after) are cached with the message, left out of the mean and reported
            print(f"  {case} D={dim} sampling seed {seed}: {msg}", flush=True)
            o["diverged"] = np.array(msg)
        seconds += time.perf_counter() - t0
        fresh += 1
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / (name + ".tmp.npz")
            np.savez(tmp, **o)
            os.replace(tmp, cache / name)
        out.append(o)
    # a sampling seed that diverges or whose train loss runs away (docs/finite-size.md, section 5c) is an
    # unstable solution, not a sample of the theory: it is left out of the mean and reported
    excluded = [seed for seed, o in enumerate(out)
                if "diverged" in o or train_loss_rise(o["tau"], o["train_loss"]) is not None]
    kept = [o for seed, o in enumerate(out) if seed not in excluded]
    if len(kept) < 2:
        raise RuntimeError(f"{case} D={dim}: fewer than 2 usable sampling runs of {seeds} (left out: {excluded}, "
                           "which diverge or whose train loss rises: unstable solutions)")
    runs = {k: np.array([o[k] for o in kept]) for k in kept[0] if k != "tau"}
    kept_seeds = np.array([seed for seed in range(seeds) if seed not in excluded])
    return kept[0]["tau"], runs, kept_seeds, excluded, (seconds / fresh if fresh else float("nan"))


def mean_sd(runs):
    """Mean and sd (ddof 1) over the runs of dmft_curves."""
    return ({k: v.mean(axis=0) for k, v in runs.items()}, {k: v.std(axis=0, ddof=1) for k, v in runs.items()})


def halves(tau_sim, tau_dmft, runs, first, names=("train_loss", "test_loss")):
    """The two halves of the runs (``first``: a boolean mask over the runs, the seeds below half the
    seed count) as independent estimates: the largest |difference| of their means over the networks'
    recorded times, absolute and in units of its standard error sqrt(sd1^2/n1 + sd2^2/n2).  A nominal SE
    that the halves exceed by far means the run-to-run distribution is heavier-tailed than the SE
    assumes (docs/finite-size.md, section 5c)."""
    idx = np.rint(tau_sim / (tau_dmft[1] - tau_dmft[0])).astype(int)
    second = ~first
    out = {"runs": [int(first.sum()), int(second.sum())]}
    for name in names:
        a, b = runs[name][first][:, idx], runs[name][second][:, idx]
        diff = a.mean(axis=0) - b.mean(axis=0)
        se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
        ratio = np.abs(diff) / np.maximum(se, 1e-12)
        j, k = int(np.argmax(np.abs(diff))), int(np.argmax(ratio))
        out[name] = {"max_diff": float(abs(diff[j])), "tau_of_max": float(tau_sim[j]),
                     "max_diff_over_se": float(ratio[k]), "tau_of_max_over_se": float(tau_sim[k])}
    return out


def deviation(tau_sim, per_seed, tau_dmft, mean, name, dmft_sd=None, dmft_seeds=DMFT_SEEDS, dmft_runs=None):
    """Largest deviation of a DMFT curve from the networks' seed mean, in units of the networks'
    standard error and (with dmft_sd, the sd over dmft_seeds sampling seeds) of the combined error
    sqrt(SE^2 + sd^2 / dmft_seeds) of the difference.  With the training sets' fourth moments
    (per_seed["u4"]) the same is also given, under "control_variate", against the control-variate
    estimate of the mean over training sets (dmft.simulator.control_variate_mean), whose SE is 1.5-5x
    smaller than the seed mean's.  With ``dmft_runs`` (the runs of dmft_curves), "exact_theory" gives
    what the largest deviation would be for an exact theory (dmft.agreement.max_deviation: bootstrap
    over the networks, and over the runs for the combined error): its pass rate at 2 SE, 95 % quantile,
    and the p-value of the observed figure."""
    idx = np.rint(tau_sim / (tau_dmft[1] - tau_dmft[0])).astype(int)
    sim, se = control_variate_mean(per_seed[name])
    out = _deviation_stats(tau_sim, mean[name][idx] - sim, se,
                           None if dmft_sd is None else dmft_sd[name][idx] / np.sqrt(dmft_seeds))
    if dmft_runs is not None:
        live = tau_sim > 0
        out["exact_theory"] = {
            "networks_se": max_deviation(mean[name][idx][live], per_seed[name][:, live])["exact_theory"],
            "combined_se": max_deviation(None, per_seed[name][:, live],
                                         theory_runs=dmft_runs[name][:, idx][:, live])["exact_theory"]}
    if "u4" in per_seed:  # the same against the control-variate estimate of the mean over training sets
        cv, cv_se = control_variate_mean(per_seed[name], per_seed["u4"])
        # at tau = 0 the train loss is m4 / 4: the estimate is exactly 3/4 with zero error, and the DMFT's
        # value there is its |u| quadrature on [0, u_max] (E[u^4 | |u| <= 4.5] / 4 = 0.7492), so the
        # comparison starts at the first step
        live = cv_se > 1e-9 * np.maximum(np.abs(cv), 1.0)
        cv_out = _deviation_stats(tau_sim[live], (mean[name][idx] - cv)[live], cv_se[live],
                                  None if dmft_sd is None else (dmft_sd[name][idx] / np.sqrt(dmft_seeds))[live])
        out["control_variate"] = {k: v for k, v in cv_out.items() if k not in ("final_dev", "final_sim_se")}
        out["control_variate"]["initial_dev"] = float(mean[name][idx][0] - cv[0])
    return out


def readout_at_spike(tau_sim, per_seed, tau_dmft, mean, times=(24, 48, 64, 80, 96, 120)):
    """Split of the DMFT's deviation from the networks' mean (control variate) into the spike's
    position and the readout at the same spike.  At each time the networks' loss is regressed over
    seeds on (x, x^2, m4 - 3), x = log s minus its mean; evaluated at the DMFT's log s and m4 = 3, the
    fit is the mean loss of networks whose spike is where the DMFT's is.  Returns name -> time ->
    [total, spike part, readout part], total = DMFT - mean = (fit - mean) + (DMFT - fit).  Early
    (tau <~ 48) the split is not causal: a network whose bulk fits less keeps larger residuals and
    grows its spike faster, so at fixed m4 its train loss rises with s."""
    if "u4" not in per_seed:
        return {}
    step = tau_dmft[1] - tau_dmft[0]
    out = {}
    for name in ("train_loss", "test_loss"):
        cv, _ = control_variate_mean(per_seed[name], per_seed["u4"])
        rows = {}
        for t in times:
            i, j = int(np.argmin(abs(tau_sim - t))), int(round(t / step))
            if abs(tau_sim[i] - t) > 1e-6 or j >= len(tau_dmft):
                continue
            x = np.log(per_seed["spike"][:, i])
            m = x.mean()
            A = np.column_stack([np.ones_like(x), x - m, (x - m) ** 2, per_seed["u4"] - 3.0])
            coef, *_ = np.linalg.lstsq(A, per_seed[name][:, i], rcond=None)
            xd = np.log(mean["spike"][j]) - m
            fit = coef[0] + coef[1] * xd + coef[2] * xd**2
            rows[f"{t:g}"] = [float(mean[name][j] - cv[i]), float(fit - cv[i]), float(mean[name][j] - fit)]
        out[name] = rows
    return out


def _deviation_stats(tau_sim, dev, se, dmft_se=None):
    """Largest |dev|, largest |dev| / se, fraction within 2 se; with dmft_se, the same for the combined error."""
    ratio = np.abs(dev) / np.maximum(se, 1e-12)
    j, k = int(np.argmax(np.abs(dev))), int(np.argmax(ratio))
    out = {"max_dev": float(np.abs(dev[j])), "tau_of_max": float(tau_sim[j]), "sim_se_at_max": float(se[j]),
           "max_dev_over_se": float(ratio[k]), "tau_of_max_over_se": float(tau_sim[k]),
           "final_dev": float(dev[-1]), "final_sim_se": float(se[-1]),
           "within_2se_fraction": float(np.mean(ratio <= 2.0))}
    if dmft_se is not None:
        comb = np.sqrt(se**2 + dmft_se**2)
        rc = np.abs(dev) / np.maximum(comb, 1e-12)
        out.update({"max_dev_over_combined_se": float(rc.max()),
                    "tau_of_max_over_combined_se": float(tau_sim[int(np.argmax(rc))]),
                    "within_2_combined_se_fraction": float(np.mean(rc <= 2.0))})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="c1,g2")
    ap.add_argument("--dims", default="200,400,800")
    ap.add_argument("--sim-cache", default=str(ROOT / "out" / "sims"))
    ap.add_argument("--dmft-seeds", default=str(DMFT_SEEDS),
                    help="sampling seeds averaged per curve: one number, or one per --dims entry")
    ap.add_argument("--datasets", type=int, default=DATASETS,
                    help="training-set replicas at the first D (0: skip them and keep the stored entry)")
    ap.add_argument("--dmft-cache", default=str(ROOT / "out" / "dmft_runs"),
                    help="per-seed DMFT curves, reused while the solve's source files are unchanged ('' to disable)")
    add_output_options(ap)
    args = ap.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    dmft_seeds = [int(n) for n in args.dmft_seeds.split(",")]
    if len(dmft_seeds) == 1:
        dmft_seeds *= len(dims)
    if len(dmft_seeds) != len(dims) or min(dmft_seeds) < 2:
        ap.error(f"--dmft-seeds: one number >= 2, or one per --dims entry ({len(dims)}); got {args.dmft_seeds!r}")
    committed = ROOT / "data" / "finite_size.json"
    table = json.loads(committed.read_text()) if committed.exists() else {}  # entries not rerun are kept
    table_file = table_path(args, "finite_size.json")
    for case in args.cases.split(","):
        c = CASES[case]
        # the training-set panels exist only when the replicas run (--datasets > 0): no empty panels
        if args.datasets > 0:
            fig, axes = plt.subplots(2, 3, figsize=(15, 9), layout="constrained")
            top, spread, ax_logs = axes[0], axes[1, :2], axes[1, 2]
        else:
            fig, axes = plt.subplots(2, 2, figsize=(11, 9), layout="constrained")
            top, spread, ax_logs = [axes[0, 0], axes[0, 1], axes[1, 0]], None, axes[1, 1]
        table.setdefault(case, {"parameters": c})
        for k, dim in enumerate(dims):
            print(f"{case} D={dim}", flush=True)
            tau_s, per_seed = simulations(case, dim, Path(args.sim_cache))
            entry = {"sim_seeds": int(per_seed["train_loss"].shape[0]), "dmft_seeds": dmft_seeds[k],
                     "dmft_sites": f"{DMFT_NODES} x {DMFT_SAMPLES}"}
            if args.datasets == 0 and "datasets" in table[case].get(str(dim), {}):
                entry["datasets"] = table[case][str(dim)]["datasets"]  # replicas not rerun: keep the stored ones
            color = f"C{k}"
            sim_mean = {n: per_seed[n].mean(axis=0) for n in CURVES}
            sim_se = {n: per_seed[n].std(axis=0, ddof=1) / np.sqrt(per_seed[n].shape[0]) for n in CURVES}
            for ax, name in zip(top, ("train_loss", "test_loss", "spike_bulk_cross")):
                ax.fill_between(tau_s, sim_mean[name] - 2 * sim_se[name], sim_mean[name] + 2 * sim_se[name],
                                color=color, alpha=0.25, lw=0, label=f"networks D={dim} (mean ± 2 SE)")
            for finite in (False, True):
                n_seeds = dmft_seeds[k] if finite else min(dmft_seeds[k], DINF_SEEDS)
                tau_d, runs, kept, excluded, seconds = dmft_curves(case, dim, finite, n_seeds,
                                                                   Path(args.dmft_cache) if args.dmft_cache else None)
                first = kept < n_seeds // 2
                mean, sd = mean_sd(runs)
                used = next(iter(runs.values())).shape[0]
                key = "finite_size" if finite else "d_inf"
                entry[key] = {name: deviation(tau_s, per_seed, tau_d, mean, name, sd, used, runs if finite else None)
                              for name in ("train_loss", "test_loss")}
                entry[key]["runs_used"] = used
                entry[key]["excluded_seeds"] = excluded  # diverged, or flagged by train_loss_rise
                entry[key]["halves"] = halves(tau_s, tau_d, runs, first)
                if finite:  # each half's own largest deviation from the networks, as the table would show it
                    entry[key]["halves"]["deviation"] = [
                        {name: deviation(tau_s, per_seed, tau_d, mean_sd({n: v[part] for n, v in runs.items()})[0],
                                         name)["max_dev_over_se"] for name in ("train_loss", "test_loss")}
                        for part in (first, ~first)]
                entry[key]["seconds_per_run"] = seconds if np.isfinite(seconds) else None  # None: all cached
                entry[key]["max_dmft_sd"] = {n: float(np.max(sd[n])) for n in ("train_loss", "test_loss")}
                if finite:
                    entry[key]["readout_at_spike"] = readout_at_spike(tau_s, per_seed, tau_d, mean)
                style = "-" if finite else ":"
                for ax, name in zip(top, ("train_loss", "test_loss", "spike_bulk_cross")):
                    if name in mean:
                        ax.plot(tau_d, mean[name], style, color=color, lw=1.3,
                                label=f"DMFT {'finite-size' if finite else 'D → ∞'}, D={dim}")
                ax_logs.plot(tau_d, np.log(mean["spike"]), style, color=color, lw=1.0,
                             label=f"DMFT {'finite-size' if finite else 'D → ∞'}, D={dim}")
                entry[key]["log_spike_dev_at"] = {
                    f"{t:g}": float(np.log(mean["spike"][int(round(t / c["dt"]))])
                                    - np.log(per_seed["spike"][:, int(np.argmin(abs(tau_s - t)))]).mean())
                    for t in (20, 40, 60, 80, 100)}
                print(f"  {key}: test max dev {entry[key]['test_loss']['max_dev']:.4f} "
                      f"({entry[key]['test_loss']['max_dev_over_se']:.1f} SE max), train max dev "
                      f"{entry[key]['train_loss']['max_dev']:.4f} ({seconds:.1f} s/run)", flush=True)
            if dim == dims[0] and args.datasets > 0:
                t0 = time.perf_counter()
                ens = dataset_ensemble(TwoLayerModel(c["alpha"], c["ratio"], c["eps"]),
                                       TwoLayerDMFT(dim=dim, dt=c["dt"], t_max=c["t_max"], nodes=REPLICA_NODES,
                                                    samples=REPLICA_SAMPLES,
                                                    finite_size=True), args.datasets)
                tau_d = np.arange(len(ens.bands["sd"]["test_loss"])) * c["dt"]
                log_s = np.log(per_seed["spike"])
                entry["datasets"] = {
                    "replicas": args.datasets, "failed": ens.failed,
                    "seconds": time.perf_counter() - t0,
                    "max_sd_test_dmft": float(np.max(ens.bands["sd"]["test_loss"])),
                    "max_sd_test_sim": float(np.max(per_seed["test_loss"].std(axis=0, ddof=1))),
                    "sd_test_at": {f"{t:g}": [float(ens.bands["sd"]["test_loss"][int(round(t / c["dt"]))]),
                                              float(per_seed["test_loss"][:, int(np.argmin(abs(tau_s - t)))].std(ddof=1))]
                                   for t in (20, 40, 60, 80, 100)},
                    "sim_sd_log_spike_at": {f"{t:g}": float(log_s[:, int(np.argmin(abs(tau_s - t)))].std(ddof=1))
                                            for t in (20, 40, 60, 80, 100)},
                    "dmft_sd_log_spike_at": {f"{t:g}": float(ens.bands["sd"]["log_spike"][int(round(t / c["dt"]))])
                                             for t in (20, 40, 60, 80, 100)},
                    "t_test_dmft": [float(x) for x in ens.t_test],
                    # the mean over training sets estimates the networks' seed mean (includes the
                    # finite-P Jensen shift, not that of the D-coordinate sums); MC error ~ sd / sqrt(R)
                    "dataset_mean": {name: deviation(tau_s, per_seed, tau_d, {name: ens.bands["mean"][name]}, name)
                                     for name in ("train_loss", "test_loss")},
                }
                ax = spread[0]
                for j in range(per_seed["test_loss"].shape[0]):
                    ax.plot(tau_s, per_seed["test_loss"][j], color="0.7", lw=0.5)
                ax.fill_between(tau_d, ens.bands["q16"]["test_loss"], ens.bands["q84"]["test_loss"], color="C3",
                                alpha=0.35, lw=0, label=f"DMFT {args.datasets} training sets, 16-84%")
                q16, q84 = np.percentile(per_seed["test_loss"], [16, 84], axis=0)
                ax.plot(tau_s, q16, "k--", lw=1, label="networks 16-84%")
                ax.plot(tau_s, q84, "k--", lw=1)
                ax.set(xlabel="τ", ylabel="test loss", title=f"spread over training sets, D={dim}")
                ax.legend(fontsize=7, loc="upper right")
                ax = spread[1]
                ax.plot(tau_d, ens.bands["sd"]["test_loss"], "C3", label="DMFT training sets")
                ax.plot(tau_s, per_seed["test_loss"].std(axis=0, ddof=1), "k--", label="networks (seed sd)")
                ax.set(xlabel="τ", ylabel="sd of test loss", title=f"D={dim}")
                ax.legend(fontsize=7, loc="upper right")
            ax_logs.plot(tau_s, np.log(per_seed["spike"]).mean(axis=0), "o", color=color, ms=2,
                         label=f"networks D={dim} (mean log s)")
            table[case][str(dim)] = entry
        for ax, name in zip(top, ("train loss", "test loss", "spike-bulk cross |P A Aᵀ β̂|²/D²")):
            ax.set(xlabel="τ", ylabel=name)
        top[2].set_yscale("log")
        top[2].set_ylim(1e-4, None)
        ax_logs.set(xlabel="τ", ylabel="log spike s")
        handles, labels = ax_logs.get_legend_handles_labels()
        band_handles, band_labels = top[0].get_legend_handles_labels()
        keep = [i for i, lab in enumerate(band_labels) if lab.startswith("networks")]
        fig.legend(handles + [band_handles[i] for i in keep], labels + [band_labels[i] for i in keep],
                   loc="outside lower center", ncol=3, fontsize=8)  # one legend, clear of the data
        fig.suptitle(f"{case}: α={c['alpha']}, ε={c['eps']}, P/D={c['ratio']}, h={c['dt']}")
        out = figure_path(args, f"finite_size_{case}.png")
        fig.savefig(out, dpi=DPI)
        print(f"wrote {out}")
        table_file.write_text(json.dumps(table, indent=1))
    print(f"wrote {table_file}")


if __name__ == "__main__":
    main()
