"""The model family (general target, label noise, weight decay): the DMFT against networks at D = 200, 400, 800.

Two points, each solved by the D → ∞ DMFT at the networks' D (which enters through the spike seed 1/D) and
simulated with exact infinite-width networks (``dmft.simulate``, width = inf) at the same Euler step h:

* ``mixed``: a target with linear and cubic parts, label noise and weight decay together
  (α 1, ε 0.1, P/D 2, g = 0.2 + 0.7 He₁ + 0.5 He₂ + 0.15 He₃, σ 0.2, ω 0.05, h 0.2, τ ≤ 12);
* ``grokking``: the grokking point g2 with weight decay (α 2, ε 0.05, P/D 5.5, ω 0.01, h 0.4, τ ≤ 120).

For each point and D it tabulates the largest deviation over τ of the train and test loss between the DMFT and
the networks' mean (over training sets, with the label moment (1/P) Σ y² as control variate,
``SimulationResult.seed_mean``), the networks' standard error and the DMFT's Monte-Carlo standard error there,
writes ``model_family.json`` and the overlay figure ``model_family.png`` (``--out-dir DIR``: to DIR;
``--figures``: the committed ``data/`` and ``examples/figures/``).  Each (point, D) is cached in the table
file, so an interrupted run continues.

    python examples/model_family.py            # about 30 minutes on 2 cores
    python examples/model_family.py --figures  # refresh the committed table and figure
"""
import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dmft import simulate, solve  # noqa: E402

from _output import DPI, add_output_options, figure_path, table_path  # noqa: E402

POINTS = {
    "mixed": dict(model=dict(alpha=1.0, eps=0.1, ratio=2.0, target=(0.2, 0.7, 0.5, 0.15), noise=0.2,
                             weight_decay=0.05), dt=0.2, t_max=12.0),
    "grokking": dict(model=dict(alpha=2.0, eps=0.05, ratio=5.5, weight_decay=0.01), dt=0.4, t_max=120.0),
}
DIMS = (200, 400, 800)
SIM_SEEDS = {"mixed": {200: 32, 400: 32, 800: 32}, "grokking": {200: 16, 400: 16, 800: 16}}


def run_point(name, dim):
    p = POINTS[name]
    t0 = time.time()
    theory = solve(**p["model"], dim=dim, dt=p["dt"], t_max=p["t_max"], progress=False)
    t1 = time.time()
    sims = simulate(**p["model"], dim=dim, dt=p["dt"], t_max=p["t_max"], seeds=SIM_SEEDS[name][dim], seed=1000,
                    record_tau=theory.observables["tau"])
    t2 = time.time()
    row = {"dim": dim, "seeds": SIM_SEEDS[name][dim], "replicas": len(theory.diagnostics["sampling_seeds"]),
           "dmft_mc_error": float(theory.diagnostics["mc_error"]), "dmft_s": t1 - t0, "sim_s": t2 - t1,
           "tau": theory.observables["tau"].tolist()}
    for k in ("train_loss", "test_loss", "mean_overlap"):
        # the networks' mean over training sets with the label moment (1/P) sum y^2 as control variate
        d, (m, se) = theory.observables[k], sims.seed_mean(k)
        mc = theory.errors["mc"].get(k, np.zeros_like(d)) if "mc" in theory.errors else np.zeros_like(d)
        i = int(np.nanargmax(np.abs(d - m)))
        row[k] = {"deviation": float(abs(d[i] - m[i])), "tau": float(row["tau"][i]), "sim_se": float(se[i]),
                  "dmft_se": float(mc[i]), "dmft": d.tolist(), "sim": m.tolist(), "sim_se_curve": se.tolist()}
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(ap)
    args = ap.parse_args()
    path = table_path(args, "model_family.json")
    table = json.loads(path.read_text()) if path.exists() else {}
    for name in POINTS:
        for dim in DIMS:
            key = f"{name}/{dim}"
            if key in table:
                continue
            table[key] = run_point(name, dim)
            r = table[key]
            print(f"{key}: train {r['train_loss']['deviation']:.4f} (sim SE {r['train_loss']['sim_se']:.4f}, DMFT SE "
                  f"{r['train_loss']['dmft_se']:.4f}) test {r['test_loss']['deviation']:.4f} (sim SE "
                  f"{r['test_loss']['sim_se']:.4f}, DMFT SE {r['test_loss']['dmft_se']:.4f}); "
                  f"{r['dmft_s']:.0f} s + {r['sim_s']:.0f} s", flush=True)
            path.write_text(json.dumps(table, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, name in zip(axes, POINTS):
        for j, dim in enumerate(DIMS):
            r = table[f"{name}/{dim}"]
            tau = np.array(r["tau"])
            for k, color in (("train_loss", "C0"), ("test_loss", "C3")):
                ax.plot(tau, r[k]["dmft"], color=color, lw=1.2, alpha=0.4 + 0.3 * j,
                        label=f"DMFT {k.split('_')[0]}, D = {dim}")
                step = max(1, tau.size // 25)
                ax.errorbar(tau[::step], np.array(r[k]["sim"])[::step], np.array(r[k]["sim_se_curve"])[::step],
                            fmt="os^"[j], ms=3, color=color, alpha=0.4 + 0.3 * j, lw=0.8,
                            label=f"networks {k.split('_')[0]}, D = {dim}")
        m = POINTS[name]["model"]
        ax.set_title(", ".join(f"{k}={v}" for k, v in m.items()), fontsize=8)
        ax.set_xlabel("τ")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
    axes[1].legend(fontsize=6, ncol=2, loc="upper right")
    fig.savefig(figure_path(args, "model_family.png"), dpi=DPI)
    print("wrote", path)


if __name__ == "__main__":
    main()
