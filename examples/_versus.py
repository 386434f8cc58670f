"""Shared pieces of the examples that put the DMFT against networks at several D (model_family, sgd_vs_networks):
one (point, D) row of the table, the cached table and the overlay figure."""
from __future__ import annotations

import json
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dmft import simulate, solve  # noqa: E402

from _output import DPI, figure_path, table_path  # noqa: E402


def run_point(point: dict, dim: int, seeds: int) -> dict:
    """The DMFT (``solve`` at this D, default sampling unless ``point["options"]``) and ``seeds`` exact infinite-width
    networks at the same step:
    per observable the largest deviation over tau between the DMFT and the networks' mean over training sets (with
    the training set's label moment as control variate, ``SimulationResult.seed_mean``), the networks' and the
    DMFT's standard errors there, and both curves."""
    t0 = time.time()
    theory = solve(**point["model"], **point.get("options", {}), dim=dim, dt=point["dt"], t_max=point["t_max"],
                   progress=False)
    t1 = time.time()
    sims = simulate(**point["model"], dim=dim, dt=point["dt"], t_max=point["t_max"], seeds=seeds, seed=1000,
                    record_tau=theory.observables["tau"])
    t2 = time.time()
    row = {"dim": dim, "seeds": seeds, "replicas": len(theory.diagnostics["sampling_seeds"]),
           "dmft_mc_error": float(theory.diagnostics["mc_error"]), "dmft_s": t1 - t0, "sim_s": t2 - t1,
           "tau": theory.observables["tau"].tolist()}
    for k in ("train_loss", "test_loss", "mean_overlap"):
        d, (m, se) = theory.observables[k], sims.seed_mean(k)
        mc = theory.errors["mc"].get(k, np.zeros_like(d)) if "mc" in theory.errors else np.zeros_like(d)
        i = int(np.nanargmax(np.abs(d - m)))
        row[k] = {"deviation": float(abs(d[i] - m[i])), "tau": float(row["tau"][i]), "sim_se": float(se[i]),
                  "dmft_se": float(mc[i]), "dmft": d.tolist(), "sim": m.tolist(), "sim_se_curve": se.tolist()}
    return row


def run_table(args, name: str, points: dict, dims, seeds) -> dict:
    """Every (point, D) row, cached in the table file ``name`` (an interrupted run continues); ``seeds(point, D)``."""
    path = table_path(args, name)
    table = json.loads(path.read_text()) if path.exists() else {}
    for key_point, point in points.items():
        for dim in dims:
            key = f"{key_point}/{dim}"
            if key in table:
                continue
            table[key] = r = run_point(point, dim, seeds(key_point, dim))
            print(f"{key}: train {r['train_loss']['deviation']:.4f} (sim SE {r['train_loss']['sim_se']:.4f}, DMFT SE "
                  f"{r['train_loss']['dmft_se']:.4f}) test {r['test_loss']['deviation']:.4f} (sim SE "
                  f"{r['test_loss']['sim_se']:.4f}, DMFT SE {r['test_loss']['dmft_se']:.4f}); "
                  f"{r['dmft_s']:.0f} s + {r['sim_s']:.0f} s", flush=True)
            path.write_text(json.dumps(table, indent=1))
    print("wrote", path)
    return table


def plot_table(args, name: str, table: dict, points: dict, dims) -> None:
    """One panel per point: the DMFT's train and test loss (lines) and the networks' (markers, SE bars) per D."""
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 3.8), layout="constrained", squeeze=False)
    for ax, key_point in zip(axes[0], points):
        for j, dim in enumerate(dims):
            r = table.get(f"{key_point}/{dim}")
            if r is None:  # a row not computed (yet)
                continue
            tau = np.array(r["tau"])
            for k, color in (("train_loss", "C0"), ("test_loss", "C3")):
                word = k.split("_")[0]
                ax.plot(tau, r[k]["dmft"], color=color, lw=1.2, alpha=0.4 + 0.3 * j, label=f"DMFT {word}, D = {dim}")
                step = max(1, tau.size // 25)
                ax.errorbar(tau[::step], np.array(r[k]["sim"])[::step], np.array(r[k]["sim_se_curve"])[::step],
                            fmt="os^"[j], ms=3, color=color, alpha=0.4 + 0.3 * j, lw=0.8,
                            label=f"networks {word}, D = {dim}")
        m = points[key_point]["model"]
        ax.set_title(f"{key_point}: " + ", ".join(f"{k}={v}" for k, v in m.items()), fontsize=7)
        ax.set_xlabel("τ")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=6, ncol=2, loc="upper right")
    fig.savefig(figure_path(args, name), dpi=DPI)
