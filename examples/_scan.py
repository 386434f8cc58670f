"""Shared pieces of the scan examples (delay_vs_alpha, delay_vs_eps, dataset_window):
turning a sweep's index into rows, the loss-curve panel and the times/delay panels."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter

from dmft.io import read_h5


def _num(v):
    return float("nan") if v is None else float(v)


def rows_from_sweep(res, key):
    """(x, t_train, t_test, delay, delay_lower_bound, point) per sweep point, x = parameters[key]."""
    rows = []
    for p in res.points:
        d = p["derived"] or {}
        rows.append((p["parameters"][key], _num(d.get("t_train")), _num(d.get("t_test")), _num(d.get("delay")),
                     _num(d.get("delay_lower_bound")), p))
    return rows


def plot_curves(ax, rows, outdir, colors, time_scale, label):
    """Test (solid) and train (dashed) loss of each finished point against time_scale(x) * tau."""
    for (x, *_rest, p), color in zip(rows, colors):
        if p["status"] == "failed":
            continue
        obs = read_h5(outdir / p["file"])["observables"]
        tau = np.asarray(obs["tau"])
        pos = tau > 0
        t = time_scale(x) * tau[pos]
        ax.plot(t, np.asarray(obs["test_loss"])[pos], color=color, lw=1.6, label=label(x))
        ax.plot(t, np.asarray(obs["train_loss"])[pos], color=color, lw=1.0, ls="--")
    ax.set_xscale("log")


def plot_times_and_delay(ax_t, ax_d, rows, xlabel, guide, guide_label):
    """Log-log t_train, t_test against x (with a power-law guide) and the delay t_test/t_train;
    where the test loss never halved, the lower bound of the delay is marked."""
    x = np.array([r[0] for r in rows])
    t_tr, t_te, delay = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    ax_t.loglog(x, t_tr, "o-", color="C0", label="t_train (train loss < ½ initial)")
    ax_t.loglog(x, t_te, "s-", color="C3", label="t_test (test loss < ½ initial)")
    ax_t.loglog(x, guide(x), ":", color="0.5", label=guide_label)
    ax_t.set_ylabel("τ")
    ax_t.set_title("time to fit and to generalise")
    ax_t.legend(fontsize=8)
    ax_d.semilogx(x, delay, "o-", color="k")
    for xv, *_rest, bound, _p in rows:
        if np.isfinite(bound):  # the test loss did not fall within t_max: the delay is at least this
            ax_d.plot([xv], [bound], "^", color="C3")
            ax_d.annotate(f"> {bound:.2f}", (xv, bound), textcoords="offset points", xytext=(0, 7), ha="center",
                          fontsize=8, color="C3")
    for xv, y in zip(x, delay):
        if np.isfinite(y):
            ax_d.annotate(f"{y:.2f}", (xv, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    for ax in (ax_t, ax_d):
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
    ax_d.set_ylabel("delay t_test / t_train")
    ax_d.set_title("grokking delay")
    ax_d.margins(y=0.2)
