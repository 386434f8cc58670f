"""Where ``--finite-size`` can be trusted: the finite-size and the D → ∞ DMFT against networks across the
phase diagram (docs/finite-size.md, section 6).

For every point of ``POINTS`` (alpha 0.1-10, eps 0.02-0.3, ratio 1.5-6: rich, crossover, lazy, grokking and
non-grokking) and D = 200 and 400, this compares the seed-mean train and test loss of N = ∞ networks
(``dmft.simulate``, ``SIM_SEEDS[D]`` seeds from 1000) with

* the D → ∞ DMFT (``finite_size=False``), ``DINF_SEEDS`` sampling seeds, and
* the finite-size DMFT (``finite_size=True``), ``FS_SEEDS`` sampling seeds,

each of ``NODES`` x ``SAMPLES`` sites, and records the largest deviation over the window of each loss, in
absolute terms and in units of the combined standard error sqrt(SE_networks² + SE_DMFT²).  The networks'
mean is the control-variate estimate (``dmft.simulator.control_variate_mean`` with each training set's
fourth moment of u), whose SE is 1.5-5x smaller than the plain seed mean's.  A sampling seed that diverges
or whose train loss runs away (``train_loss_rise``) is left out of the mean and counted (``runaways``).

The verdict of a point: the finite-size DMFT *helps* there when, at both D and for both losses, its largest
deviation is at most that of the D → ∞ DMFT plus one combined SE (at the finite-size maximum).  c1 and g2 are the two validated
grokking cases of ``examples/finite_size.py``; their entries are read from ``data/finite_size.json``
(24 x 64 sites, 16 / 8 sampling seeds, 32 / 48 networks).

Writes ``validity_map.json`` and ``validity_map.png`` to ``out/figures/`` (``--figures``: the committed
``data/validity_map.json`` and ``examples/figures/``).  Networks are cached under ``--sim-cache`` and the DMFT
runs under ``--dmft-cache`` as in ``examples/finite_size.py``.

    python examples/validity_map.py                  # about 1 h on 2 cores (networks ~25 min), cached
    python examples/validity_map.py --points x1,l2   # some points only (the others keep their stored entry)
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from finite_size import deviation, dmft_curves, mean_sd, simulations  # noqa: E402
from _output import DPI, add_output_options, figure_path, table_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: name -> parameters, window and regime.  h is below the Euler bound 1/(1 + sqrt(1/ratio))^2 at every point;
#: each window runs until the D → ∞ train loss has settled (below 0.01 and flat) or, on the lazy side, through
#: the lazy fit and into the plateau before the slow rich phase
POINTS = {
    "r1": dict(alpha=0.1, eps=0.1, ratio=3.0, dt=0.1, t_max=24.0, regime="rich"),
    "r2": dict(alpha=0.3, eps=0.02, ratio=6.0, dt=0.4, t_max=120.0, regime="rich"),
    "x1": dict(alpha=0.5, eps=0.2, ratio=2.5, dt=0.15, t_max=40.0, regime="crossover"),
    "x2": dict(alpha=0.5, eps=0.05, ratio=4.0, dt=0.4, t_max=100.0, regime="crossover"),
    "f1": dict(alpha=1.0, eps=0.1, ratio=1.5, dt=0.25, t_max=50.0, regime="crossover, few data"),
    "l1": dict(alpha=4.0, eps=0.3, ratio=5.5, dt=0.4, t_max=100.0, regime="lazy"),
    "l2": dict(alpha=10.0, eps=0.3, ratio=4.0, dt=0.4, t_max=60.0, regime="lazy"),
    "l3": dict(alpha=5.0, eps=0.1, ratio=5.5, dt=0.4, t_max=120.0, regime="lazy, slow grokking"),
}
VALIDATED = {"c1": "grokking", "g2": "grokking"}  # from data/finite_size.json
DIMS = (200, 400)
SIM_SEEDS = {200: 16, 400: 8}
NODES, SAMPLES = 16, 32
FS_SEEDS = 8  # the finite-size runs' spread is heavy-tailed (docs/finite-size.md, section 5c)
DINF_SEEDS = 4
LOSSES = ("train_loss", "test_loss")


def _summary(dev, dmft_se_at):
    """The numbers the map keeps of a deviation() entry, against the control-variate mean where it exists;
    ``dmft_se_at(tau)``: the DMFT's standard error at that time, for the combined SE at the largest deviation."""
    d = dev.get("control_variate", dev)
    dmft_se = float(dmft_se_at(d["tau_of_max"]))
    return {"max_dev": d["max_dev"], "tau_of_max": d["tau_of_max"], "sim_se_at_max": d["sim_se_at_max"],
            "dmft_se_at_max": dmft_se, "combined_se_at_max": float(np.hypot(d["sim_se_at_max"], dmft_se)),
            "max_dev_over_combined_se": d.get("max_dev_over_combined_se", d["max_dev_over_se"])}


