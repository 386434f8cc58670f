"""How well a theory curve agrees with networks' seed mean, and what that figure would be for an exact theory.

The usual check of a DMFT against simulations reads the largest deviation over time in units of the
simulations' standard error (SE),

    M = max_t |theory(t) - mean(t)| / SE(t),

and asks for M <= 2.  Even an exact theory (a curve equal to the true mean over training sets and
initialisations) exceeds 2 SE at some time with a probability that depends on how many times are
compared, how correlated the curves are over time and how heavy-tailed the seed-to-seed distribution
is.  :func:`max_deviation` therefore also gives the distribution of M for an exact theory, from a
bootstrap of the same networks (resampling seeds with replacement and measuring the resample's mean
against the full mean in the resample's SE): its pass rate P(M <= threshold), its 95 % quantile and
the p-value of the observed M.  With a theory that is itself a mean of independent sampling runs
(``theory_runs``), the SE is the combined sqrt(SE_net^2 + SE_theory^2) and the runs are resampled too.

The bootstrap treats the seeds as exchangeable draws; with few seeds (n <~ 15) it underestimates the
tails of M (a resample cannot be more extreme than the seeds it draws from), so read its quantiles as
lower bounds there.
"""
from __future__ import annotations

import numpy as np

from .simulator import control_variate_mean

__all__ = ["max_deviation", "against_simulation", "describe", "MIN_BOOTSTRAP_SEEDS"]

#: fewest seeds for the exact-theory bootstrap: of the resamples of 4 seeds, 1 in 64 is one seed four
#: times (SE 0) and 34 % hold at most two distinct seeds, so the statistic's tail is meaningless
#: (measured: a 95 % quantile of ~1000 SE); from 8 seeds on it is a usable lower bound
MIN_BOOTSTRAP_SEEDS = 8


def _estimate(y, u4):
    if u4 is None:
        return y.mean(axis=0), y.std(axis=0, ddof=1) / np.sqrt(y.shape[0])
    return control_variate_mean(y, u4)


def max_deviation(theory, per_seed, theory_runs=None, u4=None, threshold: float = 2.0, bootstrap: int = 2000,
                  seed: int = 0) -> dict:
    """Largest deviation of ``theory`` (T,) from the networks' mean of ``per_seed`` (n, T; the same T
    times), in SE, and its distribution for an exact theory.

    theory_runs
        (m, T) independent sampling runs whose mean is the theory curve; their SE sd/sqrt(m) is combined
        with the networks' (``theory`` is then ignored and their mean is used).
    u4
        (n,) the training sets' fourth moments: the networks' mean is then the control-variate estimate
        (:func:`dmft.simulator.control_variate_mean`).  Columns where its SE vanishes (tau = 0, where the train
        loss is m4/4 exactly) must be left out by the caller.
    threshold
        the pass mark of the statistic, in SE.
    bootstrap
        resamples for the exact-theory distribution (needs >= MIN_BOOTSTRAP_SEEDS seeds); 0: none
        (``exact_theory`` is then None).

    Returns a dict: ``max_over_se`` (M), ``index_of_max``, ``threshold``, ``within_fraction`` (share of times within
    ``threshold`` SE), ``max_dev`` (largest |deviation|), and ``exact_theory``: ``pass_rate`` = P(M <=
    threshold), ``quantile_95`` and ``p_value`` = P(M >= observed) for an exact theory, from
    ``bootstrap`` resamples.
    """
    y = np.asarray(per_seed, dtype=float)
    if y.ndim != 2 or y.shape[0] < 3 or y.shape[1] < 1:
        raise ValueError(f"per_seed must be (seeds >= 3, times >= 1); got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("per_seed has non-finite entries: leave out diverged seeds or times first")
    if bootstrap != 0 and bootstrap < 100:
        raise ValueError(f"bootstrap must be 0 (no exact-theory distribution) or >= 100 resamples; got {bootstrap}")
    if bootstrap and y.shape[0] < MIN_BOOTSTRAP_SEEDS:
        raise ValueError(f"the exact-theory distribution needs >= {MIN_BOOTSTRAP_SEEDS} seeds, got {y.shape[0]}: "
                         "a bootstrap of fewer draws many resamples with repeated seeds and a vanishing SE; "
                         "simulate more seeds or pass bootstrap=0")
    if u4 is not None:
        u4 = np.asarray(u4, dtype=float)
        if u4.shape != (y.shape[0],):
            raise ValueError(f"u4 has shape {u4.shape}, expected ({y.shape[0]},)")
    runs = None
    if theory_runs is not None:
        runs = np.asarray(theory_runs, dtype=float)
        if runs.ndim != 2 or runs.shape[1] != y.shape[1] or runs.shape[0] < 2:
            raise ValueError(f"theory_runs must be (runs >= 2, {y.shape[1]}); got shape {runs.shape}")
        curve, th_se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0])
    else:
        curve = np.asarray(theory, dtype=float)
        if curve.shape != (y.shape[1],):
            raise ValueError(f"theory has shape {curve.shape}, expected ({y.shape[1]},)")
        th_se = 0.0
    mean, se = _estimate(y, u4)
    err = np.sqrt(se**2 + th_se**2)
    dev = curve - mean
    ratio = np.abs(dev) / np.maximum(err, 1e-300)
    observed = float(ratio.max())

    out = {"max_over_se": observed, "index_of_max": int(np.argmax(ratio)), "threshold": float(threshold),
           "within_fraction": float(np.mean(ratio <= threshold)), "max_dev": float(np.abs(dev).max()),
           "exact_theory": None}
    if not bootstrap:
        return out
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    null = np.empty(bootstrap)
    for b in range(bootstrap):
        i = rng.integers(0, n, n)
        m_b, se_b = _estimate(y[i], None if u4 is None else u4[i])
        d_b = m_b - mean
        e2 = se_b**2
        if runs is not None:
            r = runs[rng.integers(0, runs.shape[0], runs.shape[0])]
            d_b = d_b - (r.mean(axis=0) - curve)
            e2 = e2 + r.var(axis=0, ddof=1) / runs.shape[0]
        null[b] = np.max(np.abs(d_b) / np.maximum(np.sqrt(e2), 1e-300))
    out["exact_theory"] = {"pass_rate": float(np.mean(null <= threshold)), "quantile_95": float(np.quantile(null, 0.95)),
                           "p_value": float(np.mean(null >= observed)), "bootstrap": int(bootstrap)}
    return out


