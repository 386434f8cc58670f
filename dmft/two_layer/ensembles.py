"""Ensembles around one solve: the sampling replicas (Monte-Carlo errors) and the training-set replicas."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..params import TwoLayerModel
from . import readouts
from .problem import TwoLayerProblem
from .settings import MAX_REPLICAS, MIN_REPLICAS, TwoLayerDMFT

def _stage(progress, stage):
    """The per-row callback of one pass for a ``progress(stage, t)`` reporter (None: no reports)."""
    return None if progress is None else (lambda t: progress(stage, t))


_ERROR_CURVES = ("train_loss", "test_loss", "spike", "bulk", "mean_norm", "mean_overlap")
#: curves whose kept sampling runs a finite-size solve stores in ``result.sampling_runs`` (runs x time)
SAMPLING_RUN_CURVES = ("train_loss", "test_loss")


def _loss_error(runs) -> float:
    """Largest standard error over tau of the mean train and test loss of the kept runs (NaN below 2 runs)."""
    if len(runs) < 2:
        return math.nan
    with np.errstate(all="ignore"):
        se = [np.std([np.asarray(c[name]) for _, c in runs], axis=0, ddof=1) / math.sqrt(len(runs))
              for name in SAMPLING_RUN_CURVES]
    se = np.concatenate(se)
    return float(np.max(se[np.isfinite(se)])) if np.isfinite(se).any() else math.nan


def sampling_ensemble(result, model, opts, replicas, mc_tol, progress=None, extend=None, make_replica=None):
    """Run the sampling seeds seed+1, seed+2, ... beside the solve's own and combine them.

    ``replicas``: run exactly that many seeds in all; None: as many as ``mc_tol`` needs, at least
    MIN_REPLICAS and at most MAX_REPLICAS.  The standard error of the mean of R independent
    replicas falls like R^-1/2 (measured at c1, 8 x 8 to 32 x 128 sites: the seed-to-seed sd of a
    replica is c / sqrt(nodes samples) with c = 0.044 at the grokking drop, whatever the split), so
    after each round the number of replicas is raised to R (err / mc_tol)^2, with 10 % to spare.

    The curves become the mean over the kept seeds and ``result.errors["mc"][name]`` its standard
    error (sd / sqrt(kept)); ``result.sampling_runs`` holds the kept runs of train_loss and test_loss
    (seeds x time), which :func:`dmft.agreement.against_simulation` uses; the kernels stay those of
    ``seed``.  ``result.diagnostics["mc_error"]`` is the largest standard error over tau of the train and
    test loss reached.  A sampling draw whose sweep diverges, or (finite_size) whose train loss
    :func:`train_loss_rise` flags, is an unstable solution of the sampled equations (with finite_size
    about one draw in 50-100, docs/finite-size.md section 5c), not a sample of the theory: it is left
    out, and listed in ``result.diagnostics["excluded_sampling_seeds"]`` and in the message;
    ``result.diagnostics["sampling_seeds"]`` lists the kept ones.  ``extend(rows)`` is called before
    each added round with the rows it adds (for a progress bar).  ``make_replica(seed)``: the problem of
    one more sampling seed (default: :class:`TwoLayerProblem` with ``opts`` at that seed); its ``sweep``
    gives (kernels, message) and its ``observables(kernels)`` the curves.
    """
    if make_replica is None:
        def make_replica(seed):
            return TwoLayerProblem(model, dataclasses.replace(opts, seed=seed))

    names = _ERROR_CURVES + (("spike_bulk_cross",) if opts.finite_size else ())
    obs = result.observables
    runs, excluded, notes = [], [], []

    def admit(seed, curves, diverged):
        # a rise is a sign of an unstable draw only with the bump field; in the D -> inf DMFT it is the
        # edge of stability, which every seed shares (train_loss_rise)
        rise = None if diverged or not opts.finite_size else readouts.train_loss_rise(curves["tau"], curves["train_loss"])
        if diverged or rise is not None:
            excluded.append(seed)
            notes.append(f"seed {seed} " + ("diverged" if diverged else
                                            f"(train loss rose from its minimum at tau = {rise['from_tau']:.4g})"))
        else:
            runs.append((seed, curves))

    admit(opts.seed, obs, False)
    target = replicas if replicas is not None else MIN_REPLICAS
    done = 1
    while True:
        for k in range(done, target):
            rep = make_replica(opts.seed + k)
            label = f"replica {k + 1}/{target}"
            K, message = rep.sweep(progress=_stage(progress, label))
            admit(opts.seed + k, rep.observables(K), message is not None)
        done = max(done, target)
        reached = _loss_error(runs)
        if replicas is not None or not reached > mc_tol or done >= MAX_REPLICAS:
            break
        target = min(MAX_REPLICAS, max(done + 1, math.ceil(1.1 * len(runs) * (reached / mc_tol) ** 2) + len(excluded)))
        if extend is not None:
            extend((target - done) * len(obs["tau"]))
    kept = [seed for seed, _ in runs]
    result.diagnostics["sampling_seeds"] = np.array(kept, dtype=np.int64)
    result.diagnostics["excluded_sampling_seeds"] = np.array(excluded, dtype=np.int64)
    result.diagnostics["mc_error"] = np.array(reached)
    stacked = {name: np.array([np.asarray(c[name]) for _, c in runs]) for name in names}
    mc = result.errors.setdefault("mc", {})
    for name in names:
        sd = np.std(stacked[name], axis=0, ddof=1) if len(runs) > 1 else np.full_like(obs[name], np.nan)
        if runs:
            obs[name] = stacked[name].mean(axis=0)
            sd = sd / math.sqrt(len(runs))
            if name in SAMPLING_RUN_CURVES:
                result.sampling_runs[name] = stacked[name]
        mc[name] = sd
    if len(runs) > 1:
        result.message += (f"; curves: mean of {len(runs)} sampling seed(s) ({_seed_list(kept)}), errors: its standard "
                           f"error, largest {reached:.2g} on the train and test loss")
        if replicas is None:
            result.message += (f" (mc_tol {mc_tol:g})" if not reached > mc_tol else
                               f", above mc_tol {mc_tol:g} after the most replicas, {MAX_REPLICAS}: raise --samples")
    if excluded:
        result.message += (("; unstable sampling draws, left out" if runs else
                            "; every sampling seed is an unstable draw, so the curves are those of --seed, without "
                            "error bars") + " (docs/finite-size.md, section 5c): " + "; ".join(notes))
    return reached


def _seed_list(seeds) -> str:
    """'0, 1, 2' or, for a run of consecutive seeds longer than 3, '0–9'."""
    if len(seeds) > 3 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))
_DATASET_CURVES = ("train_loss", "test_loss", "spike")
#: the statistics of a curve over training sets in :attr:`DatasetSpread.bands`
DATASET_STATISTICS = ("mean", "sd", "q16", "q84")


@dataclasses.dataclass
class DatasetSpread:
    """The spread over training sets of :func:`dataset_ensemble`.

    ``bands[stat][name]`` (length T): stat "mean", "sd" (ddof 1; NaN with fewer than 2 replicas),
    "q16", "q84" over the replicas, for train_loss, test_loss, spike and log_spike; ``failed`` the
    replicas whose sweep diverged (left out); ``t_train``, ``t_test`` each kept replica's first time
    with the loss below half its initial value (NaN if not within t_max)."""

    bands: dict
    failed: int
    t_train: np.ndarray
    t_test: np.ndarray

    def diagnostics(self) -> dict:
        """The scalars and per-replica arrays, as stored in ``SolverResult.diagnostics``."""
        return {"datasets_failed": np.array(self.failed), "t_train_datasets": self.t_train,
                "t_test_datasets": self.t_test}


def dataset_ensemble(model: TwoLayerModel, options: TwoLayerDMFT, datasets: int, seed: int | None = None,
                     pull_fluctuation: bool = True, progress=None) -> DatasetSpread:
    """Spread over training sets of P = round(ratio * dim) points (see :func:`solve`, ``datasets``).

    Each replica reweights the sampled sites of one problem (control variate off) by
    W ~ Multinomial(P, w) / P, the empirical measure of P points drawn from the sites, and runs
    the causal sweep: the finite-P fluctuations of every data average (the spike's growth rate
    E_mu[u^2 Delta] above all) are then those of a real training set.  With ``pull_fluctuation``
    each replica also adds the finite-P part of the cross direction's pull on the spike,
    kappa sum_mu (W_mu - w_mu)(u Delta c - E_chi[u Delta c])_mu / phi, which the central solve
    averages over chi exactly (docs/finite-size.md, section 4; only with finite_size).  Replicas
    whose sweep diverges are counted in ``failed`` and left out.  Returns a :class:`DatasetSpread`.
    ``progress(stage, t)`` is called after row t of each replica's sweep (stage "dataset k/R")."""
    from ..derived import crossing_time

    P = int(round(model.ratio * options.dim))
    central = TwoLayerProblem(model, dataclasses.replace(options, control_variate=False))
    w0 = central.weights
    rng = np.random.default_rng(options.seed + 7919 if seed is None else seed)
    curves = {name: [] for name in _DATASET_CURVES}
    t_train, t_test, failed = [], [], 0
    for k in range(datasets):
        W = rng.multinomial(P, w0 / w0.sum()) / P
        problem = central.reweighted(W, W - w0 if pull_fluctuation else None)
        K, message = problem.sweep(progress=_stage(progress, f"dataset {k + 1}/{datasets}"))
        if message is not None:
            failed += 1
            continue
        obs = problem.observables_from(K, problem.last_pass.Delta)
        for name in _DATASET_CURVES:
            curves[name].append(obs[name])
        t_train.append(crossing_time(obs["tau"], obs["train_loss"]))
        t_test.append(crossing_time(obs["tau"], obs["test_loss"]))
    bands = {stat: {} for stat in DATASET_STATISTICS}
    curves["log_spike"] = [np.log(c) for c in curves["spike"]]  # the spread of grokking is ~lognormal in s
    for name, c in curves.items():
        c = np.array(c) if c else np.full((1, central.T1), np.nan)
        bands["mean"][name] = c.mean(axis=0)
        bands["sd"][name] = c.std(axis=0, ddof=1) if len(c) > 1 else np.full(central.T1, np.nan)
        bands["q16"][name], bands["q84"][name] = np.percentile(c, [16, 84], axis=0)
    return DatasetSpread(bands=bands, failed=failed, t_train=np.array(t_train), t_test=np.array(t_test))