def point_entry(name, p, dim, sim_cache, dmft_cache):
    tau_s, per_seed = simulations(name, dim, sim_cache, params=p, seeds=SIM_SEEDS[dim])
    entry = {"sim_seeds": int(per_seed["train_loss"].shape[0]), "dmft_sites": f"{NODES} x {SAMPLES}",
             "networks_final": {n: float(per_seed[n][:, -1].mean()) for n in LOSSES}}
    for finite, seeds in ((False, DINF_SEEDS), (True, FS_SEEDS)):
        key = "finite_size" if finite else "d_inf"
        try:
            tau_d, runs, kept, excluded, seconds = dmft_curves(name, dim, finite, seeds, dmft_cache, NODES,
                                                               params=p, samples=SAMPLES)
        except RuntimeError as err:  # fewer than 2 usable runs: the point is recorded as unusable
            entry[key] = {"runs": seeds, "runaways": seeds, "unusable": str(err)}
            continue
        mean, sd = mean_sd(runs)
        used = len(kept)
        entry[key] = {n: _summary(deviation(tau_s, per_seed, tau_d, mean, n, sd, used),
                                  lambda t, n=n: sd[n][int(round(t / p["dt"]))] / np.sqrt(used)) for n in LOSSES}
        entry[key].update(runs=seeds, runaways=len(excluded), excluded_seeds=excluded,
                          seconds_per_run=seconds if np.isfinite(seconds) else None)
        print(f"  {name} D={dim} {key}: " + ", ".join(
            f"{n} {entry[key][n]['max_dev']:.4f} ({entry[key][n]['max_dev_over_combined_se']:.1f} SE)" for n in LOSSES)
            + f"; {len(excluded)} runaways of {seeds}", flush=True)
    return entry


def validated_entry(case, committed):
    """A c1 / g2 entry of data/finite_size.json in the map's format."""
    c = committed[case]
    out = {"parameters": dict(c["parameters"], regime=VALIDATED[case]), "source": "data/finite_size.json"}
    for dim in DIMS:
        e = c[str(dim)]
        out[str(dim)] = {"sim_seeds": e["sim_seeds"], "dmft_sites": e["dmft_sites"]}
        for key in ("d_inf", "finite_size"):
            runs = e[key]["runs_used"] + len(e[key]["excluded_seeds"])
            # the stored entry keeps the DMFT's largest sd over time: its SE at the maximum is at most that
            se = {n: e[key]["max_dmft_sd"][n] / np.sqrt(e[key]["runs_used"]) for n in LOSSES}
            out[str(dim)][key] = {n: _summary(e[key][n], lambda t, n=n: se[n]) for n in LOSSES}
            out[str(dim)][key].update(runs=runs, runaways=len(e[key]["excluded_seeds"]),
                                      excluded_seeds=e[key]["excluded_seeds"])
    return out


def verdict(entry):
    """'helps' when at both D and for both losses the finite-size DMFT's largest deviation is at most the D → ∞
    one's plus 1 combined SE (networks and finite-size DMFT, at the finite-size maximum); otherwise 'worse',
    naming where."""
    worse = []
    for dim in DIMS:
        e = entry[str(dim)]
        if "unusable" in e["finite_size"]:
            worse.append(f"D={dim}: no usable finite-size runs")
            continue
        for n in LOSSES:
            fs = e["finite_size"][n]
            inf = e["d_inf"][n]["max_dev"] if "unusable" not in e["d_inf"] else np.inf
            if fs["max_dev"] > inf + fs["combined_se_at_max"]:
                worse.append(f"D={dim} {n.split('_')[0]}: {fs['max_dev']:.4f} against {inf:.4f} "
                             f"(combined SE {fs['combined_se_at_max']:.4f})")
    return ("worse", worse) if worse else ("helps", [])


