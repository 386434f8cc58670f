"""The record of a simulation (:class:`SimulationResult`) and the control-variate mean over seeds."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .networks import SEEDING, make_problem, seed_streams, training_set_moments
from .target import DEFAULT_TARGET, norm2

__all__ = ["SimulationResult", "control_variate_mean"]


@dataclasses.dataclass
class SimulationResult:
    """Seed-averaged simulation record.

    Attributes, and where :meth:`save` writes them (file kind "simulation"):

    * ``parameters`` flat dict (``/parameters`` attributes);
    * ``tau`` (T,) (``/observables/tau``);
    * ``observables`` name -> mean over seeds (T,) (``/observables/<name>``);
    * ``std`` name -> sample standard deviation over seeds (ddof = 1; zeros for one seed) (``/std/<name>``);
    * ``per_seed`` name -> (seeds, T) (``/per_seed/<name>``);
    * ``lazy`` (optional) the NTK kernel-flow reference on the same data, ``{"observables", "std",
      "per_seed"}`` each name -> array as above, for train_loss and test_loss (``/lazy_reference/...``);
    * ``data_moments`` (optional) the training sets' moments ``u2``, ``u4``, ``u6`` (seeds,)
      (``/data_moments``);
    * ``diverged_at`` (optional) per seed, the tau at which its run diverged, NaN for a run that did
      not (``/diverged_at``);
    * ``info`` run metadata (wall time), not part of the result's identity (root attributes).
    """

    parameters: dict
    tau: np.ndarray
    observables: dict
    std: dict
    per_seed: dict
    lazy: dict | None = None
    info: dict = dataclasses.field(default_factory=dict)
    data_moments: dict | None = None
    diverged_at: np.ndarray | None = None

    @property
    def diverged_seeds(self) -> list[int]:
        """The seeds (absolute: seed + k) whose run diverged."""
        if self.diverged_at is None:
            return []
        first = int(self.parameters.get("seed", 0))
        return [first + int(k) for k in np.flatnonzero(np.isfinite(np.asarray(self.diverged_at, dtype=float)))]

    def divergence(self) -> str:
        """One phrase naming each diverged seed and its tau, e.g. "seed 0 at tau = 4.8, seed 2 at tau = 6"
        ("" when none diverged)."""
        first = int(self.parameters.get("seed", 0))
        return ", ".join(f"seed {seed} at tau = {float(self.diverged_at[seed - first]):g}"
                         for seed in self.diverged_seeds)

    # ---------------------------------------------------------------- helpers
    def seed_mean(self, name: str, control_variate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Estimate of E over training sets and initialisations of observable ``name`` and its standard error.

        Without the control variate: the seed mean ybar and s / sqrt(n).  With it (the default, when the
        training-set moments are known and there are at least 4 seeds): the regression estimator with
        the known mean E[m_4] = 3 of the training set's fourth moment of u = beta.x,

            y_k = a + c (m4_k - 3) + e_k   (least squares over seeds k, at every tau),  estimate = a,

        whose standard error is sqrt(s_e^2 [(A^T A)^-1]_00), s_e^2 the residual variance with n - 2
        degrees of freedom.  It is consistent for the same expectation as the seed mean (bias O(1/n))
        and has variance (1 - R^2) times smaller, R the correlation of y with m_4: the spread of
        grokking times over training sets is mostly the spread of m_4 (docs/finite-size.md).  At
        tau = 0 the train loss is m_4 / 4, so the estimate is 3/4 with zero error.  Seeds with a
        non-finite value at a time are left out at that time.
        """
        if not control_variate or self.data_moments is None:
            return control_variate_mean(self.per_seed[name])
        moment, mean = self.control_moment()
        return control_variate_mean(self.per_seed[name], moment, mean)

    def control_moment(self) -> tuple[np.ndarray, float]:
        """(per-seed moment, its known mean) of the control variate of :meth:`seed_mean`: m_4 and 3 for the
        quadratic teacher; for another target the training set's label moment y2 = (1/P) sum y^2, of mean
        E[g^2] + noise^2 = sum_k k! c_k^2 + noise^2 (the train loss at tau = 0)."""
        target = self.parameters.get("target", DEFAULT_TARGET)
        if tuple(target) == DEFAULT_TARGET or "y2" not in self.data_moments:
            return self.data_moments["u4"], 3.0
        return self.data_moments["y2"], norm2(target) + float(self.parameters.get("noise", 0.0)) ** 2

    def first_below(self, name: str, fraction: float = 0.5, reference: float | None = None) -> float:
        """First recorded tau at which the seed-mean of ``name`` is below ``fraction * reference``
        (reference: its value at the first record, tau = 0).  nan if it never is."""
        curve = np.asarray(self.observables[name])
        ref = curve[0] if reference is None else reference
        idx = np.nonzero(curve < fraction * ref)[0]
        return float(self.tau[idx[0]]) if idx.size else float("nan")

    def summary(self) -> str:
        p = self.parameters
        width = p["width"]
        engine = "exact infinite-width (A, b) reduction" if width == math.inf else f"explicit network, N={width}"
        batch = "full batch" if p.get("batch") is None else f"minibatch B={p['batch']}"
        lines = [
            f"simulation: alpha={p['alpha']:g} ratio={p['ratio']:g} eps={p['eps']:g} noise={p['noise']:g} "
            f"D={p['dim']} P={p['P']}",
            f"  {engine}; {batch}; dt={p['dt']:g} (eta={p['eta']:g}), {p['n_steps']} steps to tau={self.tau[-1]:g}; "
            f"seeds {p['seed']}..{p['seed'] + p['seeds'] - 1}",
        ]
        n_seeds = int(p["seeds"])
        asked = p.get("n_records")
        records = f"  {len(self.tau)} records (tau = 0 plus log-spaced times"
        if asked is not None and p.get("record_grid", "log") == "log" and len(self.tau) < int(asked) + 1:
            records += (f"; of {int(asked) + 1} asked, {int(asked) + 1 - len(self.tau)} fell on an "
                        "already recorded whole step")
        lines.append(records + ")")
        for name in ("train_loss", "test_loss"):
            mean, sd = self.observables[name][-1], self.std[name][-1]
            t_half = self.first_below(name)
            spread = (f"seed sd {sd:.2g}, SE = sd/√{n_seeds} = {sd / math.sqrt(n_seeds):.2g}" if n_seeds > 1
                      else "1 seed, no error bar")
            lines.append(f"  final {name.replace('_', ' ')}: {mean:.6g}   ({spread}; "
                         f"initial {self.observables[name][0]:.6g}; first below half of it: "
                         + (f"τ = {t_half:g})" if math.isfinite(t_half) else f"never, up to τ = {self.tau[-1]:g})"))
        if self.data_moments is not None and next(iter(self.per_seed.values())).shape[0] >= 4:
            cv = {name: self.seed_mean(name) for name in ("train_loss", "test_loss")}
            lines.append("  final, mean over training sets with the training-set moment as control variate (seed_mean): "
                         + ", ".join(f"{name.replace('_', ' ')} {cv[name][0][-1]:.6g} ± {cv[name][1][-1]:.2g}"
                                     for name in cv)
                         + " (± its standard error)")
        if self.lazy is not None:
            lazy = self.lazy["observables"]
            lines.append(f"  lazy (NTK) reference, final: train loss {lazy['train_loss'][-1]:.6g}, "
                         f"test loss {lazy['test_loss'][-1]:.6g}")
        if self.diverged_seeds:
            lines.append(f"  DIVERGED: {self.divergence()}; their records from then on are NaN, and so are the "
                         "seed means and sds there (Euler step too large?)")
        if "wall_time_s" in self.info:
            lines.append(f"  wall time {self.info['wall_time_s']:.1f} s")
        return "\n".join(lines)

    # -------------------------------------------------------------------- I/O
    def save(self, path):
        """Write the HDF5 file (kind "simulation"; layout in the class docstring); see :mod:`dmft.io`."""
        from .io import write_h5

        def arrays(tree):
            return {k: np.asarray(v) for k, v in tree.items()}

        data: dict[str, Any] = {"observables": {"tau": np.asarray(self.tau), **arrays(self.observables)},
                                "std": arrays(self.std), "per_seed": arrays(self.per_seed)}
        if self.lazy is not None:
            data["lazy_reference"] = {group: arrays(self.lazy[group]) for group in ("observables", "std", "per_seed")}
        if self.data_moments is not None:
            data["data_moments"] = arrays(self.data_moments)
        if self.diverged_at is not None:
            data["diverged_at"] = np.asarray(self.diverged_at, dtype=float)
        attrs = {k: (v if not isinstance(v, (list, tuple)) else str(list(v))) for k, v in self.info.items()}
        return write_h5(path, kind="simulation", parameters=self.parameters, data=data, attrs=attrs)

    @classmethod
    def load(cls, path) -> "SimulationResult":
        from .io import read_h5

        return cls.from_raw(read_h5(path, kind="simulation"))

    @classmethod
    def from_raw(cls, raw: dict) -> "SimulationResult":
        """The result held by a :func:`dmft.io.read_h5` dict of a simulation file.  A dict without
        ``/std`` or ``/per_seed`` (e.g. written by hand through dmft.io) gives empty ones."""
        def arrays(tree):
            return {k: np.asarray(v) for k, v in (tree or {}).items()}

        obs = raw["observables"]
        tau = np.asarray(obs["tau"])
        observables = {k: np.asarray(v) for k, v in obs.items() if k != "tau"}
        lazy = None
        if "lazy_reference" in raw:
            lazy = {group: arrays(raw["lazy_reference"].get(group)) for group in ("observables", "std", "per_seed")}
        info = {k: raw["attrs"][k] for k in ("wall_time_s",) if k in raw.get("attrs", {})}
        parameters = dict(raw["parameters"])
        if "data_moments" in raw:
            moments = arrays(raw["data_moments"])
        else:  # a file without the moments: the data are a function of the seed
            moments = _moments_from_parameters(parameters)
        diverged = raw.get("diverged_at")
        return cls(parameters=parameters, tau=tau, observables=observables, std=arrays(raw.get("std")),
                   per_seed=arrays(raw.get("per_seed")), lazy=lazy, info=info, data_moments=moments,
                   diverged_at=None if diverged is None else np.asarray(diverged, dtype=float))


