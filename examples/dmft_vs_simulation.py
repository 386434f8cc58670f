"""DMFT against simulated networks: the three reference cases at D = 200, 400, 800.

Computes, for each case (c3 lazy, c2 rich, c1 grokking; parameters below), the D → ∞
DMFT (causal sweep, several sampling seeds; D enters only through the spike seed 1/D) and
the exact infinite-width network simulated at the same Euler step h (``dmft.simulate``,
width = inf, seed-averaged), then tabulates the maximal deviation of train and test loss
over time with the simulation's and the DMFT's standard errors, writes the table
``dmft_vs_simulation.json`` and one overlay figure per case, ``dmft_vs_simulation_<case>.png``,
to ``out/figures/`` (``--out-dir DIR``: to DIR; ``--figures``: the committed
``data/dmft_vs_simulation.json`` and ``examples/figures/``).

    python examples/dmft_vs_simulation.py            # about 20 CPU-minutes on 2 cores
    python examples/dmft_vs_simulation.py --quick    # D = 200 and 400 only, fewer seeds
    python examples/dmft_vs_simulation.py --figures  # refresh the committed table and figures

Set OPENBLAS_NUM_THREADS=1 on a shared 2-core machine (the simulator is BLAS-bound).
"""
import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dmft.params import TwoLayerModel  # noqa: E402
from dmft.simulator import simulate  # noqa: E402
from dmft.two_layer import TwoLayerDMFT, TwoLayerProblem  # noqa: E402

from _output import DPI, add_output_options, figure_path, table_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "c3": dict(alpha=10.0, eps=0.5, ratio=2.0, dt=0.2, t_max=20.0, samples=32, label="lazy"),
    "c2": dict(alpha=0.05, eps=0.02, ratio=2.0, dt=0.2, t_max=24.0, samples=512, label="rich"),
    "c1": dict(alpha=1.0, eps=0.02, ratio=5.5, dt=0.4, t_max=120.0, samples=32, label="grokking"),
}
SIM_SEEDS = {"c3": {200: 24, 400: 12, 800: 4}, "c2": {200: 24, 400: 12, 800: 4}, "c1": {200: 12, 400: 6, 800: 3}}
DMFT_SEEDS = 4


def dmft_runs(case, dim):
    c = CASES[case]
    out = []
    for seed in range(DMFT_SEEDS):
        p = TwoLayerProblem(TwoLayerModel(c["alpha"], c["ratio"], c["eps"]),
                            TwoLayerDMFT(dim=dim, dt=c["dt"], t_max=c["t_max"], nodes=16, samples=c["samples"],
                                         seed=seed))
        K, msg = p.sweep()
        if msg:
            raise RuntimeError(f"{case} D={dim} seed {seed}: {msg}")
        out.append(p.observables_from(K, p.last_pass["Delta"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", default="c3,c2,c1")
    add_output_options(ap)
    args = ap.parse_args()
    dims = (200, 400) if args.quick else (200, 400, 800)
    table = {}
    committed = ROOT / "data" / "dmft_vs_simulation.json"
    if committed.exists():  # rows of cases not rerun are kept
        table = json.loads(committed.read_text())
    table_file = table_path(args, "dmft_vs_simulation.json")
    for case in args.cases.split(","):
        c = CASES[case]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
        for k, dim in enumerate(dims):
            t0 = time.perf_counter()
            runs = dmft_runs(case, dim)
            t_dmft = time.perf_counter() - t0
            tau = runs[0]["tau"]
            seeds = max(2, SIM_SEEDS[case][dim] // (2 if args.quick else 1))
            t0 = time.perf_counter()
            sim = simulate(alpha=c["alpha"], ratio=c["ratio"], eps=c["eps"], dim=dim, dt=c["dt"], t_max=c["t_max"],
                           seeds=seeds, seed=1000, record_tau=tau)
            t_sim = time.perf_counter() - t0
            row = {"seeds": seeds, "dmft_seeds": DMFT_SEEDS, "dmft_seconds_per_run": t_dmft / DMFT_SEEDS,
                   "sim_seconds": t_sim}
            for j, name in enumerate(("train_loss", "test_loss")):
                theory = np.mean([r[name] for r in runs], axis=0)
                dmft_sd = np.std([r[name] for r in runs], axis=0, ddof=1)
                sim_mean = sim.observables[name]
                sim_se = sim.std[name] / math.sqrt(seeds)
                dev = np.abs(theory - sim_mean)
                i = int(np.argmax(dev))
                row[name] = {"max_dev": float(dev.max()), "tau_of_max": float(tau[i]),
                             "mean_dev": float(dev.mean()), "sim_se_at_max": float(sim_se[i]),
                             "max_sim_se": float(sim_se.max()), "max_dmft_sd": float(dmft_sd.max()),
                             "final_dev": float(theory[-1] - sim_mean[-1]), "final_sim_se": float(sim_se[-1])}
                color = f"C{k}"
                ax = axes[j]
                ax.plot(tau[1:], theory[1:], color=color, lw=1.5, label=f"DMFT, D={dim}")
                ax.fill_between(tau[1:], (sim_mean - sim_se)[1:], (sim_mean + sim_se)[1:], color=color, alpha=0.25)
                ax.plot(tau[1:], sim_mean[1:], "o", ms=2.5, color=color, label=f"network, D={dim} ({seeds} seeds; band ± SE)")
            table.setdefault(case, {})[str(dim)] = row
            print(case, dim, json.dumps({n: {k2: round(v, 4) for k2, v in row[n].items()}
                                         for n in ("train_loss", "test_loss")}), f"dmft {t_dmft:.0f}s sim {t_sim:.0f}s",
                  flush=True)
        for j, name in enumerate(("train loss", "test loss")):
            axes[j].set_xscale("log")
            axes[j].set_xlabel("τ = η t / D")
            axes[j].set_ylabel(name)
            if j == 0 and case != "c1":
                axes[j].set_yscale("log")
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(dims), fontsize=8)  # clear of the data
        fig.suptitle(f"{case} ({c['label']}): α={c['alpha']}, ε={c['eps']}, P/D={c['ratio']}, h={c['dt']}")
        out = figure_path(args, f"dmft_vs_simulation_{case}.png")
        fig.savefig(out, dpi=DPI)
        plt.close(fig)
        print(f"wrote {out}")
        table_file.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