def figure(table, path):
    fig, (ax, *bars) = plt.subplots(1, 3, figsize=(17, 5), layout="constrained")
    names = list(table["points"])
    for name in names:
        e = table["points"][name]
        p = e["parameters"]
        ok = e["verdict"] == "helps"
        ax.scatter(p["alpha"], p["eps"], s=40 * p["ratio"], c="C2" if ok else "C3", marker="o" if ok else "X",
                   alpha=0.8, edgecolors="k")
        ax.annotate(f"{name} (P/D={p['ratio']:g})", (p["alpha"], p["eps"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="α (output scale)", ylabel="ε (NTK–target alignment)",
           title="finite-size helps (green) / worse than D → ∞ (red ×); size ∝ P/D")
    x = np.arange(len(names))
    for bx, loss in zip(bars, LOSSES):
        for k, dim in enumerate(DIMS):
            for j, (key, hatch) in enumerate((("d_inf", ""), ("finite_size", "//"))):
                vals = [table["points"][n][str(dim)][key][loss]["max_dev"]
                        if "unusable" not in table["points"][n][str(dim)][key] else np.nan for n in names]
                bx.bar(x - 0.3 + 0.2 * (2 * k + j), vals, width=0.18, color=f"C{k}", hatch=hatch, edgecolor="k",
                       lw=0.4, label=f"{'finite-size' if key == 'finite_size' else 'D → ∞'}, D={dim}")
        bx.set(xticks=x, xticklabels=names, yscale="log", ylabel=f"largest |DMFT − networks|, {loss.replace('_', ' ')}",
               title=f"{loss.replace('_', ' ')} (missing bar: no usable finite-size run)")
        bx.legend(fontsize=8)
    fig.savefig(path, dpi=DPI)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", default=",".join(POINTS))
    ap.add_argument("--sim-cache", default=str(ROOT / "out" / "sims"))
    ap.add_argument("--dmft-cache", default=str(ROOT / "out" / "dmft_runs"))
    add_output_options(ap)
    args = ap.parse_args()
    committed = ROOT / "data" / "validity_map.json"
    table = json.loads(committed.read_text()) if committed.exists() else {"points": {}}
    fs_table = json.loads((ROOT / "data" / "finite_size.json").read_text())
    for case in VALIDATED:
        table["points"][case] = validated_entry(case, fs_table)
    for name in args.points.split(","):
        p = POINTS[name]
        entry = {"parameters": p}
        for dim in DIMS:
            print(f"{name} D={dim}", flush=True)
            entry[str(dim)] = point_entry(name, p, dim, Path(args.sim_cache), Path(args.dmft_cache))
        table["points"][name] = entry
    runs = runaways = 0
    for entry in table["points"].values():
        entry["verdict"], entry["worse_at"] = verdict(entry)
        for dim in DIMS:
            runs += entry[str(dim)]["finite_size"]["runs"]
            runaways += entry[str(dim)]["finite_size"]["runaways"]
    table["finite_size_runaways"] = {"runs": runs, "runaways": runaways, "rate": runaways / runs}
    table["settings"] = {"dims": list(DIMS), "sim_seeds": SIM_SEEDS, "sites": f"{NODES} x {SAMPLES}",
                         "finite_size_seeds": FS_SEEDS, "d_inf_seeds": DINF_SEEDS,
                         "verdict": "helps: at both D, for both losses, the finite-size largest deviation <= the "
                                    "D → ∞ one + the combined SE at the finite-size maximum"}
    out = table_path(args, "validity_map.json")
    out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    figure(table, figure_path(args, "validity_map.png"))
    for name, entry in table["points"].items():
        print(f"{name}: {entry['verdict']} {'; '.join(entry['worse_at'])}")
    print(f"finite-size runaways: {runaways} of {runs} runs; wrote {out}")


if __name__ == "__main__":
    main()