# ------------------------------------------------------------------------ seed means
def control_variate_mean(per_seed, u4=None, known_mean: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(estimate, standard error) over seeds of ``per_seed`` (seeds, T), with a per-seed training-set moment ``u4``
    (seeds,) as a control variate of known mean ``known_mean`` (the fourth moment of u and 3 by default; see
    :meth:`SimulationResult.seed_mean`); the plain seed mean and s / sqrt(n) when ``u4`` is None or fewer than 4
    seeds are finite."""
    y = np.asarray(per_seed, dtype=float)
    n = y.shape[0]
    counts = np.sum(np.isfinite(y), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.nanmean(y, axis=0) if n else np.full(y.shape[1], np.nan)
        se = (np.nanstd(y, axis=0, ddof=1) / np.sqrt(np.maximum(counts, 1)) if n > 1
              else np.zeros(y.shape[1]))
    if u4 is None:
        return plain, se
    x = np.asarray(u4, dtype=float) - known_mean
    if x.shape != (n,):
        raise ValueError(f"u4 has shape {x.shape}, expected ({n},): one fourth moment per seed")
    mean, err = plain.copy(), se.copy()
    full = np.all(np.isfinite(y), axis=0)
    xm = x.mean() if n else 0.0
    sxx = float(((x - xm) ** 2).sum())
    if n >= 4 and sxx > 0 and full.any():  # complete columns at once: the intercept at x = 0 and its SE
        yf = y[:, full]
        ym = yf.mean(axis=0)
        slope = ((x - xm) @ (yf - ym)) / sxx
        mean[full] = ym - slope * xm
        resid = yf - mean[full] - np.outer(x, slope)
        err[full] = np.sqrt(np.maximum((resid**2).sum(axis=0) / (n - 2) * (1.0 / n + xm**2 / sxx), 0.0))
    for j in (np.flatnonzero(~full) if n >= 4 and sxx > 0 else range(y.shape[1])):
        ok = np.isfinite(y[:, j])
        m = int(ok.sum())
        if m < 4:
            continue
        A = np.column_stack([np.ones(m), x[ok]])
        coef, *_ = np.linalg.lstsq(A, y[ok, j], rcond=None)
        resid = y[ok, j] - A @ coef
        s2 = resid @ resid / (m - 2)
        mean[j] = coef[0]
        err[j] = math.sqrt(max(s2 * np.linalg.inv(A.T @ A)[0, 0], 0.0))
    return mean, err


def _moments_from_parameters(parameters: dict) -> dict | None:
    """Recompute every seed's training-set moments from a result's parameters (the data depend only
    on the seed, D and P); None if the file's seeding convention is not this module's."""
    if parameters.get("seeding") != SEEDING:
        return None
    try:
        D, P, seed, seeds = (int(parameters[k]) for k in ("dim", "P", "seed", "seeds"))
    except (KeyError, TypeError, ValueError):
        return None
    rows = []
    for k in range(seeds):
        rng_data, _, _ = seed_streams(seed + k)
        rows.append(training_set_moments(make_problem(D, P, float(parameters.get("noise", 0.0)), rng_data,
                                                      tuple(parameters.get("target", DEFAULT_TARGET)))))
    return {key: np.array([r[key] for r in rows]) for key in rows[0]} if rows else None
