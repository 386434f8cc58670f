"""Network simulator: the ground truth the DMFT is checked against.

The model, the two engines (explicit finite width, reduced infinite width), minibatch SGD and the
recorded observables are described in :mod:`dmft.networks`; the record and its I/O in
:mod:`dmft.simulation_result`.

Training-set moments and the control-variate seed mean
-----------------------------------------------------
Each run also records its training set's empirical moments m_k = (1/P) sum_mu u_mu^k, k = 2, 4, 6,
of the teacher field u = beta.x (``SimulationResult.data_moments``; u ~ N(0, 1) exactly because
|beta|^2 = D, so E[m_k] = 1, 3, 15).  The train loss at tau = 0 is m_4 / 4 exactly, and a network's
whole trajectory follows its m_4 (c1, D = 400: correlation 0.92-0.97 of log s with m_4 at
tau = 10-40).  :meth:`SimulationResult.seed_mean` uses m_4 as a control variate with known mean:
the regression estimator of E over training sets, with a standard error up to 5x smaller than
the plain seed mean's (docs/finite-size.md, section 6).

Records: tau = 0 plus at most ``n_records`` log-spaced times between one step and t_max, snapped to
whole steps; times that snap to the same step are stored once, so short runs store fewer (for
example 137 of 201 at n_records = 200, 1500 steps), and the summary says how many, or exactly the times ``record_tau`` (each snapped to the nearest whole
step; the returned ``tau`` holds the exact step times, in the given order and length).

Seeds: run k (k = 0 .. seeds-1) uses ``np.random.SeedSequence(seed + k)`` spawned into three streams:
data (beta, then X, then the label noise xi), initial weights W0, minibatch draws.  So seed k of a run
equals seed 0 of a run with ``seed=seed+k``, and the data do not depend on width, batch or noise
level (noise only scales the same xi).
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import numpy as np

from .lazy import kernel_flow
from .target import DEFAULT_TARGET
from .networks import (
    MOMENT_ORDERS,
    NTK_POINTS,
    OBSERVABLES,
    SEEDING,
    ExplicitNetwork,
    Problem,
    ReducedNetwork,
    make_problem,
    seed_streams,
    training_set_moments,
)
from .params import (
    DEFAULT_DT,
    DIVERGENCE_BOUND,
    ParameterError,
    SimulationSettings,
    TwoLayerModel,
    as_dict,
    check_int,
    diverged,
    require,
)
from .simulation_result import SimulationResult, control_variate_mean

__all__ = [
    "simulate",
    "SimulationResult",
    "Problem",
    "make_problem",
    "ExplicitNetwork",
    "ReducedNetwork",
    "OBSERVABLES",
    "NTK_POINTS",
    "MEMORY_LIMIT_BYTES",
    "build_network",
    "training_set_moments",
    "control_variate_mean",
    "MOMENT_ORDERS",
]

MEMORY_LIMIT_BYTES = 4 * 2**30  #: refuse requests whose arrays would exceed this (float64)
MAX_STEPS = 10**9

SGD_CONVENTION = ("step on batch-mean loss with lr (B/P) eta N/alpha^2; tau advances eta (B/P)/D per step "
                  "(tau counts epochs; B = P is full batch)")
#: the convention of Bernoulli batches (``batch_fraction`` b < 1), stored instead of SGD_CONVENTION
BERNOULLI_CONVENTION = ("each point in the batch with probability b at every step; gradient (1/(bP)) sum over the "
                        "batch with lr eta N/alpha^2; tau advances eta/D per step (b = 1 is full batch)")


# ----------------------------------------------------------------------- validation
def _memory_bytes(D: int, P: int, N, batch: int, lazy: bool, n_rec: int) -> float:
    S = min(P, NTK_POINTS)
    R = P if batch is None else batch
    if N == math.inf:
        words = 3 * P * D + 2 * R * D + 6 * D * D + 3 * S * S + 2 * S * D
    else:
        words = 2 * P * D + 3 * N * D + 2 * P * N + 3 * R * N + 4 * D * D + 3 * S * S + 2 * S * N
    if lazy:
        words += 5 * P * P + 3 * n_rec * P
    return 8.0 * words


def _record_steps(n_steps: int, n_records: int) -> np.ndarray:
    if n_records == 1:
        grid = np.array([n_steps], dtype=float)
    else:
        grid = np.geomspace(1.0, n_steps, n_records)
    steps = np.unique(np.concatenate([[0], np.rint(grid).astype(np.int64)]))
    return steps


@dataclasses.dataclass(frozen=True)
class _Setup:
    model: TwoLayerModel
    D: int
    P: int
    N: Any  # int or math.inf
    h: float  # tau per full-batch step (epoch)
    eta: float
    batch: int | None
    tau_step: float  # tau per (S)GD step
    n_steps: int
    record_steps: np.ndarray  # (T,), in order (may repeat for record_tau)
    seeds: int
    seed: int


def _python_scalar(value):
    """numpy integer / float scalars -> Python int / float (the params checks expect Python numbers)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _validate(alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records, record_tau,
              lazy_reference, target=DEFAULT_TARGET, weight_decay=0.0, batch_fraction=1.0) -> _Setup:
    alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records, weight_decay = (
        _python_scalar(v) for v in (alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records,
                                    weight_decay))
    model = TwoLayerModel(alpha=alpha, ratio=ratio, eps=eps, noise=noise, target=target, weight_decay=weight_decay,
                          batch_fraction=_python_scalar(batch_fraction))
    # the ranges, before any compute; the values below are the normalised ones
    opts = SimulationSettings(dim=dim, width=width, dt=dt, eta=eta, t_max=t_max, batch=batch, seeds=seeds,
                              seed=seed, n_records=n_records, lazy_reference=lazy_reference)
    D, N, t_max, seeds, seed, n_records = opts.dim, opts.width, opts.t_max, opts.seeds, opts.seed, opts.n_records
    P = int(round(model.ratio * D))
    require(P >= 1, "ratio", ratio, f"a number > 0 with round(ratio * dim) >= 1 (dim={D})")
    if opts.eta is not None:
        eta = opts.eta
        h = eta / D
    else:
        h = DEFAULT_DT if opts.dt is None else opts.dt
        eta = h * D
    batch = None if opts.batch is None else check_int("batch", opts.batch, 1, P)
    require(batch is None or model.batch_fraction == 1.0, "batch", batch,
            f"None with batch_fraction = {model.batch_fraction:g} (fixed-size batches of B points or Bernoulli "
            "batches of fraction b: give one)")
    tau_step = h if batch is None or batch == P else h * batch / P
    require(not (lazy_reference and model.weight_decay > 0), "lazy_reference", lazy_reference,
            "False with weight_decay > 0 (the lazy reference is kernel gradient flow without weight decay)")
    require(tau_step * model.weight_decay < 1.0, "weight_decay", model.weight_decay,
            f"0 <= weight_decay < 1/(tau per step) = {1.0 / tau_step:.4g} (each step multiplies the weights by "
            "1 - tau_step * weight_decay, which must stay positive)")
    n_steps = max(1, int(round(t_max / tau_step)))
    require(n_steps <= MAX_STEPS, "t_max", t_max,
            f"at most {MAX_STEPS} steps of tau {tau_step:g} (raise dt/eta or lower t_max)")
    if record_tau is None:
        record_steps = _record_steps(n_steps, n_records)
    else:
        rt = np.atleast_1d(np.asarray(record_tau, dtype=float))
        ok = rt.ndim == 1 and rt.size >= 1 and np.all(np.isfinite(rt)) and np.all(rt >= 0)
        ok = ok and np.all(np.diff(rt) >= 0) and rt[-1] <= n_steps * tau_step + 0.5 * tau_step
        require(bool(ok), "record_tau", rt if rt.size < 8 else f"array of shape {rt.shape}",
                f"a non-decreasing 1-d array of times in [0, t_max={t_max:g}]")
        record_steps = np.rint(rt / tau_step).astype(np.int64)
        n_steps = max(1, int(record_steps[-1]))
    need = _memory_bytes(D, P, N, batch, bool(lazy_reference), len(record_steps))
    if need > MEMORY_LIMIT_BYTES:
        raise ParameterError(
            f"invalid dim={D}, ratio={model.ratio:g} (P={P}), width={N}: the simulation needs about "
            f"{need / 2**30:.1f} GiB of arrays; allowed is at most {MEMORY_LIMIT_BYTES / 2**30:.0f} GiB "
            "(lower dim, ratio or width; width=inf needs only O(P D + D^2)"
            + ("; lazy_reference adds O(P^2))" if lazy_reference else ")"))
    return _Setup(model=model, D=D, P=P, N=N, h=h, eta=eta, batch=batch, tau_step=tau_step, n_steps=n_steps,
                  record_steps=record_steps, seeds=seeds, seed=seed)