def against_simulation(theory_tau, theory_observables, sim, names=("train_loss", "test_loss"),
                       control_variate: bool = True, bootstrap: int = 2000, seed: int = 0,
                       theory_runs=None) -> dict:
    """:func:`max_deviation` of a theory's curves against a :class:`dmft.simulator.SimulationResult`
    with per-seed curves, at the simulation's recorded times tau > 0 inside the theory's range (the
    theory linearly interpolated there; use the same Euler step and record times for an exact
    match).  The networks' mean is the m4 control-variate estimate when ``control_variate`` and the
    training sets' moments are known (4 or more seeds), else the plain seed mean.  With fewer than
    MIN_BOOTSTRAP_SEEDS seeds there is no exact-theory distribution (``exact_theory`` None).  When the
    theory carries its sampling runs (``theory_runs[name]``, runs x time: ``SolverResult.sampling_runs``
    of a finite-size solve with replicas >= 2), the theory is their mean and its own Monte-Carlo
    error is combined with the networks' (``theory_runs`` of :func:`max_deviation`); otherwise it is
    not included.  Returns name -> the
    max_deviation dict plus ``tau_of_max``, ``mean`` (which estimate), ``seeds`` and ``theory_runs`` (how
    many theory runs were combined, 0 if none); names missing on either side are skipped."""
    if not getattr(sim, "per_seed", None):
        raise ValueError("the simulation has no per-seed curves (needed for a standard error)")
    tau_t = np.asarray(theory_tau, dtype=float)
    tau_s = np.asarray(sim.tau, dtype=float)
    live = (tau_s > 0) & (tau_s >= tau_t[0] - 1e-9) & (tau_s <= tau_t[-1] + 1e-9)
    if not live.any():
        raise ValueError(f"no simulation time in the theory's range tau = {tau_t[0]:g}..{tau_t[-1]:g} (beyond 0)")
    out = {}
    for name in names:
        if name not in theory_observables or name not in sim.per_seed:
            continue
        y = np.asarray(sim.per_seed[name], dtype=float)[:, live]
        keep = np.all(np.isfinite(y), axis=1)  # a diverged network is left out, and counted
        y = y[keep]
        u4 = None
        if control_variate and sim.data_moments is not None and "u4" in sim.data_moments and len(y) >= 4:
            u4 = np.asarray(sim.data_moments["u4"], dtype=float)[keep]
        curve = np.interp(tau_s[live], tau_t, np.asarray(theory_observables[name], dtype=float))
        runs = (theory_runs or {}).get(name)
        runs = None if runs is None else np.atleast_2d(np.asarray(runs, dtype=float))
        if runs is not None and (runs.shape[0] < 2 or runs.shape[1] != tau_t.shape[0]):
            runs = None  # one kept run carries no error estimate
        if runs is not None:
            runs = np.array([np.interp(tau_s[live], tau_t, r) for r in runs])
        r = max_deviation(curve, y, theory_runs=runs, u4=u4,
                          bootstrap=bootstrap if len(y) >= MIN_BOOTSTRAP_SEEDS else 0, seed=seed)
        r.update(tau_of_max=float(tau_s[live][r["index_of_max"]]), seeds=int(len(y)),
                 left_out=int((~keep).sum()), mean="m4 control variate" if u4 is not None else "seed mean",
                 theory_runs=0 if runs is None else int(runs.shape[0]))
        out[name] = r
    return out


def describe(results: dict) -> list[str]:
    """One line per curve of :func:`against_simulation`, for printing."""
    lines = []
    for name, r in results.items():
        threshold = r["threshold"]
        se = (f"SE (the networks' {r['mean']}, {r['seeds']} seeds, combined with the theory's {r['theory_runs']} "
              "sampling runs)" if r.get("theory_runs") else f"SE of the networks' {r['mean']} ({r['seeds']} seeds)")
        line = (f"{name}: largest deviation {r['max_dev']:.4g}; {r['max_over_se']:.2f} {se} "
                f"at tau = {r['tau_of_max']:.4g}; "
                f"{100 * r['within_fraction']:.0f} % of times within {threshold:g} SE")
        x = r["exact_theory"]
        if x is None:
            line += f"; fewer than {MIN_BOOTSTRAP_SEEDS} seeds: no exact-theory reference"
        else:
            line += (f"; an exact theory: within {threshold:g} SE at every time with probability "
                     f"{x['pass_rate']:.2f}, 95 % quantile {x['quantile_95']:.2f} SE, p = {x['p_value']:.3f}")
        if r["left_out"]:
            line += f" ({r['left_out']} non-finite seeds left out)"
        lines.append(line)
    return lines