# ------------------------------------------------------------------------- running
_seed_streams = seed_streams  # the private name under which tests import it


def build_network(setup: _Setup, seed: int):
    """(problem, network, batch_rng) of run ``seed`` (an absolute seed, i.e. seed + k)."""
    rng_data, rng_w, rng_b = seed_streams(seed)
    m = setup.model
    problem = make_problem(setup.D, setup.P, m.noise, rng_data, m.target)
    if setup.N == math.inf:
        net = ReducedNetwork(problem, m.alpha, m.eps, setup.eta, weight_decay=m.weight_decay)
    else:
        W0 = rng_w.standard_normal((setup.N, setup.D))
        net = ExplicitNetwork(problem, m.alpha, m.eps, setup.eta, W0, weight_decay=m.weight_decay)
    return problem, net, rng_b


def _run_one(setup: _Setup, seed: int, bar) -> tuple[dict, Problem, int | None]:
    problem, net, rng_b = build_network(setup, seed)
    rec_steps = setup.record_steps
    T = len(rec_steps)
    out = {name: np.full(T, np.nan) for name in OBSERVABLES}
    order = np.argsort(rec_steps, kind="stable")
    j = 0  # next record (in sorted order)
    diverged_at = None
    P, B = setup.P, setup.batch
    frac = setup.model.batch_fraction
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(setup.n_steps + 1):
            while j < T and rec_steps[order[j]] == n:
                obs = net.observables()
                if diverged([obs["train_loss"], obs["test_loss"]]):
                    diverged_at = n  # this record and the later ones stay NaN: every kept one is below the bound
                    break
                for name in OBSERVABLES:
                    out[name][order[j]] = obs[name]
                j += 1
            if diverged_at is not None or n == setup.n_steps or j == T:
                break
            gain = 1.0
            if frac < 1.0:  # Bernoulli batch: every point with probability b, the gradient sum times 1/b
                rows, gain = np.flatnonzero(rng_b.random(P) < frac), 1.0 / frac
            elif B is None or B == P:
                rows = None  # B = P: the whole training set in natural order, i.e. exactly full batch
            else:
                rows = np.sort(rng_b.choice(P, size=B, replace=False))
            if not net.step(rows, setup.tau_step, gain):
                diverged_at = n
                break
            if bar is not None:
                bar.update(1)
    return out, problem, diverged_at


def simulate(alpha, ratio, eps=0.02, noise=0.0, dim=200, width=math.inf, dt=None, eta=None, t_max=12.0,
             batch=None, seeds=1, seed=0, n_records=200, record_tau=None, lazy_reference=False,
             progress=False, target=DEFAULT_TARGET, weight_decay=0.0, batch_fraction=1.0) -> SimulationResult:
    """Train ``seeds`` independent networks (each on its own data set) and record the observables.

    Parameters (see the module docstring for the model and every convention)
    ----------
    alpha, ratio, eps, noise, target, weight_decay : model (:class:`dmft.params.TwoLayerModel`): the teacher's
        Hermite coefficients (c_0, ..., c_K) and the weight decay omega (each step multiplies the weights by
        1 - omega * (tau per step)); ``batch_fraction`` b < 1: Bernoulli batches (each point in the batch with
        probability b at every step, the gradient (1/(bP)) sum over the batch, tau advances h per step).
    dim : input dimension D.   width : hidden units N (int) or ``math.inf`` (exact reduction).
    dt, eta : exactly one (default dt = 0.2): tau per full-batch step h, or eta = h D.
    t_max : final tau.   batch : minibatch size B (None = full batch), tau advances h B/P per step.
    seeds, seed : runs seed, seed+1, ..., seed+seeds-1.
    n_records : at most this many log-spaced record times (plus tau = 0); times that fall on the same
        whole step are stored once.   record_tau : explicit times instead.
    lazy_reference : also compute the NTK kernel-flow reference (:func:`dmft.lazy.kernel_flow`, the
        infinite-width initial NTK, whatever ``width``) on each data set: its Euler map with the same h
        for full batch, the continuous flow for minibatches.
    progress : tqdm progress bar over steps.
    """
    setup = _validate(alpha, ratio, eps, noise, dim, width, dt, eta, t_max, batch, seeds, seed, n_records,
                      record_tau, lazy_reference, target, weight_decay, batch_fraction)
    tau = setup.record_steps * setup.tau_step
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    per_seed = {name: np.empty((setup.seeds, len(tau))) for name in OBSERVABLES}
    lazy_train, lazy_test = [], []
    frac = setup.model.batch_fraction
    moments = {key: np.empty(setup.seeds) for key in [f"u{k}" for k in MOMENT_ORDERS] + ["y2"]}
    diverged_at = np.full(setup.seeds, np.nan)  # per seed: tau of its divergence, NaN if none
    with tqdm(total=setup.seeds * setup.n_steps, disable=not progress, unit="step", desc="simulate",
              mininterval=0.5) as bar:
        for k in range(setup.seeds):
            obs, problem, div = _run_one(setup, setup.seed + k, bar if progress else None)
            for name in OBSERVABLES:
                per_seed[name][k] = obs[name]
            for key, value in training_set_moments(problem).items():
                moments[key][k] = value
            if div is not None:
                diverged_at[k] = div * setup.tau_step
                warnings.warn(f"seed {setup.seed + k} diverged at tau={div * setup.tau_step:g} (a residual or "
                              f"loss non-finite or >= {DIVERGENCE_BOUND:.0e}); the Euler step dt={setup.h:g} is "
                              "probably too large (stable for dt below ~0.3-0.5); its records from then on are NaN",
                              RuntimeWarning, stacklevel=2)
            if lazy_reference:
                kf = kernel_flow(problem.X, problem.y, setup.model.eps, tau, beta=problem.beta,
                                 dt=setup.h if setup.batch is None and frac == 1.0 else None, target=problem.target)
                lazy_train.append(kf.train_loss)
                lazy_test.append(kf.test_loss)
    wall = time.perf_counter() - t0

    def _std(a):
        return np.std(a, axis=0, ddof=1) if a.shape[0] > 1 else np.zeros(a.shape[1])

    observables = {name: per_seed[name].mean(axis=0) for name in OBSERVABLES}
    std = {name: _std(per_seed[name]) for name in OBSERVABLES}
    lazy = None
    if lazy_reference:
        lt, le = np.array(lazy_train), np.array(lazy_test)
        lazy = {"observables": {"train_loss": lt.mean(axis=0), "test_loss": le.mean(axis=0)},
                "std": {"train_loss": _std(lt), "test_loss": _std(le)},
                "per_seed": {"train_loss": lt, "test_loss": le}}
    m = setup.model
    parameters = {
        **as_dict(m),
        "dim": setup.D,
        "P": setup.P,
        "width": setup.N,
        "engine": "reduced" if setup.N == math.inf else "explicit",
        "dt": setup.h,
        "eta": setup.eta,
        "batch": setup.batch,
        "tau_per_step": setup.tau_step,
        "n_steps": setup.n_steps,
        "t_max": float(t_max),
        "seeds": setup.seeds,
        "seed": setup.seed,
        "n_records": n_records,
        "record_grid": "log" if record_tau is None else "given",
        "lazy_reference": bool(lazy_reference),
        "ntk_points": min(setup.P, NTK_POINTS),
        "sgd_convention": BERNOULLI_CONVENTION if m.batch_fraction < 1.0 else SGD_CONVENTION,
        "seeding": SEEDING,
        "test_loss_target": "clean g(beta.x), exact population average",
    }
    info = {"wall_time_s": wall}
    return SimulationResult(parameters=parameters, tau=tau, observables=observables, std=std, per_seed=per_seed,
                            lazy=lazy, info=info, data_moments=moments,
                            diverged_at=diverged_at)
